// The fuse-native operation table: each kernel request becomes one call into
// the union code, and its result or error becomes the reply. Handlers run on
// Node's main thread, which also reads the requests, and must reply before
// they return. The patched binding replies EIO for a handler that does not.
import type { Operations } from 'fuse-native';
import type { Logger } from '../log';
import { chmod, chown, getattr, statfs, truncate, utimens } from '../union/inode';
import { link, mkdir, mknod, rename, rmdir, symlink, unlink } from '../union/dir';
import { lookupExisting } from '../union/lookup';
import { parentOf, type Overlay } from '../union/overlay';
import { readdirMerged } from '../union/readdir';
import { getxattr, listxattr, removexattr, setxattr } from '../union/xattrs';
import { host } from '../host/native';
import { toErrno } from './reply';

type Reply = (err: number, ...values: never[]) => void;

export function makeOperations(ov: Overlay, log: Logger, caller: { context: Uint32Array }): Operations {
  const traced = log.isLevelEnabled('trace');

  // Runs fn for one request and replies with its result, or with -errno.
  function handle<T>(op: string, path: string | null, cb: Reply, fn: () => T, reply: (value: T) => void): void {
    const context = caller.context;
    ov.caller.uid = context[0];
    ov.caller.gid = context[1];
    ov.caller.pid = context[2];
    if (traced) log.trace({ op, path, uid: context[0], pid: context[2] }, 'request');
    let value: T;
    try {
      value = fn();
    } catch (err) {
      cb(toErrno(err, log, op, path));
      return;
    }
    reply(value);
  }

  const done = (cb: Reply) => () => cb(0);
  // Attributes for libfuse's getattr that follows the op in the same
  // request; fuse-native then returns them without calling JS again. On a
  // failure that getattr runs as usual.
  const attrsAfter = (op: string, path: string | null, stat: () => BigInt64Array): BigInt64Array | undefined => {
    try {
      return stat();
    } catch (err) {
      log.debug({ op, path, err }, 'stat for the reply failed; libfuse calls getattr instead');
      return undefined;
    }
  };
  const doneWithStat = (cb: Reply, op: string, path: string | null, stat: () => BigInt64Array) => () =>
    (cb as (err: number, stat?: BigInt64Array) => void)(0, attrsAfter(op, path, stat));
  const withValue = (cb: Reply) => (value: unknown) => (cb as (err: number, v: unknown) => void)(0, value);
  const asCount = (cb: Reply) => (count: number) => cb(count);

  return {
    getattr: (path, cb) => handle('getattr', path, cb, () => getattr(ov, path), withValue(cb)),
    fgetattr: (path, fd, cb) => handle('fgetattr', path, cb, () => ov.files.fstat(fd), withValue(cb)),
    statfs: (path, cb) => handle('statfs', path, cb, () => statfs(ov), withValue(cb)),

    readdir: (path, cb) =>
      handle('readdir', path, cb, () => {
        const node = lookupExisting(ov, path, 'readdir');
        const listing = readdirMerged(ov, path, node);
        const parent = path === '/' ? node : lookupExisting(ov, parentOf(path), 'readdir');
        const entries = new BigInt64Array(listing.entries.length + 4);
        entries.set([node.ino, 0o040000n, parent.ino, 0o040000n]);
        entries.set(listing.entries, 4);
        return { names: ['.', '..', ...listing.names], entries };
      }, (l) => (cb as (err: number, n: string[], e: BigInt64Array) => void)(0, l.names, l.entries)),

    open: (path, flags, cb) => handle('open', path, cb, () => ov.files.open(path, flags), withValue(cb)),
    create: (path, mode, flags, cb) =>
      handle('create', path, cb, () => ov.files.create(path, mode, flags),
        (fd) => cb(0, fd, attrsAfter('create', path, () => ov.files.fstat(fd)))),

    read: (path, fd, buf, len, pos, cb) => handle('read', path, cb, () => ov.files.read(fd, buf, len, pos), asCount(cb)),
    write: (path, fd, buf, len, pos, cb) => handle('write', path, cb, () => ov.files.write(fd, buf, len, pos), asCount(cb)),
    release: (path, fd, cb) => handle('release', path, cb, () => ov.files.release(fd), done(cb)),
    fsync: (path, datasync, fd, cb) => handle('fsync', path, cb, () => ov.files.fsync(fd, datasync !== 0), done(cb)),
    ftruncate: (path, fd, size, cb) => handle('ftruncate', path, cb, () => ov.files.ftruncate(fd, size), doneWithStat(cb, 'ftruncate', path, () => ov.files.fstat(fd))),

    truncate: (path, size, cb) => handle('truncate', path, cb, () => truncate(ov, path, size), doneWithStat(cb, 'truncate', path, () => getattr(ov, path))),
    utimens: (path, aSec, aNsec, mSec, mNsec, cb) =>
      handle('utimens', path, cb, () => utimens(ov, path, aSec, aNsec, mSec, mNsec), doneWithStat(cb, 'utimens', path, () => getattr(ov, path))),
    chmod: (path, mode, cb) => handle('chmod', path, cb, () => chmod(ov, path, mode), doneWithStat(cb, 'chmod', path, () => getattr(ov, path))),
    chown: (path, uid, gid, cb) => handle('chown', path, cb, () => chown(ov, path, uid, gid), doneWithStat(cb, 'chown', path, () => getattr(ov, path))),
    readlink: (path, cb) =>
      handle('readlink', path, cb, () => host.readlink(lookupExisting(ov, path, 'readlink').realPath), withValue(cb)),

    mknod: (path, mode, dev, cb) => handle('mknod', path, cb, () => mknod(ov, path, mode, dev), doneWithStat(cb, 'mknod', path, () => getattr(ov, path))),
    mkdir: (path, mode, cb) => handle('mkdir', path, cb, () => mkdir(ov, path, mode), doneWithStat(cb, 'mkdir', path, () => getattr(ov, path))),
    symlink: (target, path, cb) => handle('symlink', path, cb, () => symlink(ov, target, path), doneWithStat(cb, 'symlink', path, () => getattr(ov, path))),
    link: (from, to, cb) => handle('link', to, cb, () => link(ov, from, to), doneWithStat(cb, 'link', to, () => getattr(ov, to))),
    unlink: (path, cb) => handle('unlink', path, cb, () => unlink(ov, path), done(cb)),
    rmdir: (path, cb) => handle('rmdir', path, cb, () => rmdir(ov, path), done(cb)),
    rename: (from, to, cb) => handle('rename', from, cb, () => rename(ov, from, to), done(cb)),

    getxattr: (path, name, _position, cb) => handle('getxattr', path, cb, () => getxattr(ov, path, name), withValue(cb)),
    listxattr: (path, cb) => handle('listxattr', path, cb, () => listxattr(ov, path), withValue(cb)),
    setxattr: (path, name, value, _position, flags, cb) =>
      handle('setxattr', path, cb, () => setxattr(ov, path, name, Buffer.from(value), flags), done(cb)),
    removexattr: (path, name, cb) => handle('removexattr', path, cb, () => removexattr(ov, path, name), done(cb)),
  };
}
