// Mount-time setup (kernel fs/overlayfs/super.c): resolve and check the
// layers, then prepare WORKDIR/work and probe what the upper filesystem
// supports. Every check runs before anything is written, so a rejected mount
// leaves all layers as they were.
import { randomBytes } from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import { host } from './host/native';
import { toBinaryPath } from './host/stat';
import type { Logger } from './log';
import type { MountParams } from './params';
import { ParamError } from './params';
import type { Layer } from './union/layer';

export interface SuperBlock {
  layers: Layer[]; // the upper first when there is one, then the lowers, topmost first
  upper?: Layer;
  workPath?: string; // WORKDIR/work, binary
  mountpoint: string;
  renameWhiteout: boolean;
  // Layer and workdir fds, open for the mount's lifetime (see openLayer).
  layerFds: number[];
}

function checkDir(role: string, p: string): string {
  let st: fs.Stats;
  try {
    st = fs.statSync(p);
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    if (code === 'ENOENT') throw new ParamError(`Invalid ${role} '${p}': no such directory; create it first`);
    throw new ParamError(`Invalid ${role} '${p}': ${(err as Error).message}`);
  }
  if (!st.isDirectory()) throw new ParamError(`Invalid ${role} '${p}': not a directory`);
  return fs.realpathSync(p);
}

function isInside(child: string, parent: string): boolean {
  return child === parent || child.startsWith(parent.endsWith('/') ? parent : parent + '/');
}

// Validates every path and returns them resolved; throws ParamError.
export function checkLayers(params: MountParams, mountpoint: string) {
  const lowers = params.lowerdirs.map((p) => checkDir('lowerdir', p));
  const upper = params.upperdir === undefined ? undefined : checkDir('upperdir', params.upperdir);
  const work = params.workdir === undefined ? undefined : checkDir('workdir', params.workdir);
  const merged = checkDir('mount point', mountpoint);

  const seen = new Map<string, string>();
  const named: [string, string][] = lowers.map((l, i) => [`lowerdir ${i + 1}`, l]);
  if (upper !== undefined) named.push(['upperdir', upper]);
  if (work !== undefined) named.push(['workdir', work]);
  for (const [role, p] of named) {
    const other = seen.get(p);
    if (other !== undefined) {
      throw new ParamError(`Invalid ${role} '${p}': the same directory is already used as ${other}; every layer needs its own directory`);
    }
    seen.set(p, role);
  }

  if (upper !== undefined && work !== undefined) {
    if (isInside(work, upper) || isInside(upper, work)) {
      throw new ParamError(`Invalid workdir '${work}': upperdir '${upper}' and workdir must be separate subtrees; put them side by side`);
    }
    if (fs.statSync(upper).dev !== fs.statSync(work).dev) {
      throw new ParamError(`Invalid workdir '${work}': workdir and upperdir '${upper}' must reside under the same mount`);
    }
    // As in the kernel, upperdir and workdir may sit inside a lower layer,
    // but a lower layer inside either of them loops (ELOOP).
    for (const [i, lower] of lowers.entries()) {
      for (const [role, p] of [['upperdir', upper], ['workdir', work]] as const) {
        if (isInside(lower, p)) {
          throw new ParamError(`Invalid lowerdir ${i + 1} '${lower}': overlapping lowerdir path, it lies inside ${role} '${p}'; move the lower layer out of it`);
        }
      }
    }
  }
  for (const [i, lower] of lowers.entries()) {
    for (const [j, other] of lowers.entries()) {
      if (i !== j && isInside(lower, other)) {
        throw new ParamError(`Invalid lowerdir ${i + 1} '${lower}': overlapping lowerdir path, it lies inside lowerdir ${j + 1} '${other}'; lower layers must not contain each other`);
      }
    }
  }
  return { lowers, upper, work, merged };
}

