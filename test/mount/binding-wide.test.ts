// 64-bit attributes, caller context and mount options through the patched
// binding, on the fixture filesystem test/fixtures/wide-ino-fs.js rather
// than tsoverlay, so that it can serve values that no real layer contains.
// Unpatched fuse-native 2.2.6 sent the inode number and the statfs counts
// as 32-bit fields and times in milliseconds, ignored an options array and
// had no contextArray.
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { afterAll, beforeAll, expect, test } from 'vitest';
import { host } from '../../src/host/native';
import { removeTemp, repoRoot, tempRoot, unmount } from '../helpers/overlay';
import { NOBODY, openToOthers, run, runAsNobody } from './binding-helpers';

const fixturePath = path.join(repoRoot, 'test', 'fixtures', 'wide-ino-fs.js');
const { WIDE } = require(fixturePath) as { WIDE: WideValues };

interface WideValues {
  rootIno: bigint;
  ino: bigint;
  size: bigint;
  nlink: bigint;
  blocks: bigint;
  blksize: bigint;
  uid: bigint;
  gid: bigint;
  atime: [bigint, bigint];
  mtime: [bigint, bigint];
  ctime: [bigint, bigint];
  statfs: Record<'bsize' | 'frsize' | 'blocks' | 'bfree' | 'bavail' | 'files' | 'ffree' | 'namemax', bigint>;
}

interface ContextLine {
  op: string;
  path: string;
  uid: number;
  gid: number;
  pid: number;
  umask: number;
}

const OPTIONS = ['use_ino', 'allow_other', 'fsname=wide', 'subtype=widefs'];

let root: string;
let mnt: string;
let child: ChildProcess | undefined;
let stdout = '';
let childExit: Promise<void>;

const ns = ([sec, nsec]: [bigint, bigint]) => sec * 1_000_000_000n + nsec;

function waitFor<T>(what: string, find: () => T | undefined, timeoutMs = 10_000): Promise<T> {
  const started = Date.now();
  return new Promise((resolve, reject) => {
    const poll = () => {
      const value = find();
      if (value !== undefined) return resolve(value);
      if (Date.now() - started > timeoutMs) return reject(new Error(`Timed out waiting for ${what}`));
      setTimeout(poll, 20);
    };
    poll();
  });
}

function contextLines(): ContextLine[] {
  return stdout
    .split('\n')
    .filter((line) => line.startsWith('{'))
    .map((line) => JSON.parse(line) as ContextLine);
}

