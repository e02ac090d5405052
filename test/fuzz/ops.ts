// Operations the differential runner applies to both mounts: their JSON
// records, a fast-check arbitrary that draws them, a readable description,
// and the executor that runs one on one mount and returns its result as a
// string ('ok', 'ok:key=value,...' or an errno name) so results compare.
import { createHash } from 'node:crypto';
import fs from 'node:fs';
import fc from 'fast-check';
import { contentChunk, type PathPools } from './stack';
import { runShell, errnoFromMessage } from './shell';
import { decodeName, encodeName, fullPath, type EncodedPath } from './paths';
import { typeOf } from '../helpers/overlay';

export type OpKind =
  | 'open' | 'write' | 'truncate' | 'read' | 'stat' | 'unlink' | 'rmdir' | 'mkdir' | 'rename'
  | 'link' | 'symlink' | 'mkfifo' | 'chmod' | 'chown' | 'utimes' | 'setxattr' | 'removexattr'
  | 'getxattr' | 'listxattr' | 'readlink' | 'readdir' | 'fwrite' | 'fread' | 'fstat'
  | 'ftruncate' | 'close' | 'opendir' | 'readdirNext' | 'closedir' | 'check';

export type Identity = 'root' | 'nobody';

// One step. Which fields are set depends on op. `as` is the caller, for
// operations that need no open descriptor.
export interface Op {
  op: OpKind;
  as?: Identity;
  path?: EncodedPath;
  to?: EncodedPath;
  target?: EncodedPath;
  slot?: number;
  flags?: string;
  mode?: number;
  offset?: number;
  length?: number;
  fill?: number;
  size?: number;
  uid?: number;
  gid?: number;
  time?: number;
  which?: 'both' | 'mtime' | 'atime';
  nofollow?: boolean;
  name?: string;
  value?: string;
  count?: number;
}

export const NOBODY = 65534;
const MiB = 1024 * 1024;

// Fixed times with nanoseconds for utimes, as touch -d arguments.
export const TIMES = ['@978307200.123456789', '@1234567890.000000001', '@2000000000.999999999'];

const XATTR_VALUES: Record<string, string> = { one: '1', empty: '', y: 'y', big: 'x'.repeat(2000) };

export const OPEN_FLAGS = [
  'rdonly', 'wronly', 'rdwr', 'wronly,creat', 'wronly,creat,excl', 'rdwr,creat,trunc', 'wronly,trunc',
  'wronly,append', 'rdwr,creat,append', 'rdonly,trunc', 'wronly,creat,excl,trunc', 'rdonly,directory',
  'rdonly,nofollow', 'rdwr,creat',
];

// Slots hold descriptors across steps: files in 0-2, directory streams in 0-1.
const FILE_SLOTS = [0, 1, 2];
const DIR_SLOTS = [0, 1];

export interface OpArbitraryOptions {
  pools: PathPools;
  nobodyShare: number;
}

// Draws from the non-empty pools with the given weights.
function poolArbitrary(parts: Array<[EncodedPath[], number]>): fc.Arbitrary<EncodedPath> {
  const usable = parts.filter(([paths]) => paths.length > 0);
  if (usable.length === 0) return fc.constant('missing');
  return fc.oneof(...usable.map(([paths, weight]) => ({ arbitrary: fc.constantFrom(...paths), weight })));
}

