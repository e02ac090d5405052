// Shared steps for the binding tests: running tools in UTC or as an
// unprivileged user, reading times to the nanosecond, and finding the
// .fuse_hidden files that libfuse leaves when hard_remove is off.
import { execFileSync, spawnSync } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';

// The unprivileged user and group that creates files in the owner tests.
export const NOBODY = 65534;

const utcEnv = { ...process.env, TZ: 'UTC', LC_ALL: 'C' };

// Runs a tool in UTC, so that `touch -d` and `stat -c %y` agree on the zone.
export function run(file: string, args: string[], cwd?: string): string {
  return execFileSync(file, args, { env: utcEnv, encoding: 'utf8', cwd });
}

export interface RunResult {
  status: number | null;
  stderr: string;
  pid: number;
}

// Runs args as uid and gid 65534 without supplementary groups, under umask.
export function runAsNobody(args: string[], umask = 0o022): RunResult {
  const setpriv = ['setpriv', '--reuid', `${NOBODY}`, '--regid', `${NOBODY}`, '--clear-groups'];
  const script = `umask ${umask.toString(8)}; exec "$@"`;
  const result = spawnSync('sh', ['-c', script, 'sh', ...setpriv, ...args], {
    env: utcEnv,
    encoding: 'utf8',
  });
  return { status: result.status, stderr: result.stderr, pid: result.pid };
}

export interface Times {
  atimeNs: bigint;
  mtimeNs: bigint;
}

// Times of p itself (a symlink is not followed).
export function timesOf(p: string): Times {
  const st = fs.lstatSync(p, { bigint: true });
  return { atimeNs: st.atimeNs, mtimeNs: st.mtimeNs };
}

// Nanoseconds since the epoch of a UTC date such as '2001-02-03 04:05:06.123456789'.
export function utcNs(date: string): bigint {
  const match = /^(\d{4}-\d\d-\d\d \d\d:\d\d:\d\d)\.(\d{9})$/.exec(date);
  if (match === null) throw new Error(`Invalid date '${date}': expected YYYY-MM-DD hh:mm:ss.nnnnnnnnn`);
  const seconds = BigInt(Date.parse(`${match[1].replace(' ', 'T')}Z`) / 1000);
  return seconds * 1_000_000_000n + BigInt(match[2]);
}

// Sets both times of p (not following a symlink) with touch, to the nanosecond.
export function setTimes(p: string, atime: string, mtime: string): void {
  run('touch', ['-h', '-a', '-d', atime, p]);
  run('touch', ['-h', '-m', '-d', mtime, p]);
}

// Every path under the given directories whose name starts with .fuse_hidden.
export function fuseHiddenFiles(dirs: string[]): string[] {
  const found: string[] = [];
  const walk = (dir: string) => {
    for (const entry of fs.readdirSync(dir, { withFileTypes: true })) {
      const full = path.join(dir, entry.name);
      if (entry.name.startsWith('.fuse_hidden')) found.push(full);
      if (entry.isDirectory()) walk(full);
    }
  };
  for (const dir of dirs) walk(dir);
  return found;
}

// Makes the temp root of a stack searchable, so that uid 65534 can reach
// the mount points below it (mkdtemp creates it with mode 0700).
export function openToOthers(dir: string): void {
  fs.chmodSync(dir, 0o755);
}
