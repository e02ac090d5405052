// Random layer stacks for the differential runner: a spec drawn from a
// seed, and a builder that writes it to real directories in the kernel's
// on-disk format (whiteouts are 0/0 character devices, opaque directories
// carry trusted.overlay.opaque=y).
import fs from 'node:fs';
import path from 'node:path';
import { runShellBatch, type ShellArg } from './shell';
import { baseOf, decodeName, encodeName, fullPath, joinPath, parentOf, type EncodedPath } from './paths';

export type EntryType = 'dir' | 'file' | 'symlink' | 'hardlink' | 'fifo' | 'whiteout';

export interface EntrySpec {
  path: EncodedPath;
  type: EntryType;
  mode?: number;
  uid?: number;
  gid?: number;
  // Regular files: the size, and the byte ranges with data. Without extents
  // the whole file is data. In a sparse file the rest is holes.
  size?: number;
  extents?: Array<[number, number]>;
  fill?: number;
  target?: EncodedPath;
  linkTo?: EncodedPath;
  xattrs?: Record<string, string>;
  opaque?: boolean;
  // Seconds and nanoseconds, set as both atime and mtime.
  mtime?: [number, number];
}

export interface RootSpec {
  mode: number;
  uid: number;
  gid: number;
  mtime: [number, number];
}

export interface LayerSpec {
  root: RootSpec;
  entries: EntrySpec[];
}

// lowers[0] is the topmost lower, as in lowerdir=.
export interface StackSpec {
  lowers: LayerSpec[];
  upper: LayerSpec;
}

export interface StackOptions {
  // 'plain' leaves out the names with spaces, newlines and odd bytes.
  names: 'all' | 'plain';
  maxLowers: number;
}

// mulberry32: small, fast and the same on every machine.
export class Rng {
  private state: number;

  constructor(seed: number) {
    this.state = seed >>> 0;
  }

  next(): number {
    this.state = (this.state + 0x6d2b79f5) >>> 0;
    let t = this.state;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  }

  int(n: number): number {
    return Math.floor(this.next() * n);
  }

  chance(p: number): boolean {
    return this.next() < p;
  }

  pick<T>(items: readonly T[]): T {
    return items[this.int(items.length)];
  }

  weighted<T>(items: ReadonlyArray<[T, number]>): T {
    const total = items.reduce((sum, [, w]) => sum + w, 0);
    let r = this.next() * total;
    for (const [item, w] of items) {
      r -= w;
      if (r < 0) return item;
    }
    return items[items.length - 1][0];
  }
}

const SPECIAL_NAMES: Buffer[] = [
  Buffer.from('with space'),
  Buffer.from('new\nline'),
  Buffer.from('co:lon'),
  Buffer.from('com,ma'),
  Buffer.from('back\\slash'),
  Buffer.from([0x6e, 0xff, 0xfe, 0x2e, 0x62]),
  Buffer.from('L'.repeat(255)),
  Buffer.from(`${'\u00e9'.repeat(127)}x`),
  Buffer.from('.wh.marker'),
  Buffer.from('-dash'),
  Buffer.from('tab\there'),
  Buffer.from("quote'd"),
];

const FILE_MODES: Array<[number, number]> = [
  [0o644, 40], [0o600, 8], [0o666, 10], [0o755, 10], [0o4755, 5], [0o2755, 4],
  [0o6755, 3], [0o444, 5], [0o000, 2], [0o1644, 2], [0o4777, 2],
];
const DIR_MODES: Array<[number, number]> = [
  [0o755, 45], [0o777, 15], [0o1777, 12], [0o700, 8], [0o555, 8], [0o2775, 6],
];
const ROOT_MODES: Array<[number, number]> = [[0o755, 3], [0o777, 2], [0o1777, 2]];
const OWNERS: Array<[number, number]> = [[0, 65], [65534, 25], [1000, 10]];

const MiB = 1024 * 1024;

interface Universe {
  dirs: EncodedPath[];
  leaves: EncodedPath[];
  fresh: EncodedPath[];
}

