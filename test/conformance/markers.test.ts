// OCI whiteout markers: by default tsoverlay honours `.wh.NAME` and
// `.wh..wh..opq` in lower layers, where the kernel sees ordinary names, so
// image layers unpacked for a mount program work unconverted. The upper
// never receives markers: deletions there are kernel-format whiteouts.
import fs from 'node:fs';
import path from 'node:path';
import { afterAll, beforeAll, expect, test } from 'vitest';
import { makeStack, mountTsoverlay, removeTemp, tempRoot, unmount, upperSnapshot, type Stack } from '../helpers/overlay';

let root: string;
let stack: Stack;

beforeAll(() => {
  root = tempRoot('markers');
  stack = makeStack(root, 2, (s) => {
    const [l1, l2] = s.lowers;
    fs.writeFileSync(path.join(l1, '.wh.gone'), '');
    fs.writeFileSync(path.join(l2, 'gone'), 'hidden');
    fs.writeFileSync(path.join(l2, 'kept'), 'kept');
    fs.mkdirSync(path.join(l1, 'opq'));
    fs.writeFileSync(path.join(l1, 'opq', '.wh..wh..opq'), '');
    fs.writeFileSync(path.join(l1, 'opq', 'top'), 'top');
    fs.mkdirSync(path.join(l2, 'opq'));
    fs.writeFileSync(path.join(l2, 'opq', 'below'), 'below');
  });
  mountTsoverlay(stack);
});

afterAll(() => {
  if (stack) unmount(stack.merged);
  if (root) removeTemp(root);
});

test('marker hides name below', () => {
  expect(fs.existsSync(path.join(stack.merged, 'gone'))).toBe(false);
  expect(fs.readFileSync(path.join(stack.merged, 'kept'), 'utf8')).toBe('kept');
});

test('markers not listed', () => {
  expect(fs.readdirSync(stack.merged).sort()).toEqual(['kept', 'opq']);
});

test('opaque marker stops merge', () => {
  expect(fs.readdirSync(path.join(stack.merged, 'opq'))).toEqual(['top']);
});

test('create over marked name', () => {
  fs.writeFileSync(path.join(stack.merged, 'gone'), 'new');
  expect(fs.readFileSync(path.join(stack.merged, 'gone'), 'utf8')).toBe('new');
});

test('upper keeps kernel format', () => {
  fs.unlinkSync(path.join(stack.merged, 'kept'));
  const upper = upperSnapshot(stack.upper);
  expect(upper).toContain('kept whiteout');
  expect(upper.some((line) => line.includes('.wh.'))).toBe(false);
});
