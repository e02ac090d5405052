// Times through the binding: utimens must carry seconds and nanoseconds,
// and a request that sets only one of atime and mtime (UTIME_OMIT for the
// other) must reach the filesystem. Unpatched fuse-native 2.2.6 passed
// milliseconds, sent atime in place of mtime, and libfuse 2.9 dropped a
// setattr that set only one time. Each step runs on kernel overlayfs and on
// tsoverlay, and both must show exactly the times that were set.
import fs from 'node:fs';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import { mountPair, removeTemp, tempRoot, type Pair, type Stack } from '../helpers/overlay';
import { run, setTimes, timesOf, utcNs } from './binding-helpers';

const T = '2001-02-03 04:05:06.123456789';
const T_NS = utcNs(T);
const T_STAT = '2001-02-03 04:05:06.123456789 +0000';

const ATIME = '2011-01-01 00:00:00.111111111';
const MTIME = '2012-02-02 00:00:00.222222222';
const ATIME_NS = utcNs(ATIME);
const MTIME_NS = utcNs(MTIME);

const SRC_ATIME = '2005-05-05 05:05:05.505050505';
const SRC_MTIME = '2006-06-06 06:06:06.606060606';
const SRC_ATIME_NS = utcNs(SRC_ATIME);
const SRC_MTIME_NS = utcNs(SRC_MTIME);

let pair: Pair;
let sources: string;

// Lower entries with known times, so that copy-up is part of the lower cases.
function build(s: Stack) {
  const lower = s.lowers[0];
  for (const name of ['mtime-file', 'atime-file', 'target']) {
    fs.writeFileSync(path.join(lower, name), `${name}\n`);
    setTimes(path.join(lower, name), ATIME, MTIME);
  }
  fs.mkdirSync(path.join(lower, 'dir'));
  fs.writeFileSync(path.join(lower, 'dir', 'inner'), 'inner\n');
  setTimes(path.join(lower, 'dir'), ATIME, MTIME);
  fs.symlinkSync('target', path.join(lower, 'link'));
  setTimes(path.join(lower, 'link'), ATIME, MTIME);
}

const TREE_ENTRIES = ['file', 'sub/deep', 'link', 'sub', '.'];

function setTreeTimes(tree: string) {
  for (const rel of TREE_ENTRIES) setTimes(path.join(tree, rel), SRC_ATIME, SRC_MTIME);
}

// A tree outside the mounts with known times: the source for cp and tar.
function buildSources(root: string) {
  const tree = path.join(root, 'tree');
  fs.mkdirSync(path.join(tree, 'sub'), { recursive: true });
  fs.writeFileSync(path.join(tree, 'file'), 'file\n');
  fs.writeFileSync(path.join(tree, 'sub', 'deep'), 'deep\n');
  fs.symlinkSync('file', path.join(tree, 'link'));
  setTreeTimes(tree);
  run('tar', ['--format=posix', '-cf', path.join(root, 'tree.tar'), '-C', root, 'tree']);
  // Reading the files for the archive moved their atimes (relatime).
  setTreeTimes(tree);
}

beforeAll(() => {
  pair = mountPair('binding-times', 1, build);
  sources = tempRoot('binding-times-src');
  buildSources(sources);
});

afterAll(() => {
  pair?.cleanup();
  if (sources !== undefined) removeTemp(sources);
});

// `stat -c %y` of p, to check the time as tools print it.
function statY(p: string): string {
  return run('stat', ['-c', '%y', p]).trim();
}

