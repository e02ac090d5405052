// Open files (kernel fs/overlayfs/file.c): a handle wraps an fd on the real
// file. Opening a lower file for writing or with O_TRUNC copies it up first;
// a handle left reading a lower file is moved to the upper copy once the
// file is copied up, so it sees the writes that follow.
import { host } from '../host/native';
import { newStatBuffer, ST_DEV, ST_INO, ST_MODE, ST_NLINK } from '../host/stat';
import { parkedNlink, unlinkHidden } from './hidden';
import { errnoError } from '../errors';
import { copyUp } from './copy-up';
import { createFile } from './dir';
import { lookupExisting } from './lookup';
import type { Overlay } from './overlay';

const S_IFMT = 0o170000;
const S_IFREG = 0o100000;
const S_ISUID = 0o4000;
const S_ISGID = 0o2000;
const S_IXGRP = 0o010;

interface Handle {
  fd: number;
  path: string;
  flags: number;
  ino: bigint;
  inLower: boolean;
  // The file had other names when opened: writes must reach their caches.
  shared: boolean;
}

export class FileTable {
  private readonly handles = new Map<number, Handle>();
  // Handles on lower files, by merged path, to move after a copy-up.
  private readonly lowerHandles = new Map<string, Set<Handle>>();
  private nextId = 1;

  constructor(private readonly ov: Overlay) {}

  open(path: string, flags: number): number {
    const ov = this.ov;
    const accmode = flags & host.O_ACCMODE;
    const writes = accmode !== host.O_RDONLY || (flags & host.O_TRUNC) !== 0;
    let node = lookupExisting(ov, path, 'open');

    if (writes && !ov.layers[node.layer].isUpper && (node.type & S_IFMT) === S_IFREG) {
      if (ov.upper === undefined) throw errnoError('EROFS', 'open', path);
      node = copyUp(ov, path, { noData: (flags & host.O_TRUNC) !== 0 });
    }

    const realFlags = (flags & ~(host.O_CREAT | host.O_EXCL)) | host.O_CLOEXEC;
    const fd = host.open(node.realPath, realFlags, 0);
    const st = newStatBuffer();
    host.fstat(fd, st);
    const shared = st[ST_NLINK] > 1n;
    if ((flags & host.O_TRUNC) !== 0) this.afterTruncate(fd, st, node.ino, shared);
    const inLower = !ov.layers[node.layer].isUpper;
    return this.add({ fd, path, flags: realFlags, ino: node.ino, inLower, shared });
  }

  // The daemon truncates as root, so it does what the kernel does for an
  // unprivileged truncate itself: drop setuid, and setgid on a group-
  // executable file. Other names of a hard link must see the new size.
  private afterTruncate(fd: number, st: BigInt64Array, ino: bigint, shared: boolean): void {
    const mode = Number(st[ST_MODE]);
    const kill = S_ISUID | ((mode & S_IXGRP) !== 0 ? S_ISGID : 0);
    if (this.ov.caller.uid !== 0 && (mode & kill) !== 0) host.fchmod(fd, mode & 0o7777 & ~kill);
    if (shared) this.ov.invalidateIno(ino);
  }

  create(path: string, mode: number, flags: number): number {
    const fd = createFile(this.ov, path, mode, flags);
    const node = lookupExisting(this.ov, path, 'open');
    return this.add({ fd, path, flags, ino: node.ino, inLower: false, shared: false });
  }

  private add(handle: Handle): number {
    const id = this.nextId++;
    this.handles.set(id, handle);
    if (handle.inLower) {
      let set = this.lowerHandles.get(handle.path);
      if (set === undefined) this.lowerHandles.set(handle.path, (set = new Set()));
      set.add(handle);
    }
    return id;
  }

  get(id: number): Handle {
    const handle = this.handles.get(id);
    if (handle === undefined) throw errnoError('EBADF', 'read');
    return handle;
  }

