// Mounting and serving: set up the layers, mount through fuse-native, serve
// until unmounted, and unmount cleanly on SIGINT or SIGTERM. Background mode
// re-runs this in a detached child that reports readiness over a pipe.
import fs from 'node:fs';
import Fuse from 'fuse-native';
import { createLogger, type Logger } from './log';
import { ParamError, sourceFor, type MountParams } from './params';
import { prepareSuper } from './super';
import { makeOperations } from './fuse/ops';
import { Overlay } from './union/overlay';
import { FileTable } from './union/file';

export interface MountRequest {
  params: MountParams;
  mountpoint: string;
  logLevel: string;
  logFile?: string;
  // fd on which a background child reports "ready" or the failure message.
  readyFd?: number;
}

// libfuse options for every mount. use_ino: our inode numbers reach stat.
// Without hard_remove libfuse parks an unlinked open file under a
// .fuse_hidden name, which keeps fstat working; union/hidden.ts serves it.
// atomic_o_trunc: O_TRUNC arrives with open, so copy-up can skip the data.
// kernel_cache and the long timeouts are safe because every change to the
// layers goes through the mount. Where a change through one name of a hard
// link leaves the kernel's cache of another name stale, the overlay drops
// that cache (Overlay.sharedChanged).
const BASE_FUSE_OPTIONS = [
  // nonempty: the kernel overlay mounts over a non-empty directory too.
  'use_ino', 'nonempty', 'big_writes', 'max_write=131072', 'atomic_o_trunc', 'kernel_cache',
  'entry_timeout=86400', 'attr_timeout=86400', 'negative_timeout=86400',
];


export function fuseOptionsFor(params: MountParams): string[] {
  // libfuse splits -o at commas unless a backslash escapes them.
  const fsname = sourceFor(params).replace(/([\\,])/g, '\\$1');
  const options = [...BASE_FUSE_OPTIONS, 'subtype=tsoverlay', `fsname=${fsname}`];
  if (process.getuid?.() === 0) options.push('allow_other', 'default_permissions');
  if (params.readOnly) options.push('ro');
  for (const option of params.fuseOptions) {
    if (!options.includes(option)) options.push(option);
  }
  return options;
}

function report(readyFd: number | undefined, message: string): void {
  if (readyFd === undefined) return;
  try {
    fs.writeSync(readyFd, message);
    fs.closeSync(readyFd);
  } catch {
    // The parent has exited, so no process reads the report.
  }
}

export function serve(request: MountRequest): void {
  // A background daemon must not write to stderr: the pipe closes once the
  // mount is ready. Without --log-file its logs go nowhere.
  const background = request.readyFd !== undefined;
  const logFile = request.logFile ?? (background ? '/dev/null' : undefined);
  const log = createLogger({ level: request.logLevel, file: logFile });
  const { params, mountpoint, readyFd } = request;

  const fail = (message: string, err?: unknown) => {
    log.fatal({ err, mountpoint }, 'cannot mount');
    report(readyFd, `error: ${message}\n`);
    if (readyFd === undefined) process.stderr.write(`tsoverlay: ${message}\n`);
    process.exit(1);
  };

  let ov: Overlay;
  let fuseOptions: string[];
  try {
    const sb = prepareSuper(params, mountpoint, log);
    process.umask(0); // modes from the kernel already have the caller's umask applied
    ov = new Overlay({
      layers: sb.layers,
      workPath: sb.workPath,
      renameWhiteout: sb.renameWhiteout,
      whiteoutMarkers: params.whiteoutMarkers,
      volatile: params.volatile,
      userxattr: params.userxattr,
      log,
    });
    ov.files = new FileTable(ov);
    fuseOptions = fuseOptionsFor(params);
  } catch (err) {
    fail(err instanceof ParamError ? err.message : (err as Error).message, err);
    return;
  }

  // The patched binding fills fuse.contextArray with the caller of each request.
  const caller: { context: Uint32Array } = { context: new Uint32Array(4) };
  const fuse = new Fuse(mountpoint, makeOperations(ov, log, caller), { timeout: false, options: fuseOptions });
  caller.context = fuse.contextArray;
  ov.invalidateIno = (ino) => fuse.invalidateIno(ino);
  ov.invalidateAttrs = (ino) => fuse.invalidateIno(ino, true);

  let stopping = false;
  fuse.onexit = () => {
    ov.files.closeAll();
    log.info({ mountpoint }, 'unmounted');
    process.exit(0);
  };

  fuse.mount((err) => {
    if (err) {
      fail(`cannot mount on '${mountpoint}': ${err.message}`, err);
      return;
    }
    log.info(
      {
        mountpoint,
        layers: ov.layers.map((l) => ({ path: l.displayPath, upper: l.isUpper })),
        workdir: params.workdir,
        fuseOptions,
      },
      'mounted',
    );
    report(readyFd, 'ready\n');
  });

  const stop = (signal: string) => {
    if (stopping) return;
    stopping = true;
    log.info({ mountpoint, signal }, 'unmounting');
    Fuse.unmount(mountpoint, (err) => {
      if (err) {
        log.error({ err, mountpoint }, 'unmount failed');
        process.exit(1);
      }
      // onexit runs once the FUSE loop has returned.
    });
  };
  process.on('SIGINT', () => stop('SIGINT'));
  process.on('SIGTERM', () => stop('SIGTERM'));
  process.on('SIGHUP', () => undefined);
}