function makeUniverse(rng: Rng, options: StackOptions): Universe {
  const dirs: EncodedPath[] = [];
  const leaves: EncodedPath[] = [];
  const fresh: EncodedPath[] = [];
  let counter = 0;

  const nameIn = (used: Set<string>, prefix: string): EncodedPath => {
    if (options.names === 'all' && rng.chance(0.22)) {
      for (let tries = 0; tries < 4; tries++) {
        const name = encodeName(rng.pick(SPECIAL_NAMES));
        if (!used.has(name)) {
          used.add(name);
          return name;
        }
      }
    }
    counter += 1;
    const name = `${prefix}${counter}`;
    used.add(name);
    return name;
  };

  const grow = (dir: EncodedPath, depth: number, forceDeep: boolean) => {
    const used = new Set<string>();
    const leafCount = depth === 0 ? 3 + rng.int(4) : 1 + rng.int(4);
    for (let i = 0; i < leafCount; i++) leaves.push(joinPath(dir, nameIn(used, 'f')));
    fresh.push(joinPath(dir, nameIn(used, 'new')));
    let subdirs = 0;
    if (depth === 0) subdirs = 2 + rng.int(3);
    else if (depth < 4) subdirs = rng.int(3);
    if (forceDeep && subdirs === 0 && depth < 4) subdirs = 1;
    for (let i = 0; i < subdirs; i++) {
      const sub = joinPath(dir, nameIn(used, 'd'));
      dirs.push(sub);
      grow(sub, depth + 1, forceDeep && i === 0);
    }
    if (depth === 0) {
      const freshDir = nameIn(used, 'nd');
      fresh.push(freshDir, joinPath(freshDir, 'nf'), 'missing/child');
    }
  };
  grow('', 0, rng.chance(0.6));
  return { dirs, leaves, fresh };
}

function drawTime(rng: Rng): [number, number] {
  return [1_000_000_000 + rng.int(300_000_000), rng.int(1_000_000_000)];
}

function drawOwner(rng: Rng): { uid: number; gid: number } {
  return { uid: rng.weighted(OWNERS), gid: rng.weighted(OWNERS) };
}

function drawFileBody(rng: Rng, bigLeft: { count: number }): Pick<EntrySpec, 'size' | 'extents'> {
  const kind = rng.weighted<string>([
    ['empty', 10], ['small', 50], ['page', 8], ['page+1', 5], ['64k', 7], ['128k+1', 7],
    ['1m', 5], ['sparse', 5], ['sparse-tail', 3],
  ]);
  const big = kind === '1m' || kind === 'sparse' || kind === 'sparse-tail';
  if (big && bigLeft.count <= 0) return { size: 1 + rng.int(200) };
  if (big) bigLeft.count -= 1;
  switch (kind) {
    case 'empty': return { size: 0 };
    case 'small': return { size: 1 + rng.int(200) };
    case 'page': return { size: 4096 };
    case 'page+1': return { size: 4097 };
    case '64k': return { size: 65536 + 3 };
    case '128k+1': return { size: 131073 };
    case '1m': return { size: MiB + 7 };
    case 'sparse': return { size: 3 * MiB, extents: [[0, 100], [MiB + 5, 4096], [3 * MiB - 10, 10]] };
    default: return { size: 2 * MiB, extents: [[0, 10]] };
  }
}

function drawXattrs(rng: Rng): Record<string, string> | undefined {
  if (!rng.chance(0.2)) return undefined;
  const xattrs: Record<string, string> = { 'user.a': `v${rng.int(100)}` };
  if (rng.chance(0.3)) xattrs['user.empty'] = '';
  if (rng.chance(0.2)) xattrs['user.big'] = 'b'.repeat(300);
  return xattrs;
}

// Relative path from the directory of link to target, both merged paths.
function relativeTo(link: EncodedPath, target: EncodedPath): EncodedPath {
  const depth = link.split('/').length - 1;
  return `${'../'.repeat(depth)}${target}` || '.';
}

