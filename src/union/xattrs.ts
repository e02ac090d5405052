// Extended attributes (kernel fs/overlayfs/xattrs.c). The overlay's own
// xattrs (<prefix>opaque, origin, ...) are never listed or settable. A
// user's xattr named like them is stored escaped as <prefix>overlay.NAME, as
// kernels since 6.7 do, so layers can nest.
import { host } from '../host/native';
import { errnoError, isErrno } from '../errors';
import { copyUp } from './copy-up';
import { noteChange } from './inode';
import { lookupExisting } from './lookup';
import type { Overlay } from './overlay';

// Names that are neither shown nor settable, whatever the prefix mode.
const PRIVATE_PREFIXES: string[] = [];

// Maps a name the user sees to the name stored in the layer, or undefined
// for a name the overlay keeps to itself.
function toRealName(ov: Overlay, name: string): string {
  if (name.startsWith(ov.xattrPrefix)) return ov.xattrPrefix + 'overlay.' + name.slice(ov.xattrPrefix.length);
  return name;
}

// Maps a stored name back, or returns undefined for a private name.
function toUserName(ov: Overlay, realName: string): string | undefined {
  if (PRIVATE_PREFIXES.some((p) => realName.startsWith(p))) return undefined;
  if (!realName.startsWith(ov.xattrPrefix)) return realName;

  const escaped = ov.xattrPrefix + 'overlay.';
  if (!realName.startsWith(escaped)) return undefined;
  return ov.xattrPrefix + realName.slice(escaped.length);
}

export function getxattr(ov: Overlay, path: string, name: string): Buffer {
  const node = lookupExisting(ov, path, 'getxattr');
  if (PRIVATE_PREFIXES.some((p) => name.startsWith(p))) throw errnoError('ENODATA', 'getxattr', path);
  return host.lgetxattr(node.realPath, toRealName(ov, name));
}

// As the layers' own filesystems do, trusted.* names are listed only to a
// privileged caller, while the daemon itself reads them as root. uid 0 is
// taken as CAP_SYS_ADMIN, which FUSE does not report.
export function listxattr(ov: Overlay, path: string): string[] {
  const node = lookupExisting(ov, path, 'listxattr');
  const privileged = ov.caller.uid === 0;
  const names: string[] = [];
  for (const realName of host.llistxattr(node.realPath)) {
    const name = toUserName(ov, realName);
    if (name === undefined || (!privileged && name.startsWith('trusted.'))) continue;
    names.push(name);
  }
  return names;
}

export function setxattr(ov: Overlay, path: string, name: string, value: Buffer, flags: number): void {
  if (PRIVATE_PREFIXES.some((p) => name.startsWith(p))) throw errnoError('EPERM', 'setxattr', path);
  const node = copyUp(ov, path);
  host.lsetxattr(node.realPath, toRealName(ov, name), value, flags);
  noteChange(ov, node);
}

export function removexattr(ov: Overlay, path: string, name: string): void {
  if (PRIVATE_PREFIXES.some((p) => name.startsWith(p))) throw errnoError('ENODATA', 'removexattr', path);
  const realName = toRealName(ov, name);

  // As the kernel does, a missing xattr on a lower object fails without a copy-up.
  const node = lookupExisting(ov, path, 'removexattr');
  if (!ov.layers[node.layer].isUpper) host.lgetxattr(node.realPath, realName);

  const upper = copyUp(ov, path);
  host.lremovexattr(upper.realPath, realName);
  noteChange(ov, upper);
}

// Copies every xattr except the overlay's private ones from a lower object
// to its staged copy. POSIX ACLs and security.* must copy; another name the
// upper filesystem does not support is skipped, as the kernel does.
export function copyXattrs(ov: Overlay, fromPath: string, toPath: string): void {
  let names: string[];
  try {
    names = host.llistxattr(fromPath);
  } catch (err) {
    if (isErrno(err, 'EOPNOTSUPP')) return;
    throw err;
  }

  for (const realName of names) {
    if (toUserName(ov, realName) === undefined) continue;
    let value: Buffer;
    try {
      value = host.lgetxattr(fromPath, realName);
    } catch (err) {
      if (isErrno(err, 'ENODATA')) continue; // removed meanwhile
      throw err;
    }
    try {
      host.lsetxattr(toPath, realName, value, 0);
    } catch (err) {
      const mustCopy = realName.startsWith('security.') || realName.startsWith('system.posix_acl_');
      if (mustCopy || !isErrno(err, 'EOPNOTSUPP')) throw err;
      ov.log.warn({ err, path: fromPath, xattr: realName }, 'upper filesystem rejects xattr, skipped in copy-up');
    }
  }
}
