// Attributes (kernel fs/overlayfs/inode.c): getattr reports the topmost
// real object with the overlay's inode number; every setattr copies up first.
import { host } from '../host/native';
import { newStatBuffer, newStatvfsBuffer, ST_INO, ST_NLINK, STATVFS_NAMEMAX } from '../host/stat';
import { errnoError } from '../errors';
import { copyUp } from './copy-up';
import { parkedNlink } from './hidden';
import { isMerged, lookupExisting, takeResolvedStat } from './lookup';
import type { Node } from './layer';
import type { Overlay } from './overlay';

const S_IFMT = 0o170000;
const S_IFLNK = 0o120000;

export function getattr(ov: Overlay, path: string): BigInt64Array {
  const node = lookupExisting(ov, path, 'stat');
  const st = newStatBuffer();
  if (!takeResolvedStat(path, st)) host.lstat(node.realPath, st);
  if (isMerged(node)) st[ST_NLINK] = 1n;
  else if (ov.layers[node.layer].isUpper) parkedNlink(ov, st);
  st[ST_INO] = node.ino;
  return st;
}

function requireUpper(ov: Overlay, syscall: string, path: string): void {
  if (ov.upper === undefined) throw errnoError('EROFS', syscall, path);
}

export function chmod(ov: Overlay, path: string, mode: number): void {
  requireUpper(ov, 'chmod', path);
  const node = copyUp(ov, path);
  // Linux cannot change a symlink's mode; chmod reaches here only for lchmod.
  if ((node.type & S_IFMT) === S_IFLNK) throw errnoError('EOPNOTSUPP', 'chmod', path);
  host.chmod(node.realPath, mode & 0o7777);
  noteChange(ov, node);
}

export function chown(ov: Overlay, path: string, uid: number, gid: number): void {
  requireUpper(ov, 'chown', path);
  const node = copyUp(ov, path);
  host.lchown(node.realPath, uid, gid);
  noteChange(ov, node);
}

export function utimens(ov: Overlay, path: string, atimeSec: number, atimeNsec: number, mtimeSec: number, mtimeNsec: number): void {
  requireUpper(ov, 'utimensat', path);
  const node = copyUp(ov, path);
  host.utimens(node.realPath, atimeSec, atimeNsec, mtimeSec, mtimeNsec);
  noteChange(ov, node);
}

export function truncate(ov: Overlay, path: string, size: number): void {
  requireUpper(ov, 'truncate', path);
  const node = copyUp(ov, path, { noData: size === 0 });
  host.truncate(node.realPath, size);
  noteChange(ov, node);
}

// Tells the kernel's caches of a hard link's other names about a change.
export function noteChange(ov: Overlay, node: Node): void {
  if (node.parts !== undefined) return;
  const st = newStatBuffer();
  if (host.tryLstat(node.realPath, st) === 0) ov.sharedChanged(node.ino, st[ST_NLINK]);
}

// The upper filesystem's counts (the topmost layer's when read-only), with
// the kernel overlay's 255-byte name limit.
export function statfs(ov: Overlay): BigInt64Array {
  const st = newStatvfsBuffer();
  host.statvfs(ov.layers[0].root || '/', st);
  st[STATVFS_NAMEMAX] = 255n;
  return st;
}
