// readdir of merged, lower-only and upper-only directories: every name
// once, no whiteouts, `.` and `..`, d_type and d_ino, and what a listing in
// progress shows while entries come and go. The kernel's result is expected.
import fs from 'node:fs';
import path from 'node:path';
import { afterAll, beforeAll, beforeEach, expect, test } from 'vitest';
import { mountPair, type Pair, type Stack } from '../helpers/overlay';
import {
  fixedBuild, kindOf, lsA, makeWhiteout, onBoth, pairTest, sys, sysops, writeFiles, yieldEventLoop,
} from '../helpers/conformance';

function addSpecials(dir: string, prefix: string) {
  fs.mkdirSync(dir, { recursive: true });
  writeFiles(dir, { [`${prefix}file`]: 'f', [`${prefix}dir/x`]: 'x' });
  fs.symlinkSync('target', path.join(dir, `${prefix}link`));
  const results = sysops([
    ['mkfifo', path.join(dir, `${prefix}fifo`), 0o644],
    ['socket', path.join(dir, `${prefix}sock`)],
    ['mknod', path.join(dir, `${prefix}null`), 0o20666, 1, 3],
  ]);
  for (const r of results) if (r.r !== 'ok') throw new Error(`cannot make special file: ${r.r}`);
}

function build(s: Stack) {
  const [l1, l2] = s.lowers;
  writeFiles(l2, { 'm/a': '', 'm/b': '', 'm/c': '', 'm/gone': '', 'm/lwh': '', 'lower-only/x': '' });
  writeFiles(l1, { 'm/b': '', 'm/d': '', 'lower-only/y': '' });
  writeFiles(s.upper, { 'm/c': '', 'm/e': '', 'upper-only/u': '' });
  makeWhiteout(path.join(s.upper, 'm', 'gone'));
  makeWhiteout(path.join(l1, 'm', 'lwh'));
  fs.mkdirSync(path.join(l1, 'empty-lower'));
  addSpecials(path.join(l2, 'types'), 'l2');
  addSpecials(path.join(s.upper, 'types'), 'u');
  addSpecials(path.join(l1, 'ltypes'), 'l1');
}

let pair: Pair;

beforeAll(() => {
  pair = mountPair('readdir', 2, fixedBuild(build));
});
afterAll(() => pair?.cleanup());
beforeEach(yieldEventLoop);

const merged = (s: Stack, rel: string) => path.join(s.merged, rel);

for (const dir of ['.', 'm', 'lower-only', 'upper-only', 'empty-lower', 'types']) {
  test(`ls -a of ${dir}`, () => {
    const r = onBoth(pair, (s) => lsA(merged(s, dir)));
    expect(r.kernel).toContain('.');
    expect(r.kernel).toContain('..');
    expect(r.ours).toEqual(r.kernel);
  });
}

test('merged dir names once', () => {
  const r = onBoth(pair, (s) => {
    const names = fs.readdirSync(merged(s, 'm'));
    return { count: names.length, unique: new Set(names).size, names: names.sort() };
  });
  expect(r.kernel.count).toBe(r.kernel.unique);
  expect(r.ours).toEqual(r.kernel);
});

test('whiteouts not listed', () => {
  const r = onBoth(pair, (s) => fs.readdirSync(merged(s, 'm')).filter((n) => n === 'gone' || n === 'lwh'));
  expect(r.kernel).toEqual([]);
  expect(r.ours).toEqual(r.kernel);
});

for (const dir of ['types', 'ltypes', 'm']) {
  test(`d_type in ${dir}`, () => {
    const r = onBoth(pair, (s) => fs.readdirSync(merged(s, dir), { withFileTypes: true })
      .map((e) => `${e.name} ${kindOf(e)}`).sort());
    expect(r.ours).toEqual(r.kernel);
  });
}

for (const dir of ['.', 'm', 'types', 'ltypes', 'upper-only']) {
  test(`d_ino matches st_ino in ${dir}`, () => {
    const r = onBoth(pair, (s) => {
      const entries = sys('scandir', merged(s, dir)).v as [string, string, number][];
      return entries.map(([hex, , ino]) => {
        const name = Buffer.from(hex, 'hex').toString();
        return `${name} ${fs.lstatSync(path.join(merged(s, dir), name)).ino === ino}`;
      });
    });
    expect(r.ours).toEqual(r.kernel);
  });
}

test('stable across repeated reads', () => {
  const r = onBoth(pair, (s) => {
    const reads = [1, 2, 3].map(() => fs.readdirSync(merged(s, 'm')).sort().join('/'));
    return new Set(reads).size;
  });
  expect(r.kernel).toBe(1);
  expect(r.ours).toBe(r.kernel);
});

