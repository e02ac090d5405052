// Mounts for tests: kernel overlayfs and tsoverlay on identical copies of
// a layer stack, so a test can run the same steps on both and let the
// kernel's result be the expected value. Every mount is undone in cleanup.
import { execFileSync, spawnSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';

export const repoRoot = path.join(__dirname, '..', '..');
export const cliPath = path.join(repoRoot, 'dist', 'cli.js');

export interface Stack {
  root: string;
  lowers: string[];
  upper: string;
  work: string;
  merged: string;
}

// Creates ROOT/{lower1..N, upper, work, merged} and lets build fill the layers.
export function makeStack(root: string, lowerCount: number, build?: (s: Stack) => void): Stack {
  const stack: Stack = {
    root,
    lowers: Array.from({ length: lowerCount }, (_, i) => path.join(root, `lower${i + 1}`)),
    upper: path.join(root, 'upper'),
    work: path.join(root, 'work'),
    merged: path.join(root, 'merged'),
  };
  for (const dir of [...stack.lowers, stack.upper, stack.work, stack.merged]) fs.mkdirSync(dir, { recursive: true });
  build?.(stack);
  return stack;
}

export function overlayOptions(s: Stack, readOnly = false): string {
  const lowerdir = s.lowers.map((l) => l.replace(/([\\:,])/g, '\\$1')).join(':');
  if (readOnly) return `lowerdir=${lowerdir}`;
  return `lowerdir=${lowerdir},upperdir=${s.upper},workdir=${s.work}`;
}

export function mountKernel(s: Stack, readOnly = false): void {
  execFileSync('mount', ['-t', 'overlay', 'overlay', '-o', overlayOptions(s, readOnly), s.merged]);
}

// Mounts tsoverlay in the background, as a user would; returns when ready.
export function mountTsoverlay(s: Stack, extraOptions: string[] = [], readOnly = false): void {
  const options = [overlayOptions(s, readOnly), ...extraOptions].join(',');
  const result = spawnSync(process.execPath, [cliPath, 'mount', '-o', options, s.merged, '--log-file', path.join(s.root, 'tsoverlay.log')], { encoding: 'utf8' });
  if (result.status !== 0) throw new Error(`tsoverlay mount failed (${result.status}): ${result.stderr}`);
}

function isMounted(dir: string): boolean {
  const mounts = fs.readFileSync('/proc/self/mountinfo', 'utf8');
  return mounts.split('\n').some((line) => line.split(' ')[4] === dir);
}

// Unmounts dir if mounted; lazily when busy, so a failed test cannot leave
// a mount behind.
export function unmount(dir: string): void {
  for (let i = 0; i < 50 && isMounted(dir); i++) {
    const r = spawnSync('umount', [dir]);
    if (r.status !== 0) spawnSync('umount', ['-l', dir]);
  }
}

export function tempRoot(prefix: string): string {
  return fs.mkdtempSync(path.join(os.tmpdir(), `tsoverlay-${prefix}-`));
}

export function removeTemp(root: string): void {
  fs.rmSync(root, { recursive: true, force: true });
}

// Two identical stacks, one under the kernel and one under tsoverlay.
export interface Pair {
  kernel: Stack;
  ours: Stack;
  cleanup(): void;
}

export function mountPair(name: string, lowerCount: number, build: (s: Stack) => void, options: { readOnly?: boolean; extra?: string[] } = {}): Pair {
  const root = tempRoot(name);
  const kernel = makeStack(path.join(root, 'kernel'), lowerCount, build);
  const ours = makeStack(path.join(root, 'ours'), lowerCount, build);
  const cleanup = () => {
    unmount(kernel.merged);
    unmount(ours.merged);
    removeTemp(root);
  };
  try {
    mountKernel(kernel, options.readOnly);
    mountTsoverlay(ours, options.extra, options.readOnly);
  } catch (err) {
    cleanup();
    throw err;
  }
  return { kernel, ours, cleanup };
}

// Runs fn and returns 'ok' or the error code it threw, so outcomes compare.
export function outcome(fn: () => unknown): string {
  try {
    fn();
    return 'ok';
  } catch (err) {
    const e = err as NodeJS.ErrnoException;
    if (typeof e.code === 'string') return e.code;
    throw err;
  }
}

export interface Entry {
  path: string;
  type: string;
  mode: number;
  uid: number;
  gid: number;
  size?: number;
  nlink?: number;
  mtimeNs?: bigint;
  content?: string;
  target?: string;
  rdev?: number;
}

// The type of a stat result or a directory entry, as a word.
export function typeOf(st: fs.Stats | fs.BigIntStats | fs.Dirent<string | Buffer>): string {
  if (st.isDirectory()) return 'dir';
  if (st.isFile()) return 'file';
  if (st.isSymbolicLink()) return 'symlink';
  if (st.isFIFO()) return 'fifo';
  if (st.isCharacterDevice()) return 'chr';
  if (st.isBlockDevice()) return 'blk';
  if (st.isSocket()) return 'socket';
  return 'unknown';
}

// Describes every entry under dir, sorted by path, for comparing trees.
// Directory sizes and link counts vary by filesystem and are left out.
export function snapshot(dir: string): Entry[] {
  const entries: Entry[] = [];
  const walk = (rel: string) => {
    const full = path.join(dir, rel);
    for (const name of fs.readdirSync(full).sort()) {
      const relPath = path.join(rel, name);
      const st = fs.lstatSync(path.join(dir, relPath), { bigint: true });
      const entry: Entry = { path: relPath, type: typeOf(st), mode: Number(st.mode) & 0o7777, uid: Number(st.uid), gid: Number(st.gid) };
      if (entry.type === 'file') {
        entry.size = Number(st.size);
        entry.nlink = Number(st.nlink);
        entry.mtimeNs = st.mtimeNs;
        entry.content = fs.readFileSync(path.join(dir, relPath)).toString('base64');
      } else if (entry.type === 'symlink') {
        entry.target = fs.readlinkSync(path.join(dir, relPath));
      } else if (entry.type === 'chr' || entry.type === 'blk') {
        entry.rdev = Number(st.rdev);
      }
      entries.push(entry);
      if (entry.type === 'dir') walk(relPath);
    }
  };
  walk('.');
  return entries;
}

// Lists an upper layer in its on-disk form: types, whiteouts (0/0 char
// devices) and the opaque xattr of directories.
export function upperSnapshot(upper: string): string[] {
  const lines: string[] = [];
  const walk = (rel: string) => {
    for (const name of fs.readdirSync(path.join(upper, rel)).sort()) {
      const relPath = path.join(rel, name);
      const full = path.join(upper, relPath);
      const st = fs.lstatSync(full);
      if (st.isCharacterDevice() && st.rdev === 0) {
        lines.push(`${relPath} whiteout`);
      } else if (st.isDirectory()) {
        lines.push(`${relPath} dir${isOpaque(full) ? ' opaque' : ''}`);
        walk(relPath);
      } else {
        lines.push(`${relPath} ${typeOf(fs.lstatSync(full, { bigint: true }))}`);
      }
    }
  };
  walk('.');
  return lines;
}

function isOpaque(dir: string): boolean {
  const r = spawnSync('getfattr', ['--only-values', '-h', '-n', 'trusted.overlay.opaque', dir], { encoding: 'utf8' });
  return r.status === 0 && r.stdout === 'y';
}
