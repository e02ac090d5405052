// Open files whose name is gone. When a file that is still open is unlinked
// or renamed over, libfuse 2.9 renames it to `.fuse_hiddenXXXXXXXXYYYYYYYY`
// in the same directory and unlinks that name on the last close. Here that
// rename removes the merged name as unlink would (whiteout included), and
// parks the file: an upper file moves into the workdir, where the next
// mount clears it after a crash; a lower file stays where it is. Requests
// for the hidden name then reach the parked file.
import { host } from '../host/native';
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
  } else {
    copyUpParent(parentOf(fromPath));
    putWhiteout(ov, ov.upperPathOf(fromPath));
  }

  ov.hidden.set(hiddenPath, parked);
  ov.files.rename(fromPath, hiddenPath);
  ov.invalidate(fromPath);
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
  if (ov.layers[node.layer].isUpper) host.unlink(node.realPath);
}

// A parked upper file reports one link fewer than it has, because one link
// is its name in the workdir. A parked lower file keeps the lower's count.
export function hiddenNlink(ov: Overlay, node: Node, nlink: bigint): bigint {
  if (!ov.layers[node.layer].isUpper) return nlink;
  return nlink > 0n ? nlink - 1n : 0n;
}
