// Ownership of new objects: a file, directory, symlink or FIFO created
// through the mount belongs to the caller's fsuid and fsgid, as on kernel
// overlayfs. tsoverlay learns the caller from the context that the patched
// binding passes to every handler. Unpatched fuse-native 2.2.6 gave
// handlers no context, so everything created belonged to the daemon (root).
import fs from 'node:fs';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import { mountPair, type Pair, type Stack } from '../helpers/overlay';
import { NOBODY, openToOthers, runAsNobody } from './binding-helpers';

const SETGID_GROUP = 4242;
const OTHER_USER = 1000;

let pair: Pair;

function build(s: Stack) {
  const lower = s.lowers[0];
  const pub = path.join(lower, 'pub');
  fs.mkdirSync(pub);
  fs.chmodSync(pub, 0o777);
  // A file of another user that uid 65534 may write, to copy up as 65534.
  fs.writeFileSync(path.join(pub, 'shared'), 'shared\n');
  fs.chownSync(path.join(pub, 'shared'), OTHER_USER, OTHER_USER);
  fs.chmodSync(path.join(pub, 'shared'), 0o666);
  // New entries in a setgid directory take the directory's group.
  const sgid = path.join(lower, 'sgid');
  fs.mkdirSync(sgid);
  fs.chownSync(sgid, 0, SETGID_GROUP);
  fs.chmodSync(sgid, 0o2777);
}

beforeAll(() => {
  pair = mountPair('binding-owner', 1, build);
  openToOthers(path.dirname(pair.kernel.root));
});

afterAll(() => pair?.cleanup());

// uid:gid and permission bits of p itself.
function owner(p: string): string {
  const st = fs.lstatSync(p);
  return `${st.uid}:${st.gid} ${(st.mode & 0o7777).toString(8)}`;
}

function asNobody(args: string[]) {
  const result = runAsNobody(args, 0o027);
  expect(result.stderr).toBe('');
  expect(result.status).toBe(0);
}

const nobody = `${NOBODY}:${NOBODY}`;

describe.each(['kernel', 'tsoverlay'])('%s', (which) => {
  const stack = () => (which === 'kernel' ? pair.kernel : pair.ours);

  test('file by uid 65534', () => {
    const s = stack();
    asNobody(['touch', path.join(s.merged, 'pub', 'file')]);
    expect(owner(path.join(s.merged, 'pub', 'file'))).toBe(`${nobody} 640`);
    expect(owner(path.join(s.upper, 'pub', 'file'))).toBe(`${nobody} 640`);
  });

  test('directory by uid 65534', () => {
    const s = stack();
    asNobody(['mkdir', path.join(s.merged, 'pub', 'dir')]);
    expect(owner(path.join(s.merged, 'pub', 'dir'))).toBe(`${nobody} 750`);
    expect(owner(path.join(s.upper, 'pub', 'dir'))).toBe(`${nobody} 750`);
  });

  test('file in own directory', () => {
    const s = stack();
    fs.mkdirSync(path.join(s.merged, 'pub', 'own'));
    fs.chownSync(path.join(s.merged, 'pub', 'own'), NOBODY, NOBODY);
    asNobody(['touch', path.join(s.merged, 'pub', 'own', 'file')]);
    expect(owner(path.join(s.merged, 'pub', 'own', 'file'))).toBe(`${nobody} 640`);
    expect(owner(path.join(s.upper, 'pub', 'own', 'file'))).toBe(`${nobody} 640`);
  });

  test('symlink by uid 65534', () => {
    const s = stack();
    asNobody(['ln', '-s', 'shared', path.join(s.merged, 'pub', 'link')]);
    const st = fs.lstatSync(path.join(s.merged, 'pub', 'link'));
    expect(`${st.uid}:${st.gid}`).toBe(nobody);
    const upper = fs.lstatSync(path.join(s.upper, 'pub', 'link'));
    expect(`${upper.uid}:${upper.gid}`).toBe(nobody);
  });

  test('fifo by uid 65534', () => {
    const s = stack();
    asNobody(['mkfifo', path.join(s.merged, 'pub', 'fifo')]);
    expect(owner(path.join(s.merged, 'pub', 'fifo'))).toBe(`${nobody} 640`);
    expect(owner(path.join(s.upper, 'pub', 'fifo'))).toBe(`${nobody} 640`);
  });

  test('copy-up keeps lower owner', () => {
    // The copy belongs to the file's owner, not to the caller that wrote it.
    const s = stack();
    asNobody(['sh', '-c', `echo more >> "${path.join(s.merged, 'pub', 'shared')}"`]);
    const expected = `${OTHER_USER}:${OTHER_USER} 666`;
    expect(owner(path.join(s.merged, 'pub', 'shared'))).toBe(expected);
    expect(owner(path.join(s.upper, 'pub', 'shared'))).toBe(expected);
  });

  test('setgid directory group wins', () => {
    const s = stack();
    asNobody(['touch', path.join(s.merged, 'sgid', 'file')]);
    asNobody(['mkdir', path.join(s.merged, 'sgid', 'dir')]);
    expect(owner(path.join(s.merged, 'sgid', 'file'))).toBe(`${NOBODY}:${SETGID_GROUP} 640`);
    expect(owner(path.join(s.upper, 'sgid', 'file'))).toBe(`${NOBODY}:${SETGID_GROUP} 640`);
    expect(owner(path.join(s.merged, 'sgid', 'dir'))).toBe(`${NOBODY}:${SETGID_GROUP} 2750`);
    expect(owner(path.join(s.upper, 'sgid', 'dir'))).toBe(`${NOBODY}:${SETGID_GROUP} 2750`);
  });

  test('root still creates as root', () => {
    const s = stack();
    fs.writeFileSync(path.join(s.merged, 'pub', 'root-file'), 'r\n');
    const st = fs.lstatSync(path.join(s.upper, 'pub', 'root-file'));
    expect(`${st.uid}:${st.gid}`).toBe('0:0');
  });
});
