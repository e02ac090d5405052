// Creating files, directories, special files, symlinks and hard links
// through the overlay: where they land in the upper, who owns them, and
// the errors for names that exist. The kernel's result is expected.
import fs from 'node:fs';
import path from 'node:path';
import { expect } from 'vitest';
import { outcome, type Stack } from '../helpers/overlay';
import {
  expectSameEffect, inodeGroups, makeWhiteout, NOBODY, onBoth, pairTest,
  statOf, sysops, writeFiles, type Step,
} from '../helpers/conformance';

function build(s: Stack) {
  const [l1, l2] = s.lowers;
  writeFiles(l1, { lf: 'lower', 'ld/x': 'x', 'deep/a/b/f': 'f', 'pub/existing': 'e' });
  writeFiles(l2, { 'ld/y': 'y', lf2: 'lower2' });
  writeFiles(s.upper, { uf: 'upper', 'ud/z': 'z' });
  fs.chmodSync(path.join(l1, 'pub'), 0o1777);
  fs.mkdirSync(path.join(l1, 'sg'));
  fs.chownSync(path.join(l1, 'sg'), 0, 100);
  fs.chmodSync(path.join(l1, 'sg'), 0o2777);
  fs.mkdirSync(path.join(l1, 'closed'));
  fs.chmodSync(path.join(l1, 'closed'), 0o755);
  makeWhiteout(path.join(s.upper, 'wh'));
  writeFiles(l2, { 'wh/hidden': 'h' });
}

const m = (s: Stack, rel: string) => path.join(s.merged, rel);


const nobody = { uid: NOBODY, gid: NOBODY };
const asNobody = (steps: Step[]) => sysops(steps, nobody).map((r) => r.r);

pairTest('create file in root', 2, build, (pair) => {
  expectSameEffect(pair, (s) => outcome(() => fs.writeFileSync(m(s, 'new'), 'n')), ['', 'new']);
});

pairTest('create file in lower dir', 2, build, (pair) => {
  expectSameEffect(pair, (s) => outcome(() => fs.writeFileSync(m(s, 'ld/new'), 'n')), ['ld']);
});

pairTest('create file in deep lower dir', 2, build, (pair) => {
  expectSameEffect(pair, (s) => outcome(() => fs.writeFileSync(m(s, 'deep/a/b/new'), 'n')), ['deep/a/b']);
});

pairTest('mkdir in root', 2, build, (pair) => {
  expectSameEffect(pair, (s) => outcome(() => fs.mkdirSync(m(s, 'nd'), 0o750)), ['', 'nd']);
});

pairTest('mkdir in lower dir', 2, build, (pair) => {
  expectSameEffect(pair, (s) => outcome(() => fs.mkdirSync(m(s, 'ld/nd'))), ['ld']);
});

pairTest('mkdir -p under lower dirs', 2, build, (pair) => {
  expectSameEffect(pair, (s) => outcome(() => fs.mkdirSync(m(s, 'deep/a/n1/n2'), { recursive: true })), ['deep/a']);
});

pairTest('mkdir keeps sticky and setgid bits', 2, build, (pair) => {
  expectSameEffect(pair, (s) => [
    outcome(() => fs.mkdirSync(m(s, 'sticky'), 0o1777)),
    outcome(() => fs.chmodSync(m(s, 'sticky'), 0o1777)),
    outcome(() => fs.mkdirSync(m(s, 'sgd'), 0o2755)),
  ], ['', 'sticky', 'sgd']);
});

pairTest('mkfifo', 2, build, (pair) => {
  expectSameEffect(pair, (s) => sysops([['mkfifo', m(s, 'fifo'), 0o640]])[0].r, ['', 'fifo']);
});

pairTest('unix socket', 2, build, (pair) => {
  expectSameEffect(pair, (s) => sysops([['socket', m(s, 'ld/sock')]])[0].r, ['ld']);
});

pairTest('mknod char device 1/3', 2, build, (pair) => {
  expectSameEffect(pair, (s) => sysops([['mknod', m(s, 'null'), 0o20666, 1, 3]])[0].r, ['', 'null']);
});