pairTest('listing after unlink', 2, build, (pair) => {
  const r = onBoth(pair, (s) => {
    fs.readdirSync(merged(s, 'm'));
    fs.unlinkSync(merged(s, 'm/a'));
    fs.unlinkSync(merged(s, 'm/e'));
    return fs.readdirSync(merged(s, 'm')).sort();
  });
  expect(r.ours).toEqual(r.kernel);
});

pairTest('listing after create in lower dir', 2, build, (pair) => {
  const r = onBoth(pair, (s) => {
    fs.readdirSync(merged(s, 'lower-only'));
    fs.writeFileSync(merged(s, 'lower-only/new'), 'n');
    return fs.readdirSync(merged(s, 'lower-only')).sort();
  });
  expect(r.ours).toEqual(r.kernel);
});

pairTest('listing after rm -rf and mkdir', 2, build, (pair) => {
  const r = onBoth(pair, (s) => {
    fs.rmSync(merged(s, 'm'), { recursive: true });
    fs.mkdirSync(merged(s, 'm'));
    return lsA(merged(s, 'm'));
  });
  expect(r.kernel).toEqual(['.', '..']);
  expect(r.ours).toEqual(r.kernel);
});

// A directory large enough that a listing takes many getdents calls.
const BIG = 3000;
const bigName = (i: number) => `entry-${String(i).padStart(5, '0')}-${'x'.repeat(30)}`;

function buildBig(s: Stack) {
  const [l1, l2] = s.lowers;
  for (const dir of [path.join(l1, 'merged'), path.join(s.upper, 'merged'), path.join(l2, 'merged'),
    path.join(l2, 'lower'), path.join(s.upper, 'upper')]) fs.mkdirSync(dir, { recursive: true });
  for (let i = 0; i < BIG; i++) {
    const layer = [l1, l2, s.upper][i % 3];
    fs.writeFileSync(path.join(layer, 'merged', bigName(i)), '');
    fs.writeFileSync(path.join(l2, 'lower', bigName(i)), '');
    fs.writeFileSync(path.join(s.upper, 'upper', bigName(i)), '');
  }
}

// Reads part of a directory, removes 50 names not yet read and adds 50,
// then reads the rest; returns what the rest of the listing showed. The
// exact counts depend on buffer sizes, so only their kind is compared:
// whether the listing was a snapshot taken at open or followed the changes.
function listWhileChanging(dir: string) {
  const originals = new Set(fs.readdirSync(dir));
  const handle = fs.opendirSync(dir, { bufferSize: 32 });
  const seen: string[] = [];
  try {
    for (let i = 0; i < 100; i++) {
      const e = handle.readSync();
      if (e === null) break;
      seen.push(e.name);
    }
    const seenFirst = new Set(seen);
    const removed = [...originals].filter((n) => !seenFirst.has(n)).sort().slice(0, 50);
    for (const name of removed) fs.unlinkSync(path.join(dir, name));
    const added = Array.from({ length: 50 }, (_, i) => `added-${i}`);
    for (const name of added) fs.writeFileSync(path.join(dir, name), '');
    for (let e = handle.readSync(); e !== null; e = handle.readSync()) seen.push(e.name);
    const seenAll = new Set(seen);
    return {
      duplicates: seen.length - seenAll.size,
      allRemovedListed: removed.every((n) => seenAll.has(n)),
      someAddedListed: added.some((n) => seenAll.has(n)),
      keptMissing: [...originals].filter((n) => !removed.includes(n) && !seenAll.has(n)).length,
    };
  } finally {
    handle.closeSync();
  }
}

pairTest('big merged dir listed whole', 2, buildBig, (pair) => {
  const r = onBoth(pair, (s) => fs.readdirSync(merged(s, 'merged')).length);
  expect(r.kernel).toBe(BIG);
  expect(r.ours).toBe(r.kernel);
});

pairTest('merged dir changed mid-listing', 2, buildBig, (pair) => {
  const r = onBoth(pair, (s) => listWhileChanging(merged(s, 'merged')));
  expect(r.ours).toEqual(r.kernel);
});

pairTest('lower dir changed mid-listing', 2, buildBig, (pair) => {
  const r = onBoth(pair, (s) => listWhileChanging(merged(s, 'lower')));
  expect(r.ours).toEqual(r.kernel);
});

// A documented difference: the kernel passes an upper-only directory
// straight through, while libfuse 2.9 lists every directory from one
// snapshot taken at the first read. POSIX allows both; what must hold is
// that no name repeats and no name that stayed is lost.
pairTest('upper dir changed mid-listing', 2, buildBig, (pair) => {
  const r = onBoth(pair, (s) => listWhileChanging(merged(s, 'upper')));
  expect(r.kernel.duplicates).toBe(0);
  expect(r.kernel.keptMissing).toBe(0);
  expect(r.ours).toEqual({ duplicates: 0, allRemovedListed: true, someAddedListed: false, keptMissing: 0 });
});
