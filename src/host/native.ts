// Typed loader for the tsoverlay_host N-API addon (native/host.c).
//
// Every path, xattr name and symlink target is a latin1 "binary" string: each
// char code 0..255 is one byte, so non-UTF-8 names survive. Use toBinaryPath
// and fromBinaryPath in ./stat to convert. Paths longer than PATH_MAX (4096)
// bytes throw ENAMETOOLONG. All calls are synchronous.
//
// A path may name its base directory by an open fd: "@N" is the directory
// open as fd N itself, and "@N/a/b" is "a/b" relative to it, resolved with
// the *at() syscalls (slashes after N are skipped). A layer reached this way
// keeps working after its mount is moved or lazily unmounted. Only '@', then
// decimal digits, then the end or '/' has this meaning. Any other path
// ("@x", "@1x", "rel/@1") resolves as usual, against the working directory.
// The bare "@N" resolves "." against fd N, so N must be a directory.
// An N above 2^31-1 gives EBADF. Errors carry the path as given ("@18/a/b").
// The fd does not confine the path: "@N/../x" leaves the directory, as with
// openat. The symlink target argument is stored as given, never read so.
//
// The xattr calls on "@N" paths use getxattrat and its kin (Linux 6.13) with
// AT_SYMLINK_NOFOLLOW. Where those are missing (ENOSYS, or a seccomp filter
// that rejects them), they open the object O_PATH|O_NOFOLLOW and reach it
// through /proc/self/fd, which needs /proc. TSOVERLAY_NO_XATTRAT=1 in the
// environment when the addon loads forces that fallback.

import * as fs from 'node:fs';
import * as path from 'node:path';

/**
 * Error thrown by a failed syscall, shaped like Node's fs errors. errno is
 * negative (-2 for ENOENT). code is the libuv name as in Node, except that
 * errno 95 is 'EOPNOTSUPP' where Node's fs says 'ENOTSUP'. Two-path calls
 * set dest; fd calls set neither path nor dest.
 */
export type HostError = Error & {
  code: string;
  errno: number;
  syscall: string;
  path?: string;
  dest?: string;
};

/** Directory entries without "." and "..": names[i] has d_type types[i] and d_ino inos[i]. */
export interface ReaddirResult {
  names: string[];
  types: Uint8Array;
  inos: BigInt64Array;
}

export interface HostFunctions {
  /** Fills out[0..15] in the order of the ST_* indexes in ./stat. */
  lstat(path: string, out: BigInt64Array): void;
  /** lstat that returns 0 or a negative errno instead of throwing. */
  tryLstat(path: string, out: BigInt64Array): number;
  fstat(fd: number, out: BigInt64Array): void;
  /** name_to_handle_at(dirfd, path, 0): the filesystem's handle of path. */
  nameToHandle(path: string): { type: number; handle: Buffer };
  /** open_by_handle_at; needs CAP_DAC_READ_SEARCH. O_CLOEXEC is added. */
  openByHandle(mountFd: number, type: number, handle: ArrayBufferView, flags: number): number;
  /** The UUID the filesystem under fd reports (FS_IOC_GETFSUUID). */
  fsUuid(fd: number): Buffer;
  /** lgetxattr that returns a negative errno instead of throwing. */
  tryLgetxattr(path: string, name: string): Buffer | number;
  /** Fills out[0..10] in the order of the STATVFS_* indexes in ./stat. */
  statvfs(path: string, out: BigInt64Array): void;
  readdir(path: string): ReaddirResult;

  /** O_CLOEXEC is always added. mode defaults to 0o666. */
  open(path: string, flags: number, mode?: number): number;
  close(fd: number): void;
  mkdir(path: string, mode: number): void;
  /** dev is the raw dev_t, as in the ST_RDEV stat field. */
  mknod(path: string, mode: number, dev: number): void;
  symlink(target: string, path: string): void;
  readlink(path: string): string;
  unlink(path: string): void;
  rmdir(path: string): void;
  link(oldPath: string, newPath: string): void;
  /** Calls renameat2. flags are RENAME_* and default to 0 (plain rename). */
  rename(oldPath: string, newPath: string, flags?: number): void;

