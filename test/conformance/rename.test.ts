// rename of files and directories: copy-up of the source, whiteouts left
// behind, EXDEV for directories that exist in a lower, the rules for
// existing targets, and renameat2 flags. The kernel's result is expected.
import fs from 'node:fs';
import path from 'node:path';
import { expect } from 'vitest';
import { outcome, type Stack } from '../helpers/overlay';
import {
  expectSameEffect, inodeGroups, makeWhiteout, onBoth, pairTest, run, statOf, sys, sysops,
  writeFiles,
} from '../helpers/conformance';

function build(s: Stack) {
  const [l1, l2] = s.lowers;
  writeFiles(l1, {
    lf: 'lower file', lf2: 'lower file 2', 'ld/x': 'x', 'md/a': 'a', 'ld2/y': 'y', 'tree/sub/f': 'f',
  });
  writeFiles(l2, { 'md/b': 'b', 'emptied/gone': 'g', deep: 'deep' });
  writeFiles(s.upper, {
    uf: 'upper file', uf2: 'upper file 2', 'ud/z': 'z', 'md/c': 'c', 'ud2/w': 'w', 'uempty/.keep': '',
  });
  fs.unlinkSync(path.join(s.upper, 'uempty/.keep'));
  fs.mkdirSync(path.join(l1, 'emptyLower'));
  fs.mkdirSync(path.join(s.upper, 'emptied'));
  makeWhiteout(path.join(s.upper, 'emptied/gone'));
  makeWhiteout(path.join(s.upper, 'wh'));
  writeFiles(l2, { wh: 'hidden' });
  fs.linkSync(path.join(l1, 'lf'), path.join(l1, 'lhl'));
  fs.linkSync(path.join(s.upper, 'uf'), path.join(s.upper, 'uhl'));
  fs.symlinkSync('lf', path.join(l1, 'lsym'));
  sys('setxattr', path.join(l1, 'lf'), 'user.k', '6b');
  sysops([['mkfifo', path.join(l1, 'fifo'), 0o600]]);
}

const m = (s: Stack, rel: string) => path.join(s.merged, rel);
const mv = (s: Stack, from: string, to: string) => outcome(() => fs.renameSync(m(s, from), m(s, to)));

pairTest('upper file within dir', 2, build, (pair) => {
  expectSameEffect(pair, (s) => mv(s, 'uf2', 'uf3'), ['']);
});

pairTest('lower file within dir', 2, build, (pair) => {
  const { upper } = expectSameEffect(pair, (s) => mv(s, 'lf2', 'moved'), ['', 'lf2']);
  expect(upper.map((e) => `${Buffer.from(e.path, 'hex')} ${e.type}`)).toContain('lf2 chr');
});

pairTest('lower file across dirs', 2, build, (pair) => {
  expectSameEffect(pair, (s) => mv(s, 'lf2', 'ld/moved'), ['', 'ld', 'lf2']);
});

pairTest('lower file out of lower dir', 2, build, (pair) => {
  expectSameEffect(pair, (s) => mv(s, 'ld/x', 'x'), ['', 'ld']);
});

pairTest('lower file over lower file', 2, build, (pair) => {
  expectSameEffect(pair, (s) => mv(s, 'lf2', 'deep'), ['', 'lf2']);
});

pairTest('lower file over upper file', 2, build, (pair) => {
  expectSameEffect(pair, (s) => mv(s, 'lf2', 'uf'), ['', 'lf2']);
});

pairTest('upper file over lower file', 2, build, (pair) => {
  expectSameEffect(pair, (s) => mv(s, 'uf2', 'lf2'), ['']);
});

pairTest('upper file over upper file', 2, build, (pair) => {
  expectSameEffect(pair, (s) => mv(s, 'uf2', 'uf'), ['']);
});

pairTest('file onto whited-out name', 2, build, (pair) => {
  expectSameEffect(pair, (s) => mv(s, 'uf2', 'wh'), ['']);
});

