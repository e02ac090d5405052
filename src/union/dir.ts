// Namespace operations (kernel fs/overlayfs/dir.c): everything lands in the
// upper. Removing a name a lower layer still has leaves a whiteout; creating
// over a whiteout is staged in the workdir and renamed into place, and a
// directory made there is opaque.
import { host } from '../host/native';
import { isDir, isWhiteoutStat, newStatBuffer, ST_DEV, ST_GID, ST_INO, ST_MODE, ST_NLINK } from '../host/stat';
import { errnoError } from '../errors';
import { copyUp } from './copy-up';
import type { Node } from './layer';
import { hasLower, isMerged, lookup, lookupExisting, lowerHasName } from './lookup';
import { parentOf, type Overlay } from './overlay';
import { hide, isHiddenName, undoHideForRename, unlinkHidden } from './hidden';
import { noteChange } from './inode';
import { readdirMerged } from './readdir';
import {
  hasEntries, onlyWhiteouts, removeTree, setOpaque, tryGetxattr, tryLstat, whiteoutAtFreeName, whiteoutOver,
} from './whiteout';

const S_IFMT = 0o170000;
const S_IFCHR = 0o020000;
const S_ISGID = 0o2000;

function requireUpper(ov: Overlay, syscall: string, path: string): void {
  if (ov.upper === undefined) throw errnoError('EROFS', syscall, path);
}

// The new object belongs to the caller. Its group is the parent's when the
// parent is setgid, as the upper filesystem would decide for the caller.
function ownerFor(ov: Overlay, upperParent: string): { uid: number; gid: number; setgid: boolean } {
  const st = newStatBuffer();
  host.lstat(upperParent, st);
  const setgid = (Number(st[ST_MODE]) & S_ISGID) !== 0;
  return { uid: ov.caller.uid, gid: setgid ? Number(st[ST_GID]) : ov.caller.gid, setgid };
}

// Creates an object at path in the upper with make(realPath), either in
// place or, over a whiteout, staged in the workdir and renamed over it.
// Returns the value make returned (an fd for files).
function createObject<T>(ov: Overlay, path: string, syscall: string, isDirectory: boolean, make: (realPath: string) => T, finish: (realPath: string, result: T, upperParent: string) => void): T {
  requireUpper(ov, syscall, path);
  if (lookup(ov, path) !== null) throw errnoError('EEXIST', syscall, path);
  copyUp(ov, parentOf(path));

  const upperPath = ov.upperPathOf(path);
  const upperParent = ov.upperPathOf(parentOf(path));
  const st = newStatBuffer();
  const overWhiteout = tryLstat(upperPath, st) && isWhiteoutStat(st);
  if (!overWhiteout && tryLstat(upperPath, st)) {
    // Hidden by an xattr whiteout or an opaque parent: clear what is there.
    throw errnoError('EEXIST', syscall, path);
  }

  let result: T;
  if (!overWhiteout) {
    result = make(upperPath);
    finishOrRemove(ov, upperPath, isDirectory, () => finish(upperPath, result, upperParent));
  } else {
    const temp = ov.tempPath();
    result = make(temp);
    finishOrRemove(ov, temp, isDirectory, () => {
      finish(temp, result, upperParent);
      if (isDirectory) {
        setOpaque(ov, temp);
        host.rename(temp, upperPath, host.RENAME_EXCHANGE);
        host.unlink(temp); // the whiteout, swapped out
      } else {
        host.rename(temp, upperPath, 0);
      }
    });
  }
  ov.invalidate(path);
  return result;
}

function finishOrRemove(ov: Overlay, realPath: string, isDirectory: boolean, finish: () => void) {
  try {
    finish();
  } catch (err) {
    try {
      if (isDirectory) host.rmdir(realPath);
      else host.unlink(realPath);
    } catch (cleanupErr) {
      ov.log.error({ err: cleanupErr, upperPath: realPath }, 'cannot remove half-created object');
    }
    throw err;
  }
}

// Gives the object to the caller; chown clears setuid and setgid bits, so
// they are set again afterwards. A directory made in the workdir does not
// inherit the upper parent's setgid bit by itself, so it gets it here.
function chownToCaller(ov: Overlay, realPath: string, mode: number, upperParent: string, fd?: number, isDirectory = false): void {
  const owner = ownerFor(ov, upperParent);
  if (fd !== undefined) host.fchown(fd, owner.uid, owner.gid);
  else host.lchown(realPath, owner.uid, owner.gid);

  if (isDirectory && owner.setgid) mode |= S_ISGID;
  if ((mode & 0o6000) === 0) return;
  const st = newStatBuffer();
  host.lstat(realPath, st);
  const keep = Number(st[ST_MODE]) & 0o7777;
  if (fd !== undefined) host.fchmod(fd, keep | (mode & 0o6000));
  else host.chmod(realPath, keep | (mode & 0o6000));
}

