// Differences between tsoverlay and kernel overlayfs that are understood
// and accepted. The runner skips a mismatch that an entry matches. A
// snapshot difference is dropped and the sequence goes on. A step
// difference ends the sequence, because the two mounts no longer have the
// same state.
import type { Op } from './ops';

// One difference as the runner found it: a step result, or one field of
// one entry in a snapshot comparison.
export interface MismatchCase {
  where: 'mount' | 'step' | 'view' | 'upper' | 'workdir' | 'cross-mount' | 'cross-kernel' | 'cross-ours';
  op?: Op;
  path?: string;
  field?: string;
  entryType?: string;
  kernel: string;
  ours: string;
}

export interface KnownDifference {
  // One line: what differs and why it is accepted.
  reason: string;
  matches(c: MismatchCase): boolean;
}

const isUpperSide = (c: MismatchCase) => c.where === 'upper' || c.where === 'cross-kernel' || c.where === 'cross-ours';
const withoutNlink = (s: string) => s.replace(/nlink=\d+/, '');

// A closedir result lists names without types, so a whiteout the kernel
// lists shows only as a name tsoverlay lacks.
// NOTE: this also accepts a real entry that tsoverlay leaves out of a listing.
function onlyExtraNames(kernel: string, ours: string): boolean {
  const names = (r: string): string[] | undefined => {
    if (!r.startsWith('ok:names=')) return undefined;
    const body = r.slice('ok:names='.length);
    const dups = body.indexOf(',dups=');
    return (dups === -1 ? body : body.slice(0, dups)).split('|').filter((n) => n !== '');
  };
  const k = names(kernel);
  const o = names(ours);
  return k !== undefined && o !== undefined && o.length < k.length && o.every((n) => k.includes(n));
}

// Each entry is listed in the README under "Differences from kernel overlayfs".
export const knownDifferences: KnownDifference[] = [
  {
    reason: 'kernel links all its whiteouts to one shared inode and keeps it in work/',
    matches: (c) =>
      (c.where === 'upper' && c.entryType === 'whiteout' && (c.field === 'nlink' || c.field === 'peers')) ||
      (c.where === 'workdir' && c.kernel.split('\n').filter((l) => !/^work\/#[0-9a-f]+$/.test(l)).join('\n') === c.ours),
  },
  {
    reason: 'kernel makes whiteouts in the workdir (root group); RENAME_WHITEOUT takes a setgid parent\'s group',
    matches: (c) => isUpperSide(c) && c.entryType === 'whiteout' && (c.field === 'gid' || c.field === 'uid'),
  },
  {
    reason: 'kernel readdir of a non-merged directory lists whiteouts it then cannot stat',
    matches: (c) =>
      (c.field === 'presence' && c.kernel === 'lstat-error:ENOENT') ||
      (c.where === 'step' && (c.op?.op === 'readdir' || c.op?.op === 'closedir') && c.kernel.includes(':chr')) ||
      (c.where === 'step' && c.op?.op === 'closedir' && onlyExtraNames(c.kernel, c.ours)),
  },
  {
    reason: 'a directory rename that fails with ENOTEMPTY may leave an opaque mark in the kernel',
    matches: (c) => isUpperSide(c) && c.field === 'xattrs' && c.kernel.includes('opaque') && !c.ours.includes('opaque'),
  },
  {
    reason: 'kernel copy-up before truncate fills holes; tsoverlay keeps them',
    matches: (c) => isUpperSide(c) && c.field === 'holes',
  },
  {
    reason: 'libfuse 2.9 cannot stat an open directory after rmdir (no path, no fh in GETATTR)',
    matches: (c) => c.where === 'step' && c.op?.op === 'fstat' && c.ours === 'ENOENT',
  },
  {
    reason: 'link count of an open, unlinked file with other names',
    matches: (c) => c.where === 'step' && c.op?.op === 'fstat' && withoutNlink(c.kernel) === withoutNlink(c.ours),
  },
  {
    // NOTE: this also covers an unprivileged rename between unrelated names
    // that the kernel allows and tsoverlay rejects; the runner cannot tell.
    reason: 'rename between two names of one file: the kernel returns 0 before it checks permissions, FUSE checks them',
    matches: (c) =>
      c.where === 'step' && c.op?.op === 'rename' && c.op.as === 'nobody' && c.kernel === 'ok' &&
      (c.ours === 'EACCES' || c.ours === 'EPERM'),
  },
];