pairTest('mknod whiteout device 0/0', 2, build, (pair) => {
  expectSameEffect(pair, (s) => sysops([['mknod', m(s, 'zero'), 0o20644, 0, 0]])[0].r, ['', 'zero']);
});

pairTest('mknod block device', 2, build, (pair) => {
  expectSameEffect(pair, (s) => sysops([['mknod', m(s, 'blk'), 0o60600, 7, 0]])[0].r, ['', 'blk']);
});

pairTest('mknod regular file', 2, build, (pair) => {
  expectSameEffect(pair, (s) => sysops([['mknod', m(s, 'reg'), 0o100600, 0, 0]])[0].r, ['', 'reg']);
});

pairTest('symlink', 2, build, (pair) => {
  expectSameEffect(pair, (s) => outcome(() => fs.symlinkSync('lf', m(s, 'ld/sl'))), ['ld', 'ld/sl']);
});

pairTest('link lower file', 2, build, (pair) => {
  expectSameEffect(pair, (s) => [
    outcome(() => fs.linkSync(m(s, 'lf'), m(s, 'ld/hl'))),
    inodeGroups(s.merged, ['lf', 'ld/hl', 'lf2']),
    statOf(m(s, 'lf')).nlink,
  ], ['', 'ld']);
});

pairTest('link upper file', 2, build, (pair) => {
  expectSameEffect(pair, (s) => [
    outcome(() => fs.linkSync(m(s, 'uf'), m(s, 'hl'))),
    inodeGroups(s.merged, ['uf', 'hl']),
    statOf(m(s, 'hl')).nlink,
  ], ['']);
});

pairTest('link then unlink original', 2, build, (pair) => {
  expectSameEffect(pair, (s) => [
    outcome(() => fs.linkSync(m(s, 'lf'), m(s, 'hl'))),
    outcome(() => fs.unlinkSync(m(s, 'lf'))),
    statOf(m(s, 'hl')).nlink,
  ], ['', 'lf']);
});

pairTest('link to a directory', 2, build, (pair) => {
  const r = onBoth(pair, (s) => outcome(() => fs.linkSync(m(s, 'ld'), m(s, 'ldl'))));
  expect(r.kernel).toBe('EPERM');
  expect(r.ours).toBe(r.kernel);
});

pairTest('link over existing name', 2, build, (pair) => {
  const r = onBoth(pair, (s) => outcome(() => fs.linkSync(m(s, 'uf'), m(s, 'lf'))));
  expect(r.kernel).toBe('EEXIST');
  expect(r.ours).toBe(r.kernel);
});

pairTest('O_EXCL on lower name', 2, build, (pair) => {
  const r = onBoth(pair, (s) => outcome(() => fs.writeFileSync(m(s, 'lf'), 'x', { flag: 'wx' })));
  expect(r.kernel).toBe('EEXIST');
  expect(r.ours).toBe(r.kernel);
});

pairTest('mkdir on lower file', 2, build, (pair) => {
  const r = onBoth(pair, (s) => outcome(() => fs.mkdirSync(m(s, 'lf'))));
  expect(r.kernel).toBe('EEXIST');
  expect(r.ours).toBe(r.kernel);
});

pairTest('mkdir on lower dir', 2, build, (pair) => {
  const r = onBoth(pair, (s) => outcome(() => fs.mkdirSync(m(s, 'ld'))));
  expect(r.kernel).toBe('EEXIST');
  expect(r.ours).toBe(r.kernel);
});

pairTest('symlink on lower name', 2, build, (pair) => {
  const r = onBoth(pair, (s) => outcome(() => fs.symlinkSync('x', m(s, 'ld/x'))));
  expect(r.kernel).toBe('EEXIST');
  expect(r.ours).toBe(r.kernel);
});

pairTest('mkfifo on lower name', 2, build, (pair) => {
  const r = onBoth(pair, (s) => sysops([['mkfifo', m(s, 'lf2'), 0o644]])[0].r);
  expect(r.kernel).toBe('EEXIST');
  expect(r.ours).toBe(r.kernel);
});