  /** Follows symlinks, because Linux cannot change a symlink's mode. */
  chmod(path: string, mode: number): void;
  fchmod(fd: number, mode: number): void;
  /** uid or gid -1 leaves that id unchanged. */
  lchown(path: string, uid: number, gid: number): void;
  fchown(fd: number, uid: number, gid: number): void;
  /**
   * utimensat with AT_SYMLINK_NOFOLLOW. Seconds are integers (negative
   * allowed); nanoseconds are 0..999999999, UTIME_NOW or UTIME_OMIT.
   */
  utimens(
    path: string,
    atimeSec: number,
    atimeNsec: number,
    mtimeSec: number,
    mtimeNsec: number,
  ): void;
  futimens(
    fd: number,
    atimeSec: number,
    atimeNsec: number,
    mtimeSec: number,
    mtimeNsec: number,
  ): void;
  /**
   * truncate(2). For "@N" paths: a directory is EISDIR and any other
   * non-regular file EINVAL, as truncate(2) gives, and is never opened.
   */
  truncate(path: string, length: number): void;
  ftruncate(fd: number, length: number): void;

  /** Missing attributes throw code 'ENODATA'. Path forms never follow symlinks. */
  lgetxattr(path: string, name: string): Buffer;
  fgetxattr(fd: number, name: string): Buffer;
  llistxattr(path: string): string[];
  flistxattr(fd: number): string[];
  /** flags are XATTR_CREATE or XATTR_REPLACE and default to 0. */
  lsetxattr(path: string, name: string, value: ArrayBufferView, flags?: number): void;
  fsetxattr(fd: number, name: string, value: ArrayBufferView, flags?: number): void;
  lremovexattr(path: string, name: string): void;
  fremovexattr(fd: number, name: string): void;

  /**
   * whence is SEEK_SET/CUR/END/DATA/HOLE. SEEK_DATA with no data after offset,
   * or SEEK_DATA/SEEK_HOLE at or past EOF, throws ENXIO.
   */
  lseek(fd: number, offset: number, whence: number): number;
  /** Calls copy_file_range with explicit offsets and flags 0. Returns bytes copied. */
  copyFileRange(fdIn: number, offIn: number, fdOut: number, offOut: number, len: number): number;
  /** Makes destFd share srcFd's extents (ioctl FICLONE). */
  ficlone(destFd: number, srcFd: number): void;
  /** Makes one pread(2) into the whole buffer and returns bytes read. */
  pread(fd: number, buf: ArrayBufferView, offset: number): number;
  /** Makes one pwrite(2) of the whole buffer and returns bytes written (maybe fewer). */
  pwrite(fd: number, buf: ArrayBufferView, offset: number): number;
  fsync(fd: number): void;
  fdatasync(fd: number): void;
  /** True if xattr calls on "@N" paths use the *xattrat syscalls, false on the /proc fallback. */
  xattratInUse(): boolean;
}

