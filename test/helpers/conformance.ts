// Helpers for conformance tests: run the same steps on the kernel's and
// tsoverlay's mount of a pair and collect both results, so that a test can
// assert that tsoverlay's result equals the kernel's.
import { spawnSync } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { expect, test } from 'vitest';
import {
  mountPair, snapshot, unmount, type Entry, type Pair, type Stack,
} from './overlay';

export interface Both<T> {
  kernel: T;
  ours: T;
}

export function onBoth<T>(pair: Pair, fn: (s: Stack) => T): Both<T> {
  return { kernel: fn(pair.kernel), ours: fn(pair.ours) };
}

// Wraps a layer builder so that afterwards every entry in every layer has
// reproducible times, which then match between the two copies of a stack.
export function fixedBuild(build: (s: Stack) => void): (s: Stack) => void {
  return (s) => {
    build(s);
    for (const dir of [...s.lowers, s.upper]) {
      const r = sys('fixtimes', dir);
      if (r.r !== 'ok') throw new Error(`fixtimes ${dir}: ${r.r}`);
    }
  };
}

// Lets the worker process vitest's pending messages. Tests here are
// synchronous, and a file that never yields for 60 s makes vitest time out.
export function yieldEventLoop(): Promise<void> {
  return new Promise((resolve) => setImmediate(resolve));
}

// Mounts a fresh pair for one test and always cleans it up.
export function pairTest(
  name: string,
  lowerCount: number,
  build: (s: Stack) => void,
  body: (pair: Pair) => void,
  options: { readOnly?: boolean; extra?: string[] } = {},
): void {
  test(name, async () => {
    await yieldEventLoop();
    const pair = mountPair('conf', lowerCount, fixedBuild(build), options);
    // mkdtemp made the root 0700, which would keep other users from the mounts.
    fs.chmodSync(path.dirname(pair.kernel.root), 0o755);
    try {
      body(pair);
    } finally {
      pair.cleanup();
    }
  });
}

// Returns fn's value, or the error code it threw.
export function attempt<T>(fn: () => T): T | string {
  try {
    return fn();
  } catch (err) {
    const e = err as NodeJS.ErrnoException;
    if (typeof e.code === 'string') return e.code;
    throw err;
  }
}

export { typeOf as kindOf } from './overlay';

export function unmountBoth(pair: Pair): void {
  unmount(pair.kernel.merged);
  unmount(pair.ours.merged);
}

export interface RunResult {
  status: number | null;
  stdout: string;
  stderr: string;
}

export function run(cmd: string, args: string[], options: { cwd?: string; input?: string } = {}): RunResult {
  const r = spawnSync(cmd, args, { encoding: 'utf8', cwd: options.cwd, input: options.input });
  if (r.error) throw r.error;
  return { status: r.status, stdout: r.stdout, stderr: r.stderr };
}

export const NOBODY = 65534;

const python = fs.existsSync('/usr/bin/python3') ? '/usr/bin/python3' : 'python3';
const sysopsSource = fs.readFileSync(path.join(__dirname, 'sysops.py'), 'utf8');

export type Step = [string, ...unknown[]];
export interface StepResult {
  r: string;
  // The value the call returned, shaped by the step.
  // eslint-disable-next-line @typescript-eslint/no-explicit-any
  v?: any;
}

// Runs system calls through sysops.py, as root or as uid/gid.
export function sysops(steps: Step[], as?: { uid: number; gid: number }): StepResult[] {
  const args = ['-c', sysopsSource, JSON.stringify(steps)];
  const r = as === undefined
    ? spawnSync(python, args, { encoding: 'utf8', cwd: '/' })
    : spawnSync('setpriv', [`--reuid=${as.uid}`, `--regid=${as.gid}`, '--clear-groups', python, ...args], {
      encoding: 'utf8',
      cwd: '/',
    });
  if (r.error) throw r.error;
  if (r.status !== 0) throw new Error(`sysops failed (${r.status}): ${r.stderr}`);
  return JSON.parse(r.stdout) as StepResult[];
}

// One system call; returns its result.
export function sys(op: string, ...args: unknown[]): StepResult {
  return sysops([[op, ...args]])[0];
}

// The errno name of one system call, or 'ok'.
export function sysCode(op: string, ...args: unknown[]): string {
  return sys(op, ...args).r;
}

export function hexPath(dir: string, name: Buffer): { hex: string } {
  return { hex: Buffer.concat([Buffer.from(dir + '/'), name]).toString('hex') };
}

export interface TreeEntry {
  path: string;
  type: string;
  mode: string;
  uid: number;
  gid: number;
  mtime_ns: string;
  ctime_ns: string;
  ino: number;
  xattrs: Record<string, string>;
  size?: number;
  nlink?: number;
  sha256?: string;
  target?: string;
  rdev?: number;
}

