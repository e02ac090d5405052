// Copy-up (kernel fs/overlayfs/copy_up.c): before a lower object changes, a
// copy is built in WORKDIR/work, given the lower's mode, owner, xattrs and
// times, synced, and renamed into the upper. Parents go first, topmost
// missing ancestor first, so a crash never leaves a partial object visible.
import { host } from '../host/native';
import {
  newStatBuffer, ST_ATIME_NSEC, ST_ATIME_SEC, ST_GID, ST_MODE, ST_MTIME_NSEC,
  ST_MTIME_SEC, ST_NLINK, ST_RDEV, ST_SIZE, ST_UID,
} from '../host/stat';
import { errnoError, isErrno } from '../errors';
import type { Layer, Node } from './layer';
import { countParked } from './hidden';
import { tryGetxattr } from './whiteout';
import { lookupExisting } from './lookup';
import { encodeOrigin } from './origin';
import { parentOf, type Overlay } from './overlay';
import { copyXattrs } from './xattrs';

const S_IFMT = 0o170000;
const S_IFDIR = 0o040000;
const S_IFREG = 0o100000;
const S_IFLNK = 0o120000;
const CHUNK = 1 << 20;

export interface CopyUpOptions {
  // Copy no data: the caller truncates to zero right after (open O_TRUNC).
  noData?: boolean;
}

// Returns the upper node for path, copying it and its parents up first.
export function copyUp(ov: Overlay, path: string, options: CopyUpOptions = {}): Node {
  if (ov.upper === undefined) throw errnoError('EROFS', 'copyup', path);

  const node = lookupExisting(ov, path, 'copyup');
  if (ov.layers[node.layer].isUpper) return node;
  if (ov.hidden.has(path)) return copyUpHidden(ov, path, node, options);

  if (path !== '/') copyUp(ov, parentOf(path));
  copyUpOne(ov, path, node, options);
  ov.invalidate(path);
  return lookupExisting(ov, path, 'copyup');
}

function copyUpOne(ov: Overlay, path: string, node: Node, options: CopyUpOptions): void {
  const started = process.hrtime.bigint();
  const lowerPath = node.realPath;
  const upperPath = ov.upperPathOf(path);
  const upperParent = ov.upperPathOf(parentOf(path));
  const st = newStatBuffer();
  host.lstat(lowerPath, st);
  const parentSt = newStatBuffer();
  host.lstat(upperParent, parentSt);

  const temp = ov.tempPath();
  try {
    makeCopy(ov, lowerPath, temp, st, options);
    setOrigin(ov, temp, lowerPath, ov.layers[node.layer]);
    renameNoReplace(temp, upperPath);
  } catch (err) {
    discard(ov, temp);
    throw err;
  }

  markImpure(ov, upperParent);
  // The kernel's cached attributes of the object changed where a merged
  // directory now reports nlink 1, or a lower hard link was broken.
  if (node.parts !== undefined || st[ST_NLINK] > 1n) ov.invalidateIno(node.ino);
  // The rename changed the upper parent's times; the kernel restores them.
  restoreTimes(upperParent, parentSt);
  ov.files.reopenAfterCopyUp(path, upperPath);
  ov.log.debug(
    { op: 'copyup', path, lowerPath, upperPath, ms: Number(process.hrtime.bigint() - started) / 1e6 },
    'copied up',
  );
}

// A parked lower file (see hidden.ts) is copied into the workdir, where it
// stays until its last close.
function copyUpHidden(ov: Overlay, path: string, node: Node, options: CopyUpOptions): Node {
  const st = newStatBuffer();
  host.lstat(node.realPath, st);
  const temp = ov.tempPath();
  makeCopy(ov, node.realPath, temp, st, options);
  const upper = { ...node, layer: ov.upper!.index, realPath: temp };
  ov.hidden.set(path, upper);
  countParked(ov, temp, 1);
  ov.files.reopenAfterCopyUp(path, temp);
  return upper;
}

function makeCopy(ov: Overlay, lowerPath: string, temp: string, st: BigInt64Array, options: CopyUpOptions) {
  const mode = Number(st[ST_MODE]);
  const type = mode & S_IFMT;
  const uid = Number(st[ST_UID]);
  const gid = Number(st[ST_GID]);

  if (type === S_IFREG) {
    copyRegular(ov, lowerPath, temp, st, options);
    return;
  }

  if (type === S_IFDIR) {
    host.mkdir(temp, 0o700);
    host.lchown(temp, uid, gid);
    host.chmod(temp, mode & 0o7777);
  } else if (type === S_IFLNK) {
    host.symlink(host.readlink(lowerPath), temp);
    host.lchown(temp, uid, gid);
  } else {
    host.mknod(temp, mode, Number(st[ST_RDEV]));
    host.lchown(temp, uid, gid);
    host.chmod(temp, mode & 0o7777);
  }
  copyXattrs(ov, lowerPath, temp);
  restoreTimes(temp, st);
}