pairTest('create under missing dir', 2, build, (pair) => {
  const r = onBoth(pair, (s) => outcome(() => fs.writeFileSync(m(s, 'nodir/f'), 'x')));
  expect(r.kernel).toBe('ENOENT');
  expect(r.ours).toBe(r.kernel);
});

pairTest('create under a file', 2, build, (pair) => {
  const r = onBoth(pair, (s) => outcome(() => fs.writeFileSync(m(s, 'lf/f'), 'x')));
  expect(r.kernel).toBe('ENOTDIR');
  expect(r.ours).toBe(r.kernel);
});

pairTest('mkdir over whiteout is opaque', 2, build, (pair) => {
  expectSameEffect(pair, (s) => [outcome(() => fs.mkdirSync(m(s, 'wh'))), fs.readdirSync(m(s, 'wh'))], ['wh', '']);
});

pairTest('nobody creates in world-writable dir', 2, build, (pair) => {
  expectSameEffect(pair, (s) => asNobody([
    ['writefile', m(s, 'pub/f'), 'f'],
    ['mkdir', m(s, 'pub/d'), 0o755],
    ['mkfifo', m(s, 'pub/p'), 0o644],
    ['symlink', 'f', m(s, 'pub/l')],
    ['socket', m(s, 'pub/s')],
  ]), ['pub']);
});

pairTest('nobody owns created file', 2, build, (pair) => {
  const r = onBoth(pair, (s) => {
    asNobody([['writefile', m(s, 'pub/f'), 'f'], ['mkdir', m(s, 'pub/d'), 0o755]]);
    return ['pub/f', 'pub/d'].map((p) => [statOf(m(s, p)).uid, statOf(m(s, p)).gid]);
  });
  expect(r.kernel).toEqual([[65534n, 65534n], [65534n, 65534n]]);
  expect(r.ours).toEqual(r.kernel);
});

pairTest('nobody link of root file', 2, build, (pair) => {
  expectSameEffect(pair, (s) => asNobody([['link', m(s, 'pub/existing'), m(s, 'pub/hl')]]), ['pub']);
});

pairTest('nobody in root-owned dir', 2, build, (pair) => {
  expectSameEffect(pair, (s) => asNobody([
    ['writefile', m(s, 'closed/f'), 'f'],
    ['mkdir', m(s, 'closed/d'), 0o755],
    ['symlink', 'x', m(s, 'closed/l')],
  ]), []);
});

pairTest('setgid dir gives its group', 2, build, (pair) => {
  expectSameEffect(pair, (s) => [
    asNobody([['writefile', m(s, 'sg/byNobody'), 'n'], ['mkdir', m(s, 'sg/dirByNobody'), 0o755]]),
    outcome(() => fs.writeFileSync(m(s, 'sg/byRoot'), 'r')),
    outcome(() => fs.mkdirSync(m(s, 'sg/dirByRoot'))),
  ], ['sg']);
});

pairTest('setgid bit on file by non-member', 2, build, (pair) => {
  expectSameEffect(pair, (s) => asNobody([
    ['open', m(s, 'sg/f'), ['O_CREAT', 'O_WRONLY'], 0o2755], ['close', 'fd'],
  ]), ['sg']);
});

pairTest('create with mode bits', 2, build, (pair) => {
  expectSameEffect(pair, (s) => sysops([
    ['open', m(s, 'suid'), ['O_CREAT', 'O_WRONLY'], 0o4755], ['close', 'fd'],
    ['open', m(s, 'none'), ['O_CREAT', 'O_WRONLY'], 0], ['close', 'fd'],
  ]).map((x) => x.r), ['', 'suid', 'none']);
});

pairTest('O_CREAT without O_EXCL on lower', 2, build, (pair) => {
  expectSameEffect(pair, (s) => sysops([
    ['open', m(s, 'lf'), ['O_CREAT', 'O_RDONLY'], 0o600], ['close', 'fd'],
  ]).map((x) => x.r), []);
});
