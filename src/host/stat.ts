// Layout of the BigInt64Array filled by host lstat/fstat/statvfs, and helpers
// for reading it. The FUSE binding consumes the same stat layout.

import { constants } from 'node:fs';

export const ST_MODE = 0;
export const ST_UID = 1;
export const ST_GID = 2;
export const ST_SIZE = 3;
export const ST_DEV = 4;
export const ST_NLINK = 5;
export const ST_INO = 6;
export const ST_RDEV = 7;
export const ST_BLKSIZE = 8;
export const ST_BLOCKS = 9;
export const ST_ATIME_SEC = 10;
export const ST_ATIME_NSEC = 11;
export const ST_MTIME_SEC = 12;
export const ST_MTIME_NSEC = 13;
export const ST_CTIME_SEC = 14;
export const ST_CTIME_NSEC = 15;
export const STAT_LENGTH = 16;

export const STATVFS_BSIZE = 0;
export const STATVFS_FRSIZE = 1;
export const STATVFS_BLOCKS = 2;
export const STATVFS_BFREE = 3;
export const STATVFS_BAVAIL = 4;
export const STATVFS_FILES = 5;
export const STATVFS_FFREE = 6;
export const STATVFS_FAVAIL = 7;
export const STATVFS_FSID = 8;
export const STATVFS_FLAG = 9;
export const STATVFS_NAMEMAX = 10;
export const STATVFS_LENGTH = 11;

export function newStatBuffer(): BigInt64Array {
  return new BigInt64Array(STAT_LENGTH);
}

export function newStatvfsBuffer(): BigInt64Array {
  return new BigInt64Array(STATVFS_LENGTH);
}

export function statMode(st: BigInt64Array): number {
  return Number(st[ST_MODE]);
}

function fileType(st: BigInt64Array): number {
  return statMode(st) & constants.S_IFMT;
}

export function isDir(st: BigInt64Array): boolean {
  return fileType(st) === constants.S_IFDIR;
}

export function isReg(st: BigInt64Array): boolean {
  return fileType(st) === constants.S_IFREG;
}

export function isLnk(st: BigInt64Array): boolean {
  return fileType(st) === constants.S_IFLNK;
}

export function isChr(st: BigInt64Array): boolean {
  return fileType(st) === constants.S_IFCHR;
}

/** Overlayfs marks a deleted lower entry with a 0/0 character device. */
export function isWhiteoutStat(st: BigInt64Array): boolean {
  return isChr(st) && st[ST_RDEV] === 0n;
}

/** Converts a JS (UTF-16) string to the latin1 binary form of its UTF-8 bytes. */
export function toBinaryPath(s: string): string {
  return Buffer.from(s, 'utf8').toString('latin1');
}

/** Decodes a latin1 binary string as UTF-8. Invalid UTF-8 bytes become U+FFFD (lossy). */
export function fromBinaryPath(s: string): string {
  return Buffer.from(s, 'latin1').toString('utf8');
}