// Draws one operation. No arbitrary here uses map(), so fast-check can
// shrink a sequence it did not draw itself (a replayed prefix).
export function opArbitrary(options: OpArbitraryOptions): fc.Arbitrary<Op> {
  const { files, dirs, others, hidden, fresh } = options.pools;
  const path = poolArbitrary([[files, 4], [dirs, 3], [others, 2], [hidden, 1], [fresh, 2]]);
  const filePath = poolArbitrary([[files, 7], [others, 1], [hidden, 1], [fresh, 2], [dirs, 1]]);
  const dirPath = poolArbitrary([[dirs, 6], [files, 1], [hidden, 1], [fresh, 2]]);
  const newPath = poolArbitrary([[fresh, 5], [files, 2], [dirs, 1], [hidden, 2], [others, 1]]);
  const gonePath = poolArbitrary([[files, 5], [others, 2], [dirs, 1], [hidden, 1], [fresh, 1]]);
  const nobodyWeight = Math.round(options.nobodyShare * 100);
  const as = fc.oneof({ arbitrary: fc.constant<Identity>('root'), weight: 100 - nobodyWeight }, { arbitrary: fc.constant<Identity>('nobody'), weight: nobodyWeight });
  const slot = fc.constantFrom(0, 0, 1, 2);
  const offset = fc.constantFrom(0, 1, 100, 4095, 4096, 131071, MiB, 3 * MiB + 5);
  const length = fc.constantFrom(1, 10, 4096, 131073, 300000);
  const size = fc.constantFrom(0, 1, 50, 4096, 131073, 2 * MiB + 3);
  const fill = fc.integer({ min: 0, max: 255 });
  const fileMode = fc.constantFrom(0o644, 0o600, 0o755, 0o4755, 0o2755, 0o000, 0o777, 0o1777, 0o444);
  const xattrName = fc.constantFrom('user.a', 'user.b', 'user.big', 'trusted.t', 'trusted.overlay.opaque', 'trusted.overlay.x');
  const target = fc.constantFrom('tgt', '../up', '/abs/path', '.', ...files.slice(0, 3), ...dirs.slice(0, 3));
  const owner = fc.constantFrom(0, NOBODY, 1000, -1);
  const c = <K extends OpKind>(k: K) => fc.constant(k);
  const w = (weight: number, arbitrary: fc.Arbitrary<Op>) => ({ weight, arbitrary });

  return fc.oneof(
    w(12, fc.record({ op: c('open'), path: filePath, flags: fc.constantFrom(...OPEN_FLAGS), mode: fc.constantFrom(0o644, 0o600, 0o777, 0o4755), slot: fc.constantFrom(-1, 0, 0, 1, 2), as })),
    w(8, fc.record({ op: c('write'), path: filePath, offset, length, fill, flags: fc.constantFrom('wronly', 'wronly,append'), as })),
    w(4, fc.record({ op: c('truncate'), path: filePath, size, as })),
    w(5, fc.record({ op: c('read'), path: filePath, as })),
    w(4, fc.record({ op: c('stat'), path, as })),
    w(6, fc.record({ op: c('unlink'), path: gonePath, as })),
    w(5, fc.record({ op: c('mkdir'), path: newPath, mode: fc.constantFrom(0o755, 0o777, 0o700, 0o1777, 0o2755), as })),
    w(4, fc.record({ op: c('rmdir'), path: dirPath, as })),
    w(8, fc.record({ op: c('rename'), path, to: fc.oneof(newPath, path), as })),
    w(3, fc.record({ op: c('link'), path: filePath, to: newPath, as })),
    w(3, fc.record({ op: c('symlink'), path: newPath, target, as })),
    w(2, fc.record({ op: c('mkfifo'), path: newPath, mode: fc.constantFrom(0o644, 0o600, 0o666), as })),
    w(3, fc.record({ op: c('chmod'), path, mode: fileMode, as })),
    w(2, fc.record({ op: c('chown'), path, uid: owner, gid: owner, nofollow: fc.boolean(), as })),
    w(3, fc.record({ op: c('utimes'), path, time: fc.constantFrom(0, 1, 2), which: fc.constantFrom<'both' | 'mtime' | 'atime'>('both', 'mtime', 'atime'), nofollow: fc.boolean(), as })),
    w(3, fc.record({ op: c('setxattr'), path, name: xattrName, value: fc.constantFrom(...Object.keys(XATTR_VALUES)), nofollow: fc.boolean(), as })),
    w(2, fc.record({ op: c('removexattr'), path, name: xattrName, nofollow: fc.boolean(), as })),
    w(1, fc.record({ op: c('getxattr'), path, name: xattrName, nofollow: fc.boolean(), as })),
    w(1, fc.record({ op: c('listxattr'), path, nofollow: fc.boolean(), as })),
    w(1, fc.record({ op: c('readlink'), path, as })),
    w(4, fc.record({ op: c('readdir'), path: dirPath, as })),
    w(3, fc.record({ op: c('fwrite'), slot, offset, length, fill })),
    w(3, fc.record({ op: c('fread'), slot, offset, length })),
    w(2, fc.record({ op: c('fstat'), slot })),
    w(2, fc.record({ op: c('ftruncate'), slot, size })),
    w(2, fc.record({ op: c('close'), slot })),
    w(2, fc.record({ op: c('opendir'), path: dirPath, slot: fc.constantFrom(...DIR_SLOTS) })),
    w(2, fc.record({ op: c('readdirNext'), slot: fc.constantFrom(...DIR_SLOTS), count: fc.constantFrom(1, 2, 5) })),
    w(1, fc.record({ op: c('closedir'), slot: fc.constantFrom(...DIR_SLOTS) })),
    w(3, fc.record({ op: c('check') })),
  );
}

