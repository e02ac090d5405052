// Lookup through a stack of three lowers and an upper: which layer's
// object a name resolves to, and how whiteouts, opaque directories,
// symlinks and unusual names change that. The kernel's result is expected.
import fs from 'node:fs';
import path from 'node:path';
import { afterAll, beforeAll, beforeEach, expect, test } from 'vitest';
import { mountPair, outcome, snapshot, type Pair, type Stack } from '../helpers/overlay';
import {
  attempt, fixedBuild, hexPath, kindOf, makeWhiteout, onBoth, pairTest, run, setOpaque, sys, sysCode, view,
  writeFiles, yieldEventLoop,
} from '../helpers/conformance';

const long255 = 'n'.repeat(255);
// 85 three-byte characters: 255 bytes.
const longUtf8 = '\u20ac'.repeat(85);

function build(s: Stack) {
  const [l1, l2, l3] = s.lowers;
  writeFiles(l3, { top: 'l3', mid: 'l3', 'd/a': 'l3 a' });
  writeFiles(l2, { top: 'l2', mid: 'l2', 'd/a': 'l2 a', 'd/b': 'l2 b' });
  writeFiles(l1, { top: 'l1', 'd/c': 'l1 c' });
  writeFiles(s.upper, { top: 'u', 'd/e': 'u e' });

  // A non-directory hides a directory below it and the other way round.
  writeFiles(l1, { fileOverDir: 'file' });
  writeFiles(l2, { 'fileOverDir/x': 'x' });
  writeFiles(l1, { 'dirOverFile/y': 'y' });
  writeFiles(l2, { dirOverFile: 'file' });
  writeFiles(l3, { 'dirOverFile/z': 'z' });
  writeFiles(s.upper, { upFile: 'upper file' });
  writeFiles(l1, { 'upFile/k': 'k' });
  writeFiles(s.upper, { 'upDir/k': 'k' });
  writeFiles(l1, { upDir: 'lower file' });

  // Whiteouts in a lower hide the name in the layers below only.
  writeFiles(l2, { wf: 'hidden', 'wd/x': 'hidden', 'd/wa': 'hidden' });
  makeWhiteout(path.join(l1, 'wf'));
  makeWhiteout(path.join(l1, 'wd'));
  makeWhiteout(path.join(l1, 'd', 'wa'));
  writeFiles(l1, { wAbove: 'above' });
  makeWhiteout(path.join(l2, 'wAbove'));
  writeFiles(l3, { wAbove: 'below' });
  writeFiles(l1, { uw: 'lower' });
  makeWhiteout(path.join(s.upper, 'uw'));

  // Opaque directories in a lower and in the upper.
  writeFiles(l1, { 'op/p1': '1' });
  writeFiles(l2, { 'op/p2': '2' });
  writeFiles(l3, { 'op/p3': '3' });
  setOpaque(path.join(l2, 'op'));
  writeFiles(s.upper, { 'opu/u1': 'u' });
  writeFiles(l1, { 'opu/l1': 'l' });
  setOpaque(path.join(s.upper, 'opu'));
  writeFiles(l1, { 'opn/a': 'a' });
  writeFiles(l2, { 'opn/b': 'b' });
  run('setfattr', ['-n', 'trusted.overlay.opaque', '-v', 'n', path.join(l1, 'opn')]);

  // user.overlay.opaque means something to the kernel only under userxattr.
  writeFiles(l1, { 'uop/top': 't' });
  writeFiles(l2, { 'uop/below': 'b' });
  setOpaque(path.join(l1, 'uop'), 'user');
  writeFiles(s.upper, { 'uopu/top': 't' });
  writeFiles(l1, { 'uopu/below': 'b' });
  setOpaque(path.join(s.upper, 'uopu'), 'user');

  // OCI image whiteout names are ordinary names to the kernel.
  writeFiles(l1, { '.wh.oci': '', 'ocidir/.wh..wh..opq': '', 'ocidir/.wh.q': '' });
  writeFiles(l2, { oci: 'oci', 'ocidir/q': 'q', 'ocidir/r': 'r' });

  // Whiteouts as zero-size files with an xattr, in a directory marked "x".
  writeFiles(l1, { 'xw/gone': '', 'xw/own': 'own' });
  writeFiles(l2, { 'xw/gone': 'gone', 'xw/kept': 'kept' });
  run('setfattr', ['-n', 'trusted.overlay.whiteout', '-v', 'y', path.join(l1, 'xw', 'gone')]);
  run('setfattr', ['-n', 'trusted.overlay.opaque', '-v', 'x', path.join(l1, 'xw')]);

  // Symlinks: a chain across layers, a dangling one, one to a merged dir.
  fs.symlinkSync('ln2', path.join(l1, 'ln1'));
  fs.symlinkSync('top', path.join(l2, 'ln2'));
  fs.symlinkSync('nowhere', path.join(l1, 'dangling'));
  fs.symlinkSync('d', path.join(l3, 'lnd'));
  fs.symlinkSync('/nonexistent/abs', path.join(l2, 'absln'));
  fs.symlinkSync('ln1', path.join(s.upper, 'upln'));

  // Awkward names.
  writeFiles(l1, {
    'with space': 'space', 'new\nline': 'newline', 'co:lon': 'colon', [long255]: 'long',
    [longUtf8]: 'utf8', 'sp dir/in side': 'inside',
  });
  writeFiles(l2, { 'sp dir/below': 'below', [long255]: 'hidden long' });
}

