#!/usr/bin/env node
// The benchmark's floor: a passthrough filesystem on the same stack as
// tsoverlay (patched fuse-native, the tsoverlay_host addon's synchronous
// calls, the same libfuse options) that does nothing but forward each
// request to one directory. What tsoverlay costs above this is the union.
//
//   node scripts/bench/passthrough.js ROOT MOUNTPOINT
//
// Runs in the foreground, prints "ready" once mounted, and exits when the
// mount goes away (umount) or on SIGINT/SIGTERM.
'use strict';

const path = require('node:path');
const Fuse = require('fuse-native');

const repoRoot = path.join(__dirname, '..', '..');
const host = require(path.join(repoRoot, 'build', 'Release', 'tsoverlay_host.node'));

// As src/daemon.ts BASE_FUSE_OPTIONS, plus what it adds for root.
const FUSE_OPTIONS = [
  'use_ino', 'big_writes', 'max_write=131072', 'atomic_o_trunc',
  'kernel_cache', 'entry_timeout=1', 'attr_timeout=1', 'negative_timeout=1',
  'subtype=passthrough',
];
const STAT_LENGTH = 16;
const ST_INO = 6;
const STATVFS_LENGTH = 11;
const EIO = -5;

function main() {
  const [root, mountpoint] = process.argv.slice(2);
  if (root === undefined || mountpoint === undefined) {
    process.stderr.write('usage: passthrough.js ROOT MOUNTPOINT\n');
    process.exit(2);
  }
  // Paths arrive as latin1 strings of their bytes, as the host calls take them.
  const realRoot = Buffer.from(path.resolve(root), 'utf8').toString('latin1');
  const real = (p) => (p === '/' ? realRoot : realRoot + p);
  process.umask(0); // modes from the kernel already have the caller's umask applied

  const options = [...FUSE_OPTIONS, `fsname=${path.resolve(root).replace(/([\\,])/g, '\\$1')}`];
  if (process.getuid() === 0) options.push('allow_other', 'default_permissions');

  // Runs fn and replies with its value, or with the errno it threw.
  const run = (cb, fn) => {
    let value;
    try {
      value = fn();
    } catch (err) {
      cb(typeof err.errno === 'number' && err.errno < 0 ? err.errno : EIO);
      return;
    }
    if (value === undefined) cb(0);
    else cb(0, value);
  };
  const count = (cb, fn) => {
    try {
      cb(fn());
    } catch (err) {
      cb(typeof err.errno === 'number' && err.errno < 0 ? err.errno : EIO);
    }
  };
  const slice = (buf, len) => (len === buf.length ? buf : buf.subarray(0, len));

  const ops = {
    getattr: (p, cb) => run(cb, () => {
      const st = new BigInt64Array(STAT_LENGTH);
      host.lstat(real(p), st);
      return st;
    }),
    fgetattr: (p, fd, cb) => run(cb, () => {
      const st = new BigInt64Array(STAT_LENGTH);
      host.fstat(fd, st);
      return st;
    }),
    statfs: (p, cb) => run(cb, () => {
      const st = new BigInt64Array(STATVFS_LENGTH);
      host.statvfs(real(p), st);
      return st;
    }),
    readdir: (p, cb) => {
      let names;
      let entries;
      try {
        const listing = host.readdir(real(p));
        names = ['.', '..', ...listing.names];
        entries = new BigInt64Array(names.length * 2);
        const st = new BigInt64Array(STAT_LENGTH);
        host.lstat(real(p), st);
        const self = st[ST_INO];
        if (p !== '/') host.lstat(real(path.posix.dirname(p)), st);
        entries.set([self, 0o040000n, st[ST_INO], 0o040000n]);
        for (let i = 0; i < listing.names.length; i++) {
          entries[2 * i + 4] = listing.inos[i];
          entries[2 * i + 5] = BigInt(listing.types[i] << 12);
        }
      } catch (err) {
        cb(typeof err.errno === 'number' && err.errno < 0 ? err.errno : EIO);
        return;
      }
      cb(0, names, entries);
    },
    open: (p, flags, cb) => run(cb, () => host.open(real(p), flags & ~(host.O_CREAT | host.O_EXCL), 0)),
    create: (p, mode, flags, cb) => run(cb, () => host.open(real(p), flags | host.O_CREAT, mode)),
    read: (p, fd, buf, len, pos, cb) => count(cb, () => host.pread(fd, slice(buf, len), pos)),
    write: (p, fd, buf, len, pos, cb) => count(cb, () => host.pwrite(fd, slice(buf, len), pos)),
    release: (p, fd, cb) => run(cb, () => host.close(fd)),
    flush: (p, fd, cb) => cb(0),
    fsync: (p, datasync, fd, cb) => run(cb, () => (datasync ? host.fdatasync(fd) : host.fsync(fd))),
    ftruncate: (p, fd, size, cb) => run(cb, () => host.ftruncate(fd, size)),
    truncate: (p, size, cb) => run(cb, () => host.truncate(real(p), size)),
    utimens: (p, aSec, aNsec, mSec, mNsec, cb) =>
      run(cb, () => host.utimens(real(p), aSec, aNsec, mSec, mNsec)),
    chmod: (p, mode, cb) => run(cb, () => host.chmod(real(p), mode)),
    chown: (p, uid, gid, cb) => run(cb, () => host.lchown(real(p), uid, gid)),
    readlink: (p, cb) => run(cb, () => host.readlink(real(p))),
    mknod: (p, mode, dev, cb) => run(cb, () => host.mknod(real(p), mode, dev)),
    mkdir: (p, mode, cb) => run(cb, () => host.mkdir(real(p), mode)),
    symlink: (target, p, cb) => run(cb, () => host.symlink(target, real(p))),
    link: (from, to, cb) => run(cb, () => host.link(real(from), real(to))),
    unlink: (p, cb) => run(cb, () => host.unlink(real(p))),
    rmdir: (p, cb) => run(cb, () => host.rmdir(real(p))),
    rename: (from, to, cb) => run(cb, () => host.rename(real(from), real(to))),
    getxattr: (p, name, position, cb) => run(cb, () => host.lgetxattr(real(p), name)),
    listxattr: (p, cb) => run(cb, () => host.llistxattr(real(p))),
    setxattr: (p, name, value, position, flags, cb) =>
      run(cb, () => host.lsetxattr(real(p), name, Buffer.from(value), flags)),
    removexattr: (p, name, cb) => run(cb, () => host.lremovexattr(real(p), name)),
  };

  const fuse = new Fuse(mountpoint, ops, { timeout: false, options });
  fuse.onexit = () => process.exit(0);
  fuse.mount((err) => {
    if (err) {
      process.stderr.write(`passthrough: cannot mount on '${mountpoint}': ${err.message}\n`);
      process.exit(1);
    }
    process.stdout.write('ready\n');
  });
  let stopping = false;
  const stop = () => {
    if (stopping) return;
    stopping = true;
    Fuse.unmount(mountpoint, () => undefined);
  };
  process.on('SIGINT', stop);
  process.on('SIGTERM', stop);
  process.on('SIGHUP', () => undefined);
}

main();