function drawTarget(rng: Rng, link: EncodedPath, universe: Universe): EncodedPath {
  const kind = rng.weighted<string>([
    ['sibling', 25], ['path', 25], ['dangling', 15], ['absolute', 10], ['self', 5], ['long', 5],
    ['dir', 10], ['odd', 5],
  ]);
  switch (kind) {
    case 'sibling': return baseOf(rng.pick(universe.leaves));
    case 'path': return relativeTo(link, rng.pick(universe.leaves));
    case 'dangling': return 'missing-target';
    case 'absolute': return '/nonexistent/target';
    case 'self': return baseOf(link);
    case 'long': return 't'.repeat(1000);
    case 'dir': return universe.dirs.length > 0 ? relativeTo(link, rng.pick(universe.dirs)) : '.';
    default: return encodeName(Buffer.from([0x74, 0xff, 0x0a, 0x3a]));
  }
}

// Fills one layer. below maps each path to what the layers under it show.
function drawLayer(
  rng: Rng,
  universe: Universe,
  isUpper: boolean,
  below: Map<EncodedPath, EntryType>,
  bigLeft: { count: number },
): LayerSpec {
  const entries: EntrySpec[] = [];
  const types = new Map<EncodedPath, EntryType>();
  const files: EncodedPath[] = [];
  const parentIsDir = (p: EncodedPath) => parentOf(p) === '' || types.get(parentOf(p)) === 'dir';
  const pDir = isUpper ? 0.35 : 0.55;
  const pLeaf = isUpper ? 0.3 : 0.45;

  const add = (entry: EntrySpec) => {
    entries.push(entry);
    types.set(entry.path, entry.type);
    if (entry.type === 'file') files.push(entry.path);
  };

  const addNonDir = (p: EncodedPath, type: EntryType) => {
    const base = { path: p, mtime: drawTime(rng), ...drawOwner(rng) };
    if (type === 'file') {
      add({ ...base, type, mode: rng.weighted(FILE_MODES), fill: rng.int(256), ...drawFileBody(rng, bigLeft), xattrs: drawXattrs(rng) });
    } else if (type === 'symlink') {
      add({ ...base, type, target: drawTarget(rng, p, universe) });
    } else if (type === 'hardlink') {
      if (files.length === 0) return addNonDir(p, 'file');
      add({ path: p, type, linkTo: rng.pick(files) });
    } else if (type === 'fifo') {
      add({ ...base, type, mode: rng.pick([0o644, 0o666, 0o600]) });
    } else if (type === 'whiteout') {
      add({ path: p, type, mtime: base.mtime });
    } else {
      add({ ...base, type: 'dir', mode: rng.weighted(DIR_MODES), xattrs: drawXattrs(rng) });
    }
  };

  // Directories first, in tree order, so every leaf can see its parent.
  const order = [...universe.dirs, ...universe.leaves].sort((a, b) => a.split('/').length - b.split('/').length);
  for (const p of order) {
    if (!parentIsDir(p)) continue;
    const isDir = universe.dirs.includes(p);
    const shown = below.get(p);
    const r = rng.next();
    if (isDir) {
      if (r < pDir) {
        addNonDir(p, 'dir');
        const entry = entries[entries.length - 1];
        if (shown === 'dir' && rng.chance(0.2)) entry.opaque = true;
      } else if (r < pDir + 0.07 && shown !== undefined) {
        addNonDir(p, 'whiteout');
      } else if (r < pDir + 0.11) {
        addNonDir(p, rng.pick(['file', 'symlink'] as const));
      }
      continue;
    }
    if (r < pLeaf) {
      addNonDir(p, rng.weighted<EntryType>([['file', 60], ['symlink', 15], ['hardlink', 10], ['fifo', 5], ['dir', 5]]));
    } else if (r < pLeaf + 0.1 && shown !== undefined) {
      addNonDir(p, 'whiteout');
    }
  }
  return { root: { mode: rng.weighted(ROOT_MODES), uid: 0, gid: 0, mtime: drawTime(rng) }, entries };
}