  read(id: number, buffer: Buffer, length: number, offset: number): number {
    return host.pread(this.get(id).fd, length === buffer.length ? buffer : buffer.subarray(0, length), offset);
  }

  write(id: number, buffer: Buffer, length: number, offset: number): number {
    const handle = this.get(id);
    const written = host.pwrite(handle.fd, length === buffer.length ? buffer : buffer.subarray(0, length), offset);
    if (handle.shared) this.ov.invalidateIno(handle.ino);
    return written;
  }

  fstat(id: number): BigInt64Array {
    const handle = this.get(id);
    const st = newStatBuffer();
    host.fstat(handle.fd, st);
    if (!handle.inLower) parkedNlink(this.ov, st);
    st[ST_INO] = handle.ino;
    return st;
  }

  ftruncate(id: number, size: number): void {
    const handle = this.get(id);
    host.ftruncate(handle.fd, size);
    if (handle.shared) this.ov.invalidateIno(handle.ino);
  }

  fsync(id: number, datasync: boolean): void {
    if (this.ov.volatile) return;
    const fd = this.get(id).fd;
    if (datasync) host.fdatasync(fd);
    else host.fsync(fd);
  }

  release(id: number): void {
    const handle = this.handles.get(id);
    if (handle === undefined) return;
    this.handles.delete(id);
    if (handle.inLower) this.lowerHandles.get(handle.path)?.delete(handle);
    host.close(handle.fd);
    // libfuse unlinks a hidden name at the last close only while it still
    // has a path for it, which a removed parent directory takes away.
    if (this.ov.hidden.has(handle.path) && ![...this.handles.values()].some((h) => h.path === handle.path)) {
      unlinkHidden(this.ov, handle.path);
    }
  }

  // Moves read handles of a copied-up lower file onto the upper copy.
  reopenAfterCopyUp(path: string, upperPath: string): void {
    const set = this.lowerHandles.get(path);
    if (set === undefined) return;
    this.lowerHandles.delete(path);
    for (const handle of set) {
      const fd = host.open(upperPath, handle.flags, 0);
      host.close(handle.fd);
      handle.fd = fd;
      handle.inLower = false;
    }
  }

  // Handles follow their file to its new merged name (a .fuse_hidden one).
  rename(fromPath: string, toPath: string): void {
    for (const handle of this.handles.values()) {
      if (handle.path === fromPath) handle.path = toPath;
    }
    const set = this.lowerHandles.get(fromPath);
    if (set === undefined) return;
    this.lowerHandles.delete(fromPath);
    this.lowerHandles.set(toPath, set);
  }

  // Marks the handles on an upper file that just got another name, so that
  // their writes drop what the kernel cached for that name.
  markShared(realPath: string): void {
    const target = newStatBuffer();
    if (host.tryLstat(realPath, target) !== 0) return;
    const st = newStatBuffer();
    for (const handle of this.handles.values()) {
      if (handle.inLower || handle.shared) continue;
      host.fstat(handle.fd, st);
      if (st[ST_INO] === target[ST_INO] && st[ST_DEV] === target[ST_DEV]) handle.shared = true;
    }
  }

  // Moves the handles below a renamed directory to its new path.
  renameTree(fromPath: string, toPath: string): void {
    const prefix = fromPath + '/';
    const moved = (path: string) => (path.startsWith(prefix) ? toPath + path.slice(fromPath.length) : path);
    for (const handle of this.handles.values()) handle.path = moved(handle.path);
    for (const [key, set] of [...this.lowerHandles]) {
      if (!key.startsWith(prefix)) continue;
      this.lowerHandles.delete(key);
      this.lowerHandles.set(moved(key), set);
    }
  }

  // The name no longer refers to the file these handles have open.
  forget(path: string): void {
    this.lowerHandles.delete(path);
  }

  closeAll(): void {
    for (const id of [...this.handles.keys()]) this.release(id);
  }
}
