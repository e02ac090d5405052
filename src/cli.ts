// Command line: turns argv into a mount or unmount request. Accepts the
// forms mount helpers use too: `tsoverlay -o OPTS MERGED` (podman's
// mount_program) and `tsoverlay SOURCE MERGED -o OPTS` (mount.fuse3).
import { spawnSync } from 'node:child_process';
import fs from 'node:fs';
import type yargs from 'yargs';
import { spawnBackground } from './background';
import { parseMountOptions, ParamError, sourceFor } from './params';

interface MountArgs {
  options: string[];
  mountpoint: string;
  foreground: boolean;
  logLevel: string;
  logFile?: string;
  readyFd?: number;
}

const OPTIONS_HELP = `Options (-o, comma-separated, kernel overlayfs syntax):
  lowerdir=L1:L2    lower layers, leftmost on top; escape ':' and ',' with '\\'
  upperdir=U        writable layer; needs workdir
  workdir=W         empty directory on the same filesystem as upperdir
  ro                read-only mount
  volatile          skip fsync of the upper
  userxattr         keep overlay xattrs under user.overlay. instead of trusted.overlay.
  nowhiteout_markers  treat OCI .wh. files in lower layers as ordinary names
  fsname=NAME       source name shown in /proc/mounts
  allow_other, default_permissions, dev, suid, noexec, noatime, ...  FUSE mount flags`;

// Reports a failure or an existing mount before serving: on the ready fd in
// a background child, whose parent relays it, else on stderr.
function reportEarly(args: MountArgs, kind: 'error' | 'already', message: string): void {
  if (args.readyFd === undefined) {
    process.stderr.write(`tsoverlay: ${message}\n`);
    return;
  }
  fs.writeSync(args.readyFd, `${kind}: ${message}\n`);
  fs.closeSync(args.readyFd);
}

async function mount(args: MountArgs): Promise<number> {
  let params;
  try {
    params = parseMountOptions(args.options);
  } catch (err) {
    if (!(err instanceof ParamError)) throw err;
    reportEarly(args, 'error', err.message);
    return 1;
  }

  if (isAlreadyMounted(args.mountpoint, sourceFor(params))) {
    // mount -a finds no match for an fstab source other than ours, so it runs
    // the helper again. A second overlay on top would hide the first.
    reportEarly(args, 'already', `'${args.mountpoint}' is already mounted with these layers`);
    return 0;
  }

  if (!args.foreground) {
    // Only forms parsePlainMount turns down come this way.
    return spawnBackground([process.argv[1], ...daemonArgs(args)]);
  }
  // Loaded only here: a background mount's first process never serves.
  const { serve } = require('./daemon') as typeof import('./daemon');
  serve({ params, mountpoint: args.mountpoint, logLevel: args.logLevel, logFile: args.logFile, readyFd: args.readyFd });
  return -1; // serving; the daemon exits by itself
}

// Unmounts with fusermount3, falling back to umount(8). A busy mount (files
// still open) is detached lazily, so the name is free at once and the daemon
// exits when the last file closes.
// Mount points and sources in mountinfo escape space, tab, newline and
// backslash as octal.
function unescapeMountinfo(field: string): string {
  return field.replace(/\\([0-7]{3})/g, (_, octal: string) => String.fromCharCode(parseInt(octal, 8)));
}

function isAlreadyMounted(mountpoint: string, source: string): boolean {
  let target: string;
  try {
    target = fs.realpathSync(mountpoint);
  } catch {
    return false;
  }
  for (const line of fs.readFileSync('/proc/self/mountinfo', 'utf8').split('\n')) {
    const fields = line.split(' ');
    const dash = fields.indexOf('-');
    if (dash < 0 || unescapeMountinfo(fields[4]) !== target) continue;
    if (fields[dash + 1] === 'fuse.tsoverlay' && unescapeMountinfo(fields[dash + 2]) === source) return true;
  }
  return false;
}