// What a layer shows at each path once the layers below it are merged.
function mergeDown(below: Map<EncodedPath, EntryType>, layer: LayerSpec): Map<EncodedPath, EntryType> {
  const merged = new Map(below);
  const opaqueDirs = layer.entries.filter((e) => e.type === 'dir' && e.opaque).map((e) => e.path);
  for (const [p] of below) {
    if (opaqueDirs.some((d) => p.startsWith(`${d}/`))) merged.delete(p);
  }
  for (const e of layer.entries) {
    if (e.type === 'whiteout') {
      for (const [p] of merged) if (p === e.path || p.startsWith(`${e.path}/`)) merged.delete(p);
    } else {
      if (e.type !== 'dir') for (const [p] of merged) if (p.startsWith(`${e.path}/`)) merged.delete(p);
      merged.set(e.path, e.type === 'hardlink' ? 'file' : e.type);
    }
  }
  return merged;
}

// Paths for operations, grouped by what the initial merged view shows
// there, so steps can favour names that exist.
export interface PathPools {
  files: EncodedPath[];
  dirs: EncodedPath[];
  // Symlinks and fifos.
  others: EncodedPath[];
  // Names in some layer that the merged view does not show.
  hidden: EncodedPath[];
  // Names in no layer, and paths below files or missing directories.
  fresh: EncodedPath[];
}

export interface GeneratedStack {
  spec: StackSpec;
  pools: PathPools;
}

export function generateStack(seed: number, options: StackOptions): GeneratedStack {
  const rng = new Rng(seed ^ 0x5eed1e55);
  const universe = makeUniverse(rng, options);
  const lowerCount = 1 + rng.int(Math.max(1, options.maxLowers));
  const bigLeft = { count: 3 };
  const layersBottomUp: LayerSpec[] = [];
  let below = new Map<EncodedPath, EntryType>();
  for (let i = 0; i <= lowerCount; i++) {
    const layer = drawLayer(rng, universe, i === lowerCount, below, bigLeft);
    layersBottomUp.push(layer);
    below = mergeDown(below, layer);
  }
  const upper = layersBottomUp.pop() as LayerSpec;
  const spec: StackSpec = { lowers: layersBottomUp.reverse(), upper };
  const byDepth = (a: string, b: string) => a.split('/').length - b.split('/').length;
  const pools: PathPools = { files: [], dirs: [], others: [], hidden: [], fresh: [] };
  for (const p of [...universe.dirs, ...universe.leaves].sort(byDepth)) {
    const type = below.get(p);
    if (type === 'file') pools.files.push(p);
    else if (type === 'dir') pools.dirs.push(p);
    else if (type !== undefined) pools.others.push(p);
    else if (allPaths(spec).includes(p)) pools.hidden.push(p);
    else pools.fresh.push(p);
  }
  const underFiles = pools.files.slice(0, 2).map((p) => `${p}/child`);
  pools.fresh = [...new Set([...pools.fresh, ...universe.fresh, ...underFiles])];
  return { spec, pools };
}

export function allPaths(spec: StackSpec): EncodedPath[] {
  const set = new Set<EncodedPath>();
  for (const layer of [spec.upper, ...spec.lowers]) for (const e of layer.entries) set.add(e.path);
  return [...set];
}

// Deterministic file contents: the byte at offset p depends on fill and p.
export function contentChunk(fill: number, offset: number, length: number): Buffer {
  const buf = Buffer.allocUnsafe(length);
  for (let i = 0; i < length; i++) {
    const p = offset + i;
    buf[i] = (fill * 131 + p * 7 + (p >>> 9)) & 0xff;
  }
  return buf;
}

function writeFileBody(file: Buffer, entry: EntrySpec): void {
  const fd = fs.openSync(file, 'w', 0o600);
  try {
    const size = entry.size ?? 0;
    const extents = entry.extents ?? [[0, size]];
    for (const [start, length] of extents) {
      for (let off = 0; off < length; off += MiB) {
        const chunk = contentChunk(entry.fill ?? 0, start + off, Math.min(MiB, length - off));
        fs.writeSync(fd, chunk, 0, chunk.length, start + off);
      }
    }
    fs.ftruncateSync(fd, size);
  } finally {
    fs.closeSync(fd);
  }
}

function timeArg(t: [number, number]): string {
  return `@${t[0]}.${String(t[1]).padStart(9, '0')}`;
}

