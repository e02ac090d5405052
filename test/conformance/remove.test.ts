// unlink and rmdir: the error for each kind of bad request, permission
// checks for an unprivileged caller, and that a failed removal leaves the
// upper as it was. The kernel's result is expected.
import fs from 'node:fs';
import path from 'node:path';
import { expect } from 'vitest';
import { outcome, type Stack } from '../helpers/overlay';
import {
  expectSameEffect, makeWhiteout, NOBODY, pairTest, sysops,
  writeFiles, type Step,
} from '../helpers/conformance';

function build(s: Stack) {
  const [l1, l2] = s.lowers;
  writeFiles(l1, { lf: 'l', 'ld/x': 'x', 'md/a': 'a', 'closed/f': 'f', 'sticky/rootf': 'r', 'open/rootf': 'r' });
  writeFiles(l2, { 'md/b': 'b', gone: 'g' });
  writeFiles(s.upper, { uf: 'u', 'ud/y': 'y', 'md/c': 'c' });
  fs.mkdirSync(path.join(l1, 'emptyLower'));
  fs.mkdirSync(path.join(s.upper, 'emptyUpper'));
  fs.chmodSync(path.join(l1, 'closed'), 0o755);
  fs.chmodSync(path.join(l1, 'sticky'), 0o1777);
  fs.chmodSync(path.join(l1, 'open'), 0o777);
  writeFiles(l1, { 'sticky/mine': 'm', 'closed/sub/f': 'f' });
  fs.chownSync(path.join(l1, 'sticky/mine'), NOBODY, NOBODY);
  fs.symlinkSync('ld', path.join(l1, 'dirlink'));
  makeWhiteout(path.join(s.upper, 'gone'));
  const r = sysops([['mkfifo', path.join(l1, 'fifo'), 0o644], ['mknod', path.join(l1, 'null'), 0o20666, 1, 3]]);
  if (r.some((x) => x.r !== 'ok')) throw new Error('cannot make special files');
}

const m = (s: Stack, rel: string) => path.join(s.merged, rel);


const asNobody = (steps: Step[]) => sysops(steps, { uid: NOBODY, gid: NOBODY }).map((r) => r.r);

// Each case: a test name, the call, and the errno the kernel is known to give.
const errorCases: [string, (s: Stack) => unknown, string][] = [
  ['unlink missing', (s) => fs.unlinkSync(m(s, 'nothing')), 'ENOENT'],
  ['rmdir missing', (s) => fs.rmdirSync(m(s, 'nothing')), 'ENOENT'],
  ['unlink whited-out name', (s) => fs.unlinkSync(m(s, 'gone')), 'ENOENT'],
  ['unlink under missing dir', (s) => fs.unlinkSync(m(s, 'nodir/x')), 'ENOENT'],
  ['unlink lower dir', (s) => fs.unlinkSync(m(s, 'ld')), 'EISDIR'],
  ['unlink upper dir', (s) => fs.unlinkSync(m(s, 'ud')), 'EISDIR'],
  ['unlink merged dir', (s) => fs.unlinkSync(m(s, 'md')), 'EISDIR'],
  ['rmdir lower file', (s) => fs.rmdirSync(m(s, 'lf')), 'ENOTDIR'],
  ['rmdir upper file', (s) => fs.rmdirSync(m(s, 'uf')), 'ENOTDIR'],
  ['rmdir symlink to dir', (s) => fs.rmdirSync(m(s, 'dirlink')), 'ENOTDIR'],
  ['unlink under a file', (s) => fs.unlinkSync(m(s, 'lf/x')), 'ENOTDIR'],
  ['unlink file with slash', (s) => fs.unlinkSync(m(s, 'lf') + '/'), 'ENOTDIR'],
  ['rmdir non-empty lower dir', (s) => fs.rmdirSync(m(s, 'ld')), 'ENOTEMPTY'],
  ['rmdir non-empty upper dir', (s) => fs.rmdirSync(m(s, 'ud')), 'ENOTEMPTY'],
  ['rmdir non-empty merged dir', (s) => fs.rmdirSync(m(s, 'md')), 'ENOTEMPTY'],
  ['rmdir dot', (s) => fs.rmdirSync(m(s, 'ld') + '/.'), 'EINVAL'],
  ['rmdir mount root', (s) => fs.rmdirSync(s.merged), 'EBUSY'],
];

for (const [name, call, expected] of errorCases) {
  pairTest(name, 2, build, (pair) => {
    const { result: code } = expectSameEffect(pair, (s) => outcome(() => call(s)));
    expect(code).toBe(expected);
  });
}

pairTest('nobody unlink in closed dir', 2, build, (pair) => {
  const { result: codes } = expectSameEffect(pair, (s) => asNobody([['unlink', m(s, 'closed/f')]]));
  expect(codes).toEqual(['EACCES']);
});

pairTest('nobody rmdir in closed dir', 2, build, (pair) => {
  expectSameEffect(pair, (s) => asNobody([['unlink', m(s, 'closed/sub/f')], ['rmdir', m(s, 'closed/sub')]]));
});

pairTest('nobody unlink in sticky dir', 2, build, (pair) => {
  expectSameEffect(pair, (s) => asNobody([
    ['unlink', m(s, 'sticky/rootf')], ['unlink', m(s, 'sticky/mine')],
  ]), ['sticky']);
});

pairTest('nobody unlink in open dir', 2, build, (pair) => {
  expectSameEffect(pair, (s) => asNobody([['unlink', m(s, 'open/rootf')]]), ['open']);
});

pairTest('unlink symlink to dir', 2, build, (pair) => {
  expectSameEffect(pair, (s) => outcome(() => fs.unlinkSync(m(s, 'dirlink'))), ['', 'dirlink']);
});

pairTest('unlink lower fifo and device', 2, build, (pair) => {
  expectSameEffect(pair, (s) => [
    outcome(() => fs.unlinkSync(m(s, 'fifo'))), outcome(() => fs.unlinkSync(m(s, 'null'))),
  ], ['', 'fifo', 'null']);
});

pairTest('rmdir empty lower and upper dirs', 2, build, (pair) => {
  expectSameEffect(pair, (s) => [
    outcome(() => fs.rmdirSync(m(s, 'emptyLower'))), outcome(() => fs.rmdirSync(m(s, 'emptyUpper'))),
  ], ['', 'emptyLower']);
});