export function createFile(ov: Overlay, path: string, mode: number, flags: number): number {
  const openFlags = (flags & ~(host.O_CREAT | host.O_EXCL)) | host.O_CREAT | host.O_EXCL | host.O_CLOEXEC;
  const fd = createObject(ov, path, 'open', false, (p) => host.open(p, openFlags, mode & 0o7777), (p, fd, parent) => chownToCaller(ov, p, mode, parent, fd));
  return fd;
}

export function mkdir(ov: Overlay, path: string, mode: number): void {
  createObject(ov, path, 'mkdir', true, (p) => host.mkdir(p, mode & 0o7777), (p, _, parent) => chownToCaller(ov, p, mode & 0o7777, parent, undefined, true));
}

export function mknod(ov: Overlay, path: string, mode: number, rdev: number): void {
  // The kernel keeps 0/0 character devices for its whiteouts.
  if ((mode & S_IFMT) === S_IFCHR && rdev === 0) throw errnoError('EPERM', 'mknod', path);
  createObject(ov, path, 'mknod', false, (p) => host.mknod(p, mode, rdev), (p, _, parent) => chownToCaller(ov, p, mode, parent));
}

export function symlink(ov: Overlay, target: string, path: string): void {
  createObject(ov, path, 'symlink', false, (p) => host.symlink(target, p), (p, _, parent) => chownToCaller(ov, p, 0, parent));
}

export function link(ov: Overlay, fromPath: string, toPath: string): void {
  requireUpper(ov, 'link', toPath);
  const source = copyUp(ov, fromPath);
  createObject(ov, toPath, 'link', false, (p) => host.link(source.realPath, p), () => undefined);
  ov.files.markShared(source.realPath);
  ov.invalidate(fromPath);
  noteChange(ov, source);
}

export function unlink(ov: Overlay, path: string): void {
  requireUpper(ov, 'unlink', path);
  if (ov.hidden.has(path)) {
    unlinkHidden(ov, path);
    return;
  }
  const node = lookupExisting(ov, path, 'unlink');
  // The link count before the unlink shows whether other names remain.
  const inUpper = ov.layers[node.layer].isUpper;
  const st = newStatBuffer();
  if (inUpper) host.lstat(node.realPath, st);
  removeEntry(ov, path, node, false);
  ov.files.forget(path);
  if (inUpper) ov.sharedChanged(node.ino, st[ST_NLINK]);
}

export function rmdir(ov: Overlay, path: string): void {
  requireUpper(ov, 'rmdir', path);
  const node = lookupExisting(ov, path, 'rmdir');
  if (node.parts === undefined) throw errnoError('ENOTDIR', 'rmdir', path);
  if (readdirMerged(ov, path, node).names.length > 0) throw errnoError('ENOTEMPTY', 'rmdir', path);
  removeEntry(ov, path, node, true);
  ov.invalidateTree(path);
}

function removeEntry(ov: Overlay, path: string, node: Node, isDirectory: boolean): void {
  const inUpper = ov.layers[node.layer].isUpper;
  const needWhiteout = !inUpper || hasLower(ov, node) || lowerHasName(ov, path);

  if (!inUpper) {
    copyUp(ov, parentOf(path));
    whiteoutAtFreeName(ov, ov.upperPathOf(path));
  } else if (needWhiteout) {
    whiteoutOver(ov, node.realPath, isDirectory);
  } else if (!isDirectory) {
    host.unlink(node.realPath);
  } else if (!hasEntries(node.realPath) || !cleansWhiteouts(ov, path, node)) {
    host.rmdir(node.realPath);
  } else {
    // Only whiteouts are left inside: move the directory out of sight first,
    // so a crash cannot expose what they hide.
    const temp = ov.tempPath();
    host.rename(node.realPath, temp, 0);
    removeTree(ov, temp);
  }
  ov.invalidate(path);
}