function umount(mountpoint: string): number {
  const attempts: [string, string[]][] = [
    ['fusermount3', ['-u', mountpoint]],
    ['umount', [mountpoint]],
    ['fusermount3', ['-u', '-z', mountpoint]],
    ['umount', ['-l', mountpoint]],
  ];
  let lastError = '';
  for (const [cmd, args] of attempts) {
    const result = spawnSync(cmd, args, { encoding: 'utf8', stdio: ['ignore', 'ignore', 'pipe'] });
    if (result.error !== undefined) continue; // not installed
    if (result.status === 0) {
      if (args.includes('-z') || args.includes('-l')) {
        process.stderr.write(`tsoverlay: '${mountpoint}' was busy; detached it lazily\n`);
      }
      return 0;
    }
    lastError = result.stderr.trim();
    if (!/busy/i.test(lastError)) break;
  }
  process.stderr.write(`tsoverlay: cannot unmount '${mountpoint}': ${lastError || 'install the fuse3 package for fusermount3'}\n`);
  return 1;
}

function mountFlags<T>(y: yargs.Argv<T>) {
  return y
    .option('o', { type: 'string', describe: 'mount options (see below); may be repeated' })
    .option('foreground', { alias: 'f', type: 'boolean', default: false, describe: 'stay attached instead of serving from a background process' })
    .option('log-level', { type: 'string', default: 'info', choices: LOG_LEVELS, describe: 'pino log level' })
    .option('log-file', { type: 'string', describe: 'append logs to this file (default: stderr in the foreground, none in the background)' })
    .option('ready-fd', { type: 'number', hidden: true });
}

export async function main(argv: string[]): Promise<number> {
  const pkg = JSON.parse(fs.readFileSync(`${__dirname}/../package.json`, 'utf8')) as { version: string };
  let exitCode = 0;
  const parser = (require('yargs') as typeof yargs)(argv)
    .scriptName('tsoverlay')
    .usage('$0 mount -o lowerdir=L1:L2,upperdir=U,workdir=W MERGED')
    .command(
      'mount <mountpoint>',
      'mount an overlay on MERGED',
      (y) => mountFlags(y).positional('mountpoint', { type: 'string', demandOption: true }),
      async (a) => {
        exitCode = await mount(toMountArgs(a, a.mountpoint as string));
      },
    )
    .command(
      'umount <mountpoint>',
      'unmount MERGED and stop its daemon',
      (y) => y.positional('mountpoint', { type: 'string', demandOption: true }),
      (a) => {
        exitCode = umount(a.mountpoint as string);
      },
    )
    .command(
      '$0 [source] [mountpoint]',
      false,
      (y) => mountFlags(y).positional('source', { type: 'string' }).positional('mountpoint', { type: 'string' }),
      async (a) => {
        // `-o OPTS MERGED` has one positional, `SOURCE MERGED -o OPTS` two.
        const mountpoint = (a.mountpoint ?? a.source) as string | undefined;
        if (mountpoint === undefined) {
          parser.showHelp();
          exitCode = 1;
          return;
        }
        exitCode = await mount(toMountArgs(a, mountpoint));
      },
    )
    .epilogue(OPTIONS_HELP)
    .version(pkg.version)
    .help()
    .strict()
    .fail((message, err) => {
      if (err) throw err;
      process.stderr.write(`tsoverlay: ${message}\nRun 'tsoverlay --help' for usage.\n`);
      process.exit(2);
    });
  await parser.parseAsync();
  return exitCode;
}

function toMountArgs(a: Record<string, unknown>, mountpoint: string): MountArgs {
  return {
    options: a.o === undefined ? [] : ([] as string[]).concat(a.o as string | string[]),
    mountpoint,
    foreground: Boolean(a.foreground),
    logLevel: a.logLevel as string,
    logFile: a.logFile as string | undefined,
    readyFd: a.readyFd as number | undefined,
  };
}