let pair: Pair;

beforeAll(() => {
  // The kernel treats OCI .wh. names as ordinary files; tsoverlay does so
  // with nowhiteout_markers (see markers.test.ts for the default).
  pair = mountPair('lookup', 3, fixedBuild(build), { extra: ['nowhiteout_markers'] });
});
afterAll(() => pair?.cleanup());
beforeEach(yieldEventLoop);

const read = (s: Stack, rel: string) => attempt(() => fs.readFileSync(path.join(s.merged, rel), 'utf8'));
const list = (s: Stack, rel: string) => attempt(() => fs.readdirSync(path.join(s.merged, rel)).sort());
const kind = (s: Stack, rel: string) => attempt(() => kindOf(fs.lstatSync(path.join(s.merged, rel))));

test('whole merged tree', () => {
  expect(snapshot(pair.ours.merged)).toEqual(snapshot(pair.kernel.merged));
});

test('upper wins over three lowers', () => {
  const r = onBoth(pair, (s) => read(s, 'top'));
  expect(r.kernel).toBe('u');
  expect(r.ours).toBe(r.kernel);
});

test('second lower wins over third', () => {
  const r = onBoth(pair, (s) => read(s, 'mid'));
  expect(r.ours).toBe(r.kernel);
});

test('merged dir lists every layer', () => {
  const r = onBoth(pair, (s) => list(s, 'd'));
  expect(r.ours).toEqual(r.kernel);
});

test('merged dir entry from topmost', () => {
  const r = onBoth(pair, (s) => read(s, 'd/a'));
  expect(r.kernel).toBe('l2 a');
  expect(r.ours).toBe(r.kernel);
});

test('file hides lower dir', () => {
  const r = onBoth(pair, (s) => [kind(s, 'fileOverDir'), kind(s, 'fileOverDir/x')]);
  expect(r.ours).toEqual(r.kernel);
});

test('dir hides lower file', () => {
  const r = onBoth(pair, (s) => [kind(s, 'dirOverFile'), list(s, 'dirOverFile')]);
  expect(r.ours).toEqual(r.kernel);
});

test('file between dirs stops merge', () => {
  const r = onBoth(pair, (s) => kind(s, 'dirOverFile/z'));
  expect(r.ours).toBe(r.kernel);
});

test('upper file hides lower dir', () => {
  const r = onBoth(pair, (s) => [kind(s, 'upFile'), read(s, 'upFile'), kind(s, 'upFile/k')]);
  expect(r.ours).toEqual(r.kernel);
});

test('upper dir hides lower file', () => {
  const r = onBoth(pair, (s) => [kind(s, 'upDir'), list(s, 'upDir')]);
  expect(r.ours).toEqual(r.kernel);
});

test('lower whiteout hides file', () => {
  const r = onBoth(pair, (s) => kind(s, 'wf'));
  expect(r.kernel).toBe('ENOENT');
  expect(r.ours).toBe(r.kernel);
});

test('lower whiteout hides dir', () => {
  const r = onBoth(pair, (s) => [kind(s, 'wd'), kind(s, 'wd/x')]);
  expect(r.ours).toEqual(r.kernel);
});