// Data first, then owner and mode (chown clears setuid bits), then xattrs
// (chown also drops security.capability), then times, then fsync.
function copyRegular(ov: Overlay, lowerPath: string, temp: string, st: BigInt64Array, options: CopyUpOptions) {
  const mode = Number(st[ST_MODE]);
  const out = host.open(temp, host.O_WRONLY | host.O_CREAT | host.O_EXCL | host.O_CLOEXEC, 0o600);
  try {
    if (!options.noData && st[ST_SIZE] > 0n) {
      const input = host.open(lowerPath, host.O_RDONLY | host.O_CLOEXEC, 0);
      try {
        copyData(input, out, Number(st[ST_SIZE]));
      } finally {
        host.close(input);
      }
    }
    host.fchown(out, Number(st[ST_UID]), Number(st[ST_GID]));
    host.fchmod(out, mode & 0o7777);
    copyXattrs(ov, lowerPath, temp);
    host.futimens(out, Number(st[ST_ATIME_SEC]), Number(st[ST_ATIME_NSEC]), Number(st[ST_MTIME_SEC]), Number(st[ST_MTIME_NSEC]));
    if (!ov.volatile) host.fsync(out);
  } finally {
    host.close(out);
  }
}

// Clones the data when the filesystem can share extents; otherwise copies
// each data extent with copy_file_range, so holes stay holes.
function copyData(input: number, out: number, size: number): void {
  try {
    host.ficlone(out, input);
    return;
  } catch {
    // No reflinks here (tmpfs, ext4, or another filesystem): copy instead.
  }

  let offset = 0;
  while (offset < size) {
    let dataStart: number;
    try {
      dataStart = host.lseek(input, offset, host.SEEK_DATA);
    } catch (err) {
      if (isErrno(err, 'ENXIO')) break; // only a hole remains
      throw err;
    }
    const dataEnd = host.lseek(input, dataStart, host.SEEK_HOLE);
    copyRange(input, out, dataStart, Math.min(dataEnd, size));
    offset = dataEnd;
  }
  host.ftruncate(out, size);
}

function copyRange(input: number, out: number, start: number, end: number): void {
  let offset = start;
  while (offset < end) {
    const length = Math.min(CHUNK, end - offset);
    let copied: number;
    try {
      copied = host.copyFileRange(input, offset, out, offset, length);
    } catch (err) {
      if (!isErrno(err, 'EXDEV') && !isErrno(err, 'EINVAL') && !isErrno(err, 'ENOSYS') && !isErrno(err, 'EOPNOTSUPP')) throw err;
      copied = copyByReading(input, out, offset, length);
    }
    if (copied === 0) break; // the file shrank under us
    offset += copied;
  }
}

function copyByReading(input: number, out: number, offset: number, length: number): number {
  const buffer = Buffer.allocUnsafe(length);
  const read = host.pread(input, buffer, offset);
  if (read > 0) host.pwrite(out, buffer.subarray(0, read), offset);
  return read;
}

// The origin record keeps inode numbers stable across copy-up; an upper
// without trusted xattrs only loses that.
function setOrigin(ov: Overlay, temp: string, lowerPath: string, layer: Layer): void {
  const record = encodeOrigin(lowerPath, layer);
  if (record === undefined) return;
  setOptionalXattr(ov, temp, ov.xattrPrefix + 'origin', record);
}

// As the kernel does, a directory that contains copied-up entries is marked
// impure, which tells readers of the upper to look up their d_ino.
function markImpure(ov: Overlay, upperDir: string): void {
  if (tryGetxattr(upperDir, ov.xattrPrefix + 'impure') !== undefined) return;
  setOptionalXattr(ov, upperDir, ov.xattrPrefix + 'impure', Buffer.from('y'));
}

function setOptionalXattr(ov: Overlay, path: string, name: string, value: Buffer): void {
  try {
    host.lsetxattr(path, name, value, 0);
  } catch (err) {
    if (!isErrno(err, 'EOPNOTSUPP') && !isErrno(err, 'EPERM')) throw err;
    ov.log.debug({ err, path, xattr: name }, 'cannot set overlay xattr');
  }
}

function renameNoReplace(from: string, to: string): void {
  try {
    host.rename(from, to, host.RENAME_NOREPLACE);
  } catch (err) {
    if (!isErrno(err, 'EINVAL')) throw err;
    host.rename(from, to, 0); // the filesystem has no renameat2 flags
  }
}

export function restoreTimes(realPath: string, st: BigInt64Array): void {
  host.utimens(realPath, Number(st[ST_ATIME_SEC]), Number(st[ST_ATIME_NSEC]), Number(st[ST_MTIME_SEC]), Number(st[ST_MTIME_NSEC]));
}

function discard(ov: Overlay, temp: string): void {
  try {
    const st = newStatBuffer();
    host.lstat(temp, st);
    if ((Number(st[ST_MODE]) & S_IFMT) === S_IFDIR) host.rmdir(temp);
    else host.unlink(temp);
  } catch (err) {
    if (!isErrno(err, 'ENOENT')) ov.log.error({ err, workPath: temp }, 'cannot remove failed copy-up from workdir');
  }
}