// Writes one layer under dir, which must exist and be empty.
export function buildLayer(dir: string, layer: LayerSpec): void {
  const special: ShellArg[][] = [];
  const finish: ShellArg[][] = [];
  const owners: Array<[Buffer, EntrySpec]> = [];

  for (const entry of layer.entries) {
    const file = fullPath(dir, entry.path);
    switch (entry.type) {
      case 'dir':
        fs.mkdirSync(file);
        owners.push([file, entry]);
        break;
      case 'file':
        writeFileBody(file, entry);
        owners.push([file, entry]);
        break;
      case 'symlink':
        fs.symlinkSync(decodeName(entry.target ?? ''), file);
        owners.push([file, entry]);
        break;
      case 'hardlink':
        fs.linkSync(fullPath(dir, entry.linkTo ?? ''), file);
        break;
      case 'fifo':
        special.push(['mkfifo', '--', file]);
        owners.push([file, entry]);
        break;
      case 'whiteout':
        special.push(['mknod', '-m', '000', '--', file, 'c', '0', '0']);
        break;
    }
    for (const [name, value] of Object.entries(entry.xattrs ?? {})) {
      finish.push(['setfattr', '-h', '-n', name, '-v', `0x${Buffer.from(value).toString('hex')}`, '--', file]);
    }
    if (entry.opaque) finish.push(['setfattr', '-n', 'trusted.overlay.opaque', '-v', 'y', '--', file]);
  }
  failOnError(runShellBatch(special), special);

  // chown before chmod, since chown clears the setuid and setgid bits.
  for (const [file, entry] of owners) {
    fs.lchownSync(file, entry.uid ?? 0, entry.gid ?? 0);
    if (entry.type !== 'symlink') fs.chmodSync(file, entry.mode ?? 0o644);
  }
  fs.chownSync(dir, layer.root.uid, layer.root.gid);
  fs.chmodSync(dir, layer.root.mode);

  for (const entry of layer.entries) {
    if (entry.mtime) finish.push(['touch', '-h', '-d', timeArg(entry.mtime), '--', fullPath(dir, entry.path)]);
  }
  finish.push(['touch', '-h', '-d', timeArg(layer.root.mtime), '--', dir]);
  failOnError(runShellBatch(finish), finish);
}

function failOnError(results: { status: number; output: Buffer }[], calls: ShellArg[][]): void {
  results.forEach((r, i) => {
    if (r.status !== 0) {
      const argv = calls[i].map((a) => (typeof a === 'string' ? a : encodeName(a))).join(' ');
      throw new Error(`Layer build step failed: ${argv}: ${r.output.toString()}`);
    }
  });
}

export interface StackDirs {
  root: string;
  lowers: string[];
  upper: string;
  work: string;
  merged: string;
}

export function stackDirs(root: string, lowerCount: number): StackDirs {
  return {
    root,
    lowers: Array.from({ length: lowerCount }, (_, i) => path.join(root, `lower${i + 1}`)),
    upper: path.join(root, 'upper'),
    work: path.join(root, 'work'),
    merged: path.join(root, 'merged'),
  };
}

// Writes every layer of spec under root/{lower1..N,upper} and makes empty
// work and merged directories.
export function buildStack(root: string, spec: StackSpec): StackDirs {
  const dirs = stackDirs(root, spec.lowers.length);
  for (const d of [...dirs.lowers, dirs.upper, dirs.work, dirs.merged]) fs.mkdirSync(d, { recursive: true });
  spec.lowers.forEach((layer, i) => buildLayer(dirs.lowers[i], layer));
  buildLayer(dirs.upper, spec.upper);
  return dirs;
}

// Drops one entry and everything below it, and hard links to what it drops.
export function withoutEntry(layer: LayerSpec, p: EncodedPath): LayerSpec {
  const gone = (q: EncodedPath | undefined) => q !== undefined && (q === p || q.startsWith(`${p}/`));
  return { ...layer, entries: layer.entries.filter((e) => !gone(e.path) && !gone(e.linkTo)) };
}