test('lower whiteout inside merged dir', () => {
  const r = onBoth(pair, (s) => [kind(s, 'd/wa'), list(s, 'd').includes('wa')]);
  expect(r.ours).toEqual(r.kernel);
});

test('whiteout hides only layers below', () => {
  const r = onBoth(pair, (s) => read(s, 'wAbove'));
  expect(r.kernel).toBe('above');
  expect(r.ours).toBe(r.kernel);
});

test('upper whiteout hides lower file', () => {
  const r = onBoth(pair, (s) => [kind(s, 'uw'), list(s, '.').includes('uw')]);
  expect(r.ours).toEqual(r.kernel);
});

test('opaque lower dir stops merge', () => {
  const r = onBoth(pair, (s) => list(s, 'op'));
  expect(r.kernel).toEqual(['p1', 'p2']);
  expect(r.ours).toEqual(r.kernel);
});

test('opaque upper dir stops merge', () => {
  const r = onBoth(pair, (s) => list(s, 'opu'));
  expect(r.kernel).toEqual(['u1']);
  expect(r.ours).toEqual(r.kernel);
});

test('opaque xattr other than y', () => {
  const r = onBoth(pair, (s) => list(s, 'opn'));
  expect(r.ours).toEqual(r.kernel);
});

test('user.overlay.opaque in lower', () => {
  const r = onBoth(pair, (s) => list(s, 'uop'));
  expect(r.ours).toEqual(r.kernel);
});

test('user.overlay.opaque in upper', () => {
  const r = onBoth(pair, (s) => list(s, 'uopu'));
  expect(r.ours).toEqual(r.kernel);
});

test('user.overlay.opaque xattr listed', () => {
  const r = onBoth(pair, (s) => sys('listxattr', path.join(s.merged, 'uop')));
  expect(r.ours).toEqual(r.kernel);
});

test('OCI whiteout names are ordinary', () => {
  const r = onBoth(pair, (s) => [(list(s, '.') as string[]).filter((n) => n.includes('oci')), read(s, 'oci')]);
  expect(r.ours).toEqual(r.kernel);
});

test('OCI opaque marker is ordinary', () => {
  const r = onBoth(pair, (s) => list(s, 'ocidir'));
  expect(r.ours).toEqual(r.kernel);
});

test('xattr whiteout hides lower file', () => {
  const r = onBoth(pair, (s) => [kind(s, 'xw/gone'), list(s, 'xw')]);
  expect(r.ours).toEqual(r.kernel);
});

test('symlink chain across layers', () => {
  const r = onBoth(pair, (s) => [
    fs.readlinkSync(path.join(s.merged, 'ln1')), read(s, 'ln1'), read(s, 'upln'),
  ]);
  expect(r.kernel).toEqual(['ln2', 'u', 'u']);
  expect(r.ours).toEqual(r.kernel);
});

test('dangling symlink', () => {
  const r = onBoth(pair, (s) => [
    kind(s, 'dangling'),
    outcome(() => fs.statSync(path.join(s.merged, 'dangling'))),
    fs.readlinkSync(path.join(s.merged, 'dangling')),
  ]);
  expect(r.ours).toEqual(r.kernel);
});

test('absolute dangling symlink', () => {
  const r = onBoth(pair, (s) => [
    fs.readlinkSync(path.join(s.merged, 'absln')), outcome(() => fs.statSync(path.join(s.merged, 'absln'))),
  ]);
  expect(r.ours).toEqual(r.kernel);
});

test('symlink to merged dir', () => {
  const r = onBoth(pair, (s) => list(s, 'lnd'));
  expect(r.ours).toEqual(r.kernel);
});

test('readlink on non-symlink', () => {
  const r = onBoth(pair, (s) => outcome(() => fs.readlinkSync(path.join(s.merged, 'top'))));
  expect(r.kernel).toBe('EINVAL');
  expect(r.ours).toBe(r.kernel);
});

test('name with space', () => {
  const r = onBoth(pair, (s) => [read(s, 'with space'), list(s, 'sp dir')]);
  expect(r.ours).toEqual(r.kernel);
});

