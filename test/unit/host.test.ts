// Tests for the tsoverlay_host addon on real files in a temp dir under
// os.tmpdir() and on a tmpfs that this file mounts (needs root).

import { execFileSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';

import * as host from '../../src/host/native';
import type { HostError } from '../../src/host/native';
import {
  ST_ATIME_NSEC,
  ST_ATIME_SEC,
  ST_BLKSIZE,
  ST_BLOCKS,
  ST_CTIME_NSEC,
  ST_CTIME_SEC,
  ST_DEV,
  ST_GID,
  ST_INO,
  ST_MODE,
  ST_MTIME_NSEC,
  ST_MTIME_SEC,
  ST_NLINK,
  ST_RDEV,
  ST_SIZE,
  ST_UID,
  STATVFS_BAVAIL,
  STATVFS_BFREE,
  STATVFS_BLOCKS,
  STATVFS_BSIZE,
  STATVFS_FILES,
  STATVFS_NAMEMAX,
  fromBinaryPath,
  isChr,
  isDir,
  isLnk,
  isReg,
  isWhiteoutStat,
  newStatBuffer,
  newStatvfsBuffer,
  statMode,
  toBinaryPath,
} from '../../src/host/stat';

const EOPNOTSUPP = os.constants.errno.EOPNOTSUPP;
const MIB = 1024 * 1024;

type FsKind = 'disk' | 'tmpfs';
const roots: Record<FsKind, string> = { disk: '', tmpfs: '' };
let workDir = '';
let tmpfsMounted = false;
let caseCounter = 0;

beforeAll(() => {
  workDir = fs.mkdtempSync(path.join(os.tmpdir(), 'tsoverlay-host-'));
  roots.disk = path.join(workDir, 'disk');
  roots.tmpfs = path.join(workDir, 'tmpfs');
  fs.mkdirSync(roots.disk);
  fs.mkdirSync(roots.tmpfs);
  execFileSync('mount', ['-t', 'tmpfs', '-o', 'size=64m', 'tmpfs', roots.tmpfs]);
  tmpfsMounted = true;
});

afterAll(() => {
  if (tmpfsMounted) execFileSync('umount', [roots.tmpfs]);
  if (workDir !== '') fs.rmSync(workDir, { recursive: true, force: true });
});

/** Makes an empty directory for one test case on the given filesystem. */
function freshDir(kind: FsKind): string {
  caseCounter += 1;
  const dir = path.join(roots[kind], `case-${caseCounter}`);
  fs.mkdirSync(dir);
  return dir;
}

function statOf(p: string): BigInt64Array {
  const st = newStatBuffer();
  host.lstat(p, st);
  return st;
}

function writeFile(p: string, data: string | Buffer): void {
  fs.writeFileSync(p, data);
}

/** Runs fn and returns what it threw, failing the test if it returned. */
function thrown(fn: () => unknown): HostError {
  try {
    fn();
  } catch (err) {
    return err as HostError;
  }
  throw new Error('expected the call to throw');
}

describe('host filesystem types', () => {
  it('disk root is not tmpfs', () => {
    expect(fs.statfsSync(roots.tmpfs).type).toBe(0x01021994); // TMPFS_MAGIC
    expect(fs.statfsSync(roots.disk).type).not.toBe(0x01021994);
  });
});

describe.each<FsKind>(['disk', 'tmpfs'])('host on %s', (kind) => {
  it('mknod makes a 0/0 whiteout', () => {
    const p = path.join(freshDir(kind), 'wh');
    host.mknod(p, host.S_IFCHR | 0o000, 0);
    const st = statOf(p);
    expect(isChr(st)).toBe(true);
    expect(st[ST_RDEV]).toBe(0n);
    expect(isWhiteoutStat(st)).toBe(true);
    expect(statMode(st) & 0o7777).toBe(0);
  });

  it('mknod makes a fifo', () => {
    const p = path.join(freshDir(kind), 'fifo');
    host.mknod(p, host.S_IFIFO | 0o640, 0);
    const st = statOf(p);
    expect(statMode(st) & host.S_IFMT).toBe(host.S_IFIFO);
    expect(isWhiteoutStat(st)).toBe(false);
    expect(fs.lstatSync(p).isFIFO()).toBe(true);
  });

  it('mknod rejects an existing name', () => {
    const p = path.join(freshDir(kind), 'f');
    writeFile(p, '');
    const err = thrown(() => host.mknod(p, host.S_IFIFO | 0o644, 0));
    expect(err.code).toBe('EEXIST');
    expect(err.syscall).toBe('mknod');
  });

  for (const ns of ['trusted', 'user']) {
    it(`xattr ${ns}.* set/get/list/remove by path`, () => {
      const p = path.join(freshDir(kind), 'f');
      writeFile(p, 'x');
      const name = `${ns}.overlay.test`;
      const value = Buffer.from([0x00, 0xff, 0x79, 0x00]);
      host.lsetxattr(p, name, value, 0);
      expect(host.lgetxattr(p, name)).toEqual(value);
      expect(host.llistxattr(p)).toContain(name);

      host.lsetxattr(p, name, Buffer.alloc(0), host.XATTR_REPLACE);
      expect(host.lgetxattr(p, name).length).toBe(0);

      host.lremovexattr(p, name);
      expect(host.llistxattr(p)).not.toContain(name);
      const err = thrown(() => host.lgetxattr(p, name));
      expect(err.code).toBe('ENODATA');
      expect(err.errno).toBe(-os.constants.errno.ENODATA);
      expect(err.syscall).toBe('lgetxattr');
      expect(err.path).toBe(p);
    });

    it(`xattr ${ns}.* set/get/list/remove by fd`, () => {
      const p = path.join(freshDir(kind), 'f');
      const fd = host.open(p, host.O_CREAT | host.O_RDWR, 0o644);
      try {
        const name = `${ns}.fd`;
        host.fsetxattr(fd, name, Buffer.from('v1'), host.XATTR_CREATE);
        expect(host.fgetxattr(fd, name).toString()).toBe('v1');
        expect(host.flistxattr(fd)).toContain(name);
        expect(host.lgetxattr(p, name).toString()).toBe('v1');

        const err = thrown(() => host.fsetxattr(fd, name, Buffer.from('v2'), host.XATTR_CREATE));
        expect(err.code).toBe('EEXIST');
        expect(err.syscall).toBe('fsetxattr');
        expect(err.path).toBeUndefined();

        host.fremovexattr(fd, name);
        expect(thrown(() => host.fgetxattr(fd, name)).code).toBe('ENODATA');
        expect(thrown(() => host.fremovexattr(fd, name)).code).toBe('ENODATA');
      } finally {
        host.close(fd);
      }
    });
  }

  it('xattr REPLACE of missing is ENODATA', () => {
    const p = path.join(freshDir(kind), 'f');
    writeFile(p, '');
    const err = thrown(() => host.lsetxattr(p, 'user.none', Buffer.from('v'), host.XATTR_REPLACE));
    expect(err.code).toBe('ENODATA');
    expect(err.syscall).toBe('lsetxattr');
  });

  it('xattr on symlink does not follow', () => {
    const dir = freshDir(kind);
    const target = path.join(dir, 'target');
    const link = path.join(dir, 'link');
    writeFile(target, '');
    fs.symlinkSync('target', link);
    host.lsetxattr(link, 'trusted.onlink', Buffer.from('1'), 0);
    expect(host.llistxattr(link)).toContain('trusted.onlink');
    expect(host.llistxattr(target)).not.toContain('trusted.onlink');
    // Linux allows user.* xattrs only on regular files and directories.
    const err = thrown(() => host.lsetxattr(link, 'user.onlink', Buffer.from('1'), 0));
    expect(err.code).toBe('EPERM');
  });

  it('xattr 3000-byte value round-trips', () => {
    const p = path.join(freshDir(kind), 'f');
    writeFile(p, '');
    const value = Buffer.alloc(3000, 0xab);
    host.lsetxattr(p, 'trusted.big', value, 0);
    expect(host.lgetxattr(p, 'trusted.big')).toEqual(value);
  });

  it('rename NOREPLACE fails with EEXIST', () => {
    const dir = freshDir(kind);
    const a = path.join(dir, 'a');
    const b = path.join(dir, 'b');
    writeFile(a, 'A');
    writeFile(b, 'B');
    const err = thrown(() => host.rename(a, b, host.RENAME_NOREPLACE));
    expect(err.code).toBe('EEXIST');
    expect(err.errno).toBe(-os.constants.errno.EEXIST);
    expect(err.syscall).toBe('renameat2');
    expect(err.path).toBe(a);
    expect(err.dest).toBe(b);
    expect(err.message).toBe(`EEXIST: file already exists, renameat2 '${a}' -> '${b}'`);
    expect(fs.readFileSync(b, 'utf8')).toBe('B');
  });

  it('rename NOREPLACE to a free name', () => {
    const dir = freshDir(kind);
    const a = path.join(dir, 'a');
    writeFile(a, 'A');
    host.rename(a, path.join(dir, 'c'), host.RENAME_NOREPLACE);
    expect(fs.readFileSync(path.join(dir, 'c'), 'utf8')).toBe('A');
    expect(fs.existsSync(a)).toBe(false);
  });

  it('rename EXCHANGE swaps entries', () => {
    const dir = freshDir(kind);
    const a = path.join(dir, 'a');
    const b = path.join(dir, 'b');
    writeFile(a, 'A');
    fs.mkdirSync(b);
    host.rename(a, b, host.RENAME_EXCHANGE);
    expect(fs.statSync(a).isDirectory()).toBe(true);
    expect(fs.readFileSync(b, 'utf8')).toBe('A');
  });

  it('rename WHITEOUT leaves a 0/0 device', () => {
    const dir = freshDir(kind);
    const a = path.join(dir, 'a');
    const b = path.join(dir, 'b');
    writeFile(a, 'A');
    host.rename(a, b, host.RENAME_WHITEOUT);
    expect(isWhiteoutStat(statOf(a))).toBe(true);
    expect(fs.readFileSync(b, 'utf8')).toBe('A');
  });

  it('rename with flags 0 replaces', () => {
    const dir = freshDir(kind);
    const a = path.join(dir, 'a');
    const b = path.join(dir, 'b');
    writeFile(a, 'A');
    writeFile(b, 'B');
    host.rename(a, b, 0);
    expect(fs.readFileSync(b, 'utf8')).toBe('A');
    const err = thrown(() => host.rename(a, b));
    expect(err.code).toBe('ENOENT');
    expect(err.syscall).toBe('rename');
  });

  it('utimens sets exact ns on a symlink', () => {
    const dir = freshDir(kind);
    const target = path.join(dir, 'target');
    const link = path.join(dir, 'link');
    writeFile(target, '');
    fs.symlinkSync('target', link);
    const before = statOf(target);

    host.utimens(link, 1_600_000_000, 123_456_789, 1_500_000_000, 987_654_321);
    const st = statOf(link);
    expect(st[ST_ATIME_SEC]).toBe(1_600_000_000n);
    expect(st[ST_ATIME_NSEC]).toBe(123_456_789n);
    expect(st[ST_MTIME_SEC]).toBe(1_500_000_000n);
    expect(st[ST_MTIME_NSEC]).toBe(987_654_321n);

    const after = statOf(target);
    expect(after[ST_MTIME_SEC]).toBe(before[ST_MTIME_SEC]);
    expect(after[ST_MTIME_NSEC]).toBe(before[ST_MTIME_NSEC]);
  });

  it('utimens UTIME_OMIT keeps the other time', () => {
    const p = path.join(freshDir(kind), 'f');
    writeFile(p, '');
    host.utimens(p, 1_000_000_000, 1, 1_100_000_000, 2);
    host.utimens(p, 0, host.UTIME_OMIT, 1_200_000_000, 3);
    let st = statOf(p);
    expect(st[ST_ATIME_SEC]).toBe(1_000_000_000n);
    expect(st[ST_ATIME_NSEC]).toBe(1n);
    expect(st[ST_MTIME_SEC]).toBe(1_200_000_000n);
    expect(st[ST_MTIME_NSEC]).toBe(3n);

    host.utimens(p, 1_300_000_000, 4, 0, host.UTIME_OMIT);
    st = statOf(p);
    expect(st[ST_ATIME_SEC]).toBe(1_300_000_000n);
    expect(st[ST_ATIME_NSEC]).toBe(4n);
    expect(st[ST_MTIME_SEC]).toBe(1_200_000_000n);
    expect(st[ST_MTIME_NSEC]).toBe(3n);
  });

  it('utimens UTIME_NOW and negative seconds', () => {
    const p = path.join(freshDir(kind), 'f');
    writeFile(p, '');
    const start = BigInt(Math.floor(Date.now() / 1000)) - 2n;
    host.utimens(p, 0, host.UTIME_NOW, -86_400, 5);
    const st = statOf(p);
    expect(st[ST_ATIME_SEC] >= start).toBe(true);
    expect(st[ST_MTIME_SEC]).toBe(-86_400n);
    expect(st[ST_MTIME_NSEC]).toBe(5n);
  });

  it('futimens sets exact ns', () => {
    const p = path.join(freshDir(kind), 'f');
    const fd = host.open(p, host.O_CREAT | host.O_WRONLY, 0o644);
    try {
      host.futimens(fd, 1_234_567_890, 999_999_999, 1_234_567_891, 0);
    } finally {
      host.close(fd);
    }
    const st = statOf(p);
    expect(st[ST_ATIME_NSEC]).toBe(999_999_999n);
    expect(st[ST_MTIME_SEC]).toBe(1_234_567_891n);
    expect(st[ST_MTIME_NSEC]).toBe(0n);
  });

  it('lstat matches fs.lstatSync bigint', () => {
    const p = path.join(freshDir(kind), 'f');
    writeFile(p, Buffer.alloc(12_345, 1));
    const st = statOf(p);
    const ref = fs.lstatSync(p, { bigint: true });
    expect(st[ST_MODE]).toBe(ref.mode);
    expect(st[ST_UID]).toBe(ref.uid);
    expect(st[ST_GID]).toBe(ref.gid);
    expect(st[ST_SIZE]).toBe(12_345n);
    expect(st[ST_SIZE]).toBe(ref.size);
    expect(st[ST_DEV]).toBe(ref.dev);
    expect(st[ST_NLINK]).toBe(ref.nlink);
    expect(st[ST_INO]).toBe(ref.ino);
    expect(st[ST_RDEV]).toBe(ref.rdev);
    expect(st[ST_BLKSIZE]).toBe(ref.blksize);
    expect(st[ST_BLOCKS]).toBe(ref.blocks);
    expect(st[ST_ATIME_SEC] * 1_000_000_000n + st[ST_ATIME_NSEC]).toBe(ref.atimeNs);
    expect(st[ST_MTIME_SEC] * 1_000_000_000n + st[ST_MTIME_NSEC]).toBe(ref.mtimeNs);
    expect(st[ST_CTIME_SEC] * 1_000_000_000n + st[ST_CTIME_NSEC]).toBe(ref.ctimeNs);
    expect(isReg(st)).toBe(true);
  });

  it('lstat of a symlink and a dir', () => {
    const dir = freshDir(kind);
    const link = path.join(dir, 'link');
    fs.symlinkSync('nowhere', link);
    const st = statOf(link);
    expect(isLnk(st)).toBe(true);
    expect(st[ST_SIZE]).toBe(7n);
    expect(isDir(statOf(dir))).toBe(true);
  });

  it('fstat matches lstat', () => {
    const p = path.join(freshDir(kind), 'f');
    writeFile(p, 'abc');
    const fd = host.open(p, host.O_RDONLY);
    const st = newStatBuffer();
    try {
      host.fstat(fd, st);
    } finally {
      host.close(fd);
    }
    expect(st[ST_INO]).toBe(statOf(p)[ST_INO]);
    expect(st[ST_SIZE]).toBe(3n);
  });

  it('lseek finds data and holes', () => {
    const p = path.join(freshDir(kind), 'sparse');
    const fd = host.open(p, host.O_CREAT | host.O_RDWR, 0o644);
    try {
      host.ftruncate(fd, 4 * MIB);
      expect(host.pwrite(fd, Buffer.alloc(4096, 7), MIB)).toBe(4096);
      host.fsync(fd);
      expect(host.lseek(fd, 0, host.SEEK_DATA)).toBe(MIB);
      expect(host.lseek(fd, 0, host.SEEK_HOLE)).toBe(0);
      expect(host.lseek(fd, MIB, host.SEEK_HOLE)).toBe(MIB + 4096);
      const err = thrown(() => host.lseek(fd, MIB + 4096, host.SEEK_DATA));
      expect(err.code).toBe('ENXIO');
      expect(err.syscall).toBe('lseek');
      expect(host.lseek(fd, 0, host.SEEK_END)).toBe(4 * MIB);
      expect(host.lseek(fd, 10, host.SEEK_SET)).toBe(10);
      expect(host.lseek(fd, -4, host.SEEK_CUR)).toBe(6);
    } finally {
      host.close(fd);
    }
  });

  it('copyFileRange copies at offsets', () => {
    const dir = freshDir(kind);
    const src = path.join(dir, 'src');
    const dst = path.join(dir, 'dst');
    writeFile(src, '0123456789abcdef');
    writeFile(dst, 'XXXXXXXX');
    const fdIn = host.open(src, host.O_RDONLY);
    const fdOut = host.open(dst, host.O_WRONLY);
    try {
      expect(host.copyFileRange(fdIn, 10, fdOut, 2, 4)).toBe(4);
      expect(host.copyFileRange(fdIn, 16, fdOut, 0, 4)).toBe(0);
      // The fd offsets stay put because explicit offsets were given.
      expect(host.lseek(fdIn, 0, host.SEEK_CUR)).toBe(0);
    } finally {
      host.close(fdIn);
      host.close(fdOut);
    }
    expect(fs.readFileSync(dst, 'utf8')).toBe('XXabcdXX');
  });

  it('ficlone fails without reflink', () => {
    const dir = freshDir(kind);
    const src = host.open(path.join(dir, 'src'), host.O_CREAT | host.O_RDWR, 0o644);
    const dst = host.open(path.join(dir, 'dst'), host.O_CREAT | host.O_RDWR, 0o644);
    try {
      host.pwrite(src, Buffer.from('data'), 0);
      // Neither ext4 nor tmpfs implements reflinks.
      const err = thrown(() => host.ficlone(dst, src));
      expect(err.errno).toBe(-EOPNOTSUPP);
      expect(err.code).toBe('EOPNOTSUPP');
      expect(err.syscall).toBe('ioctl_ficlone');
      expect(err.message).toBe('EOPNOTSUPP: operation not supported, ioctl_ficlone');
    } finally {
      host.close(src);
      host.close(dst);
    }
  });

  it('pread and pwrite at offsets', () => {
    const p = path.join(freshDir(kind), 'f');
    const fd = host.open(p, host.O_CREAT | host.O_RDWR | host.O_TRUNC, 0o600);
    try {
      expect(host.pwrite(fd, Buffer.from('hello'), 3)).toBe(5);
      host.fdatasync(fd);
      const buf = Buffer.alloc(10, 0x2e);
      expect(host.pread(fd, buf, 0)).toBe(8);
      expect(buf.subarray(0, 8)).toEqual(Buffer.from('\0\0\0hello'));
      expect(host.pread(fd, buf, 100)).toBe(0);
    } finally {
      host.close(fd);
    }
  });

  it('non-UTF-8 name round-trips', () => {
    const dir = freshDir(kind);
    const name = '\xff\xfe';
    const p = `${dir}/${name}`;
    const fd = host.open(p, host.O_CREAT | host.O_WRONLY | host.O_EXCL, 0o644);
    host.close(fd);

    const listing = host.readdir(dir);
    expect(listing.names).toEqual([name]);
    expect(listing.types[0]).toBe(host.DT_REG);
    const raw = fs.readdirSync(dir, { encoding: 'buffer' });
    expect(raw).toEqual([Buffer.from([0xff, 0xfe])]);
    expect(isReg(statOf(p))).toBe(true);

    host.symlink(name, `${dir}/link\x80`);
    expect(host.readlink(`${dir}/link\x80`)).toBe(name);
    host.unlink(p);
    expect(host.readdir(dir).names).toEqual(['link\x80']);
  });

  it('readdir reports d_type', () => {
    const dir = freshDir(kind);
    writeFile(path.join(dir, 'file'), '');
    fs.mkdirSync(path.join(dir, 'sub'));
    fs.symlinkSync('file', path.join(dir, 'link'));
    host.mknod(path.join(dir, 'fifo'), host.S_IFIFO | 0o644, 0);
    host.mknod(path.join(dir, 'wh'), host.S_IFCHR, 0);
    const { names, types } = host.readdir(dir);
    const byName = new Map(names.map((n, i) => [n, types[i]]));
    expect(names.length).toBe(5);
    expect(byName.get('file')).toBe(host.DT_REG);
    expect(byName.get('sub')).toBe(host.DT_DIR);
    expect(byName.get('link')).toBe(host.DT_LNK);
    expect(byName.get('fifo')).toBe(host.DT_FIFO);
    expect(byName.get('wh')).toBe(host.DT_CHR);
  });

  it('readdir of empty dir', () => {
    const listing = host.readdir(freshDir(kind));
    expect(listing.names).toEqual([]);
    expect(listing.types.length).toBe(0);
  });

  it('mkdir, rmdir, link and unlink', () => {
    const dir = freshDir(kind);
    const sub = path.join(dir, 'sub');
    host.mkdir(sub, 0o750);
    expect(isDir(statOf(sub))).toBe(true);
    // The umask may clear bits but never adds any.
    expect(statMode(statOf(sub)) & 0o7777 & ~0o750).toBe(0);
    expect(thrown(() => host.mkdir(sub, 0o755)).code).toBe('EEXIST');

    const a = path.join(sub, 'a');
    const b = path.join(sub, 'b');
    writeFile(a, 'A');
    host.link(a, b);
    expect(statOf(a)[ST_NLINK]).toBe(2n);
    const err = thrown(() => host.rmdir(sub));
    expect(err.code).toBe('ENOTEMPTY');
    expect(err.path).toBe(sub);
    host.unlink(a);
    host.unlink(b);
    host.rmdir(sub);
    expect(fs.existsSync(sub)).toBe(false);
  });

  it('chmod, fchmod and lchown', () => {
    const dir = freshDir(kind);
    const p = path.join(dir, 'f');
    const link = path.join(dir, 'link');
    writeFile(p, '');
    fs.symlinkSync('f', link);
    host.chmod(p, 0o4751);
    expect(statMode(statOf(p)) & 0o7777).toBe(0o4751);
    const fd = host.open(p, host.O_RDONLY);
    try {
      host.fchmod(fd, 0o600);
      host.fchown(fd, 4321, -1);
    } finally {
      host.close(fd);
    }
    expect(statMode(statOf(p)) & 0o7777).toBe(0o600);
    expect(statOf(p)[ST_UID]).toBe(4321n);

    host.lchown(link, 1234, 5678);
    expect(statOf(link)[ST_UID]).toBe(1234n);
    expect(statOf(link)[ST_GID]).toBe(5678n);
    expect(statOf(p)[ST_UID]).toBe(4321n);
  });

  it('truncate and ftruncate', () => {
    const p = path.join(freshDir(kind), 'f');
    writeFile(p, 'abcdef');
    host.truncate(p, 2);
    expect(fs.readFileSync(p, 'utf8')).toBe('ab');
    const fd = host.open(p, host.O_RDWR);
    try {
      host.ftruncate(fd, 3 * MIB);
    } finally {
      host.close(fd);
    }
    expect(statOf(p)[ST_SIZE]).toBe(BigInt(3 * MIB));
  });

  it('statvfs matches fs.statfsSync', () => {
    const out = newStatvfsBuffer();
    host.statvfs(roots[kind], out);
    const ref = fs.statfsSync(roots[kind]);
    expect(out[STATVFS_BSIZE]).toBe(BigInt(ref.bsize));
    expect(out[STATVFS_BLOCKS]).toBe(BigInt(ref.blocks));
    expect(out[STATVFS_FILES]).toBe(BigInt(ref.files));
    expect(out[STATVFS_NAMEMAX]).toBe(255n);
    expect(out[STATVFS_BFREE] >= out[STATVFS_BAVAIL]).toBe(true);
  });

  it('open O_EXCL on existing is EEXIST', () => {
    const p = path.join(freshDir(kind), 'f');
    writeFile(p, '');
    const err = thrown(() => host.open(p, host.O_CREAT | host.O_EXCL | host.O_WRONLY, 0o644));
    expect(err.code).toBe('EEXIST');
    expect(err.syscall).toBe('open');
    expect(err.path).toBe(p);
  });
});

describe('host errors', () => {
  it('ficlone across filesystems is EXDEV', () => {
    const src = host.open(path.join(freshDir('disk'), 'src'), host.O_CREAT | host.O_RDWR, 0o644);
    const dst = host.open(path.join(freshDir('tmpfs'), 'dst'), host.O_CREAT | host.O_RDWR, 0o644);
    try {
      const err = thrown(() => host.ficlone(dst, src));
      expect(err.code).toBe('EXDEV');
      expect(err.errno).toBe(-os.constants.errno.EXDEV);
    } finally {
      host.close(src);
      host.close(dst);
    }
  });

  it('lstat of missing path is ENOENT', () => {
    const p = path.join(roots.disk, 'missing');
    const err = thrown(() => host.lstat(p, newStatBuffer()));
    expect(err).toBeInstanceOf(Error);
    expect(err.code).toBe('ENOENT');
    expect(err.errno).toBe(-2);
    expect(err.syscall).toBe('lstat');
    expect(err.path).toBe(p);
    expect(err.dest).toBeUndefined();
    expect(err.message).toBe(`ENOENT: no such file or directory, lstat '${p}'`);
  });

  it('error path keeps binary bytes', () => {
    const p = `${roots.disk}/missing\xff`;
    const err = thrown(() => host.lstat(p, newStatBuffer()));
    expect(err.path).toBe(p);
    expect(err.message.endsWith(`'${p}'`)).toBe(true);
  });

  it('fd errors carry no path', () => {
    const err = thrown(() => host.fstat(1_000_000, newStatBuffer()));
    expect(err.code).toBe('EBADF');
    expect(err.errno).toBe(-9);
    expect(err.syscall).toBe('fstat');
    expect(err.message).toBe('EBADF: bad file descriptor, fstat');
    expect('path' in err).toBe(false);
  });

  it('symlink names target and dest', () => {
    const dir = freshDir('disk');
    const p = path.join(dir, 'exists');
    writeFile(p, '');
    const err = thrown(() => host.symlink('t', p));
    expect(err.code).toBe('EEXIST');
    expect(err.path).toBe('t');
    expect(err.dest).toBe(p);
  });

  it('path over PATH_MAX is ENAMETOOLONG', () => {
    const p = '/' + 'a'.repeat(host.PATH_MAX);
    const err = thrown(() => host.lstat(p, newStatBuffer()));
    expect(err.code).toBe('ENAMETOOLONG');
    expect(err.syscall).toBe('lstat');
    expect(err.path).toBe(p);
    const pair = thrown(() => host.rename('/x', p, 0));
    expect(pair.code).toBe('ENAMETOOLONG');
    expect(pair.dest).toBe(p);
  });

  it('xattr name over 255 bytes is ERANGE', () => {
    const err = thrown(() => host.lgetxattr(roots.disk, 'user.' + 'n'.repeat(300)));
    expect(err.code).toBe('ERANGE');
    expect(err.syscall).toBe('lgetxattr');
  });

  it('bad argument types throw TypeError', () => {
    expect(() => host.lstat(42 as unknown as string, newStatBuffer())).toThrow(TypeError);
    expect(() => host.lstat('/', new Float64Array(16) as unknown as BigInt64Array)).toThrow(
      TypeError,
    );
    expect(() => host.close('3' as unknown as number)).toThrow(TypeError);
    const openPathOnly = host.open as unknown as (p: string) => number;
    expect(() => openPathOnly('/')).toThrow(TypeError);
    expect(() => host.lsetxattr('/', 'user.a', 'v' as unknown as Buffer, 0)).toThrow(TypeError);
  });

  it('non-latin1 or NUL paths throw TypeError', () => {
    const wide = thrown(() => host.lstat('/tmp/\u20ac', newStatBuffer()));
    expect(wide).toBeInstanceOf(TypeError);
    expect(wide.code).toBe('ERR_INVALID_ARG_VALUE');
    expect(() => host.unlink('/tmp/a\0b')).toThrow(TypeError);
  });

  it('out-of-range numbers throw RangeError', () => {
    expect(() => host.fstat(-1, newStatBuffer())).toThrow(RangeError);
    expect(() => host.lstat('/', new BigInt64Array(15))).toThrow(RangeError);
    expect(() => host.truncate('/nonexistent', 1.5)).toThrow(RangeError);
    expect(() => host.utimens('/', 0, 1_000_000_000, 0, 0)).toThrow(RangeError);
    expect(() => host.lseek(0, Number.NaN, host.SEEK_SET)).toThrow(RangeError);
  });
});

describe('host stat helpers', () => {
  it('binary path conversion round-trips', () => {
    expect(toBinaryPath('é')).toBe('\xc3\xa9');
    expect(fromBinaryPath('\xc3\xa9')).toBe('é');
    expect(fromBinaryPath(toBinaryPath('dir/文件'))).toBe('dir/文件');
  });

  it('constants match fs.constants', () => {
    expect(host.S_IFMT).toBe(fs.constants.S_IFMT);
    expect(host.S_IFCHR).toBe(fs.constants.S_IFCHR);
    expect(host.O_CREAT).toBe(fs.constants.O_CREAT);
    expect(host.O_NOFOLLOW).toBe(fs.constants.O_NOFOLLOW);
    expect(host.RENAME_NOREPLACE).toBe(1);
    expect(host.RENAME_EXCHANGE).toBe(2);
    expect(host.RENAME_WHITEOUT).toBe(4);
    expect(host.SEEK_DATA).toBe(3);
    expect(host.SEEK_HOLE).toBe(4);
    expect(host.UTIME_NOW).toBe(2 ** 30 - 1);
    expect(host.UTIME_OMIT).toBe(2 ** 30 - 2);
  });
});

/** Opens dir for use as the base of "@N" paths. Callers close the fd. */
function openDirFd(dir: string): number {
  return fs.openSync(dir, fs.constants.O_RDONLY | fs.constants.O_DIRECTORY);
}

/** Runs fn with "@N" for an fd open on dir, and closes the fd after. */
function withDirFd(dir: string, fn: (base: string) => void): void {
  const fd = openDirFd(dir);
  try {
    fn(`@${fd}`);
  } finally {
    fs.closeSync(fd);
  }
}

/** Returns the handle that nameToHandle gives for p, as "type:hex". */
function handleHex(p: string): string {
  const { type, handle } = host.host.nameToHandle(p);
  return `${type}:${handle.toString('hex')}`;
}

describe.each<FsKind>(['disk', 'tmpfs'])('host @fd paths on %s', (kind) => {
  it('lstat and tryLstat resolve at fd', () => {
    const dir = freshDir(kind);
    writeFile(path.join(dir, 'f'), 'abc');
    fs.symlinkSync('f', path.join(dir, 'link'));
    withDirFd(dir, (base) => {
      expect(statOf(`${base}/f`)[ST_INO]).toBe(statOf(path.join(dir, 'f'))[ST_INO]);
      expect(statOf(`${base}/f`)[ST_SIZE]).toBe(3n);
      expect(statOf(base)[ST_INO]).toBe(statOf(dir)[ST_INO]);
      expect(isDir(statOf(base))).toBe(true);
      expect(isLnk(statOf(`${base}/link`))).toBe(true);
      const st = newStatBuffer();
      expect(host.host.tryLstat(`${base}/link`, st)).toBe(0);
      expect(isLnk(st)).toBe(true);
      expect(host.host.tryLstat(`${base}/missing`, st)).toBe(-os.constants.errno.ENOENT);
      expect(host.host.tryLstat(`${base}/f/x`, st)).toBe(-os.constants.errno.ENOTDIR);
    });
  });

  it('open, readdir and readlink at fd', () => {
    const dir = freshDir(kind);
    withDirFd(dir, (base) => {
      const fd = host.open(`${base}/f`, host.O_CREAT | host.O_EXCL | host.O_WRONLY, 0o644);
      try {
        expect(host.pwrite(fd, Buffer.from('data'), 0)).toBe(4);
      } finally {
        host.close(fd);
      }
      expect(fs.readFileSync(path.join(dir, 'f'), 'utf8')).toBe('data');
      host.symlink('@1/not-parsed', `${base}/link`);
      expect(fs.readlinkSync(path.join(dir, 'link'))).toBe('@1/not-parsed');
      expect(host.readlink(`${base}/link`)).toBe('@1/not-parsed');
      const listing = host.readdir(base);
      expect([...listing.names].sort()).toEqual(['f', 'link']);
      expect(host.readdir(`${base}/`).names.length).toBe(2);
      const err = thrown(() => host.readdir(`${base}/f`));
      expect(err.code).toBe('ENOTDIR');
      expect(err.syscall).toBe('opendir');
      expect(err.path).toBe(`${base}/f`);
    });
  });

  it('create and remove at fd', () => {
    const dir = freshDir(kind);
    withDirFd(dir, (base) => {
      host.mkdir(`${base}/sub`, 0o755);
      expect(fs.statSync(path.join(dir, 'sub')).isDirectory()).toBe(true);
      host.mknod(`${base}/sub/wh`, host.S_IFCHR, 0);
      expect(isWhiteoutStat(statOf(path.join(dir, 'sub', 'wh')))).toBe(true);
      writeFile(path.join(dir, 'a'), 'A');
      host.link(`${base}/a`, `${base}/sub/b`);
      expect(statOf(path.join(dir, 'a'))[ST_NLINK]).toBe(2n);
      host.unlink(`${base}/a`);
      expect(fs.existsSync(path.join(dir, 'a'))).toBe(false);
      expect(thrown(() => host.rmdir(`${base}/sub`)).code).toBe('ENOTEMPTY');
      host.unlink(`${base}/sub/b`);
      host.unlink(`${base}/sub/wh`);
      host.rmdir(`${base}/sub`);
      expect(fs.existsSync(path.join(dir, 'sub'))).toBe(false);
    });
  });

  it('calls on the bare fd root fail', () => {
    const dir = freshDir(kind);
    writeFile(path.join(dir, 'f'), '');
    // The bare form is "." at the fd, so each call fails as it does on "dir/.".
    const calls: [string, (root: string, f: string) => void][] = [
      ['unlink', (root) => host.unlink(root)],
      ['rmdir', (root) => host.rmdir(root)],
      ['mkdir', (root) => host.mkdir(root, 0o755)],
      ['mknod', (root) => host.mknod(root, host.S_IFIFO | 0o644, 0)],
      ['symlink', (root) => host.symlink('t', root)],
      ['link', (root, f) => host.link(f, root)],
      ['rename to', (root, f) => host.rename(f, root)],
      ['rename from', (root, f) => host.rename(root, f)],
    ];
    withDirFd(dir, (base) => {
      for (const [name, call] of calls) {
        const plain = thrown(() => call(`${dir}/.`, path.join(dir, 'f')));
        const atFd = thrown(() => call(base, `${base}/f`));
        expect(`${name} ${atFd.code}`).toBe(`${name} ${plain.code}`);
      }
    });
    expect(thrown(() => host.unlink(`${dir}/.`)).code).toBe('EISDIR');
    expect(thrown(() => host.rmdir(`${dir}/.`)).code).toBe('EINVAL');
    expect(fs.statSync(path.join(dir, 'f')).isFile()).toBe(true);
  });

  it('rename at fd with flags', () => {
    const dir = freshDir(kind);
    const other = freshDir(kind);
    writeFile(path.join(dir, 'a'), 'A');
    writeFile(path.join(dir, 'b'), 'B');
    withDirFd(dir, (base) => {
      withDirFd(other, (otherBase) => {
        const err = thrown(() => host.rename(`${base}/a`, `${base}/b`, host.RENAME_NOREPLACE));
        expect(err.code).toBe('EEXIST');
        expect(err.path).toBe(`${base}/a`);
        expect(err.dest).toBe(`${base}/b`);
        expect(err.message).toBe(
          `EEXIST: file already exists, renameat2 '${base}/a' -> '${base}/b'`,
        );
        host.rename(`${base}/a`, `${base}/b`, host.RENAME_EXCHANGE);
        expect(fs.readFileSync(path.join(dir, 'b'), 'utf8')).toBe('A');
        host.rename(`${base}/b`, `${otherBase}/c`, host.RENAME_WHITEOUT);
        expect(isWhiteoutStat(statOf(path.join(dir, 'b')))).toBe(true);
        expect(fs.readFileSync(path.join(other, 'c'), 'utf8')).toBe('A');
        host.rename(`${otherBase}/c`, path.join(dir, 'd'));
        expect(fs.readFileSync(path.join(dir, 'd'), 'utf8')).toBe('A');
      });
    });
  });

  it('chmod, lchown and utimens at fd', () => {
    const dir = freshDir(kind);
    const file = path.join(dir, 'f');
    const link = path.join(dir, 'link');
    writeFile(file, '');
    fs.symlinkSync('f', link);
    const fileBefore = statOf(file);
    withDirFd(dir, (base) => {
      host.chmod(`${base}/f`, 0o4751);
      host.lchown(`${base}/link`, 1234, 5678);
      host.utimens(`${base}/link`, 1_600_000_000, 1, 1_500_000_000, 2);
      host.lchown(base, 4321, -1);
    });
    expect(statMode(statOf(file)) & 0o7777).toBe(0o4751);
    expect(statOf(link)[ST_UID]).toBe(1234n);
    expect(statOf(link)[ST_GID]).toBe(5678n);
    expect(statOf(file)[ST_UID]).toBe(fileBefore[ST_UID]);
    expect(statOf(link)[ST_MTIME_SEC]).toBe(1_500_000_000n);
    expect(statOf(link)[ST_MTIME_NSEC]).toBe(2n);
    expect(statOf(link)[ST_ATIME_NSEC]).toBe(1n);
    expect(statOf(file)[ST_MTIME_SEC]).toBe(fileBefore[ST_MTIME_SEC]);
    expect(statOf(file)[ST_MTIME_NSEC]).toBe(fileBefore[ST_MTIME_NSEC]);
    expect(statOf(dir)[ST_UID]).toBe(4321n);
  });

  it('chmod at fd follows a symlink', () => {
    const dir = freshDir(kind);
    writeFile(path.join(dir, 'f'), '');
    fs.symlinkSync('f', path.join(dir, 'link'));
    withDirFd(dir, (base) => host.chmod(`${base}/link`, 0o600));
    expect(statMode(statOf(path.join(dir, 'f'))) & 0o7777).toBe(0o600);
  });

  it('truncate at fd', () => {
    const dir = freshDir(kind);
    const file = path.join(dir, 'f');
    writeFile(file, 'abcdef');
    // Read-only for its owner: root may still truncate it.
    fs.chmodSync(file, 0o444);
    fs.symlinkSync('f', path.join(dir, 'link'));
    host.mknod(path.join(dir, 'fifo'), host.S_IFIFO | 0o644, 0);
    withDirFd(dir, (base) => {
      host.truncate(`${base}/f`, 2);
      expect(fs.readFileSync(file, 'utf8')).toBe('ab');
      host.truncate(`${base}/link`, 1);
      expect(fs.readFileSync(file, 'utf8')).toBe('a');
      host.truncate(`${base}/f`, 3 * MIB);
      expect(statOf(file)[ST_SIZE]).toBe(BigInt(3 * MIB));
      expect(thrown(() => host.truncate(base, 0)).code).toBe('EISDIR');
      const fifo = thrown(() => host.truncate(`${base}/fifo`, 0));
      expect(fifo.code).toBe('EINVAL');
      expect(fifo.syscall).toBe('truncate');
      expect(fifo.path).toBe(`${base}/fifo`);
      expect(thrown(() => host.truncate(`${base}/missing`, 0)).code).toBe('ENOENT');
    });
    // truncate(2) on the plain paths gives the same errors.
    expect(thrown(() => host.truncate(dir, 0)).code).toBe('EISDIR');
    expect(thrown(() => host.truncate(path.join(dir, 'fifo'), 0)).code).toBe('EINVAL');
  });

  it('statvfs and nameToHandle at fd', () => {
    const dir = freshDir(kind);
    writeFile(path.join(dir, 'f'), '');
    fs.symlinkSync('f', path.join(dir, 'link'));
    withDirFd(dir, (base) => {
      const out = newStatvfsBuffer();
      host.statvfs(base, out);
      const ref = fs.statfsSync(dir);
      expect(out[STATVFS_BLOCKS]).toBe(BigInt(ref.blocks));
      expect(out[STATVFS_FILES]).toBe(BigInt(ref.files));
      host.statvfs(`${base}/link`, out);
      expect(out[STATVFS_NAMEMAX]).toBe(255n);
      expect(handleHex(base)).toBe(handleHex(dir));
      expect(handleHex(`${base}/f`)).toBe(handleHex(path.join(dir, 'f')));
      expect(handleHex(`${base}/link`)).toBe(handleHex(path.join(dir, 'link')));
      expect(handleHex(`${base}/link`)).not.toBe(handleHex(`${base}/f`));
      const err = thrown(() => host.host.nameToHandle(`${base}/missing`));
      expect(err.code).toBe('ENOENT');
      expect(err.path).toBe(`${base}/missing`);
    });
  });

  it('xattr calls at fd', () => {
    const dir = freshDir(kind);
    const file = path.join(dir, 'f');
    writeFile(file, '');
    withDirFd(dir, (base) => {
      const p = `${base}/f`;
      host.lsetxattr(p, 'user.a', Buffer.from('v1'), host.XATTR_CREATE);
      expect(host.lgetxattr(file, 'user.a').toString()).toBe('v1');
      expect(host.lgetxattr(p, 'user.a').toString()).toBe('v1');
      expect(host.llistxattr(p)).toEqual(['user.a']);
      const again = thrown(() => host.lsetxattr(p, 'user.a', Buffer.from('x'), host.XATTR_CREATE));
      expect(again.code).toBe('EEXIST');
      expect(again.syscall).toBe('lsetxattr');
      expect(again.path).toBe(p);
      expect(host.host.tryLgetxattr(p, 'user.missing')).toBe(-os.constants.errno.ENODATA);
      expect(host.host.tryLgetxattr(`${base}/missing`, 'user.a')).toBe(-os.constants.errno.ENOENT);
      host.lsetxattr(p, 'trusted.big', Buffer.alloc(3000, 7), 0);
      expect(host.lgetxattr(p, 'trusted.big')).toEqual(Buffer.alloc(3000, 7));
      host.lremovexattr(p, 'user.a');
      expect(host.llistxattr(file)).not.toContain('user.a');
      const gone = thrown(() => host.lremovexattr(p, 'user.a'));
      expect(gone.code).toBe('ENODATA');
      expect(gone.syscall).toBe('lremovexattr');
      expect(gone.message).toBe(`ENODATA: no data available, lremovexattr '${p}'`);
      host.lsetxattr(base, 'trusted.overlay.opaque', Buffer.from('y'), 0);
      expect(host.lgetxattr(dir, 'trusted.overlay.opaque').toString()).toBe('y');
      expect(host.host.tryLgetxattr(base, 'trusted.overlay.opaque')).toEqual(Buffer.from('y'));
    });
  });

  it('xattr calls at fd skip symlinks', () => {
    const dir = freshDir(kind);
    writeFile(path.join(dir, 'f'), '');
    fs.symlinkSync('f', path.join(dir, 'link'));
    withDirFd(dir, (base) => {
      host.lsetxattr(`${base}/link`, 'trusted.onlink', Buffer.from('1'), 0);
      expect(host.llistxattr(path.join(dir, 'link'))).toContain('trusted.onlink');
      expect(host.llistxattr(path.join(dir, 'f'))).not.toContain('trusted.onlink');
      expect(host.llistxattr(`${base}/link`)).toContain('trusted.onlink');
      expect(host.lgetxattr(`${base}/link`, 'trusted.onlink').toString()).toBe('1');
      const miss = host.host.tryLgetxattr(`${base}/f`, 'trusted.onlink');
      expect(miss).toBe(-os.constants.errno.ENODATA);
      // Linux allows user.* xattrs only on regular files and directories.
      const err = thrown(() => host.lsetxattr(`${base}/link`, 'user.x', Buffer.from('1'), 0));
      expect(err.code).toBe('EPERM');
      host.lremovexattr(`${base}/link`, 'trusted.onlink');
      expect(host.llistxattr(path.join(dir, 'link'))).not.toContain('trusted.onlink');
    });
  });
});

describe('host @fd path parsing', () => {
  it('errors show the path as given', () => {
    withDirFd(freshDir('disk'), (base) => {
      const p = `${base}/missing\xff`;
      const err = thrown(() => host.lstat(p, newStatBuffer()));
      expect(err.code).toBe('ENOENT');
      expect(err.syscall).toBe('lstat');
      expect(err.path).toBe(p);
      expect(err.message).toBe(`ENOENT: no such file or directory, lstat '${p}'`);
      const pair = thrown(() => host.link(`${base}/a`, `${base}/b`));
      expect(pair.path).toBe(`${base}/a`);
      expect(pair.dest).toBe(`${base}/b`);
    });
  });

  it('slashes after the fd stay relative', () => {
    const dir = freshDir('disk');
    writeFile(path.join(dir, 'tmp'), 'inside');
    withDirFd(dir, (base) => {
      // "@N//tmp" must not turn into the absolute "/tmp".
      expect(statOf(`${base}//tmp`)[ST_INO]).toBe(statOf(path.join(dir, 'tmp'))[ST_INO]);
      expect(statOf(`${base}///`)[ST_INO]).toBe(statOf(dir)[ST_INO]);
    });
  });

  it('other @ paths are plain names', () => {
    const dir = freshDir('disk');
    fs.mkdirSync(path.join(dir, '@1x'));
    fs.mkdirSync(path.join(dir, '@'));
    const cwd = process.cwd();
    process.chdir(dir);
    try {
      expect(isDir(statOf('@1x'))).toBe(true);
      expect(isDir(statOf('@'))).toBe(true);
      expect(thrown(() => host.lstat('@x', newStatBuffer())).code).toBe('ENOENT');
      expect(isDir(statOf(`${dir}/@1x`))).toBe(true);
    } finally {
      process.chdir(cwd);
    }
  });

  it('bad fd numbers are EBADF', () => {
    const huge = thrown(() => host.lstat('@99999999999/a', newStatBuffer()));
    expect(huge.code).toBe('EBADF');
    expect(huge.path).toBe('@99999999999/a');
    expect(host.host.tryLstat('@2147483647/a', newStatBuffer())).toBe(-os.constants.errno.EBADF);
    expect(host.host.tryLgetxattr('@2147483647/a', 'user.a')).toBe(-os.constants.errno.EBADF);
    expect(thrown(() => host.llistxattr('@2147483647')).code).toBe('EBADF');
  });

  it('fd on a file is ENOTDIR', () => {
    const file = path.join(freshDir('disk'), 'f');
    writeFile(file, '');
    const fd = fs.openSync(file, 'r');
    try {
      expect(thrown(() => host.lstat(`@${fd}/a`, newStatBuffer())).code).toBe('ENOTDIR');
      // The bare form resolves "." against the fd, which needs a directory.
      expect(thrown(() => host.lstat(`@${fd}`, newStatBuffer())).code).toBe('ENOTDIR');
    } finally {
      fs.closeSync(fd);
    }
  });

  it('O_PATH fd works as base', () => {
    const dir = freshDir('tmpfs');
    writeFile(path.join(dir, 'f'), 'x');
    const fd = host.open(dir, host.O_PATH | host.O_DIRECTORY);
    try {
      expect(statOf(`@${fd}/f`)[ST_SIZE]).toBe(1n);
      host.lsetxattr(`@${fd}/f`, 'trusted.p', Buffer.from('1'), 0);
      expect(host.llistxattr(`@${fd}/f`)).toContain('trusted.p');
      expect(host.readdir(`@${fd}`).names).toEqual(['f']);
    } finally {
      host.close(fd);
    }
  });
});

/**
 * xattr calls that a child process runs on "@3" paths, where fd 3 is the
 * directory the test passes in. The child loads the addon with the
 * environment it is given and prints what it saw as JSON.
 */
const XATTR_CHILD = `
const h = require(process.argv[1]);
const base = '@3';
const out = { inUse: h.xattratInUse() };
const code = (fn) => { try { fn(); return 'none'; } catch (e) { return e.code + ' ' + e.path; } };
h.lsetxattr(base + '/f', 'trusted.a', Buffer.from('v1'), 0);
out.get = h.lgetxattr(base + '/f', 'trusted.a').toString();
out.big = h.tryLgetxattr(base + '/f', 'trusted.big').length;
out.tryMissing = h.tryLgetxattr(base + '/f', 'trusted.none');
out.tryNoFile = h.tryLgetxattr(base + '/nofile', 'trusted.a');
out.list = h.llistxattr(base + '/f').sort();
h.lsetxattr(base + '/link', 'trusted.onlink', Buffer.from('1'), 0);
out.linkList = h.llistxattr(base + '/link');
out.linkGet = h.lgetxattr(base + '/link', 'trusted.onlink').toString();
out.userOnLink = code(() => h.lsetxattr(base + '/link', 'user.x', Buffer.from('1'), 0));
h.lremovexattr(base + '/link', 'trusted.onlink');
out.linkAfter = h.llistxattr(base + '/link');
h.lsetxattr(base, 'trusted.overlay.opaque', Buffer.from('y'), 0);
out.root = h.lgetxattr(base, 'trusted.overlay.opaque').toString();
h.lremovexattr(base + '/f', 'trusted.a');
out.removed = code(() => h.lgetxattr(base + '/f', 'trusted.a'));
out.replace = code(() => h.lsetxattr(base + '/f', 'trusted.a', Buffer.from('x'), h.XATTR_REPLACE));
out.noFile = code(() => h.llistxattr(base + '/nofile'));
console.log(JSON.stringify(out));
`;

interface XattrChildResult {
  inUse: boolean;
  get: string;
  big: number;
  tryMissing: number;
  tryNoFile: number;
  list: string[];
  linkList: string[];
  linkGet: string;
  userOnLink: string;
  linkAfter: string[];
  root: string;
  removed: string;
  replace: string;
  noFile: string;
}

/** Fills dir with what XATTR_CHILD expects: f (with a 5000-byte xattr) and link. */
function prepareXattrDir(dir: string): void {
  writeFile(path.join(dir, 'f'), '');
  // Over tryLgetxattr's first 4 KiB buffer, so its second read runs too.
  host.lsetxattr(path.join(dir, 'f'), 'trusted.big', Buffer.alloc(5000, 1), 0);
  fs.symlinkSync('f', path.join(dir, 'link'));
}

/** Runs XATTR_CHILD with fd 3 open on dir, the fallback on or off. */
function runXattrChild(dirFd: number, fallback: boolean): XattrChildResult {
  const env = { ...process.env };
  delete env.TSOVERLAY_NO_XATTRAT;
  if (fallback) env.TSOVERLAY_NO_XATTRAT = '1';
  const output = execFileSync(process.execPath, ['-e', XATTR_CHILD, host.addonPath], {
    env,
    stdio: ['ignore', 'pipe', 'inherit', dirFd],
    encoding: 'utf8',
  });
  return JSON.parse(output) as XattrChildResult;
}

/** Checks what XATTR_CHILD saw. The syscalls and the fallback must agree. */
function expectXattrChild(result: XattrChildResult): void {
  expect(result.get).toBe('v1');
  expect(result.big).toBe(5000);
  expect(result.tryMissing).toBe(-os.constants.errno.ENODATA);
  expect(result.tryNoFile).toBe(-os.constants.errno.ENOENT);
  expect(result.list).toEqual(['trusted.a', 'trusted.big']);
  expect(result.linkList).toEqual(['trusted.onlink']);
  expect(result.linkGet).toBe('1');
  // Linux rejects user.* on a symlink, which proves the call reached the link.
  expect(result.userOnLink).toBe('EPERM @3/link');
  expect(result.linkAfter).toEqual([]);
  expect(result.root).toBe('y');
  expect(result.removed).toBe('ENODATA @3/f');
  expect(result.replace).toBe('ENODATA @3/f');
  expect(result.noFile).toBe('ENOENT @3/nofile');
}

/** True if the running kernel has getxattrat and its kin (Linux 6.13). */
function kernelHasXattrat(): boolean {
  const [major, minor] = os.release().split('.').map((n) => Number.parseInt(n, 10));
  return major > 6 || (major === 6 && minor >= 13);
}

/** True if a seccomp filter is on, which may reject newer syscalls. */
function seccompFiltered(): boolean {
  return /^Seccomp:\s*[12]$/m.test(fs.readFileSync('/proc/self/status', 'utf8'));
}

describe('host @fd xattr fallback', () => {
  it('xattrat use follows the kernel', () => {
    const inUse = host.host.xattratInUse();
    if (!kernelHasXattrat()) expect(inUse).toBe(false);
    if (kernelHasXattrat() && !seccompFiltered()) expect(inUse).toBe(true);
  });

  it.each([false, true])('xattr child with fallback %s', (fallback) => {
    const dir = freshDir('tmpfs');
    prepareXattrDir(dir);
    const fd = openDirFd(dir);
    try {
      const result = runXattrChild(fd, fallback);
      expect(result.inUse).toBe(fallback ? false : host.host.xattratInUse());
      expectXattrChild(result);
    } finally {
      fs.closeSync(fd);
    }
    expect(host.llistxattr(path.join(dir, 'link'))).toEqual([]);
    expect(host.lgetxattr(dir, 'trusted.overlay.opaque').toString()).toBe('y');
  });
});

describe('host @fd after mount changes', () => {
  let outer = '';
  const mounted: string[] = [];

  /** Mounts a tmpfs on a new directory under outer, for one test. */
  function mountLayer(name: string): string {
    const dir = path.join(outer, name);
    fs.mkdirSync(dir);
    execFileSync('mount', ['-t', 'tmpfs', '-o', 'size=16m', 'tmpfs', dir]);
    mounted.push(dir);
    return dir;
  }

  beforeAll(() => {
    // A private mount of this file's own, because mount --move rejects a
    // mount whose parent is shared.
    outer = path.join(workDir, 'outer');
    fs.mkdirSync(outer);
    execFileSync('mount', ['-t', 'tmpfs', '-o', 'size=16m', 'tmpfs', outer]);
    mounted.push(outer);
    execFileSync('mount', ['--make-private', outer]);
  });

  afterAll(() => {
    // Mounts moved or detached by a test are already gone from their paths.
    // umount -l handles the rest whatever their order.
    for (const dir of mounted.reverse()) {
      if (fs.existsSync(dir) && isMountPoint(dir)) execFileSync('umount', ['-l', dir]);
    }
  });

  /** True if dir is the root of a mount (its device differs from its parent's). */
  function isMountPoint(dir: string): boolean {
    return fs.statSync(dir).dev !== fs.statSync(path.dirname(dir)).dev;
  }

  /** Runs every path call at base, a layer that contains file f. */
  function exerciseLayer(base: string): void {
    expect(fs.readFileSync(`/proc/self/fd/${base.slice(1)}/f`, 'utf8')).toBe('layer');
    expect(statOf(`${base}/f`)[ST_SIZE]).toBe(5n);

    host.mkdir(`${base}/d`, 0o755);
    const fd = host.open(`${base}/d/g`, host.O_CREAT | host.O_WRONLY, 0o644);
    host.close(fd);
    host.symlink('g', `${base}/d/link`);
    expect(host.readlink(`${base}/d/link`)).toBe('g');
    host.link(`${base}/d/g`, `${base}/d/h`);
    host.rename(`${base}/d/h`, `${base}/d/i`, host.RENAME_NOREPLACE);
    host.mknod(`${base}/d/wh`, host.S_IFCHR, 0);
    expect([...host.readdir(`${base}/d`).names].sort()).toEqual(['g', 'i', 'link', 'wh']);

    host.chmod(`${base}/d/g`, 0o600);
    host.lchown(`${base}/d/link`, 1, 2);
    host.utimens(`${base}/d/link`, 1, 2, 3, 4);
    expect(statOf(`${base}/d/link`)[ST_MTIME_SEC]).toBe(3n);
    host.truncate(`${base}/d/g`, 10);
    expect(statOf(`${base}/d/g`)[ST_SIZE]).toBe(10n);

    host.lsetxattr(`${base}/d`, 'trusted.overlay.opaque', Buffer.from('y'), 0);
    expect(host.lgetxattr(`${base}/d`, 'trusted.overlay.opaque').toString()).toBe('y');
    expect(host.llistxattr(`${base}/d`)).toEqual(['trusted.overlay.opaque']);
    host.lremovexattr(`${base}/d`, 'trusted.overlay.opaque');
    expect(host.host.tryLgetxattr(`${base}/d`, 'trusted.overlay.opaque')).toBe(
      -os.constants.errno.ENODATA,
    );

    const out = newStatvfsBuffer();
    host.statvfs(base, out);
    expect(out[STATVFS_BLOCKS] > 0n).toBe(true);
    expect(host.host.nameToHandle(`${base}/d/g`).handle.length > 0).toBe(true);

    for (const name of ['g', 'i', 'link', 'wh']) host.unlink(`${base}/d/${name}`);
    host.rmdir(`${base}/d`);
    expect(host.host.tryLstat(`${base}/d`, newStatBuffer())).toBe(-os.constants.errno.ENOENT);
  }

  it('layer survives mount --move', () => {
    const from = mountLayer('from');
    const to = path.join(outer, 'to');
    fs.mkdirSync(to);
    writeFile(path.join(from, 'f'), 'layer');
    const fd = openDirFd(from);
    try {
      execFileSync('mount', ['--move', from, to]);
      mounted.push(to);
      const err = thrown(() => host.lstat(path.join(from, 'f'), newStatBuffer()));
      expect(err.code).toBe('ENOENT');
      expect(fs.readFileSync(path.join(to, 'f'), 'utf8')).toBe('layer');
      exerciseLayer(`@${fd}`);
    } finally {
      fs.closeSync(fd);
    }
  });

  it('layer survives umount -l', () => {
    const dir = mountLayer('lazy');
    writeFile(path.join(dir, 'f'), 'layer');
    prepareXattrDir(fs.mkdtempSync(path.join(dir, 'x-')));
    const fd = openDirFd(dir);
    try {
      execFileSync('umount', ['-l', dir]);
      expect(isMountPoint(dir)).toBe(false);
      expect(fs.existsSync(path.join(dir, 'f'))).toBe(false);
      exerciseLayer(`@${fd}`);
      const sub = host.readdir(`@${fd}`).names.find((n) => n.startsWith('x-'));
      expect(sub).toBeDefined();
      const subFd = host.open(`@${fd}/${sub}`, host.O_RDONLY | host.O_DIRECTORY);
      try {
        for (const fallback of [false, true]) {
          expectXattrChild(runXattrChild(subFd, fallback));
          // The child leaves f's trusted.a removed and root's opaque set.
          host.lremovexattr(`@${subFd}`, 'trusted.overlay.opaque');
        }
      } finally {
        host.close(subFd);
      }
    } finally {
      fs.closeSync(fd);
    }
  });
});