export interface HostConstants {
  readonly UTIME_NOW: number;
  readonly UTIME_OMIT: number;
  readonly RENAME_NOREPLACE: number;
  readonly RENAME_EXCHANGE: number;
  readonly RENAME_WHITEOUT: number;
  readonly XATTR_CREATE: number;
  readonly XATTR_REPLACE: number;
  readonly SEEK_SET: number;
  readonly SEEK_CUR: number;
  readonly SEEK_END: number;
  readonly SEEK_DATA: number;
  readonly SEEK_HOLE: number;
  readonly AT_SYMLINK_NOFOLLOW: number;
  readonly S_IFMT: number;
  readonly S_IFDIR: number;
  readonly S_IFREG: number;
  readonly S_IFLNK: number;
  readonly S_IFCHR: number;
  readonly S_IFBLK: number;
  readonly S_IFIFO: number;
  readonly S_IFSOCK: number;
  readonly DT_UNKNOWN: number;
  readonly DT_DIR: number;
  readonly DT_REG: number;
  readonly DT_LNK: number;
  readonly DT_CHR: number;
  readonly DT_BLK: number;
  readonly DT_FIFO: number;
  readonly DT_SOCK: number;
  readonly O_RDONLY: number;
  readonly O_WRONLY: number;
  readonly O_RDWR: number;
  readonly O_ACCMODE: number;
  readonly O_CREAT: number;
  readonly O_EXCL: number;
  readonly O_TRUNC: number;
  readonly O_APPEND: number;
  readonly O_NOFOLLOW: number;
  readonly O_DIRECTORY: number;
  readonly O_CLOEXEC: number;
  readonly O_PATH: number;
  readonly O_NONBLOCK: number;
  readonly O_NOATIME: number;
  readonly PATH_MAX: number;
  readonly XATTR_NAME_MAX: number;
}

export type HostBinding = HostFunctions & HostConstants;

/** Finds the package root from src/host (vitest) or dist/host (compiled). */
function findPackageRoot(start: string): string {
  let dir = start;
  for (;;) {
    if (fs.existsSync(path.join(dir, 'package.json'))) return dir;
    const parent = path.dirname(dir);
    if (parent === dir) {
      throw new Error(`Cannot locate the host addon: no package.json in ${start} or above`);
    }
    dir = parent;
  }
}

export const addonPath = path.join(
  findPackageRoot(__dirname),
  'build',
  'Release',
  'tsoverlay_host.node',
);

export const host = require(addonPath) as HostBinding;

export const {
  lstat,
  fstat,
  statvfs,
  readdir,
  open,
  close,
  mkdir,
  mknod,
  symlink,
  readlink,
  unlink,
  rmdir,
  link,
  rename,
  chmod,
  fchmod,
  lchown,
  fchown,
  utimens,
  futimens,
  truncate,
  ftruncate,
  lgetxattr,
  fgetxattr,
  llistxattr,
  flistxattr,
  lsetxattr,
  fsetxattr,
  lremovexattr,
  fremovexattr,
  lseek,
  copyFileRange,
  ficlone,
  pread,
  pwrite,
  fsync,
  fdatasync,
} = host;

export const {
  UTIME_NOW,
  UTIME_OMIT,
  RENAME_NOREPLACE,
  RENAME_EXCHANGE,
  RENAME_WHITEOUT,
  XATTR_CREATE,
  XATTR_REPLACE,
  SEEK_SET,
  SEEK_CUR,
  SEEK_END,
  SEEK_DATA,
  SEEK_HOLE,
  AT_SYMLINK_NOFOLLOW,
  S_IFMT,
  S_IFDIR,
  S_IFREG,
  S_IFLNK,
  S_IFCHR,
  S_IFBLK,
  S_IFIFO,
  S_IFSOCK,
  DT_UNKNOWN,
  DT_DIR,
  DT_REG,
  DT_LNK,
  DT_CHR,
  DT_BLK,
  DT_FIFO,
  DT_SOCK,
  O_RDONLY,
  O_WRONLY,
  O_RDWR,
  O_ACCMODE,
  O_CREAT,
  O_EXCL,
  O_TRUNC,
  O_APPEND,
  O_NOFOLLOW,
  O_DIRECTORY,
  O_CLOEXEC,
  O_PATH,
  O_NONBLOCK,
  O_NOATIME,
  PATH_MAX,
  XATTR_NAME_MAX,
} = host;

/** Returns true if a thrown value has HostError's fields, as Node fs errors also do. */
export function isHostError(err: unknown): err is HostError {
  return (
    err instanceof Error &&
    typeof (err as Partial<HostError>).code === 'string' &&
    typeof (err as Partial<HostError>).errno === 'number' &&
    typeof (err as Partial<HostError>).syscall === 'string'
  );
}