const q = (p: EncodedPath | undefined) => `'${p ?? ''}'`;
const octal = (m: number | undefined) => `0${(m ?? 0).toString(8)}`;

// One line per step, as a person would write it down.
export function describeOp(op: Op): string {
  const who = op.as === 'nobody' ? 'as nobody: ' : '';
  switch (op.op) {
    case 'open': return `${who}open ${q(op.path)} ${op.flags} mode=${octal(op.mode)}${op.slot !== undefined && op.slot >= 0 && op.as !== 'nobody' ? ` into fd slot ${op.slot}` : ' and close'}`;
    case 'write': return `${who}write ${op.length} bytes at ${op.offset} to ${q(op.path)} (${op.flags})`;
    case 'truncate': return `${who}truncate ${q(op.path)} to ${op.size}`;
    case 'mkdir': case 'mkfifo': case 'chmod': return `${who}${op.op} ${q(op.path)} ${octal(op.mode)}`;
    case 'rename': case 'link': return `${who}${op.op} ${q(op.path)} -> ${q(op.to)}`;
    case 'symlink': return `${who}symlink ${q(op.path)} -> target ${q(op.target)}`;
    case 'chown': return `${who}${op.nofollow ? 'lchown' : 'chown'} ${q(op.path)} ${op.uid}:${op.gid}`;
    case 'utimes': return `${who}touch ${op.nofollow ? '-h ' : ''}${op.which === 'both' ? '' : op.which === 'mtime' ? '-m ' : '-a '}-d ${TIMES[op.time ?? 0]} ${q(op.path)}`;
    case 'setxattr': return `${who}setxattr ${op.nofollow ? '-h ' : ''}${q(op.path)} ${op.name}=${op.value}`;
    case 'removexattr': case 'getxattr': return `${who}${op.op} ${op.nofollow ? '-h ' : ''}${q(op.path)} ${op.name}`;
    case 'listxattr': return `${who}listxattr ${op.nofollow ? '-h ' : ''}${q(op.path)}`;
    case 'fwrite': return `pwrite ${op.length} bytes at ${op.offset} to fd slot ${op.slot}`;
    case 'fread': return `pread ${op.length} bytes at ${op.offset} from fd slot ${op.slot}`;
    case 'fstat': case 'close': return `${op.op} fd slot ${op.slot}`;
    case 'ftruncate': return `ftruncate fd slot ${op.slot} to ${op.size}`;
    case 'opendir': return `opendir ${q(op.path)} into dir slot ${op.slot}`;
    case 'readdirNext': return `read ${op.count} entries from dir slot ${op.slot}`;
    case 'closedir': return `closedir dir slot ${op.slot}`;
    case 'check': return 'compare the merged views';
    default: return `${who}${op.op} ${q(op.path)}`;
  }
}

