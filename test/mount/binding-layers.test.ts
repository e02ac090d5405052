// The upper format and xattrs through the mount, with all layers on ext4
// (the temp dir) and on a tmpfs that this file mounts. Unlink and rename
// leave 0/0 character-device whiteouts, and mkdir over a whiteout makes an
// opaque directory. user.* xattrs round-trip, and the overlay's private
// trusted.overlay.* xattrs stay hidden. renameat2 flags are checked too.
// Each step runs on kernel overlayfs and on tsoverlay, and the kernel's
// result is the expected one.
import { execFileSync, spawnSync } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import { host } from '../../src/host/native';
import {
  makeStack,
  mountKernel,
  mountTsoverlay,
  outcome,
  removeTemp,
  snapshot,
  tempRoot,
  unmount,
  upperSnapshot,
  type Stack,
} from '../helpers/overlay';

interface Mounted {
  kernel: Stack;
  ours: Stack;
}

const kinds = ['ext4', 'tmpfs'] as const;
type Kind = (typeof kinds)[number];

let root: string | undefined;
let tmpfsDir: string | undefined;
const mounted: Partial<Record<Kind, Mounted>> = {};

function build(s: Stack) {
  const lower = s.lowers[0];
  for (const name of ['gone', 'moved', 'xattr-file', 'lower-xattr', 'swap-a', 'swap-b', 'keep']) {
    fs.writeFileSync(path.join(lower, name), `${name}\n`);
  }
  for (const name of ['dir-gone', 'dir-opaque', 'xattr-dir']) {
    fs.mkdirSync(path.join(lower, name));
    fs.writeFileSync(path.join(lower, name, 'inner'), 'inner\n');
  }
  execFileSync('setfattr', ['-n', 'user.lower', '-v', 'from-lower', path.join(lower, 'lower-xattr')]);
}

beforeAll(() => {
  root = tempRoot('binding-layers');
  tmpfsDir = path.join(root, 'tmpfs');
  fs.mkdirSync(tmpfsDir);
  execFileSync('mount', ['-t', 'tmpfs', '-o', 'size=64m', 'tmpfs', tmpfsDir]);
  const bases: Record<Kind, string> = { ext4: path.join(root, 'disk'), tmpfs: tmpfsDir };
  for (const kind of kinds) {
    const kernel = makeStack(path.join(bases[kind], 'kernel'), 1, build);
    const ours = makeStack(path.join(bases[kind], 'ours'), 1, build);
    mounted[kind] = { kernel, ours };
    mountKernel(kernel);
    mountTsoverlay(ours);
  }
});

afterAll(() => {
  for (const kind of kinds) {
    const m = mounted[kind];
    if (m === undefined) continue;
    unmount(m.kernel.merged);
    unmount(m.ours.merged);
  }
  if (tmpfsDir !== undefined) unmount(tmpfsDir);
  if (root !== undefined) removeTemp(root);
});

test('layers are on ext4 and tmpfs', () => {
  const type = (p: string) => execFileSync('stat', ['-f', '-c', '%T', p], { encoding: 'utf8' }).trim();
  expect(type(mounted.ext4!.ours.upper)).toBe('ext2/ext3');
  expect(type(mounted.tmpfs!.ours.upper)).toBe('tmpfs');
});

// Value of xattr name on p through getfattr, or its error message.
function getXattr(p: string, name: string): string {
  const r = spawnSync('getfattr', ['-h', '--only-values', '-n', name, p], { encoding: 'utf8' });
  if (r.status !== 0) return `error: ${r.stderr.replace(`${p}: `, '').trim()}`;
  return r.stdout;
}

function setXattr(p: string, name: string, value: string) {
  execFileSync('setfattr', ['-h', '-n', name, '-v', value, p]);
}

// Every xattr name on p that listxattr reports, sorted.
function listXattrs(p: string): string[] {
  const r = spawnSync('getfattr', ['-h', '--absolute-names', '-d', '-m', '-', p], { encoding: 'utf8' });
  if (r.status !== 0) throw new Error(`getfattr failed on ${p}: ${r.stderr}`);
  return r.stdout
    .split('\n')
    .filter((line) => line !== '' && !line.startsWith('#'))
    .map((line) => line.split('=')[0])
    .sort();
}

function isWhiteout(p: string): boolean {
  const st = fs.lstatSync(p);
  return st.isCharacterDevice() && st.rdev === 0;
}

