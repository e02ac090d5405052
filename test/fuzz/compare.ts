// Whole-tree snapshots for the differential runner: the merged view through
// the mount, and an upper layer in its on-disk form, both keyed by
// byte-exact path, plus a field-by-field diff of two snapshots.
import { createHash } from 'node:crypto';
import { spawnSync } from 'node:child_process';
import fs from 'node:fs';
import { encodeName, joinPath, unquoteGetfattr, fullPath, type EncodedPath } from './paths';
import { typeName } from './ops';

export interface TreeEntry {
  path: EncodedPath;
  type: string;
  mode: string;
  uid: string;
  gid: string;
  nlink: string;
  size?: string;
  sha?: string;
  holes?: string;
  target?: EncodedPath;
  rdev?: string;
  xattrs: string;
  peers?: string;
  mtime: string;
  // Used to find peers and to track changed times, and never compared.
  ino: bigint;
}

export type Snapshot = Map<EncodedPath, TreeEntry>;

// Fields in the order a diff reports them. 'mtime' counts only for clean paths.
const FIELDS = ['type', 'mode', 'uid', 'gid', 'nlink', 'size', 'sha', 'holes', 'target', 'rdev', 'xattrs', 'peers', 'mtime'] as const;
type Field = (typeof FIELDS)[number] | 'presence';

function hashFile(file: Buffer): string {
  let fd: number;
  try {
    fd = fs.openSync(file, fs.constants.O_RDONLY | fs.constants.O_NONBLOCK);
  } catch (err) {
    return `error:${(err as NodeJS.ErrnoException).code}`;
  }
  try {
    const hash = createHash('sha1');
    const buf = Buffer.alloc(1024 * 1024);
    for (let n = fs.readSync(fd, buf, 0, buf.length, null); n > 0; n = fs.readSync(fd, buf, 0, buf.length, null)) {
      hash.update(buf.subarray(0, n));
    }
    return hash.digest('hex').slice(0, 12);
  } catch (err) {
    return `error:${(err as NodeJS.ErrnoException).code}`;
  } finally {
    fs.closeSync(fd);
  }
}

// Every xattr under root, from one `getfattr -R` run, as path -> items.
function readAllXattrs(root: string): Map<EncodedPath, string[]> {
  const r = spawnSync('getfattr', ['-R', '-P', '-h', '-d', '-m', '-', '-e', 'hex', '.'], {
    cwd: root,
    env: { ...process.env, LC_ALL: 'C' },
    maxBuffer: 256 * 1024 * 1024,
  });
  const out = new Map<EncodedPath, string[]>();
  let current: EncodedPath | undefined;
  let start = 0;
  const stdout: Buffer = r.stdout ?? Buffer.alloc(0);
  while (start < stdout.length) {
    let end = stdout.indexOf(0x0a, start);
    if (end === -1) end = stdout.length;
    const line = stdout.subarray(start, end);
    start = end + 1;
    if (line.subarray(0, 8).toString('latin1') === '# file: ') {
      const raw = unquoteGetfattr(line.subarray(8));
      const name = encodeName(raw);
      current = name === '.' ? '' : name.startsWith('./') ? name.slice(2) : name;
      out.set(current, []);
    } else if (line.length > 0 && current !== undefined) {
      out.get(current)?.push(line.toString('latin1'));
    }
  }
  return out;
}

export interface SnapshotOptions {
  // Upper layers show whiteouts and the overlay's own xattrs.
  layer?: boolean;
}

// Overlay xattrs that are optional caches: their presence may differ.
const OPTIONAL_OVERLAY_XATTRS = ['trusted.overlay.origin=', 'trusted.overlay.impure='];

