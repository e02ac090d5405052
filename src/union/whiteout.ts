// Whiteouts and opaque directories in the kernel's on-disk format: a
// whiteout is a 0/0 character device, an opaque directory carries the xattr
// <prefix>opaque = "y". Both are made in the workdir and renamed into place.
import os from 'node:os';
import { host } from '../host/native';
import { isWhiteoutStat, newStatBuffer, ST_SIZE, isReg } from '../host/stat';
import { isErrno } from '../errors';
import type { Overlay } from './overlay';

const S_IFCHR = 0o020000;
const { ENOENT, ENOTDIR, ENODATA, EOPNOTSUPP } = os.constants.errno;
const opaqueValue = Buffer.from('y');

// Marker names that OCI image layers use where overlayfs uses whiteouts.
export const WH_PREFIX = '.wh.';
export const WH_OPAQUE = '.wh..wh..opq';

// Fills st and returns true, or returns false when path does not exist.
export function tryLstat(path: string, st: BigInt64Array): boolean {
  const result = host.tryLstat(path, st);
  if (result === 0) return true;
  if (result === -ENOENT || result === -ENOTDIR) return false;
  host.lstat(path, st); // throws the error in full
  return true;
}

// Returns the xattr value, or undefined when it is missing or unsupported.
export function tryGetxattr(path: string, name: string): Buffer | undefined {
  const result = host.tryLgetxattr(path, name);
  if (typeof result !== 'number') return result;
  if (result === -ENODATA || result === -EOPNOTSUPP) return undefined;
  return host.lgetxattr(path, name); // throws the error in full
}

// Opaque state of a real directory: 'y' hides all lower layers, 'x' marks a
// directory holding xattr whiteouts (kernel 6.7 and later). As in the
// kernel, only the mount's prefix counts: user.overlay.opaque only with
// userxattr.
export function opaqueState(ov: Overlay, realDir: string): 'y' | 'x' | undefined {
  const value = tryGetxattr(realDir, ov.xattrPrefix + 'opaque');
  if (value === undefined) return undefined;
  const text = value.toString('latin1');
  return text === 'y' || text === 'x' ? text : undefined;
}

// A zero-size regular file with <prefix>whiteout is a whiteout inside a
// directory whose opaque xattr is 'x'.
export function isXattrWhiteout(ov: Overlay, realPath: string, st: BigInt64Array): boolean {
  if (!isReg(st) || st[ST_SIZE] !== 0n) return false;
  return tryGetxattr(realPath, ov.xattrPrefix + 'whiteout') !== undefined;
}

export function setOpaque(ov: Overlay, realDir: string): void {
  host.lsetxattr(realDir, ov.xattrPrefix + 'opaque', opaqueValue, 0);
}

export function makeWhiteoutAt(path: string): void {
  host.mknod(path, S_IFCHR | 0o000, 0);
}

// Puts a whiteout at upperPath, where the upper has no entry. mknod makes it
// in one step, so a crash leaves either nothing or the whiteout, and no
// workdir staging is needed. An entry found there is replaced as below.
export function whiteoutAtFreeName(ov: Overlay, upperPath: string): void {
  try {
    makeWhiteoutAt(upperPath);
  } catch (err) {
    if (!isErrno(err, 'EEXIST')) throw err;
    whiteoutOver(ov, upperPath, false);
  }
}

// Puts a whiteout at upperPath, replacing whatever is there atomically. A
// directory there is swapped out with RENAME_EXCHANGE and then removed from
// the workdir, because rename cannot put a non-directory over a directory.
export function whiteoutOver(ov: Overlay, upperPath: string, isDirThere: boolean): void {
  const temp = ov.tempPath();
  makeWhiteoutAt(temp);
  if (!isDirThere) {
    host.rename(temp, upperPath, 0);
    return;
  }
  host.rename(temp, upperPath, host.RENAME_EXCHANGE);
  removeTree(ov, temp);
}

// Removes a tree that was moved into the workdir. A failure leaves only
// workdir litter, which the next mount clears, so it is logged, not raised.
export function removeTree(ov: Overlay, realPath: string): void {
  try {
    removeTreeStrict(realPath);
  } catch (err) {
    ov.log.error({ err, workPath: realPath }, 'cannot remove staged tree from workdir');
  }
}

function removeTreeStrict(realPath: string): void {
  const st = newStatBuffer();
  host.lstat(realPath, st);
  if ((Number(st[0]) & 0o170000) !== 0o040000) {
    host.unlink(realPath);
    return;
  }
  removeDirTree(realPath);
}

// readdir reports each entry's type, which separates directories from the
// rest, so only an entry of unknown type costs an lstat.
function removeDirTree(realDir: string): void {
  const { names, types } = host.readdir(realDir);
  for (let i = 0; i < names.length; i++) {
    const child = realDir + '/' + names[i];
    if (types[i] === host.DT_DIR) removeDirTree(child);
    else if (types[i] === host.DT_UNKNOWN) removeTreeStrict(child);
    else host.unlink(child);
  }
  host.rmdir(realDir);
}

// True when the real directory contains anything at all, whiteouts included.
export function hasEntries(realDir: string): boolean {
  return host.readdir(realDir).names.length > 0;
}

// True when every entry of the real directory is a whiteout.
export function onlyWhiteouts(realDir: string): boolean {
  const st = newStatBuffer();
  for (const name of host.readdir(realDir).names) {
    host.lstat(realDir + '/' + name, st);
    if (!isWhiteoutStat(st)) return false;
  }
  return true;
}

