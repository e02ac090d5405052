// State of one mounted overlay: its layers, the lookup cache, the open file
// table, and the per-mount settings the union code consults.
import type { Logger } from '../log';
import type { Layer, Node } from './layer';
import type { FileTable } from './file';

export interface OverlayOptions {
  layers: Layer[];
  workPath?: string;
  renameWhiteout: boolean;
  whiteoutMarkers: boolean;
  volatile: boolean;
  userxattr: boolean;
  log: Logger;
}

// Caller of the current request, as fuse_get_context() reports it.
export interface Caller {
  uid: number;
  gid: number;
  pid: number;
}

const CACHE_LIMIT = 200_000;

export class Overlay {
  readonly layers: Layer[];
  readonly upper: Layer | undefined;
  readonly workPath: string | undefined;
  readonly renameWhiteout: boolean;
  readonly whiteoutMarkers: boolean;
  readonly volatile: boolean;
  readonly log: Logger;
  // Drops the kernel's caches for every name of an inode number; set by the
  // FUSE layer. See sharedChanged.
  invalidateIno: (ino: bigint) => void = () => undefined;
  // The same for attributes alone, done before the current reply, so that
  // a stat right after the request gets the new values.
  invalidateAttrs: (ino: bigint) => void = () => undefined;
  // Prefix of the overlay's own xattrs: trusted.overlay. or user.overlay.
  readonly xattrPrefix: string;
  // Set per request by the FUSE layer before it calls into the overlay.
  caller: Caller = { uid: 0, gid: 0, pid: 0 };
  files!: FileTable;
  // Open files parked under libfuse's .fuse_hidden names (see hidden.ts).
  readonly hidden = new Map<string, Node>();
  // Hidden names whose file went back to its place (see undoHideForRename).
  readonly hiddenAliases = new Set<string>();
  // The last upper file parked, for the rename libfuse sends right after.
  lastHide: { original: string; hidden: string; at: bigint } | undefined;
  // Number of workdir names of each parked upper file, by real inode number.
  readonly parkedNames = new Map<bigint, number>();

  // Merged path to its resolution; null records a name found in no layer.
  private readonly cache = new Map<string, Node | null>();
  private tempCounter = 0;

  constructor(options: OverlayOptions) {
    this.layers = options.layers;
    this.upper = options.layers.find((l) => l.isUpper);
    this.workPath = options.workPath;
    this.renameWhiteout = options.renameWhiteout;
    this.whiteoutMarkers = options.whiteoutMarkers;
    this.volatile = options.volatile;
    this.log = options.log;
    this.xattrPrefix = options.userxattr ? 'user.overlay.' : 'trusted.overlay.';
  }

  cached(path: string): Node | null | undefined {
    return this.cache.get(path);
  }

  remember(path: string, node: Node | null): void {
    if (this.cache.size >= CACHE_LIMIT) this.cache.clear();
    this.cache.set(path, node);
  }

  invalidate(path: string): void {
    this.cache.delete(path);
  }

  // Drops path and everything below it, after a directory moved or vanished.
  invalidateTree(path: string): void {
    this.cache.delete(path);
    const prefix = path === '/' ? '/' : path + '/';
    for (const key of this.cache.keys()) {
      if (key.startsWith(prefix)) this.cache.delete(key);
    }
  }

  // Re-keys the parked files below a moved directory under the new path,
  // as libfuse renames their hidden names with the directory.
  moveHiddenTree(fromPath: string, toPath: string): void {
    const prefix = fromPath + '/';
    for (const [key, node] of [...this.hidden]) {
      if (!key.startsWith(prefix)) continue;
      this.hidden.delete(key);
      this.hidden.set(toPath + key.slice(fromPath.length), node);
    }
  }

  // A fresh name in WORKDIR/work for staging a copy-up or a whiteout.
  tempPath(): string {
    if (this.workPath === undefined) throw new Error('overlay has no workdir');
    this.tempCounter++;
    return `${this.workPath}/#${process.pid.toString(16)}.${this.tempCounter.toString(16)}`;
  }

  // The kernel gives each name of a hard-linked file its own inode, so a
  // change made through one name must drop what the others have cached.
  sharedChanged(ino: bigint, nlink: bigint | number): void {
    if (nlink <= 1) return;
    this.invalidateAttrs(ino);
    this.invalidateIno(ino);
  }

  upperPathOf(path: string): string {
    if (this.upper === undefined) throw new Error('overlay has no upper layer');
    return realPathIn(this.upper, path);
  }
}

export function realPathIn(layer: Layer, path: string): string {
  return path === '/' ? layer.root : layer.root + path;
}

export function parentOf(path: string): string {
  const slash = path.lastIndexOf('/');
  return slash <= 0 ? '/' : path.slice(0, slash);
}

export function nameOf(path: string): string {
  return path.slice(path.lastIndexOf('/') + 1);
}

export function childOf(dir: string, name: string): string {
  return dir === '/' ? '/' + name : dir + '/' + name;
}
