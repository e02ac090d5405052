// Open files whose name is gone. When a file that is still open is unlinked
// or renamed over, libfuse 2.9 renames it to `.fuse_hiddenXXXXXXXXYYYYYYYY`
// in the same directory and unlinks that name on the last close. Here that
// rename removes the merged name as unlink would (whiteout included), and
// parks the file: an upper file moves into the workdir, where the next
// mount clears it after a crash; a lower file stays where it is. Requests
// for the hidden name then reach the parked file.
import { host } from '../host/native';
import { newStatBuffer, ST_INO, ST_NLINK } from '../host/stat';
import { errnoError } from '../errors';
import type { Node } from './layer';
import { hasLower, lookupExisting, lowerHasName } from './lookup';
import { nameOf, parentOf, type Overlay } from './overlay';
import { makeWhiteoutAt } from './whiteout';

const HIDDEN_PREFIX = '.fuse_hidden';

export function isHiddenName(path: string): boolean {
  return nameOf(path).startsWith(HIDDEN_PREFIX);
}

// Moves the file at fromPath out of the merged view under hiddenPath.
export function hide(ov: Overlay, fromPath: string, hiddenPath: string, copyUpParent: (path: string) => void): void {
  const node = lookupExisting(ov, fromPath, 'rename');
  if (node.parts !== undefined) throw errnoError('EISDIR', 'rename', fromPath);

  const inUpper = ov.layers[node.layer].isUpper;
  const needWhiteout = !inUpper || hasLower(ov, node) || lowerHasName(ov, fromPath);
  let parked: Node = node;

  if (inUpper) {
    const temp = ov.tempPath();
    if (needWhiteout && ov.renameWhiteout) {
      host.rename(node.realPath, temp, host.RENAME_WHITEOUT);
    } else {
      host.rename(node.realPath, temp, 0);
      if (needWhiteout) putWhiteout(ov, node.realPath);
    }
    parked = { ...node, realPath: temp };
    // The file's other names, if any, now report one link fewer.
    ov.sharedChanged(node.ino, countParked(ov, temp, 1));
  } else {
    copyUpParent(parentOf(fromPath));
    putWhiteout(ov, ov.upperPathOf(fromPath));
  }

  ov.hidden.set(hiddenPath, parked);
  ov.files.rename(fromPath, hiddenPath);
  ov.invalidate(fromPath);
  if (inUpper) ov.lastHide = { original: fromPath, hidden: hiddenPath, at: process.hrtime.bigint() };
}

// libfuse hides an open rename target before the rename itself. When the
// source is another name of the same upper file, rename(2) does nothing, so
// this puts the target back and keeps the hidden name as an alias of it.
// Returns whether it did.
export function undoHideForRename(ov: Overlay, fromPath: string, toPath: string, sourceRealPath: string): boolean {
  const last = ov.lastHide;
  ov.lastHide = undefined;
  if (last === undefined || last.original !== toPath || process.hrtime.bigint() - last.at > 1_000_000_000n) return false;
  const parked = ov.hidden.get(last.hidden);
  if (parked === undefined || !ov.layers[parked.layer].isUpper) return false;

  const source = newStatBuffer();
  const target = newStatBuffer();
  if (host.tryLstat(sourceRealPath, source) !== 0 || host.tryLstat(parked.realPath, target) !== 0) return false;
  if (source[ST_INO] !== target[ST_INO]) return false;

  const upperPath = ov.upperPathOf(toPath);
  countParked(ov, parked.realPath, -1);
  host.rename(parked.realPath, upperPath, 0);
  ov.hidden.set(last.hidden, { ...parked, realPath: upperPath });
  ov.hiddenAliases.add(last.hidden);
  ov.invalidate(toPath);
  ov.invalidate(fromPath);
  ov.sharedChanged(parked.ino, target[ST_NLINK]);
  return true;
}

function putWhiteout(ov: Overlay, upperPath: string): void {
  const temp = ov.tempPath();
  makeWhiteoutAt(temp);
  host.rename(temp, upperPath, 0);
}

// The last close: a parked upper file is deleted from the workdir.
export function unlinkHidden(ov: Overlay, hiddenPath: string): void {
  const node = ov.hidden.get(hiddenPath);
  if (node === undefined) return;
  ov.hidden.delete(hiddenPath);
  // An alias names a file that is still in the merged view.
  if (ov.hiddenAliases.delete(hiddenPath)) return;
  if (!ov.layers[node.layer].isUpper) return;
  countParked(ov, node.realPath, -1);
  host.unlink(node.realPath);
}

// Subtracts the workdir names of a parked upper file from its link count, so
// every name reports what the kernel would. A parked lower file keeps
// the lower's count.
export function parkedNlink(ov: Overlay, st: BigInt64Array): void {
  if (ov.parkedNames.size === 0) return;
  const extra = ov.parkedNames.get(st[ST_INO]);
  if (extra === undefined) return;
  const links = BigInt(extra);
  st[ST_NLINK] = st[ST_NLINK] > links ? st[ST_NLINK] - links : 0n;
}

// Counts the workdir name of a parked upper file, by its real inode number.
// Returns the file's link count, or 0 if it is gone.
export function countParked(ov: Overlay, realPath: string, delta: 1 | -1): bigint {
  const st = newStatBuffer();
  if (host.tryLstat(realPath, st) !== 0) return 0n;
  const count = (ov.parkedNames.get(st[ST_INO]) ?? 0) + delta;
  if (count > 0) ov.parkedNames.set(st[ST_INO], count);
  else ov.parkedNames.delete(st[ST_INO]);
  return st[ST_NLINK];
}