// Builds the daemon's command line, in one form whatever form the caller used.
function daemonArgs(a: { mountpoint: string; options: string[]; logLevel: string; logFile?: string }): string[] {
  const args = ['mount', a.mountpoint, ...a.options.flatMap((o) => ['-o', o]), '--log-level', a.logLevel];
  if (a.logFile !== undefined) args.push('--log-file', a.logFile);
  return args;
}

const LOG_LEVELS = ['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent'];

// Flags a plain background mount may carry. Each takes a value.
const PLAIN_FLAGS = new Set(['-o', '--log-level', '--log-file']);

// Parses the common background mount forms, `mount -o OPTS MERGED`,
// `-o OPTS MERGED` and `SOURCE MERGED -o OPTS`, with no other flags, and
// returns undefined for anything else (help, foreground, umount, other
// flags), which yargs parses. The log level and the -o values are checked
// later: the log level against LOG_LEVELS, the mount options by
// parseMountOptions in the daemon process.
export function parsePlainMount(argv: string[]): Omit<MountArgs, 'foreground' | 'readyFd'> | undefined {
  const positionals: string[] = [];
  const options: string[] = [];
  let logLevel: string | undefined;
  let logFile: string | undefined;
  for (let i = 0; i < argv.length; i++) {
    const arg = argv[i];
    if (!arg.startsWith('-')) {
      positionals.push(arg);
      continue;
    }
    const eq = arg.indexOf('=');
    const flag = arg.startsWith('--') && eq > 0 ? arg.slice(0, eq) : arg;
    if (!PLAIN_FLAGS.has(flag)) return undefined;
    const value = flag !== arg ? arg.slice(eq + 1) : argv[++i];
    // yargs would read a value starting with '-' as a flag.
    if (value === undefined || value.startsWith('-')) return undefined;
    if (flag === '-o') options.push(value);
    else if (flag === '--log-level' && logLevel === undefined) logLevel = value;
    else if (flag === '--log-file' && logFile === undefined) logFile = value;
    else return undefined; // repeated
  }

  const mountCommand = positionals[0] === 'mount';
  const count = positionals.length;
  if (mountCommand ? count !== 2 : (count !== 1 && count !== 2) || positionals[0] === 'umount') return undefined;
  return { mountpoint: positionals[count - 1], options, logLevel: logLevel ?? 'info', logFile };
}

// Returns the mount request of a daemon started by spawnBackground, whose
// command line is daemonArgs() plus the foreground and ready-fd flags, or
// undefined when yargs must parse argv (and report what is wrong with it).
function daemonRequest(argv: string[]): MountArgs | undefined {
  const [foreground, readyFlag, readyFd] = argv.slice(-3);
  if (foreground !== '--foreground' || readyFlag !== '--ready-fd' || !/^[0-9]+$/.test(readyFd ?? '')) return undefined;
  const plain = parsePlainMount(argv.slice(0, -3));
  if (plain === undefined || !LOG_LEVELS.includes(plain.logLevel)) return undefined;
  return { ...plain, foreground: true, readyFd: Number(readyFd) };
}

function exitWith(code: Promise<number>): void {
  code.then(
    (value) => {
      if (value >= 0) process.exitCode = value;
    },
    (err: unknown) => {
      process.stderr.write(`tsoverlay: ${(err as Error).stack ?? String(err)}\n`);
      process.exit(1);
    },
  );
}

export function run(): void {
  const argv = process.argv.slice(2);
  // Both processes of a background mount skip yargs, which took about 35 ms
  // to load on a 2-CPU test VM where the whole mount took about 280 ms.
  const plain = parsePlainMount(argv);
  if (plain !== undefined) {
    exitWith(spawnBackground([process.argv[1], ...daemonArgs(plain)]));
    return;
  }
  const request = daemonRequest(argv);
  if (request !== undefined) {
    exitWith(mount(request));
    return;
  }
  exitWith(main(argv));
}

if (require.main === module) run();