describe.each(kinds)('%s layers', (kind) => {
  describe.each(['kernel', 'tsoverlay'])('%s', (which) => {
    const stack = () => (which === 'kernel' ? mounted[kind]!.kernel : mounted[kind]!.ours);

    test('unlink leaves whiteout', () => {
      const s = stack();
      fs.unlinkSync(path.join(s.merged, 'gone'));
      expect(fs.existsSync(path.join(s.merged, 'gone'))).toBe(false);
      expect(isWhiteout(path.join(s.upper, 'gone'))).toBe(true);
    });

    test('rename leaves whiteout', () => {
      const s = stack();
      fs.renameSync(path.join(s.merged, 'moved'), path.join(s.merged, 'moved-to'));
      expect(fs.readFileSync(path.join(s.merged, 'moved-to'), 'utf8')).toBe('moved\n');
      expect(isWhiteout(path.join(s.upper, 'moved'))).toBe(true);
      expect(fs.lstatSync(path.join(s.upper, 'moved-to')).isFile()).toBe(true);
    });

    test('rmdir leaves whiteout', () => {
      const s = stack();
      fs.rmSync(path.join(s.merged, 'dir-gone'), { recursive: true });
      expect(fs.existsSync(path.join(s.merged, 'dir-gone'))).toBe(false);
      expect(isWhiteout(path.join(s.upper, 'dir-gone'))).toBe(true);
    });

    test('mkdir over whiteout is opaque', () => {
      const s = stack();
      fs.rmSync(path.join(s.merged, 'dir-opaque'), { recursive: true });
      fs.mkdirSync(path.join(s.merged, 'dir-opaque'));
      expect(fs.readdirSync(path.join(s.merged, 'dir-opaque'))).toEqual([]);
      expect(getXattr(path.join(s.upper, 'dir-opaque'), 'trusted.overlay.opaque')).toBe('y');
      // The overlay's own marker is not shown through the mount.
      expect(listXattrs(path.join(s.merged, 'dir-opaque'))).toEqual([]);
    });

    test('user xattr on lower file', () => {
      const s = stack();
      const p = path.join(s.merged, 'xattr-file');
      setXattr(p, 'user.k', 'v1');
      expect(getXattr(p, 'user.k')).toBe('v1');
      expect(getXattr(path.join(s.upper, 'xattr-file'), 'user.k')).toBe('v1');
      expect(listXattrs(p)).toEqual(['user.k']);
      setXattr(p, 'user.k', 'v2-longer');
      expect(getXattr(p, 'user.k')).toBe('v2-longer');
      execFileSync('setfattr', ['-x', 'user.k', p]);
      expect(getXattr(p, 'user.k')).toBe('error: user.k: No such attribute');
      expect(listXattrs(p)).toEqual([]);
    });

    test('user xattr on new file', () => {
      const s = stack();
      const p = path.join(s.merged, 'xattr-new');
      fs.writeFileSync(p, 'new\n');
      setXattr(p, 'user.a', 'A');
      setXattr(p, 'user.b', '0x00ff10');
      expect(getXattr(p, 'user.a')).toBe('A');
      expect(listXattrs(p)).toEqual(['user.a', 'user.b']);
      const raw = spawnSync('getfattr', ['--only-values', '-n', 'user.b', p]);
      expect(Buffer.from(raw.stdout).toString('hex')).toBe('00ff10');
    });

    test('lower xattr visible and copied', () => {
      const s = stack();
      const p = path.join(s.merged, 'lower-xattr');
      expect(getXattr(p, 'user.lower')).toBe('from-lower');
      fs.chmodSync(p, 0o600);
      expect(getXattr(path.join(s.upper, 'lower-xattr'), 'user.lower')).toBe('from-lower');
      expect(getXattr(p, 'user.lower')).toBe('from-lower');
    });

    test('user xattr on lower dir', () => {
      const s = stack();
      const p = path.join(s.merged, 'xattr-dir');
      setXattr(p, 'user.dir', 'd');
      expect(getXattr(p, 'user.dir')).toBe('d');
      expect(getXattr(path.join(s.upper, 'xattr-dir'), 'user.dir')).toBe('d');
      expect(fs.readdirSync(p)).toEqual(['inner']);
    });
  });

  test('trees match kernel', () => {
    const m = mounted[kind]!;
    // The two stacks were built and changed at different times.
    const untimed = (dir: string) => snapshot(dir).map(({ mtimeNs: _mtimeNs, ...rest }) => rest);
    expect(untimed(m.ours.merged)).toEqual(untimed(m.kernel.merged));
    expect(upperSnapshot(m.ours.upper)).toEqual(upperSnapshot(m.kernel.upper));
  });

  // After the tree comparison, so that a rejected flag shows up only here.
  // libfuse 2.9 implements no RENAME2 request, so the kernel's FUSE client
  // rejects every flag with EINVAL unless the VFS fails the call first
  // (EEXIST for NOREPLACE onto an existing name).
  describe.each(['kernel', 'tsoverlay'])('%s', (which) => {
    const stack = () => (which === 'kernel' ? mounted[kind]!.kernel : mounted[kind]!.ours);

    test('renameat2 noreplace onto existing', () => {
      const s = stack();
      const from = path.join(s.merged, 'keep');
      const to = path.join(s.merged, 'moved-to');
      expect(outcome(() => host.rename(from, to, host.RENAME_NOREPLACE))).toBe('EEXIST');
    });

    // A documented difference: FUSE protocol 7.19 has no RENAME2 request,
    // so tsoverlay gets EINVAL where the kernel overlay succeeds.
    const flagResult = which === 'kernel' ? 'ok' : 'EINVAL';

    test('renameat2 noreplace to new name', () => {
      const s = stack();
      const from = path.join(s.merged, 'xattr-new');
      const to = path.join(s.merged, 'xattr-new-2');
      expect(outcome(() => host.rename(from, to, host.RENAME_NOREPLACE))).toBe(flagResult);
      expect(fs.existsSync(to)).toBe(flagResult === 'ok');
    });

    test('renameat2 exchange', () => {
      const s = stack();
      const a = path.join(s.merged, 'swap-a');
      const b = path.join(s.merged, 'swap-b');
      expect(outcome(() => host.rename(a, b, host.RENAME_EXCHANGE))).toBe(flagResult);
      const swapped = flagResult === 'ok';
      expect(fs.readFileSync(a, 'utf8')).toBe(swapped ? 'swap-b\n' : 'swap-a\n');
      expect(fs.readFileSync(b, 'utf8')).toBe(swapped ? 'swap-a\n' : 'swap-b\n');
    });

    test('renameat2 whiteout flag rejected', () => {
      const s = stack();
      const from = path.join(s.merged, 'keep');
      const to = path.join(s.merged, 'keep-2');
      expect(outcome(() => host.rename(from, to, host.RENAME_WHITEOUT))).toBe('EINVAL');
    });
  });
});