pairTest('renamed file keeps times and xattrs', 2, build, (pair) => {
  const r = onBoth(pair, (s) => {
    const before = statOf(m(s, 'lf2'));
    mv(s, 'lf2', 'ld/moved');
    const after = statOf(m(s, 'ld/moved'));
    return [after.mtimeNs === before.mtimeNs, after.ino === before.ino, after.mode];
  });
  expect(r.kernel).toEqual([true, true, 0o100644n]);
  expect(r.ours).toEqual(r.kernel);
});

pairTest('renamed file keeps user xattr', 2, build, (pair) => {
  const r = onBoth(pair, (s) => [mv(s, 'lf', 'ld/moved'), sys('getxattr', m(s, 'ld/moved'), 'user.k')]);
  expect(r.ours).toEqual(r.kernel);
});

pairTest('lower symlink', 2, build, (pair) => {
  expectSameEffect(pair, (s) => [mv(s, 'lsym', 'ld/sym'), fs.readlinkSync(m(s, 'ld/sym'))], ['', 'ld', 'lsym']);
});

pairTest('lower fifo', 2, build, (pair) => {
  expectSameEffect(pair, (s) => mv(s, 'fifo', 'ld/fifo'), ['', 'ld', 'fifo']);
});

pairTest('lower dir is EXDEV', 2, build, (pair) => {
  const { result } = expectSameEffect(pair, (s) => mv(s, 'ld', 'ld-moved'));
  expect(result).toBe('EXDEV');
});

pairTest('merged dir is EXDEV', 2, build, (pair) => {
  const { result } = expectSameEffect(pair, (s) => mv(s, 'md', 'md-moved'));
  expect(result).toBe('EXDEV');
});

pairTest('empty lower dir is EXDEV', 2, build, (pair) => {
  const { result } = expectSameEffect(pair, (s) => mv(s, 'emptyLower', 'el'));
  expect(result).toBe('EXDEV');
});

pairTest('mv of lower dir copies', 2, build, (pair) => {
  expectSameEffect(pair, (s) => run('mv', [m(s, 'tree'), m(s, 'ld/tree')]).status, ['', 'ld', 'tree']);
});

pairTest('upper dir within root', 2, build, (pair) => {
  expectSameEffect(pair, (s) => mv(s, 'ud', 'ud-moved'), ['']);
});

pairTest('upper dir into merged dir', 2, build, (pair) => {
  expectSameEffect(pair, (s) => mv(s, 'ud', 'md/ud'), ['', 'md']);
});

pairTest('upper dir into lower dir', 2, build, (pair) => {
  expectSameEffect(pair, (s) => mv(s, 'ud', 'ld/ud'), ['', 'ld']);
});

pairTest('new dir into lower dir', 2, build, (pair) => {
  expectSameEffect(pair, (s) => {
    fs.mkdirSync(m(s, 'fresh'));
    fs.writeFileSync(m(s, 'fresh/f'), 'f');
    return mv(s, 'fresh', 'ld/fresh');
  }, ['', 'ld']);
});

pairTest('upper dir over empty lower dir', 2, build, (pair) => {
  expectSameEffect(pair, (s) => [mv(s, 'uempty', 'emptyLower'), fs.readdirSync(m(s, 'emptyLower'))], ['']);
});

pairTest('upper dir over emptied merged dir', 2, build, (pair) => {
  expectSameEffect(pair, (s) => [mv(s, 'ud', 'emptied'), fs.readdirSync(m(s, 'emptied')).sort()], ['']);
});

pairTest('dir onto non-empty merged dir', 2, build, (pair) => {
  const { result } = expectSameEffect(pair, (s) => mv(s, 'ud', 'md'));
  expect(result).toBe('ENOTEMPTY');
});

