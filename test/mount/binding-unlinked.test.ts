// An open file keeps working after its name is removed. tsoverlay mounts
// with libfuse's hard_remove, so the file is really unlinked instead of
// renamed to .fuse_hidden*, and the binding sets flag_nullpath_ok, so the
// handlers that follow get a null path and work on the file handle.
// Without that flag (unpatched fuse-native 2.2.6), libfuse 2.9 has no path
// to pass and fails those requests with ENOENT. Each case runs on kernel
// overlayfs and on tsoverlay, for a file created through the mount and for
// a lower file that opening for write copies up.
import fs from 'node:fs';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import { mountPair, type Pair, type Stack } from '../helpers/overlay';
import { fuseHiddenFiles } from './binding-helpers';

const CONTENT = 'some data\n';
const CASES = ['read', 'write', 'truncate', 'fstat', 'fstat-later', 'hidden', 'readonly'];

let pair: Pair;

function build(s: Stack) {
  for (const name of CASES) fs.writeFileSync(path.join(s.lowers[0], `lower-${name}`), CONTENT);
}

beforeAll(() => {
  pair = mountPair('binding-unlinked', 1, build);
});

afterAll(() => pair?.cleanup());

function readAll(fd: number): string {
  const buf = Buffer.alloc(64);
  const n = fs.readSync(fd, buf, 0, buf.length, 0);
  return buf.subarray(0, n).toString('utf8');
}

function stackDirs(s: Stack): string[] {
  return [s.merged, s.upper, s.work];
}

describe.each([
  ['kernel', 'upper'],
  ['kernel', 'lower'],
  ['tsoverlay', 'upper'],
  ['tsoverlay', 'lower'],
])('%s %s file', (which, origin) => {
  const stack = () => (which === 'kernel' ? pair.kernel : pair.ours);

  // Opens the case's file read-write and unlinks it; the caller closes fd.
  function openUnlinked(testCase: string, flags = 'r+'): { fd: number; p: string; s: Stack } {
    const s = stack();
    const p = path.join(s.merged, `${origin}-${testCase}`);
    if (origin === 'upper') fs.writeFileSync(p, CONTENT);
    const fd = fs.openSync(p, flags);
    fs.unlinkSync(p);
    return { fd, p, s };
  }

  test('read after unlink', () => {
    const { fd, p } = openUnlinked('read');
    try {
      expect(fs.existsSync(p)).toBe(false);
      expect(readAll(fd)).toBe(CONTENT);
    } finally {
      fs.closeSync(fd);
    }
  });

  test('write after unlink', () => {
    const { fd } = openUnlinked('write');
    try {
      expect(fs.writeSync(fd, 'WRITE', 0)).toBe(5);
      expect(readAll(fd)).toBe('WRITE' + CONTENT.slice(5));
      // Writes at the file offset, which the read did not move.
      expect(fs.writeSync(fd, 'MORE')).toBe(4);
      fs.fsyncSync(fd);
      expect(readAll(fd)).toBe('MORE' + 'E' + CONTENT.slice(5));
    } finally {
      fs.closeSync(fd);
    }
  });

  test('ftruncate after unlink', () => {
    const { fd } = openUnlinked('truncate');
    try {
      fs.ftruncateSync(fd, 3);
      expect(readAll(fd)).toBe(CONTENT.slice(0, 3));
      fs.ftruncateSync(fd, 6);
      expect(readAll(fd)).toBe(CONTENT.slice(0, 3) + '\0\0\0');
    } finally {
      fs.closeSync(fd);
    }
  });

  test('fstat after unlink', () => {
    // Right after the unlink, before any other request on the file.
    const { fd } = openUnlinked('fstat');
    try {
      const st = fs.fstatSync(fd);
      expect(st.isFile()).toBe(true);
      expect(st.size).toBe(CONTENT.length);
      expect(st.nlink).toBe(0);
    } finally {
      fs.closeSync(fd);
    }
  });

  test('fstat after write and truncate', () => {
    const { fd } = openUnlinked('fstat-later');
    try {
      fs.writeSync(fd, 'longer content than before\n', 0);
      expect(fs.fstatSync(fd).size).toBe(27);
      fs.ftruncateSync(fd, 4);
      expect(fs.fstatSync(fd).size).toBe(4);
      expect(fs.fstatSync(fd).nlink).toBe(0);
    } finally {
      fs.closeSync(fd);
    }
  });

  test('no .fuse_hidden while open', () => {
    const { fd, s, p } = openUnlinked('hidden');
    try {
      expect(fuseHiddenFiles(stackDirs(s))).toEqual([]);
      expect(fs.readdirSync(path.dirname(p))).not.toContain(path.basename(p));
      fs.writeSync(fd, 'x', 0);
      expect(fuseHiddenFiles(stackDirs(s))).toEqual([]);
    } finally {
      fs.closeSync(fd);
    }
    expect(fuseHiddenFiles(stackDirs(s))).toEqual([]);
  });

  test('read-only fd after unlink', () => {
    const { fd } = openUnlinked('readonly', 'r');
    try {
      expect(readAll(fd)).toBe(CONTENT);
      expect(fs.fstatSync(fd).size).toBe(CONTENT.length);
    } finally {
      fs.closeSync(fd);
    }
  });

  test('upper after unlink', () => {
    // Lower names leave a whiteout; upper-only names leave nothing.
    const s = stack();
    for (const name of CASES) {
      const entry = path.join(s.upper, `${origin}-${name}`);
      if (origin === 'upper') {
        expect(fs.existsSync(entry)).toBe(false);
        continue;
      }
      const st = fs.lstatSync(entry);
      expect(st.isCharacterDevice()).toBe(true);
      expect(st.rdev).toBe(0);
    }
  });
});

test('name reused while open', () => {
  // A new file under the unlinked name is a different file.
  for (const s of [pair.kernel, pair.ours]) {
    const p = path.join(s.merged, 'reused');
    fs.writeFileSync(p, 'old\n');
    const fd = fs.openSync(p, 'r+');
    try {
      fs.unlinkSync(p);
      fs.writeFileSync(p, 'new file\n');
      fs.writeSync(fd, 'OLD', 0);
      expect(readAll(fd)).toBe('OLD\n');
      expect(fs.readFileSync(p, 'utf8')).toBe('new file\n');
    } finally {
      fs.closeSync(fd);
    }
    expect(fs.readFileSync(p, 'utf8')).toBe('new file\n');
  }
});