export function snapshotTree(root: string, options: SnapshotOptions = {}): Snapshot {
  const xattrs = readAllXattrs(root);
  const entries: TreeEntry[] = [];
  const describe = (rel: EncodedPath, st: fs.BigIntStats): TreeEntry => {
    const file = fullPath(root, rel);
    let type = typeName(st);
    if (options.layer && type === 'chr' && st.rdev === 0n) type = 'whiteout';
    const items = (xattrs.get(rel) ?? [])
      .filter((x) => !x.startsWith('security.') && !OPTIONAL_OVERLAY_XATTRS.some((p) => x.startsWith(p)))
      // The uuid is random for each new upper, so only its presence compares.
      .map((x) => (x.startsWith('trusted.overlay.uuid=') ? 'trusted.overlay.uuid=(set)' : x));
    const entry: TreeEntry = {
      path: rel,
      type,
      mode: (Number(st.mode) & 0o7777).toString(8),
      uid: String(st.uid),
      gid: String(st.gid),
      nlink: String(st.nlink),
      xattrs: items.sort().join(';'),
      mtime: `${st.mtimeNs}`,
      ino: st.ino,
    };
    if (type === 'file') {
      entry.size = String(st.size);
      entry.sha = hashFile(file);
      // Whether a large file kept its holes. Raw block counts also include
      // an xattr block, which depends on how many xattrs the file has.
      if (options.layer && st.size >= 1024n * 1024n) entry.holes = st.blocks * 512n + 65536n < st.size ? 'yes' : 'no';
    } else if (type === 'symlink') {
      entry.size = String(st.size);
      try {
        entry.target = encodeName(fs.readlinkSync(file, { encoding: 'buffer' }));
      } catch (err) {
        entry.target = `error:${(err as NodeJS.ErrnoException).code}`;
      }
    } else if (type === 'chr' || type === 'blk' || type === 'whiteout') {
      entry.rdev = String(st.rdev);
    }
    return entry;
  };

  entries.push(describe('', fs.lstatSync(root, { bigint: true })));
  const walk = (rel: EncodedPath) => {
    let names: Buffer[];
    try {
      names = fs.readdirSync(fullPath(root, rel), { encoding: 'buffer' }).sort(Buffer.compare);
    } catch (err) {
      // A directory that cannot be listed is a difference worth reporting.
      const dir = entries.find((e) => e.path === rel);
      if (dir) dir.type = `dir(readdir-error:${(err as NodeJS.ErrnoException).code})`;
      return;
    }
    for (const name of names) {
      const child = joinPath(rel, encodeName(name));
      let st: fs.BigIntStats;
      try {
        st = fs.lstatSync(fullPath(root, child), { bigint: true });
      } catch (err) {
        // A name listed but not found is a difference worth reporting.
        entries.push({ path: child, type: `lstat-error:${(err as NodeJS.ErrnoException).code}`, mode: '', uid: '', gid: '', nlink: '', xattrs: '', mtime: '', ino: -1n });
        continue;
      }
      const entry = describe(child, st);
      entries.push(entry);
      if (entry.type === 'dir') walk(child);
    }
  };
  walk('');

  const byIno = new Map<bigint, EncodedPath[]>();
  for (const e of entries) {
    if (e.type === 'dir' || e.ino < 0n) continue;
    byIno.set(e.ino, [...(byIno.get(e.ino) ?? []), e.path]);
  }
  for (const e of entries) {
    const group = byIno.get(e.ino);
    if (e.type !== 'dir' && group && group.length > 1) e.peers = group.filter((p) => p !== e.path).sort().join('|');
  }
  return new Map(entries.map((e) => [e.path, e]));
}

export interface Diff {
  path: EncodedPath;
  field: Field;
  type: string;
  kernel: string;
  ours: string;
}

// Compares two snapshots. Times count only where timesComparable returns true.
export function diffSnapshots(kernel: Snapshot, ours: Snapshot, timesComparable: (p: EncodedPath) => boolean): Diff[] {
  const diffs: Diff[] = [];
  const paths = [...new Set([...kernel.keys(), ...ours.keys()])].sort();
  for (const p of paths) {
    const k = kernel.get(p);
    const o = ours.get(p);
    if (!k || !o) {
      diffs.push({ path: p, field: 'presence', type: (k ?? o)?.type ?? '', kernel: k ? k.type : 'absent', ours: o ? o.type : 'absent' });
      continue;
    }
    for (const field of FIELDS) {
      if (field === 'mtime' && (!timesComparable(p) || k.type === 'whiteout')) continue;
      const kv = k[field] ?? '';
      const ov = o[field] ?? '';
      if (kv !== ov) diffs.push({ path: p, field, type: k.type, kernel: kv, ours: ov });
    }
  }
  return diffs;
}

// Names left in a workdir after unmount, to compare the two workdirs.
export function listWorkdir(work: string): string[] {
  const out: string[] = [];
  const walk = (rel: EncodedPath) => {
    let names: Buffer[];
    try {
      names = fs.readdirSync(fullPath(work, rel), { encoding: 'buffer' });
    } catch {
      return;
    }
    for (const name of names.sort(Buffer.compare)) {
      const child = joinPath(rel, encodeName(name));
      out.push(child);
      if (fs.lstatSync(fullPath(work, child)).isDirectory()) walk(child);
    }
  };
  walk('');
  return out;
}