// Operations that change the namespace or data, for readdir stability.
export function touchedPaths(op: Op): EncodedPath[] {
  const readOnly: OpKind[] = ['read', 'stat', 'getxattr', 'listxattr', 'readlink', 'readdir', 'fread', 'fstat', 'check', 'readdirNext', 'closedir', 'opendir', 'close'];
  if (readOnly.includes(op.op)) return [];
  return [op.path, op.to].filter((p): p is EncodedPath => p !== undefined);
}

const O = fs.constants;
const FLAG_BITS: Record<string, number> = {
  rdonly: O.O_RDONLY, wronly: O.O_WRONLY, rdwr: O.O_RDWR, creat: O.O_CREAT, excl: O.O_EXCL,
  trunc: O.O_TRUNC, append: O.O_APPEND, directory: O.O_DIRECTORY, nofollow: O.O_NOFOLLOW,
};

export function openFlags(flags: string): number {
  // O_NONBLOCK keeps an open of a fifo from waiting for a peer.
  return flags.split(',').reduce((bits, f) => bits | FLAG_BITS[f], O.O_NONBLOCK);
}

export const typeName = typeOf;

// The stat fields the runner compares. Directory sizes depend on the
// history of the host directory, so they are left out.
export function statSummary(st: fs.BigIntStats): string {
  const type = typeName(st);
  const fields = [`type=${type}`, `mode=${(Number(st.mode) & 0o7777).toString(8)}`, `uid=${st.uid}`, `gid=${st.gid}`, `nlink=${st.nlink}`];
  if (type !== 'dir') fields.push(`size=${st.size}`);
  return fields.join(',');
}

function sha(data: Buffer): string {
  return createHash('sha1').update(data).digest('hex').slice(0, 12);
}

function errorCode(err: unknown): string {
  const e = err as NodeJS.ErrnoException;
  if (typeof e.code === 'string' && /^E[A-Z0-9]+$/.test(e.code)) return e.code;
  throw err;
}

interface DirSlot {
  dir: fs.Dir;
  seen: EncodedPath[];
}

// Context the runner passes for closedir: names changed since opendir,
// whose presence in the listing POSIX leaves open.
export interface OpContext {
  touchedNames?: Set<EncodedPath>;
}

// One mount's open descriptors and the code that runs steps on it.
export class Side {
  readonly fds = new Map<number, number>();
  readonly dirs = new Map<number, DirSlot>();

  constructor(readonly root: string) {}

  private full(p: EncodedPath | undefined): Buffer {
    return fullPath(this.root, p ?? '');
  }

  run(op: Op, context: OpContext = {}): string {
    try {
      return this.apply(op, context);
    } catch (err) {
      return errorCode(err);
    }
  }

  private tool(argv: Array<string | Buffer>): string {
    const r = runShell(argv);
    return r.status === 0 ? 'ok' : errnoFromMessage(r.output);
  }

