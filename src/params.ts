// Mount option parsing, in the kernel's syntax (fs/overlayfs/params.c):
// comma-separated options, a lowerdir list with the topmost layer first,
// and a backslash that escapes the next character (`\,` and `\:`).

export interface MountParams {
  lowerdirs: string[];
  upperdir?: string;
  workdir?: string;
  readOnly: boolean;
  // Honour OCI `.wh.NAME` files and `.wh..wh..opq` markers in lower layers.
  whiteoutMarkers: boolean;
  // Skip fsync of the upper, as the kernel's volatile option does.
  volatile: boolean;
  // Overlay xattrs under user.overlay. instead of trusted.overlay.
  userxattr: boolean;
  // Source shown in /proc/mounts; by default it names the layers, because a
  // FUSE mount cannot show them among its mount options.
  fsname?: string;
  // Options passed to libfuse as they are (allow_other, dev, suid, ...).
  fuseOptions: string[];
}

export class ParamError extends Error {}

// Generic mount flags that libfuse 2.9 understands and applies itself.
const fuseFlags = new Set([
  'allow_other', 'allow_root', 'default_permissions', 'dev', 'nodev', 'suid', 'nosuid',
  'exec', 'noexec', 'async', 'sync', 'atime', 'noatime', 'dirsync', 'auto_unmount', 'nonempty',
]);

// Flags mount(8) or fstab pass along that mean nothing to the daemon.
const ignoredFlags = new Set(['rw', 'relatime', 'nodiratime', 'diratime', 'defaults', 'auto', 'noauto', 'user', 'nouser', 'nofail', '_netdev', 'strictatime', 'lazytime', 'silent', 'loud']);

// Kernel options whose only value tsoverlay implements is the kernel's default.
const defaultOnly: Record<string, string[]> = {
  redirect_dir: ['off', 'nofollow'],
  index: ['off'],
  metacopy: ['off'],
  nfs_export: ['off'],
  xino: ['off', 'auto'],
  uuid: ['on', 'auto', 'null', 'off'],
  verity: ['off'],
};

// Splits s at unescaped separators, keeping escapes in the pieces.
function splitEscaped(s: string, separator: string): string[] {
  const parts: string[] = [];
  let current = '';
  for (let i = 0; i < s.length; i++) {
    const ch = s[i];
    if (ch === '\\' && i + 1 < s.length) {
      current += ch + s[i + 1];
      i++;
    } else if (ch === separator) {
      parts.push(current);
      current = '';
    } else {
      current += ch;
    }
  }
  parts.push(current);
  return parts;
}

function unescape(s: string): string {
  return s.replace(/\\(.)/gs, '$1');
}

function requirePath(name: string, value: string | undefined): string {
  if (value === undefined || value === '') {
    throw new ParamError(`Invalid option '${name}': a directory path is required, as in ${name}=/path/to/dir`);
  }
  return unescape(value);
}

export function parseMountOptions(optionStrings: string[]): MountParams {
  const params: MountParams = {
    lowerdirs: [],
    readOnly: false,
    whiteoutMarkers: true,
    volatile: false,
    userxattr: false,
    fuseOptions: [],
  };
  let lowerSeen = false;

  const options = optionStrings.flatMap((s) => splitEscaped(s, ',')).filter((o) => o !== '');
  for (const option of options) {
    const eq = option.indexOf('=');
    const key = eq === -1 ? option : option.slice(0, eq);
    const value = eq === -1 ? undefined : option.slice(eq + 1);

    if (key === 'lowerdir') {
      // podman mounts read-only image layers with "lowerdir=" alone and later
      // options may repeat it; an empty value is checked once all are read.
      lowerSeen = true;
      params.lowerdirs = value === undefined || value === '' ? [] : splitEscaped(value, ':').map((p, i) => {
        if (p === '') throw new ParamError(`Invalid lowerdir '${value}': component ${i + 1} is empty; separate layers with single colons and escape a colon in a path as \\:`);
        return unescape(p);
      });
    } else if (key === 'upperdir') {
      params.upperdir = requirePath(key, value);
    } else if (key === 'workdir') {
      params.workdir = requirePath(key, value);
    } else if (key === 'ro') {
      params.readOnly = true;
    } else if (key === 'volatile') {
      params.volatile = true;
    } else if (key === 'userxattr') {
      params.userxattr = true;
    } else if (key === 'whiteout_markers' || key === 'nowhiteout_markers') {
      params.whiteoutMarkers = key === 'whiteout_markers';
    } else if (key === 'fsname') {
      params.fsname = requirePath(key, value);
    } else if (key === 'uidmapping' || key === 'gidmapping') {
      throw new ParamError(`Unsupported option '${option}': tsoverlay does not implement uid or gid mapping yet; run the container without a user namespace mapping`);
    } else if (key in defaultOnly) {
      if (value === undefined || !defaultOnly[key].includes(value)) {
        throw new ParamError(`Unsupported option '${option}': tsoverlay implements only ${key}=${defaultOnly[key][0]}, the kernel's default`);
      }
    } else if (fuseFlags.has(key) && value === undefined) {
      params.fuseOptions.push(key);
    } else if (ignoredFlags.has(key) && value === undefined) {
      continue;
    } else if (key === 'max_read' || key === 'blksize' || key === 'umask' || key === 'uid' || key === 'gid') {
      params.fuseOptions.push(option);
    } else {
      throw new ParamError(`Unknown option '${option}': see 'tsoverlay mount --help' for the options tsoverlay accepts`);
    }
  }

  if (!lowerSeen || params.lowerdirs.length === 0) {
    throw new ParamError("Missing 'lowerdir': give at least one lower layer, as in -o lowerdir=/lower1:/lower2");
  }
  if (params.upperdir !== undefined && params.workdir === undefined) {
    throw new ParamError(`Missing 'workdir' for upperdir '${params.upperdir}': give an empty directory on the same filesystem, as in workdir=/path/to/work`);
  }
  if (params.upperdir === undefined) {
    // As in the kernel, a workdir without an upperdir is ignored.
    params.workdir = undefined;
    params.readOnly = true;
  }
  if (params.lowerdirs.length > 500) {
    throw new ParamError(`Too many lower layers (${params.lowerdirs.length}): the maximum is 500`);
  }
  return params;
}

// The mount's source: the layers in the kernel's option syntax, so that
// findmnt and /proc/mounts show them.
export function sourceFor(params: MountParams): string {
  if (params.fsname !== undefined) return params.fsname;
  const escape = (p: string) => p.replace(/([\\:,])/g, '\\$1');
  let source = `tsoverlay:lowerdir=${params.lowerdirs.map(escape).join(':')}`;
  if (params.upperdir !== undefined) source += `,upperdir=${escape(params.upperdir)}`;
  if (params.workdir !== undefined) source += `,workdir=${escape(params.workdir)}`;
  return source;
}