test('name with newline', () => {
  const r = onBoth(pair, (s) => [read(s, 'new\nline'), list(s, '.').includes('new\nline')]);
  expect(r.ours).toEqual(r.kernel);
});

test('name with colon', () => {
  const r = onBoth(pair, (s) => [read(s, 'co:lon'), list(s, '.').includes('co:lon')]);
  expect(r.ours).toEqual(r.kernel);
});

test('255-byte name', () => {
  const r = onBoth(pair, (s) => [read(s, long255), read(s, longUtf8)]);
  expect(r.kernel).toEqual(['long', 'utf8']);
  expect(r.ours).toEqual(r.kernel);
});

test('256-byte name', () => {
  const r = onBoth(pair, (s) => outcome(() => fs.statSync(path.join(s.merged, 'm'.repeat(256)))));
  expect(r.kernel).toBe('ENAMETOOLONG');
  expect(r.ours).toBe(r.kernel);
});

test('missing name', () => {
  const r = onBoth(pair, (s) => kind(s, 'd/nothing'));
  expect(r.ours).toBe(r.kernel);
});

test('lookup through a file', () => {
  const r = onBoth(pair, (s) => kind(s, 'top/x'));
  expect(r.kernel).toBe('ENOTDIR');
  expect(r.ours).toBe(r.kernel);
});

test('trailing slash on a file', () => {
  const r = onBoth(pair, (s) => outcome(() => fs.statSync(path.join(s.merged, 'top') + '/')));
  expect(r.ours).toBe(r.kernel);
});

// Names that are not valid UTF-8 must pass through as bytes.
const latin1 = Buffer.from([0x63, 0x61, 0x66, 0xe9]);
const invalid = Buffer.from([0x66, 0xff, 0xfe, 0x80]);

function byteNames(s: Stack) {
  fs.writeFileSync(Buffer.concat([Buffer.from(s.lowers[0] + '/'), latin1]), 'latin1');
  fs.mkdirSync(Buffer.concat([Buffer.from(s.lowers[1] + '/'), invalid]));
  fs.writeFileSync(Buffer.concat([Buffer.from(s.lowers[1] + '/'), invalid, Buffer.from('/in')]), 'in');
  fs.mkdirSync(Buffer.concat([Buffer.from(s.lowers[0] + '/'), invalid]));
  fs.writeFileSync(Buffer.concat([Buffer.from(s.lowers[0] + '/'), invalid, Buffer.from('/top')]), 't');
}

pairTest('non-UTF-8 names listed', 2, byteNames, (pair) => {
  const r = onBoth(pair, (s) => sys('listdir', s.merged));
  expect(r.ours).toEqual(r.kernel);
});

pairTest('non-UTF-8 file readable', 2, byteNames, (pair) => {
  const r = onBoth(pair, (s) => sys('readfile', hexPath(s.merged, latin1)));
  expect(r.kernel).toEqual({ r: 'ok', v: 'latin1' });
  expect(r.ours).toEqual(r.kernel);
});

pairTest('non-UTF-8 dir merged', 2, byteNames, (pair) => {
  const r = onBoth(pair, (s) => sys('listdir', hexPath(s.merged, invalid)));
  expect(r.ours).toEqual(r.kernel);
});

pairTest('non-UTF-8 name created', 2, byteNames, (pair) => {
  const name = Buffer.from([0x6e, 0xc3, 0x28]);
  const r = onBoth(pair, (s) => [
    sysCode('writefile', hexPath(s.merged, name), 'new'),
    sys('listdir', s.upper),
  ]);
  expect(r.ours).toEqual(r.kernel);
});

pairTest('whiteout of non-UTF-8 name', 2, byteNames, (pair) => {
  const r = onBoth(pair, (s) => [
    sysCode('unlink', hexPath(s.merged, latin1)),
    sys('listdir', s.merged),
    sys('listdir', s.upper),
  ]);
  expect(r.ours).toEqual(r.kernel);
});

pairTest('255-byte name created', 1, () => undefined, (pair) => {
  const r = onBoth(pair, (s) => [
    outcome(() => fs.writeFileSync(path.join(s.merged, long255), 'x')),
    outcome(() => fs.writeFileSync(path.join(s.merged, 'm'.repeat(256)), 'x')),
    view(s.merged),
  ]);
  expect(r.ours).toEqual(r.kernel);
});
