// Removing lower names leaves whiteouts, and recreating a removed directory
// makes it opaque: the merged view and the upper's on-disk form must match
// the kernel's after the same steps.
import fs from 'node:fs';
import path from 'node:path';
import { expect } from 'vitest';
import { outcome, upperSnapshot, type Pair, type Stack } from '../helpers/overlay';
import {
  layersState, makeWhiteout, onBoth, pairTest, unmountBoth, view, writeFiles,
} from '../helpers/conformance';

function build(s: Stack) {
  const [l1, l2] = s.lowers;
  writeFiles(l2, {
    lf: 'lower', both: 'lower', 'ld/x': 'x', 'tree/a/b/c': 'c', 'tree/a/d': 'd', 'tree/e': 'e',
    'merged/l2': 'l2', 'hidden/h': 'h',
  });
  writeFiles(l1, { 'tree/a/f': 'f', 'merged/l1': 'l1', 'hidden/own': 'own' });
  writeFiles(s.upper, { uf: 'upper', both: 'upper', 'merged/u': 'u' });
  fs.mkdirSync(path.join(l1, 'emptyLower'));
  fs.mkdirSync(path.join(s.upper, 'emptyUpper'));
  writeFiles(l2, { 'lwhdir/gone': 'g', wf: 'w', 'wdir/x': 'x' });
  fs.mkdirSync(path.join(l1, 'lwhdir'));
  makeWhiteout(path.join(l1, 'lwhdir', 'gone'));
  makeWhiteout(path.join(s.upper, 'wf'));
  makeWhiteout(path.join(s.upper, 'wdir'));
  makeWhiteout(path.join(l1, 'lowerWhiteout'));
  writeFiles(l2, { 'lowerWhiteout/x': 'x' });
}

const m = (s: Stack, rel: string) => path.join(s.merged, rel);

// Unmounts both and returns each upper in its on-disk form.
function finalUpper(pair: Pair) {
  unmountBoth(pair);
  return onBoth(pair, (s) => upperSnapshot(s.upper));
}

function expectSameResult(pair: Pair, steps: (s: Stack) => unknown) {
  const lowersBefore = onBoth(pair, layersState);
  const r = onBoth(pair, (s) => [steps(s), view(s.merged)]);
  expect(r.ours).toEqual(r.kernel);
  const upper = finalUpper(pair);
  expect(upper.ours).toEqual(upper.kernel);
  expect(onBoth(pair, layersState)).toEqual(lowersBefore);
  return upper.kernel;
}

pairTest('rm lower file', 2, build, (pair) => {
  const upper = expectSameResult(pair, (s) => outcome(() => fs.unlinkSync(m(s, 'lf'))));
  expect(upper).toContain('lf whiteout');
});

pairTest('rm lower file in lower dir', 2, build, (pair) => {
  expectSameResult(pair, (s) => outcome(() => fs.unlinkSync(m(s, 'ld/x'))));
});

pairTest('rm upper-only file', 2, build, (pair) => {
  expectSameResult(pair, (s) => outcome(() => fs.unlinkSync(m(s, 'uf'))));
});

pairTest('rm file in upper and lower', 2, build, (pair) => {
  expectSameResult(pair, (s) => outcome(() => fs.unlinkSync(m(s, 'both'))));
});

pairTest('rm -rf merged tree', 2, build, (pair) => {
  expectSameResult(pair, (s) => outcome(() => fs.rmSync(m(s, 'tree'), { recursive: true })));
});

pairTest('rm -rf then mkdir is opaque', 2, build, (pair) => {
  const upper = expectSameResult(pair, (s) => [
    outcome(() => fs.rmSync(m(s, 'tree'), { recursive: true })),
    outcome(() => fs.mkdirSync(m(s, 'tree'))),
    fs.readdirSync(m(s, 'tree')),
  ]);
  expect(upper).toContain('tree dir opaque');
});

pairTest('rm -rf merged dir then mkdir', 2, build, (pair) => {
  expectSameResult(pair, (s) => [
    outcome(() => fs.rmSync(m(s, 'merged'), { recursive: true })),
    outcome(() => fs.mkdirSync(m(s, 'merged'))),
    outcome(() => fs.writeFileSync(m(s, 'merged/new'), 'n')),
  ]);
});