describe.each(['kernel', 'tsoverlay'])('%s', (which) => {
  const stack = () => (which === 'kernel' ? pair.kernel : pair.ours);

  test('touch -m on lower file', () => {
    const s = stack();
    const p = path.join(s.merged, 'mtime-file');
    run('touch', ['-m', '-d', T, p]);
    const after = timesOf(p);
    expect(after.mtimeNs).toBe(T_NS);
    expect(after.atimeNs).toBe(ATIME_NS);
    expect(statY(p)).toBe(T_STAT);
    expect(timesOf(path.join(s.upper, 'mtime-file'))).toEqual(after);
  });

  test('touch -a on lower file', () => {
    const s = stack();
    const p = path.join(s.merged, 'atime-file');
    run('touch', ['-a', '-d', T, p]);
    const after = timesOf(p);
    expect(after.atimeNs).toBe(T_NS);
    expect(after.mtimeNs).toBe(MTIME_NS);
    expect(run('stat', ['-c', '%x', p]).trim()).toBe(T_STAT);
    expect(timesOf(path.join(s.upper, 'atime-file'))).toEqual(after);
  });

  test('touch -m on upper file', () => {
    const s = stack();
    const p = path.join(s.merged, 'new-m');
    fs.writeFileSync(p, 'new\n');
    setTimes(p, ATIME, MTIME);
    const before = timesOf(p);
    run('touch', ['-m', '-d', T, p]);
    const after = timesOf(p);
    expect(before.atimeNs).toBe(ATIME_NS);
    expect(after.mtimeNs).toBe(T_NS);
    expect(after.atimeNs).toBe(before.atimeNs);
    expect(statY(p)).toBe(T_STAT);
    expect(timesOf(path.join(s.upper, 'new-m'))).toEqual(after);
  });

  test('touch -a on upper file', () => {
    const s = stack();
    const p = path.join(s.merged, 'new-a');
    fs.writeFileSync(p, 'new\n');
    setTimes(p, ATIME, MTIME);
    const before = timesOf(p);
    run('touch', ['-a', '-d', T, p]);
    const after = timesOf(p);
    expect(before.mtimeNs).toBe(MTIME_NS);
    expect(after.atimeNs).toBe(T_NS);
    expect(after.mtimeNs).toBe(before.mtimeNs);
    expect(timesOf(path.join(s.upper, 'new-a'))).toEqual(after);
  });

  test('touch -m on lower dir', () => {
    const s = stack();
    const p = path.join(s.merged, 'dir');
    run('touch', ['-m', '-d', T, p]);
    const after = timesOf(p);
    expect(after.mtimeNs).toBe(T_NS);
    expect(after.atimeNs).toBe(ATIME_NS);
    expect(timesOf(path.join(s.upper, 'dir')).mtimeNs).toBe(T_NS);
  });

  test('touch -h on lower symlink', () => {
    const s = stack();
    const link = path.join(s.merged, 'link');
    const targetBefore = timesOf(path.join(s.merged, 'target'));
    run('touch', ['-h', '-d', T, link]);
    const after = timesOf(link);
    expect(after.mtimeNs).toBe(T_NS);
    expect(after.atimeNs).toBe(T_NS);
    expect(fs.lstatSync(link).isSymbolicLink()).toBe(true);
    expect(timesOf(path.join(s.merged, 'target'))).toEqual(targetBefore);
    expect(timesOf(path.join(s.upper, 'link'))).toEqual(after);
  });

  test('touch -h -m on upper symlink', () => {
    const s = stack();
    const link = path.join(s.merged, 'new-link');
    fs.symlinkSync('target', link);
    setTimes(link, ATIME, MTIME);
    const targetBefore = timesOf(path.join(s.merged, 'target'));
    run('touch', ['-h', '-m', '-d', T, link]);
    const after = timesOf(link);
    expect(after.mtimeNs).toBe(T_NS);
    expect(after.atimeNs).toBe(ATIME_NS);
    expect(timesOf(path.join(s.merged, 'target'))).toEqual(targetBefore);
    expect(timesOf(path.join(s.upper, 'new-link'))).toEqual(after);
  });

  test('cp -p keeps nanoseconds', () => {
    const s = stack();
    const p = path.join(s.merged, 'cp-file');
    // An earlier copy of the source moved its atime (relatime).
    setTreeTimes(path.join(sources, 'tree'));
    run('cp', ['-p', path.join(sources, 'tree', 'file'), p]);
    const after = timesOf(p);
    expect(after.mtimeNs).toBe(SRC_MTIME_NS);
    expect(after.atimeNs).toBe(SRC_ATIME_NS);
  });

  test('cp -a tree keeps nanoseconds', () => {
    const s = stack();
    const dest = path.join(s.merged, 'cp-tree');
    run('cp', ['-a', path.join(sources, 'tree'), dest]);
    for (const rel of TREE_ENTRIES) {
      expect({ rel, mtimeNs: timesOf(path.join(dest, rel)).mtimeNs }).toEqual({ rel, mtimeNs: SRC_MTIME_NS });
    }
  });

  test('tar -x keeps nanoseconds', () => {
    const s = stack();
    const dest = path.join(s.merged, 'untar');
    fs.mkdirSync(dest);
    run('tar', ['-xf', path.join(sources, 'tree.tar'), '-C', dest]);
    for (const rel of TREE_ENTRIES) {
      const p = path.join(dest, 'tree', rel);
      expect({ rel, mtimeNs: timesOf(p).mtimeNs }).toEqual({ rel, mtimeNs: SRC_MTIME_NS });
    }
  });
});

test('tar archive carries nanoseconds', () => {
  // Guards the fixture: without nanoseconds in the archive the tar test
  // above would pass on any binding.
  const listing = run('tar', ['--full-time', '-tvf', path.join(sources, 'tree.tar')]);
  expect(listing).toContain('2006-06-06 06:06:06.606060606');
});