// Opens a layer root and returns the fd and the path prefix that reaches the
// layer through it ("@FD", see host/native.ts). Like the kernel, which holds
// references to its layers, the overlay then keeps working when a layer's
// mount moves or is lazily unmounted (switch_root does that), and a layer
// below the mount point stays reachable under the mount.
function openLayer(realPath: string, fds: number[]) {
  const fd = fs.openSync(realPath, fs.constants.O_RDONLY | fs.constants.O_DIRECTORY);
  fds.push(fd);
  return { fd, root: `@${fd}` };
}

// The UUID origin records carry; zeros where the filesystem reports none.
function filesystemUuid(fd: number): Buffer {
  const uuid = Buffer.alloc(16);
  try {
    host.fsUuid(fd).copy(uuid);
  } catch {
    // ENOTTY: no UUID to report; the kernel then uses the null UUID too.
  }
  return uuid;
}

// Like the kernel (6.18 here), gives an upper without one a random
// <prefix>uuid, which identifies the overlay in its file handles.
function initUpperUuid(upper: string, prefix: string, log: Logger): void {
  const binary = toBinaryPath(upper);
  try {
    host.lgetxattr(binary, prefix + 'uuid');
  } catch {
    try {
      host.lsetxattr(binary, prefix + 'uuid', randomBytes(16), 0);
    } catch (err) {
      log.warn({ err, upperPath: upper }, 'upper filesystem lacks trusted xattrs');
    }
  }
}

// Empties WORKDIR/work, which holds only half-made copies and whiteouts of
// an interrupted operation, and creates it when missing.
function prepareWorkdir(workdir: string, log: Logger, fds: number[]): string {
  const workPath = path.join(workdir, 'work');
  try {
    fs.rmSync(workPath, { recursive: true, force: true });
  } catch (err) {
    log.warn({ err, workPath }, 'cannot clean workdir');
  }
  fs.mkdirSync(workPath, { mode: 0 });
  fs.chmodSync(workPath, 0);
  return openLayer(workPath, fds).root;
}

function probeRenameWhiteout(workPath: string, log: Logger): boolean {
  const probe = `${workPath}/#probe-${process.pid}`;
  try {
    host.close(host.open(probe, host.O_WRONLY | host.O_CREAT | host.O_EXCL, 0o600));
    host.rename(probe, `${probe}.moved`, host.RENAME_WHITEOUT);
    host.unlink(probe);
    host.unlink(`${probe}.moved`);
    return true;
  } catch (err) {
    log.warn({ err, workPath }, 'upper filesystem lacks RENAME_WHITEOUT, falling back to mknod and rename');
    for (const p of [probe, `${probe}.moved`]) {
      try {
        host.unlink(p);
      } catch {
        // Already gone: the probe failed before creating it.
      }
    }
    return false;
  }
}

export function prepareSuper(params: MountParams, mountpoint: string, log: Logger): SuperBlock {
  const { lowers, upper, work, merged } = checkLayers(params, mountpoint);
  const layerFds: number[] = [];
  const devs: bigint[] = [];
  const layers: Layer[] = [];

  const addLayer = (realPath: string, isUpper: boolean) => {
    const dev = fs.statSync(realPath, { bigint: true }).dev;
    if (!devs.includes(dev)) devs.push(dev);
    const { fd, root } = openLayer(realPath, layerFds);
    layers.push({
      index: layers.length,
      root,
      displayPath: realPath,
      isUpper,
      fsIndex: devs.indexOf(dev),
      rootFd: fd,
      uuid: filesystemUuid(fd),
    });
  };
  // With ro the upper is the topmost read-only layer.
  if (upper !== undefined) addLayer(upper, !params.readOnly);
  for (const lower of lowers) addLayer(lower, false);

  let workPath: string | undefined;
  let renameWhiteout = false;
  if (upper !== undefined && work !== undefined && !params.readOnly) {
    workPath = prepareWorkdir(work, log, layerFds);
    initUpperUuid(upper, params.userxattr ? 'user.overlay.' : 'trusted.overlay.', log);
    renameWhiteout = probeRenameWhiteout(workPath, log);
  }

  return {
    layers,
    upper: layers.find((l) => l.isUpper),
    workPath,
    mountpoint: merged,
    renameWhiteout,
    layerFds,
  };
}
