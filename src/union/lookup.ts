// Lookup (kernel fs/overlayfs/namei.c): a merged path resolves to the
// topmost layer holding the name. A non-directory hides everything below
// it, a whiteout hides the name, and directories merge down to the first
// opaque one. Results are cached until the overlay itself changes the path.
import { host } from '../host/native';
import { isDir, isWhiteoutStat, newStatBuffer, ST_INO, ST_MODE } from '../host/stat';
import { errnoError } from '../errors';
import type { DirPart, Layer, Node } from './layer';
import { childOf, nameOf, parentOf, realPathIn, type Overlay } from './overlay';
import { withFsIndex } from './inode-number';
import { decodeOrigin } from './origin';
import { isXattrWhiteout, opaqueState, tryGetxattr, tryLstat, WH_OPAQUE, WH_PREFIX } from './whiteout';

const S_IFMT = 0o170000;
const S_IFDIR = 0o040000;

const scratch = newStatBuffer();

// lstat of the object the last resolveChild returned, and its path. A
// getattr right after the lookup that resolved the path (libfuse's lookup
// is a getattr) takes it instead of calling lstat again.
const resolvedStat = newStatBuffer();
let resolvedPath: string | undefined;

export function lookup(ov: Overlay, path: string): Node | null {
  resolvedPath = undefined;
  const hidden = ov.hidden.get(path);
  if (hidden !== undefined) return hidden;
  const hit = ov.cached(path);
  if (hit !== undefined) return hit;

  const node = path === '/' ? resolveRoot(ov) : resolveChild(ov, path);
  ov.remember(path, node);
  return node;
}

// Copies into st the lstat that the latest lookup took while resolving path
// and returns true. Returns false when that lookup was served from the cache.
export function takeResolvedStat(path: string, st: BigInt64Array): boolean {
  if (resolvedPath !== path) return false;
  resolvedPath = undefined;
  st.set(resolvedStat);
  return true;
}

// Like lookup, but a missing name is ENOENT.
export function lookupExisting(ov: Overlay, path: string, syscall: string): Node {
  const node = lookup(ov, path);
  if (node === null) throw errnoError('ENOENT', syscall, path);
  return node;
}

function resolveRoot(ov: Overlay): Node {
  const parts: DirPart[] = [];
  for (const layer of ov.layers) {
    const realPath = realPathIn(layer, '/');
    parts.push({ layer: layer.index, realPath, xwhiteouts: false });
    if (layer.index < ov.layers.length - 1 && isOpaqueDir(ov, layer, realPath, parts)) break;
  }
  host.lstat(parts[0].realPath, scratch);
  return {
    layer: 0,
    realPath: parts[0].realPath,
    type: S_IFDIR,
    parts,
    ino: inodeNumber(ov, ov.layers[0], parts[0].realPath, scratch),
  };
}

// Records on the part whether it contains xattr whiteouts and returns
// whether the directory hides the layers below it.
function isOpaqueDir(ov: Overlay, layer: Layer, realDir: string, parts: DirPart[]): boolean {
  const state = opaqueState(ov, realDir);
  if (state === 'x') parts[parts.length - 1].xwhiteouts = true;
  if (state === 'y') return true;
  if (ov.whiteoutMarkers && !layer.isUpper) {
    return tryLstat(realDir + '/' + WH_OPAQUE, scratch);
  }
  return false;
}

function resolveChild(ov: Overlay, path: string): Node | null {
  const parent = lookup(ov, parentOf(path));
  if (parent === null) return null;
  if (parent.parts === undefined) throw errnoError('ENOTDIR', 'lookup', path);

  const name = nameOf(path);
  let found: Node | null = null;
  for (const part of parent.parts) {
    const layer = ov.layers[part.layer];
    const realPath = part.realPath === '/' ? '/' + name : part.realPath + '/' + name;
    if (!tryLstat(realPath, scratch)) {
      if (isMarkedWhiteout(ov, layer, part.realPath, name)) break;
      continue;
    }
    if (isWhiteoutStat(scratch)) break;
    if (part.xwhiteouts && isXattrWhiteout(ov, realPath, scratch)) break;
    if (isHiddenMarker(ov, layer, name)) continue;

    if (!isDir(scratch)) {
      if (found !== null) break; // a non-directory below a directory ends the merge
      resolvedStat.set(scratch);
      resolvedPath = path;
      return {
        layer: layer.index,
        realPath,
        type: Number(scratch[ST_MODE]) & S_IFMT,
        ino: inodeNumber(ov, layer, realPath, scratch),
      };
    }

    if (found === null) {
      resolvedStat.set(scratch);
      resolvedPath = path;
      found = {
        layer: layer.index,
        realPath,
        type: S_IFDIR,
        parts: [],
        ino: inodeNumber(ov, layer, realPath, scratch),
      };
    }
    found.parts!.push({ layer: layer.index, realPath, xwhiteouts: false });
    const isLast = part === parent.parts[parent.parts.length - 1];
    if (!isLast && isOpaqueDir(ov, layer, realPath, found.parts!)) break;
  }
  return found;
}

// In a lower layer, an OCI `.wh.NAME` file whites out NAME below it.
function isMarkedWhiteout(ov: Overlay, layer: Layer, realDir: string, name: string): boolean {
  // A marker for a name longer than 251 bytes cannot exist.
  if (!ov.whiteoutMarkers || layer.isUpper || name.length + WH_PREFIX.length > 255) return false;
  const marker = (realDir === '/' ? '/' : realDir + '/') + WH_PREFIX + name;
  return tryLstat(marker, newStatBuffer());
}

// With markers honoured, the markers themselves never show in the merged view.
function isHiddenMarker(ov: Overlay, layer: Layer, name: string): boolean {
  return ov.whiteoutMarkers && !layer.isUpper && name.startsWith(WH_PREFIX);
}

// The inode number reported for a real object: the origin's number for a
// copied-up object, so it stays stable across copy-up, with the layer's
// filesystem index in the top bits so numbers stay unique across filesystems.
function inodeNumber(ov: Overlay, layer: Layer, realPath: string, st: BigInt64Array): bigint {
  if (layer.isUpper && ov.layers.length > 1) {
    const origin = readOrigin(ov, realPath);
    if (origin !== undefined) return origin;
  }
  return withFsIndex(BigInt.asUintN(64, st[ST_INO]), layer.fsIndex);
}

function readOrigin(ov: Overlay, realPath: string): bigint | undefined {
  const record = tryGetxattr(realPath, ov.xattrPrefix + 'origin');
  return record === undefined ? undefined : decodeOrigin(record, ov.layers);
}

// Returns whether a layer below the upper still has the name, so that
// removing the upper entry must leave a whiteout.
export function lowerHasName(ov: Overlay, path: string): boolean {
  const parent = lookup(ov, parentOf(path));
  if (parent === null || parent.parts === undefined) return false;

  const name = nameOf(path);
  for (const part of parent.parts) {
    const layer = ov.layers[part.layer];
    if (layer.isUpper) continue;
    const realPath = childOf(part.realPath, name);
    if (tryLstat(realPath, scratch)) return !isWhiteoutStat(scratch);
    if (isMarkedWhiteout(ov, layer, part.realPath, name)) return false;
  }
  return false;
}

// True when a directory node merges more than one real directory; the kernel
// then reports st_nlink 1.
export function isMerged(node: Node): boolean {
  return node.parts !== undefined && node.parts.length > 1;
}

// True when any lower layer contributes to the node.
export function hasLower(ov: Overlay, node: Node): boolean {
  if (!ov.layers[node.layer].isUpper) return true;
  return node.parts !== undefined && node.parts.length > 1;
}