pairTest('dir onto non-empty upper dir', 2, build, (pair) => {
  const { result } = expectSameEffect(pair, (s) => mv(s, 'ud', 'ud2'));
  expect(result).toBe('ENOTEMPTY');
});

pairTest('dir onto non-empty lower dir', 2, build, (pair) => {
  expectSameEffect(pair, (s) => mv(s, 'uempty', 'ld'));
});

pairTest('dir onto file', 2, build, (pair) => {
  const { result } = expectSameEffect(pair, (s) => mv(s, 'ud', 'lf'));
  expect(result).toBe('ENOTDIR');
});

pairTest('file onto dir', 2, build, (pair) => {
  const { result } = expectSameEffect(pair, (s) => mv(s, 'uf', 'ud'));
  expect(result).toBe('EISDIR');
});

pairTest('dir into its own subdir', 2, build, (pair) => {
  const { result } = expectSameEffect(pair, (s) => mv(s, 'ud', 'ud/inner'));
  expect(result).toBe('EINVAL');
});

pairTest('missing source', 2, build, (pair) => {
  const { result } = expectSameEffect(pair, (s) => mv(s, 'nothing', 'x'));
  expect(result).toBe('ENOENT');
});

pairTest('lower file onto itself', 2, build, (pair) => {
  const { result } = expectSameEffect(pair, (s) => mv(s, 'lf', 'lf'));
  expect(result).toBe('ok');
});

pairTest('lower file onto its hard link', 2, build, (pair) => {
  expectSameEffect(pair, (s) => [mv(s, 'lf', 'lhl'), fs.readdirSync(s.merged).sort()], ['', 'lf']);
});

pairTest('upper file onto its hard link', 2, build, (pair) => {
  expectSameEffect(pair, (s) => [
    mv(s, 'uf', 'uhl'), fs.readdirSync(s.merged).sort(), inodeGroups(s.merged, ['uf', 'uhl']),
  ]);
});

pairTest('rename then recreate source', 2, build, (pair) => {
  expectSameEffect(pair, (s) => [mv(s, 'lf2', 'moved'), outcome(() => fs.writeFileSync(m(s, 'lf2'), 'again'))], [
    '', 'lf2',
  ]);
});

const RENAME_NOREPLACE = 1;
const RENAME_EXCHANGE = 2;
const RENAME_WHITEOUT = 4;

pairTest('RENAME_NOREPLACE onto existing', 2, build, (pair) => {
  const r = onBoth(pair, (s) => sys('renameat2', m(s, 'uf2'), m(s, 'lf'), RENAME_NOREPLACE).r);
  expect(r.kernel).toBe('EEXIST');
  expect(r.ours).toBe(r.kernel);
});

// A documented difference: FUSE protocol 7.19 (libfuse 2.9) has no rename
// flags, so the kernel's FUSE client answers EINVAL where the kernel
// overlay succeeds, and nothing changes.
pairTest('RENAME_NOREPLACE to new name', 2, build, (pair) => {
  const r = onBoth(pair, (s) => sys('renameat2', m(s, 'lf2'), m(s, 'nn'), RENAME_NOREPLACE).r);
  expect(r.kernel).toBe('ok');
  expect(r.ours).toBe('EINVAL');
  expect(fs.existsSync(m(pair.ours, 'lf2'))).toBe(true);
});

pairTest('RENAME_EXCHANGE of two files', 2, build, (pair) => {
  const r = onBoth(pair, (s) => sys('renameat2', m(s, 'uf2'), m(s, 'lf2'), RENAME_EXCHANGE).r);
  expect(r.kernel).toBe('ok');
  expect(r.ours).toBe('EINVAL');
});

pairTest('RENAME_WHITEOUT is rejected', 2, build, (pair) => {
  const r = onBoth(pair, (s) => sys('renameat2', m(s, 'uf2'), m(s, 'nn'), RENAME_WHITEOUT).r);
  expect(r.ours).toBe(r.kernel);
});