  private apply(op: Op, context: OpContext): string {
    const file = this.full(op.path);
    const h = op.nofollow ? ['-h'] : [];
    switch (op.op) {
      case 'open': {
        const fd = fs.openSync(file, openFlags(op.flags ?? 'rdonly'), op.mode);
        if (op.slot === undefined || op.slot < 0 || op.as === 'nobody') {
          fs.closeSync(fd);
        } else {
          this.closeSlot(op.slot);
          this.fds.set(op.slot, fd);
        }
        return 'ok';
      }
      case 'write': {
        const fd = fs.openSync(file, openFlags(op.flags ?? 'wronly'));
        try {
          const data = contentChunk(op.fill ?? 0, op.offset ?? 0, op.length ?? 0);
          return `ok:n=${fs.writeSync(fd, data, 0, data.length, op.offset ?? 0)}`;
        } finally {
          fs.closeSync(fd);
        }
      }
      case 'truncate': {
        // Node's truncate is open(O_WRONLY) plus ftruncate, not truncate(2).
        const fd = fs.openSync(file, O.O_WRONLY | O.O_NONBLOCK);
        try {
          fs.ftruncateSync(fd, op.size ?? 0);
        } finally {
          fs.closeSync(fd);
        }
        return 'ok';
      }
      case 'read': return `ok:${readAll(file)}`;
      case 'stat': return `ok:${statSummary(fs.lstatSync(file, { bigint: true }))}`;
      case 'unlink': fs.unlinkSync(file); return 'ok';
      case 'rmdir': fs.rmdirSync(file); return 'ok';
      case 'mkdir': fs.mkdirSync(file, { mode: op.mode }); return 'ok';
      case 'rename': fs.renameSync(file, this.full(op.to)); return 'ok';
      case 'link': fs.linkSync(file, this.full(op.to)); return 'ok';
      case 'symlink': fs.symlinkSync(decodeName(op.target ?? ''), file); return 'ok';
      case 'mkfifo': return this.tool(['mkfifo', '-m', (op.mode ?? 0o644).toString(8), '--', file]);
      case 'chmod': fs.chmodSync(file, op.mode ?? 0); return 'ok';
      case 'chown':
        if (op.nofollow) fs.lchownSync(file, op.uid ?? -1, op.gid ?? -1);
        else fs.chownSync(file, op.uid ?? -1, op.gid ?? -1);
        return 'ok';
      case 'utimes': {
        const which: string[] = [];
        if (op.which === 'mtime') which.push('-m');
        if (op.which === 'atime') which.push('-a');
        // -c: never create the file, so this stays a pure utimensat.
        return this.tool(['touch', '-c', ...h, ...which, '-d', TIMES[op.time ?? 0], '--', file]);
      }
      case 'setxattr': {
        const value = Buffer.from(XATTR_VALUES[op.value ?? 'one'] ?? '');
        return this.tool(['setfattr', ...h, '-n', op.name ?? 'user.a', '-v', `0x${value.toString('hex')}`, '--', file]);
      }
      case 'removexattr': return this.tool(['setfattr', ...h, '-x', op.name ?? 'user.a', '--', file]);
      case 'getxattr': {
        const r = runShell(['getfattr', '--absolute-names', ...h, '-n', op.name ?? 'user.a', '-e', 'hex', '--', file]);
        if (r.status !== 0) return errnoFromMessage(r.output);
        return `ok:${parseXattrDump(r.output, this.root).join(';')}`;
      }
      case 'listxattr': {
        const r = runShell(['getfattr', '--absolute-names', ...h, '-d', '-m', '-', '-e', 'hex', '--', file]);
        if (r.status !== 0) return errnoFromMessage(r.output);
        return `ok:${parseXattrDump(r.output, this.root).filter((x) => !x.startsWith('security.')).join(';')}`;
      }
      case 'readlink': return `ok:target=${encodeName(fs.readlinkSync(file, { encoding: 'buffer' }))}`;
      case 'readdir': {
        const entries = fs.readdirSync(file, { encoding: 'buffer', withFileTypes: true });
        return `ok:${entries.map((d) => `${encodeName(d.name as unknown as Buffer)}:${typeName(d)}`).sort().join('|')}`;
      }
      case 'fwrite': {
        const data = contentChunk(op.fill ?? 0, op.offset ?? 0, op.length ?? 0);
        return `ok:n=${fs.writeSync(this.fd(op.slot), data, 0, data.length, op.offset ?? 0)}`;
      }
      case 'fread': {
        const buf = Buffer.alloc(op.length ?? 0);
        const n = fs.readSync(this.fd(op.slot), buf, 0, buf.length, op.offset ?? 0);
        return `ok:n=${n},sha=${sha(buf.subarray(0, n))}`;
      }
      case 'fstat': return `ok:${statSummary(fs.fstatSync(this.fd(op.slot), { bigint: true }))}`;
      case 'ftruncate': fs.ftruncateSync(this.fd(op.slot), op.size ?? 0); return 'ok';
      case 'close': {
        const fd = this.fd(op.slot);
        this.fds.delete(op.slot ?? 0);
        fs.closeSync(fd);
        return 'ok';
      }
      case 'opendir': {
        const dir = fs.opendirSync(file as unknown as string, { encoding: 'buffer' as BufferEncoding });
        this.closeDirSlot(op.slot ?? 0);
        this.dirs.set(op.slot ?? 0, { dir, seen: [] });
        return 'ok';
      }
      case 'readdirNext': {
        const slot = this.dirSlot(op.slot);
        for (let i = 0; i < (op.count ?? 1); i++) {
          const entry = slot.dir.readSync();
          if (entry === null) break;
          slot.seen.push(encodeName(entry.name as unknown as Buffer));
        }
        return 'ok';
      }
      case 'closedir': {
        const slot = this.dirSlot(op.slot);
        // Drain the stream: a name present throughout must come exactly once.
        for (let entry = slot.dir.readSync(); entry !== null; entry = slot.dir.readSync()) {
          slot.seen.push(encodeName(entry.name as unknown as Buffer));
        }
        this.closeDirSlot(op.slot ?? 0);
        return `ok:${summarizeListing(slot.seen, context.touchedNames ?? new Set())}`;
      }
      case 'check': return 'ok';
    }
  }