// Every entry under dir with its xattrs, times and a hash of its data:
// the whole state of a layer, for checking it did not change.
export function treeState(dir: string): TreeEntry[] {
  const r = sys('tree', dir);
  if (r.r !== 'ok') throw new Error(`cannot read tree ${dir}: ${r.r}`);
  return r.v as TreeEntry[];
}

export function layersState(s: Stack): TreeEntry[][] {
  return s.lowers.map((l) => treeState(l));
}

// Private xattrs that are optional caches, left out of comparisons: the
// origin, impure and random uuid records, and the trusted.tsoverlay. names
// older builds wrote. Tests that care about them look at them directly.
const cacheXattr = /^trusted\.(overlay\.(origin|impure|uuid)|tsoverlay\.)/;

const isUnder = (rel: string, paths: string[]) => paths.some((f) => rel === f || rel.startsWith(f + '/'));

export type PortableEntry = Omit<TreeEntry, 'ino' | 'ctime_ns'>;

// Layer state without the fields that differ between two copies of a
// stack (inode numbers, ctimes, cache xattrs) or that the test did not
// set (mtimes of the paths in fresh and below them; '' is the root).
export function portableTree(dir: string, fresh: string[] = []): PortableEntry[] {
  return treeState(dir).map((e) => {
    const { ino: _ino, ctime_ns: _ctime, ...rest } = e;
    rest.xattrs = Object.fromEntries(Object.entries(e.xattrs).filter(([name]) => !cacheXattr.test(name)));
    const rel = Buffer.from(e.path, 'hex').toString();
    if (rel === '' ? fresh.includes('') : isUnder(rel, fresh.filter((f) => f !== ''))) rest.mtime_ns = 'fresh';
    return rest;
  });
}

// snapshot() with the mtimes of the paths in fresh (and below) left out.
export function mergedView(dir: string, fresh: string[] = []): Entry[] {
  return snapshot(dir).map((e) => {
    if (!isUnder(e.path, fresh)) return e;
    const { mtimeNs: _mtime, ...rest } = e;
    return rest;
  });
}

// snapshot() without times: for trees whose files the test created.
export function view(dir: string): Entry[] {
  return snapshot(dir).map((e) => {
    const { mtimeNs: _mtime, ...rest } = e;
    return rest;
  });
}

export function lsA(dir: string): string[] {
  const r = run('ls', ['-a', '-1', dir]);
  if (r.status !== 0) throw new Error(`ls failed: ${r.stderr}`);
  return r.stdout.split('\n').filter((l) => l !== '').sort();
}

// Groups the given paths by inode number, so two stacks compare by which
// names share an inode rather than by the numbers themselves.
export function inodeGroups(dir: string, names: string[]): string[][] {
  const byIno = new Map<bigint, string[]>();
  for (const name of names) {
    const ino = fs.lstatSync(path.join(dir, name), { bigint: true }).ino;
    byIno.set(ino, [...(byIno.get(ino) ?? []), name]);
  }
  return [...byIno.values()].map((g) => g.sort()).sort((a, b) => a[0].localeCompare(b[0]));
}

export function writeFiles(dir: string, files: Record<string, string>): void {
  for (const [name, content] of Object.entries(files)) {
    const full = path.join(dir, name);
    fs.mkdirSync(path.dirname(full), { recursive: true });
    fs.writeFileSync(full, content);
  }
}

export function setOpaque(dir: string, prefix = 'trusted'): void {
  const r = run('setfattr', ['-n', `${prefix}.overlay.opaque`, '-v', 'y', dir]);
  if (r.status !== 0) throw new Error(`setfattr failed: ${r.stderr}`);
}

export function makeWhiteout(file: string): void {
  const r = run('mknod', [file, 'c', '0', '0']);
  if (r.status !== 0) throw new Error(`mknod failed: ${r.stderr}`);
}

export function statOf(file: string): fs.BigIntStats {
  return fs.lstatSync(file, { bigint: true });
}

// Runs steps on both mounts and asserts that their results and merged
// views match, then that the uppers match after unmount and that no lower
// changed. fresh lists paths whose mtimes the steps set (see portableTree).
export function expectSameEffect(
  pair: Pair,
  steps: (s: Stack) => unknown,
  fresh: string[] = [],
): { result: unknown; upper: PortableEntry[] } {
  const lowersBefore = onBoth(pair, layersState);
  const r = onBoth(pair, (s) => [steps(s), mergedView(s.merged, fresh)]);
  expect(r.ours).toEqual(r.kernel);
  unmountBoth(pair);
  const upper = onBoth(pair, (s) => portableTree(s.upper, fresh));
  expect(upper.ours).toEqual(upper.kernel);
  const lowersAfter = onBoth(pair, layersState);
  expect(lowersAfter.kernel).toEqual(lowersBefore.kernel);
  expect(lowersAfter.ours).toEqual(lowersBefore.ours);
  return { result: r.kernel[0], upper: upper.kernel };
}