pairTest('rmdir non-empty merged dir', 2, build, (pair) => {
  const r = onBoth(pair, (s) => outcome(() => fs.rmdirSync(m(s, 'merged'))));
  expect(r.kernel).toBe('ENOTEMPTY');
  expect(r.ours).toBe(r.kernel);
});

pairTest('rmdir lower-only non-empty dir', 2, build, (pair) => {
  const r = onBoth(pair, (s) => outcome(() => fs.rmdirSync(m(s, 'ld'))));
  expect(r.kernel).toBe('ENOTEMPTY');
  expect(r.ours).toBe(r.kernel);
});

pairTest('rmdir emptied merged dir', 2, build, (pair) => {
  expectSameResult(pair, (s) => {
    for (const name of fs.readdirSync(m(s, 'merged'))) fs.unlinkSync(m(s, `merged/${name}`));
    return outcome(() => fs.rmdirSync(m(s, 'merged')));
  });
});

pairTest('rmdir empty lower dir', 2, build, (pair) => {
  expectSameResult(pair, (s) => outcome(() => fs.rmdirSync(m(s, 'emptyLower'))));
});

pairTest('rmdir empty upper dir', 2, build, (pair) => {
  expectSameResult(pair, (s) => outcome(() => fs.rmdirSync(m(s, 'emptyUpper'))));
});

pairTest('rmdir dir emptied by lower whiteout', 2, build, (pair) => {
  expectSameResult(pair, (s) => outcome(() => fs.rmdirSync(m(s, 'lwhdir'))));
});

pairTest('unlink twice', 2, build, (pair) => {
  expectSameResult(pair, (s) => [
    outcome(() => fs.unlinkSync(m(s, 'lf'))), outcome(() => fs.unlinkSync(m(s, 'lf'))),
  ]);
});

pairTest('create file over whiteout', 2, build, (pair) => {
  expectSameResult(pair, (s) => outcome(() => fs.writeFileSync(m(s, 'wf'), 'new')));
});

pairTest('mkdir over whiteout', 2, build, (pair) => {
  expectSameResult(pair, (s) => [outcome(() => fs.mkdirSync(m(s, 'wdir'))), fs.readdirSync(m(s, 'wdir'))]);
});

pairTest('mkdir over lower whiteout', 2, build, (pair) => {
  expectSameResult(pair, (s) => [
    outcome(() => fs.mkdirSync(m(s, 'lowerWhiteout'))), fs.readdirSync(m(s, 'lowerWhiteout')),
  ]);
});

pairTest('file over lower whiteout', 2, build, (pair) => {
  expectSameResult(pair, (s) => outcome(() => fs.writeFileSync(m(s, 'lowerWhiteout'), 'f')));
});

pairTest('symlink over whiteout', 2, build, (pair) => {
  expectSameResult(pair, (s) => outcome(() => fs.symlinkSync('t', m(s, 'wf'))));
});

pairTest('rm file then mkdir same name', 2, build, (pair) => {
  expectSameResult(pair, (s) => [
    outcome(() => fs.unlinkSync(m(s, 'lf'))), outcome(() => fs.mkdirSync(m(s, 'lf'))),
  ]);
});

pairTest('rmdir then create file', 2, build, (pair) => {
  expectSameResult(pair, (s) => [
    outcome(() => fs.rmSync(m(s, 'ld'), { recursive: true })),
    outcome(() => fs.writeFileSync(m(s, 'ld'), 'now a file')),
  ]);
});

pairTest('rmdir recreated opaque dir', 2, build, (pair) => {
  expectSameResult(pair, (s) => [
    outcome(() => fs.rmSync(m(s, 'tree'), { recursive: true })),
    outcome(() => fs.mkdirSync(m(s, 'tree'))),
    outcome(() => fs.rmdirSync(m(s, 'tree'))),
  ]);
});

pairTest('rm lower dir with hidden entries', 2, build, (pair) => {
  expectSameResult(pair, (s) => outcome(() => fs.rmSync(m(s, 'hidden'), { recursive: true })));
});
