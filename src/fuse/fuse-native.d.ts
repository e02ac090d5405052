// Types for fuse-native 2.2.6 as patched by patches/fuse-native+2.2.6.patch:
// stat and statfs replies are BigInt64Arrays, paths are latin1 strings (null
// for an unlinked open file), utimens gets seconds and nanoseconds. Ops that
// libfuse follows with a getattr may reply with the attributes too.
declare module 'fuse-native' {
  type Callback = (err: number) => void;
  type StatCallback = (err: number, stat?: BigInt64Array) => void;
  type ValueCallback<T> = (err: number, value?: T) => void;

  export interface Operations {
    init?(cb: Callback): void;
    getattr?(path: string, cb: ValueCallback<BigInt64Array>): void;
    fgetattr?(path: string | null, fd: number, cb: ValueCallback<BigInt64Array>): void;
    statfs?(path: string, cb: ValueCallback<BigInt64Array>): void;
    readdir?(path: string, cb: (err: number, names?: string[], entries?: BigInt64Array) => void): void;
    opendir?(path: string, flags: number, cb: ValueCallback<number>): void;
    releasedir?(path: string, fd: number, cb: Callback): void;
    open?(path: string, flags: number, cb: ValueCallback<number>): void;
    create?(path: string, mode: number, flags: number, cb: (err: number, fd?: number, stat?: BigInt64Array) => void): void;
    read?(path: string | null, fd: number, buf: Buffer, len: number, pos: number, cb: Callback): void;
    write?(path: string | null, fd: number, buf: Buffer, len: number, pos: number, cb: Callback): void;
    release?(path: string | null, fd: number, cb: Callback): void;
    flush?(path: string | null, fd: number, cb: Callback): void;
    fsync?(path: string | null, datasync: number, fd: number, cb: Callback): void;
    fsyncdir?(path: string | null, datasync: number, fd: number, cb: Callback): void;
    truncate?(path: string, size: number, cb: StatCallback): void;
    ftruncate?(path: string | null, fd: number, size: number, cb: StatCallback): void;
    utimens?(path: string, atimeSec: number, atimeNsec: number, mtimeSec: number, mtimeNsec: number, cb: StatCallback): void;
    readlink?(path: string, cb: ValueCallback<string>): void;
    chown?(path: string, uid: number, gid: number, cb: StatCallback): void;
    chmod?(path: string, mode: number, cb: StatCallback): void;
    mknod?(path: string, mode: number, dev: number, cb: StatCallback): void;
    setxattr?(path: string, name: string, value: Buffer, position: number, flags: number, cb: Callback): void;
    getxattr?(path: string, name: string, position: number, cb: ValueCallback<Buffer>): void;
    listxattr?(path: string, cb: ValueCallback<string[]>): void;
    removexattr?(path: string, name: string, cb: Callback): void;
    unlink?(path: string, cb: Callback): void;
    rename?(src: string, dest: string, cb: Callback): void;
    link?(src: string, dest: string, cb: StatCallback): void;
    symlink?(target: string, path: string, cb: StatCallback): void;
    mkdir?(path: string, mode: number, cb: StatCallback): void;
    rmdir?(path: string, cb: Callback): void;
  }

  export interface FuseOptions {
    options?: string[];
    timeout?: number | false;
    fsname?: string;
    subtype?: string;
    debug?: boolean;
  }

  class Fuse {
    constructor(mnt: string, ops: Operations, opts?: FuseOptions);
    mnt: string;
    contextArray: Uint32Array;
    onexit: (() => void) | null;
    invalidateIno(ino: bigint, attrsOnly?: boolean): void;
    mount(cb: (err: Error | null) => void): void;
    unmount(cb: (err: Error | null) => void): void;
    static unmount(mnt: string, cb: (err: Error | null) => void): void;
    static UTIME_NOW: number;
    static UTIME_OMIT: number;
  }
  export default Fuse;
}