  private fd(slot: number | undefined): number {
    const fd = this.fds.get(slot ?? 0);
    if (fd === undefined) throw Object.assign(new Error('no descriptor in slot'), { code: 'EBADF' });
    return fd;
  }

  private dirSlot(slot: number | undefined): DirSlot {
    const d = this.dirs.get(slot ?? 0);
    if (d === undefined) throw Object.assign(new Error('no directory stream in slot'), { code: 'EBADF' });
    return d;
  }

  private closeSlot(slot: number): void {
    const fd = this.fds.get(slot);
    if (fd === undefined) return;
    this.fds.delete(slot);
    try {
      fs.closeSync(fd);
    } catch {
      // The mount went away with the descriptor, so nothing is left to release.
    }
  }

  private closeDirSlot(slot: number): void {
    const d = this.dirs.get(slot);
    if (d === undefined) return;
    this.dirs.delete(slot);
    try {
      d.dir.closeSync();
    } catch {
      // As above: the stream is gone with its mount.
    }
  }

  // The kernel inode of an open slot, for tracking which times changed.
  slotIno(slot: number | undefined): bigint | undefined {
    const fd = this.fds.get(slot ?? 0);
    if (fd === undefined) return undefined;
    try {
      return fs.fstatSync(fd, { bigint: true }).ino;
    } catch {
      return undefined;
    }
  }

  closeAll(): void {
    for (const slot of [...this.fds.keys()]) this.closeSlot(slot);
    for (const slot of [...this.dirs.keys()]) this.closeDirSlot(slot);
  }
}

function summarizeListing(seen: EncodedPath[], touched: Set<EncodedPath>): string {
  const stable = seen.filter((n) => !touched.has(n));
  const counts = new Map<string, number>();
  for (const n of stable) counts.set(n, (counts.get(n) ?? 0) + 1);
  const names = [...counts.keys()].sort();
  const dups = names.filter((n) => (counts.get(n) ?? 0) > 1);
  return `names=${names.join('|')}${dups.length > 0 ? `,dups=${dups.join('|')}` : ''}`;
}

// Reads a whole file through a non-blocking descriptor (fifos return at once).
function readAll(file: Buffer): string {
  const fd = fs.openSync(file, O.O_RDONLY | O.O_NONBLOCK);
  try {
    const hash = createHash('sha1');
    const buf = Buffer.alloc(MiB);
    let total = 0;
    for (;;) {
      const n = fs.readSync(fd, buf, 0, buf.length, null);
      if (n === 0) break;
      hash.update(buf.subarray(0, n));
      total += n;
    }
    return `n=${total},sha=${hash.digest('hex').slice(0, 12)}`;
  } finally {
    fs.closeSync(fd);
  }
}

// Turns getfattr -d -e hex output into sorted 'name=0xhex' items. getfattr
// also prints per-xattr errors that name the file, so the mount root is cut.
export function parseXattrDump(output: Buffer, root: string): string[] {
  return output
    .toString('latin1')
    .split(root)
    .join('')
    .split('\n')
    .filter((line) => line !== '' && !line.startsWith('#') && !line.startsWith('getfattr:'))
    .sort();
}
