// Mount options: every invalid set must make `tsoverlay mount` exit
// non-zero with a message naming the offending value, mount nothing and
// leave every layer as it was. Valid but unusual sets (escaped colons,
// relative paths, read-only mounts) must behave as the kernel's mount does.
import { execFileSync, spawnSync } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { afterAll, beforeAll, beforeEach, expect, test } from 'vitest';
import {
  cliPath, makeStack, mountKernel, overlayOptions, removeTemp, tempRoot, unmount, type Stack,
} from '../helpers/overlay';
import {
  attempt, onBoth, pairTest, sys, treeState, unmountBoth, writeFiles, yieldEventLoop,
} from '../helpers/conformance';

function isMountPoint(dir: string): boolean {
  const escaped = dir.replace(/[ \t\n\\]/g, (c) => `\\${c.charCodeAt(0).toString(8).padStart(3, '0')}`);
  return fs.readFileSync('/proc/self/mountinfo', 'utf8').split('\n').some((l) => l.split(' ')[4] === escaped);
}

interface MountAttempt {
  status: number | null;
  stderr: string;
  mounted: boolean;
}

// Runs `tsoverlay mount -o OPTIONS MOUNTPOINT`; unmounts at once if it mounted.
function tryMount(options: string, mountpoint: string, cwd?: string): MountAttempt {
  const r = spawnSync(process.execPath, [cliPath, 'mount', '-o', options, mountpoint], {
    encoding: 'utf8', cwd, timeout: 30_000,
  });
  const mounted = isMountPoint(mountpoint);
  if (mounted) unmount(mountpoint);
  return { status: r.status, stderr: r.stderr, mounted };
}

let root: string;
let tmpfs: string;
const dirs = () => ({
  l1: path.join(root, 'l1'),
  l2: path.join(root, 'l2'),
  u: path.join(root, 'u'),
  w: path.join(root, 'w'),
  m: path.join(root, 'm'),
  file: path.join(root, 'afile'),
  other: path.join(tmpfs, 'w'),
});

beforeAll(() => {
  root = tempRoot('options');
  tmpfs = path.join(root, 'tmpfs');
  fs.mkdirSync(tmpfs);
  execFileSync('mount', ['-t', 'tmpfs', '-o', 'size=4m', 'tmpfs', tmpfs]);
  const d = dirs();
  writeFiles(d.l1, { a: 'a', 'inner/x': 'x' });
  writeFiles(d.l2, { b: 'b' });
  writeFiles(d.u, { c: 'c', 'sub/y': 'y' });
  fs.mkdirSync(d.w);
  fs.mkdirSync(d.m);
  fs.mkdirSync(d.other);
  fs.writeFileSync(d.file, 'not a dir');
});

beforeEach(yieldEventLoop);

afterAll(() => {
  if (root === undefined) return;
  unmount(path.join(root, 'm'));
  unmount(tmpfs);
  removeTemp(root);
});

function stateOfAll() {
  const d = dirs();
  return [d.l1, d.l2, d.u, d.w, d.m, d.other].map((dir) => treeState(dir));
}

// Each case: a name, the option string, and the value the message must name.
const invalid: [string, () => string, () => string][] = [
  ['missing lowerdir', () => `upperdir=${dirs().u},workdir=${dirs().w}`, () => 'lowerdir'],
  ['empty lowerdir', () => `lowerdir=,upperdir=${dirs().u},workdir=${dirs().w}`, () => 'lowerdir'],
  ['trailing colon in lowerdir', () => `lowerdir=${dirs().l1}:`, () => 'lowerdir'],
  ['double colon in lowerdir', () => `lowerdir=${dirs().l1}::${dirs().l2}`, () => 'lowerdir'],
  ['upperdir without workdir', () => `lowerdir=${dirs().l1},upperdir=${dirs().u}`, () => 'workdir'],
  ['workdir on other filesystem', () => `lowerdir=${dirs().l1},upperdir=${dirs().u},workdir=${dirs().other}`,
    () => dirs().other],
  ['workdir equal to upperdir', () => `lowerdir=${dirs().l1},upperdir=${dirs().u},workdir=${dirs().u}`,
    () => dirs().u],
  ['workdir inside upperdir', () => `lowerdir=${dirs().l1},upperdir=${dirs().u},workdir=${dirs().u}/sub`,
    () => `${dirs().u}/sub`],
  ['upperdir inside workdir', () => `lowerdir=${dirs().l1},upperdir=${dirs().u},workdir=${root}`,
    () => root],
  ['lowerdir that does not exist', () => `lowerdir=${root}/nope:${dirs().l2}`, () => `${root}/nope`],
  ['lowerdir that is a file', () => `lowerdir=${dirs().file}:${dirs().l2}`, () => dirs().file],
  ['upperdir that does not exist', () => `lowerdir=${dirs().l1},upperdir=${root}/nope,workdir=${dirs().w}`,
    () => `${root}/nope`],
  ['upperdir that is a file', () => `lowerdir=${dirs().l1},upperdir=${dirs().file},workdir=${dirs().w}`,
    () => dirs().file],
  ['workdir that does not exist', () => `lowerdir=${dirs().l1},upperdir=${dirs().u},workdir=${root}/nope`,
    () => `${root}/nope`],
  ['workdir that is a file', () => `lowerdir=${dirs().l1},upperdir=${dirs().u},workdir=${dirs().file}`,
    () => dirs().file],
  ['same lowerdir twice', () => `lowerdir=${dirs().l1}:${dirs().l1}`, () => dirs().l1],
  ['nested lowerdirs', () => `lowerdir=${dirs().l1}/inner:${dirs().l1}`, () => dirs().l1],
  ['upperdir equal to lowerdir', () => `lowerdir=${dirs().l1},upperdir=${dirs().l1},workdir=${dirs().w}`,
    () => dirs().l1],
  ['lowerdir inside upperdir', () => `lowerdir=${dirs().u}/sub,upperdir=${dirs().u},workdir=${dirs().w}`,
    () => `${dirs().u}/sub`],
  ['unknown option', () => `lowerdir=${dirs().l1}:${dirs().l2},bogus=1`, () => 'bogus'],
  ['unknown flag', () => `lowerdir=${dirs().l1}:${dirs().l2},frobnicate`, () => 'frobnicate'],
  ['redirect_dir=on', () => `lowerdir=${dirs().l1},upperdir=${dirs().u},workdir=${dirs().w},redirect_dir=on`,
    () => 'redirect_dir'],
  ['metacopy=on', () => `lowerdir=${dirs().l1},upperdir=${dirs().u},workdir=${dirs().w},metacopy=on`,
    () => 'metacopy'],
];

