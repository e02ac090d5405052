// Names that are not valid UTF-8 must pass through the mount byte for byte.
// Unpatched fuse-native 2.2.6 decoded every path as UTF-8, so bytes such as
// 0xff 0xfe became U+FFFD and the name no longer matched the one on disk.
// Paths here are Buffers, so Node does not re-encode them either.
import fs from 'node:fs';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import { mountPair, type Pair, type Stack } from '../helpers/overlay';

const bytes = (...parts: (string | number[])[]) =>
  Buffer.concat(parts.map((p) => (typeof p === 'string' ? Buffer.from(p) : Buffer.from(p))));

const LOWER_NAME = bytes('lower-', [0xff, 0xfe]);
const LOWER_DIR = bytes('dir-', [0xfe, 0xff]);
const INNER_NAME = bytes([0xc3, 0x28], '-inner');

let pair: Pair;

// dir/name as a Buffer path; name may be raw bytes.
function join(dir: string | Buffer, ...names: Buffer[]): Buffer {
  let out = Buffer.isBuffer(dir) ? dir : Buffer.from(dir);
  for (const name of names) out = Buffer.concat([out, Buffer.from('/'), name]);
  return out;
}

// Names in dir as hex strings, sorted, so that failures print the bytes.
function listHex(dir: Buffer | string): string[] {
  const names = fs.readdirSync(dir, { encoding: 'buffer' });
  return names.map((n) => n.toString('hex')).sort();
}

const hex = (b: Buffer) => b.toString('hex');

function build(s: Stack) {
  const lower = s.lowers[0];
  fs.writeFileSync(join(lower, LOWER_NAME), 'lower\n');
  fs.mkdirSync(join(lower, LOWER_DIR));
  fs.writeFileSync(join(lower, LOWER_DIR, INNER_NAME), 'inner\n');
}

beforeAll(() => {
  pair = mountPair('binding-names', 1, build);
});

afterAll(() => pair?.cleanup());

describe.each(['kernel', 'tsoverlay'])('%s', (which) => {
  const stack = () => (which === 'kernel' ? pair.kernel : pair.ours);

  test('create, stat and read', () => {
    const s = stack();
    const name = bytes([0xff, 0xfe]);
    fs.writeFileSync(join(s.merged, name), 'new\n');
    expect(listHex(s.merged)).toContain(hex(name));
    expect(fs.statSync(join(s.merged, name)).size).toBe(4);
    expect(fs.readFileSync(join(s.merged, name), 'utf8')).toBe('new\n');
    expect(listHex(s.upper)).toContain(hex(name));
  });

  test('rename between raw names', () => {
    const s = stack();
    const from = bytes('from-', [0xff]);
    const to = bytes('to-', [0xfe, 0x80]);
    fs.writeFileSync(join(s.merged, from), 'moved\n');
    fs.renameSync(join(s.merged, from), join(s.merged, to));
    expect(listHex(s.merged)).toContain(hex(to));
    expect(listHex(s.merged)).not.toContain(hex(from));
    expect(fs.readFileSync(join(s.merged, to), 'utf8')).toBe('moved\n');
    expect(listHex(s.upper)).toContain(hex(to));
  });

  test('unlink of raw name', () => {
    const s = stack();
    const name = bytes('gone-', [0xff, 0xfe]);
    fs.writeFileSync(join(s.merged, name), 'gone\n');
    fs.unlinkSync(join(s.merged, name));
    expect(listHex(s.merged)).not.toContain(hex(name));
    expect(listHex(s.upper)).not.toContain(hex(name));
  });

  test('lower raw name copies up', () => {
    const s = stack();
    expect(listHex(s.merged)).toContain(hex(LOWER_NAME));
    expect(fs.readFileSync(join(s.merged, LOWER_NAME), 'utf8')).toBe('lower\n');
    fs.appendFileSync(join(s.merged, LOWER_NAME), 'more\n');
    expect(fs.readFileSync(join(s.upper, LOWER_NAME), 'utf8')).toBe('lower\nmore\n');
  });

  test('rename of lower raw name', () => {
    const s = stack();
    const to = bytes('renamed-', [0xfe, 0xff]);
    fs.renameSync(join(s.merged, LOWER_DIR, INNER_NAME), join(s.merged, LOWER_DIR, to));
    expect(listHex(join(s.merged, LOWER_DIR))).toEqual([hex(to)]);
    // The old name stays hidden by a whiteout of the same bytes.
    const whiteout = fs.lstatSync(join(s.upper, LOWER_DIR, INNER_NAME));
    expect(whiteout.isCharacterDevice()).toBe(true);
    expect(whiteout.rdev).toBe(0);
  });

  test('unlink of lower raw name', () => {
    const s = stack();
    const name = LOWER_NAME;
    fs.unlinkSync(join(s.merged, name));
    expect(listHex(s.merged)).not.toContain(hex(name));
    const whiteout = fs.lstatSync(join(s.upper, name));
    expect(whiteout.isCharacterDevice()).toBe(true);
    expect(whiteout.rdev).toBe(0);
  });

  test('directory with raw name', () => {
    const s = stack();
    const dir = bytes('d-', [0xff]);
    const inner = bytes([0xfe]);
    fs.mkdirSync(join(s.merged, dir));
    fs.writeFileSync(join(s.merged, dir, inner), 'x');
    expect(listHex(join(s.merged, dir))).toEqual([hex(inner)]);
    fs.unlinkSync(join(s.merged, dir, inner));
    fs.rmdirSync(join(s.merged, dir));
    expect(listHex(s.merged)).not.toContain(hex(dir));
  });

  test('symlink with raw target', () => {
    const s = stack();
    const target = bytes('target-', [0xff, 0xfe]);
    const link = bytes('link-', [0xfe]);
    fs.symlinkSync(target, join(s.merged, link));
    expect(hex(fs.readlinkSync(join(s.merged, link), { encoding: 'buffer' }))).toBe(hex(target));
    expect(hex(fs.readlinkSync(join(s.upper, link), { encoding: 'buffer' }))).toBe(hex(target));
  });
});

test('merged listings match kernel', () => {
  expect(listHex(pair.ours.merged)).toEqual(listHex(pair.kernel.merged));
  expect(listHex(pair.ours.upper)).toEqual(listHex(pair.kernel.upper));
});
