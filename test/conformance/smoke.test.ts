import fs from 'node:fs';
import path from 'node:path';
import { afterAll, beforeAll, expect, test } from 'vitest';
import { mountPair, outcome, snapshot, upperSnapshot, type Pair, type Stack } from '../helpers/overlay';

let pair: Pair;

function build(s: Stack) {
  fs.mkdirSync(path.join(s.lowers[0], 'd'));
  fs.writeFileSync(path.join(s.lowers[0], 'd', 'a'), 'a');
  fs.mkdirSync(path.join(s.lowers[1], 'd'));
  fs.writeFileSync(path.join(s.lowers[1], 'd', 'b'), 'b');
  fs.writeFileSync(path.join(s.lowers[1], 'f'), 'lower2');
}

beforeAll(() => {
  pair = mountPair('smoke', 2, build);
});
afterAll(() => pair?.cleanup());

test('merged view and writes match the kernel', () => {
  for (const s of [pair.kernel, pair.ours]) {
    fs.writeFileSync(path.join(s.merged, 'd', 'new'), 'n');
    fs.unlinkSync(path.join(s.merged, 'f'));
    fs.rmSync(path.join(s.merged, 'd'), { recursive: true });
    fs.mkdirSync(path.join(s.merged, 'd'));
  }
  expect(outcome(() => fs.rmdirSync(path.join(pair.ours.merged, 'nothing')))).toBe(
    outcome(() => fs.rmdirSync(path.join(pair.kernel.merged, 'nothing'))),
  );
  expect(snapshot(pair.ours.merged)).toEqual(snapshot(pair.kernel.merged));
  expect(upperSnapshot(pair.ours.upper)).toEqual(upperSnapshot(pair.kernel.upper));
});