for (const [name, options, named] of invalid) {
  test(`rejects ${name}`, () => {
    const before = stateOfAll();
    const r = tryMount(options(), dirs().m);
    expect(r.mounted).toBe(false);
    expect(r.status).not.toBe(0);
    expect(r.stderr).toContain(named());
    expect(stateOfAll()).toEqual(before);
  });
}

test('rejects too many lowerdirs', () => {
  const many = Array.from({ length: 501 }, (_, i) => path.join(root, 'many', String(i)));
  for (const dir of many) fs.mkdirSync(dir, { recursive: true });
  try {
    const r = tryMount(`lowerdir=${many.join(':')}`, dirs().m);
    expect(r.mounted).toBe(false);
    expect(r.status).not.toBe(0);
    expect(r.stderr).toContain('501');
  } finally {
    fs.rmSync(path.join(root, 'many'), { recursive: true });
  }
});

test('rejects missing mountpoint', () => {
  const r = tryMount(`lowerdir=${dirs().l1}:${dirs().l2}`, path.join(root, 'no-mountpoint'));
  expect(r.status).not.toBe(0);
  expect(r.stderr).toContain('no-mountpoint');
});

// A plain mount command line goes straight to the daemon process, which
// parses it. Its usage errors must still reach the caller with yargs' exit code.
test('rejects a bad log level as a usage error', () => {
  const r = spawnSync(process.execPath, [cliPath, 'mount', '-o', `lowerdir=${dirs().l1}:${dirs().l2}`, dirs().m,
    '--log-level', 'loud'], { encoding: 'utf8', timeout: 30_000 });
  const mounted = isMountPoint(dirs().m);
  if (mounted) unmount(dirs().m);
  expect(mounted).toBe(false);
  expect(r.status).toBe(2);
  expect(r.stderr).toContain('loud');
  expect(r.stderr).toContain('tsoverlay --help');
});

// Runs fn in a fresh temp dir and then unmounts every mount below it and
// removes it, even when fn fails halfway.
function inTempRoot(prefix: string, fn: (base: string) => void): void {
  const base = tempRoot(prefix);
  try {
    fn(base);
  } finally {
    const mountinfo = fs.readFileSync('/proc/self/mountinfo', 'utf8');
    for (const line of mountinfo.split('\n')) {
      const mountpoint = line.split(' ')[4];
      if (mountpoint?.startsWith(base + '/')) unmount(mountpoint);
    }
    removeTemp(base);
  }
}

function mountOurs(options: string, mountpoint: string, cwd?: string) {
  return spawnSync(process.execPath, [cliPath, 'mount', '-o', options, mountpoint], { encoding: 'utf8', cwd });
}

function buildTwo(s: Stack) {
  writeFiles(s.lowers[0], { top: 'top' });
  writeFiles(s.lowers[1], { bottom: 'bottom' });
}

test('escaped colon and comma in lowerdir', () => {
  inTempRoot('escape', (base) => {
    const s = makeStack(base, 2, buildTwo);
    const odd = path.join(base, 'lo:we,r');
    fs.renameSync(s.lowers[0], odd);
    s.lowers[0] = odd;
    const r = mountOurs(overlayOptions(s), s.merged);
    expect(r.stderr).toBe('');
    expect(r.status).toBe(0);
    expect(fs.readdirSync(s.merged).sort()).toEqual(['bottom', 'top']);
  });
});