beforeAll(async () => {
  root = tempRoot('binding-wide');
  openToOthers(root);
  mnt = path.join(root, 'mnt');
  fs.mkdirSync(mnt);
  const proc = spawn(process.execPath, [fixturePath, mnt, OPTIONS.join(',')], {
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  child = proc;
  let stderr = '';
  proc.stdout.setEncoding('utf8').on('data', (chunk: string) => (stdout += chunk));
  proc.stderr.setEncoding('utf8').on('data', (chunk: string) => (stderr += chunk));
  childExit = new Promise((resolve) => proc.on('exit', () => resolve()));
  await waitFor('the fixture to mount', () => {
    if (proc.exitCode !== null) throw new Error(`wide-ino-fs exited: ${stderr}`);
    return stdout.startsWith('ready\n') ? true : undefined;
  });
});

afterAll(async () => {
  if (child?.pid !== undefined && child.exitCode === null) {
    process.kill(child.pid, 'SIGTERM');
    const killed = new Promise((resolve) => setTimeout(resolve, 5000));
    await Promise.race([childExit, killed]);
    if (child.exitCode === null && child.signalCode === null) process.kill(child.pid, 'SIGKILL');
  }
  if (mnt !== undefined) unmount(mnt);
  if (root !== undefined) removeTemp(root);
});

test('stat of wide file', () => {
  const st = fs.statSync(path.join(mnt, 'big'), { bigint: true });
  expect(st.ino).toBe(WIDE.ino);
  expect(st.size).toBe(WIDE.size);
  expect(st.blocks).toBe(WIDE.blocks);
  expect(st.blksize).toBe(WIDE.blksize);
  expect(st.uid).toBe(WIDE.uid);
  expect(st.gid).toBe(WIDE.gid);
  expect(st.atimeNs).toBe(ns(WIDE.atime));
  expect(st.mtimeNs).toBe(ns(WIDE.mtime));
  expect(st.ctimeNs).toBe(ns(WIDE.ctime));
});

test('stat of wide root', () => {
  expect(fs.statSync(mnt, { bigint: true }).ino).toBe(WIDE.rootIno);
});

test('link count truncates to 32 bits', () => {
  // The FUSE protocol's fuse_attr.nlink is a u32, so libfuse 2.9 keeps only
  // the low 32 bits of a 64-bit st_nlink: 2^32 + 1 arrives as 1.
  const st = fs.statSync(path.join(mnt, 'big'), { bigint: true });
  expect(st.nlink).toBe(WIDE.nlink & 0xffffffffn);
});

test('stat(1) prints wide fields', () => {
  const out = run('stat', ['-c', '%i|%s|%b|%x|%y', path.join(mnt, 'big')]).trim();
  const [ino, size, blocks, atime, mtime] = out.split('|');
  expect(ino).toBe(WIDE.ino.toString());
  expect(size).toBe(WIDE.size.toString());
  expect(blocks).toBe(WIDE.blocks.toString());
  expect(atime).toBe('2009-02-13 23:31:30.987654321 +0000');
  expect(mtime).toBe('1969-12-31 23:59:58.123456789 +0000');
});

test('readdir returns wide d_ino', () => {
  const listing = host.readdir(mnt);
  const index = listing.names.indexOf('big');
  expect(index).toBeGreaterThanOrEqual(0);
  expect(listing.inos[index]).toBe(WIDE.ino);
  expect(listing.types[index]).toBe(host.DT_REG);
});

test('statfs counts above 2^32', () => {
  const st = fs.statfsSync(mnt, { bigint: true });
  expect(st.bsize).toBe(WIDE.statfs.bsize);
  expect(st.blocks).toBe(WIDE.statfs.blocks);
  expect(st.bfree).toBe(WIDE.statfs.bfree);
  expect(st.bavail).toBe(WIDE.statfs.bavail);
  expect(st.files).toBe(WIDE.statfs.files);
  expect(st.ffree).toBe(WIDE.statfs.ffree);
});

test('stat -f prints wide counts', () => {
  const out = run('stat', ['-f', '-c', '%b %f %a %c %d %S %l', mnt]).trim();
  const s = WIDE.statfs;
  const expected = [s.blocks, s.bfree, s.bavail, s.files, s.ffree, s.bsize, s.namemax];
  expect(out).toBe(expected.join(' '));
});

test('mountinfo shows fsname and subtype', () => {
  const line = fs
    .readFileSync('/proc/self/mountinfo', 'utf8')
    .split('\n')
    .find((l) => l.split(' ')[4] === mnt);
  expect(line).toBeDefined();
  const [, after] = line!.split(' - ');
  const [fstype, source] = after.split(' ');
  expect(fstype).toBe('fuse.widefs');
  expect(source).toBe('wide');
});

test('create sees caller context', async () => {
  const file = path.join(mnt, 'by-nobody');
  const result = runAsNobody(['touch', file], 0o027);
  expect(result.stderr).toBe('');
  expect(result.status).toBe(0);
  const line = await waitFor('the create context', () =>
    contextLines().find((l) => l.op === 'create' && l.path === '/by-nobody'),
  );
  expect(line.uid).toBe(NOBODY);
  expect(line.gid).toBe(NOBODY);
  expect(line.pid).toBe(result.pid);
  expect(line.umask).toBe(0o027);
  const st = fs.statSync(file);
  expect(st.uid).toBe(NOBODY);
  expect(st.gid).toBe(NOBODY);
});

test('mkdir sees caller context', async () => {
  const dir = path.join(mnt, 'dir-by-nobody');
  const result = runAsNobody(['mkdir', dir], 0o022);
  expect(result.stderr).toBe('');
  expect(result.status).toBe(0);
  const line = await waitFor('the mkdir context', () =>
    contextLines().find((l) => l.op === 'mkdir' && l.path === '/dir-by-nobody'),
  );
  expect(line.uid).toBe(NOBODY);
  expect(line.gid).toBe(NOBODY);
  expect(line.pid).toBe(result.pid);
  expect(line.umask).toBe(0o022);
});

test('create as root sees uid 0', async () => {
  // The context must follow the caller of each request, not the first one.
  const result = spawnSync('touch', [path.join(mnt, 'by-root')]);
  expect(result.status).toBe(0);
  const line = await waitFor('the root create context', () =>
    contextLines().find((l) => l.op === 'create' && l.path === '/by-root'),
  );
  expect(line.uid).toBe(0);
  expect(line.gid).toBe(0);
  expect(line.pid).toBe(result.pid);
});