// rename(2) without flags; libfuse 2.9 never passes renameat2 flags.
export function rename(ov: Overlay, fromPath: string, toPath: string): void {
  requireUpper(ov, 'rename', fromPath);
  if (isHiddenName(toPath) && !ov.hidden.has(fromPath)) {
    hide(ov, fromPath, toPath, (p) => copyUp(ov, p));
    return;
  }
  const source = lookupExisting(ov, fromPath, 'rename');
  if (source.parts === undefined && ov.layers[source.layer].isUpper &&
    undoHideForRename(ov, fromPath, toPath, source.realPath)) return;
  ov.lastHide = undefined;
  const target = lookup(ov, toPath);
  const sourceIsDir = source.parts !== undefined;

  // Without redirect_dir a directory with lower parts cannot move.
  if (sourceIsDir && hasLower(ov, source)) throw errnoError('EXDEV', 'rename', fromPath);
  if (fromPath === toPath || sameRealInode(ov, source, target)) return;
  if (target !== null && target.parts !== undefined) {
    if (!sourceIsDir) throw errnoError('EISDIR', 'rename', toPath);
    // A pure upper target is left to the upper filesystem's own ENOTEMPTY,
    // after the opaque mark below, as in the kernel.
    if (hasLower(ov, target) && readdirMerged(ov, toPath, target).names.length > 0) {
      throw errnoError('ENOTEMPTY', 'rename', toPath);
    }
  } else if (target !== null && sourceIsDir) {
    throw errnoError('ENOTDIR', 'rename', toPath);
  }

  const targetSt = newStatBuffer();
  const replacedShared = target !== null && target.parts === undefined && ov.layers[target.layer].isUpper &&
    host.tryLstat(target.realPath, targetSt) === 0 && targetSt[ST_NLINK] > 1n;
  const sourceWhiteout = !ov.layers[source.layer].isUpper || lowerHasName(ov, fromPath);
  const upperSource = copyUp(ov, fromPath).realPath;
  const targetParent = copyUp(ov, parentOf(toPath));
  const upperTarget = ov.upperPathOf(toPath);

  if (sourceIsDir && isMerged(targetParent) && !isOpaque(ov, upperSource)) setOpaque(ov, upperSource);
  if (target !== null && target.parts !== undefined) clearTargetDir(ov, toPath, target);

  const st = newStatBuffer();
  if (sourceIsDir && tryLstat(upperTarget, st) && isWhiteoutStat(st)) {
    // rename cannot put a directory over a whiteout: swap the two instead,
    // which leaves the whiteout at the source, where it may be needed.
    host.rename(upperSource, upperTarget, host.RENAME_EXCHANGE);
    if (!sourceWhiteout) host.unlink(upperSource);
  } else if (sourceWhiteout && ov.renameWhiteout && !sourceIsDir) {
    host.rename(upperSource, upperTarget, host.RENAME_WHITEOUT);
  } else {
    host.rename(upperSource, upperTarget, 0);
    if (sourceWhiteout) whiteoutAtFreeName(ov, upperSource);
  }

  ov.invalidateTree(fromPath);
  ov.invalidateTree(toPath);
  ov.files.forget(toPath);
  if (sourceIsDir) {
    ov.moveHiddenTree(fromPath, toPath);
    ov.files.renameTree(fromPath, toPath);
  }
  if (replacedShared) ov.invalidateIno(target!.ino);
}

// rename(2) does nothing when both names are links to one inode. Only upper
// hard links are one overlay inode: the kernel gives each name of a lower
// hard link its own, so renaming one onto the other copies up and whites out.
function sameRealInode(ov: Overlay, source: Node, target: Node | null): boolean {
  if (target === null || source.layer !== target.layer || !ov.layers[source.layer].isUpper) return false;
  const a = newStatBuffer();
  const b = newStatBuffer();
  host.lstat(source.realPath, a);
  host.lstat(target.realPath, b);
  return a[ST_INO] === b[ST_INO] && a[ST_DEV] === b[ST_DEV];
}

// Before a directory replaces an empty merged directory, the upper copy of
// the target, holding only whiteouts, is swapped for an empty opaque one.
// A target with real entries is left for rename(2) to fail with ENOTEMPTY.
function clearTargetDir(ov: Overlay, path: string, target: Node): void {
  if (!ov.layers[target.layer].isUpper || !cleansWhiteouts(ov, path, target)) return;
  const st = newStatBuffer();
  host.lstat(target.realPath, st);
  if (!isDir(st) || !hasEntries(target.realPath) || !onlyWhiteouts(target.realPath)) return;

  const temp = ov.tempPath();
  host.mkdir(temp, Number(st[ST_MODE]) & 0o7777);
  setOpaque(ov, temp);
  host.rename(temp, target.realPath, host.RENAME_EXCHANGE);
  removeTree(ov, temp);
}

// Whether the kernel would clear whiteouts out of this upper directory
// before removing or replacing it: only when a lower layer has the name, or
// the directory is merged or was copied up (it has an origin). From any
// other directory they are real entries, and rmdir fails with ENOTEMPTY.
function cleansWhiteouts(ov: Overlay, path: string, node: Node): boolean {
  return hasLower(ov, node) || lowerHasName(ov, path) || tryGetxattr(node.realPath, ov.xattrPrefix + 'origin') !== undefined;
}

function isOpaque(ov: Overlay, realDir: string): boolean {
  try {
    return host.lgetxattr(realDir, ov.xattrPrefix + 'opaque').toString('latin1') === 'y';
  } catch {
    return false;
  }
}