test('relative layer paths', () => {
  inTempRoot('relative', (base) => {
    const s = makeStack(base, 2, buildTwo);
    const r = mountOurs('lowerdir=lower1:lower2,upperdir=upper,workdir=work', s.merged, base);
    expect(r.stderr).toBe('');
    expect(r.status).toBe(0);
    expect(attempt(() => fs.readdirSync(s.merged).sort())).toEqual(['bottom', 'top']);
    fs.writeFileSync(path.join(s.merged, 'new'), 'n');
    expect(fs.existsSync(path.join(s.upper, 'new'))).toBe(true);
  });
});

test('upperdir inside lowerdir', () => {
  // The kernel mounts this, and the upper shows up inside the lower's tree.
  inTempRoot('nested', (base) => {
    const s = makeStack(base, 1, (st) => writeFiles(st.lowers[0], { a: 'a' }));
    const upper = path.join(s.lowers[0], 'up');
    fs.mkdirSync(upper);
    const r = mountOurs(`lowerdir=${s.lowers[0]},upperdir=${upper},workdir=${s.work}`, s.merged);
    expect(r.stderr).toBe('');
    expect(r.status).toBe(0);
  });
});

function buildRo(s: Stack) {
  writeFiles(s.lowers[0], { a: 'a', 'd/x': 'x' });
  // A single-lower stack gets the second lower's files in its only layer.
  writeFiles(s.lowers[1] ?? s.lowers[0], { b: 'b', 'd/y': 'y' });
}

// Tries every kind of write on a read-only mount, then two reads.
function readOnlyWrites(s: Stack) {
  const m = (rel: string) => path.join(s.merged, rel);
  return [
    attempt(() => fs.writeFileSync(m('new'), 'n')),
    attempt(() => fs.appendFileSync(m('a'), 'x')),
    attempt(() => fs.closeSync(fs.openSync(m('a'), 'r+'))),
    attempt(() => fs.mkdirSync(m('nd'))),
    attempt(() => fs.unlinkSync(m('a'))),
    attempt(() => fs.rmSync(m('d'), { recursive: true })),
    attempt(() => fs.renameSync(m('a'), m('a2'))),
    attempt(() => fs.chmodSync(m('a'), 0o600)),
    attempt(() => fs.symlinkSync('a', m('sl'))),
    sys('setxattr', m('a'), 'user.x', '31').r,
    attempt(() => fs.readFileSync(m('a'), 'utf8')),
    attempt(() => fs.readdirSync(m('d')).sort()),
  ];
}

test('single lowerdir mounts read-only', () => {
  // The kernel needs two lowers without an upper, so its stack has two.
  inTempRoot('ro1', (base) => {
    const two = makeStack(path.join(base, 'kernel'), 2, buildRo);
    const one = makeStack(path.join(base, 'ours'), 1, buildRo);
    mountKernel(two, true);
    const r = mountOurs(`lowerdir=${one.lowers[0]}`, one.merged);
    expect(r.stderr).toBe('');
    expect(r.status).toBe(0);
    const writes = { kernel: readOnlyWrites(two), ours: readOnlyWrites(one) };
    expect(writes.kernel[0]).toBe('EROFS');
    expect(writes.ours).toEqual(writes.kernel);
  });
});

pairTest('two lowerdirs read-only', 2, buildRo, (pair) => {
  const r = onBoth(pair, readOnlyWrites);
  expect(r.kernel[0]).toBe('EROFS');
  expect(r.ours).toEqual(r.kernel);
}, { readOnly: true });

test('ro option with upperdir', () => {
  inTempRoot('ro-upper', (base) => {
    const k = makeStack(path.join(base, 'kernel'), 2, buildRo);
    const o = makeStack(path.join(base, 'ours'), 2, buildRo);
    execFileSync('mount', ['-t', 'overlay', 'overlay', '-o', `${overlayOptions(k)},ro`, k.merged]);
    const r = mountOurs(`${overlayOptions(o)},ro`, o.merged);
    expect(r.status).toBe(0);
    const writes = { kernel: readOnlyWrites(k), ours: readOnlyWrites(o) };
    expect(writes.ours).toEqual(writes.kernel);
  });
});

pairTest('workdir leftovers emptied', 2, (s) => {
  buildRo(s);
  writeFiles(path.join(s.work, 'work'), { leftover: 'l', 'dir/f': 'f' });
}, (pair) => {
  const r = onBoth(pair, (s) => fs.readdirSync(path.join(s.work, 'work')));
  expect(r.kernel).toEqual([]);
  expect(r.ours).toEqual(r.kernel);
});

pairTest('workdir/work mode and owner', 2, buildRo, (pair) => {
  const r = onBoth(pair, (s) => {
    const st = fs.statSync(path.join(s.work, 'work'));
    return [st.mode, st.uid, st.gid];
  });
  expect(r.ours).toEqual(r.kernel);
});

pairTest('upper root uuid xattr', 2, buildRo, (pair) => {
  onBoth(pair, (s) => fs.appendFileSync(path.join(s.merged, 'a'), '!'));
  unmountBoth(pair);
  const r = onBoth(pair, (s) => {
    const names = sys('listxattr', s.upper).v as string[];
    return names.filter((n) => n.startsWith('trusted.overlay.'));
  });
  expect(r.ours).toEqual(r.kernel);
});
