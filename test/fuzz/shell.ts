// Runs coreutils and attr tools (touch, mknod, mkfifo, setfattr, getfattr)
// on byte-exact paths. Node passes argv only as UTF-8 strings, so each path
// is decoded inside sh by `printf %b` from octal escapes. Many calls share
// one sh process, and each call reports its exit status and output.
import { spawnSync } from 'node:child_process';
import { shellOctal } from './paths';

export type ShellArg = string | Buffer;

export interface ShellResult {
  status: number;
  output: Buffer;
}

const MARK = '\x1e';

function quote(arg: string): string {
  return `'${arg.replace(/'/g, `'\\''`)}'`;
}

// Runs every call in one sh process. A Buffer argument is passed byte-exact.
export function runShellBatch(calls: ShellArg[][]): ShellResult[] {
  if (calls.length === 0) return [];
  const lines: string[] = [];
  calls.forEach((argv, i) => {
    const words: string[] = [];
    argv.forEach((arg, j) => {
      if (typeof arg === 'string') {
        words.push(quote(arg));
        return;
      }
      // The trailing X keeps $(...) from eating trailing newlines of a name.
      lines.push(`a${j}=$(printf '%bX' '${shellOctal(arg)}'); a${j}=\${a${j}%X}`);
      words.push(`"$a${j}"`);
    });
    lines.push(`printf '${MARK}B${i}\\n'; ${words.join(' ')} 2>&1; printf '${MARK}E%d\\n' $?`);
  });
  const r = spawnSync('/bin/sh', ['-s'], {
    input: lines.join('\n') + '\n',
    env: { ...process.env, LC_ALL: 'C' },
    maxBuffer: 256 * 1024 * 1024,
  });
  if (r.error) throw r.error;
  const out = r.stdout;
  const results: ShellResult[] = [];
  let pos = 0;
  for (let i = 0; i < calls.length; i++) {
    const begin = Buffer.from(`${MARK}B${i}\n`);
    const start = out.indexOf(begin, pos);
    const end = out.indexOf(Buffer.from(`${MARK}E`), start + begin.length);
    if (start === -1 || end === -1) throw new Error(`sh batch output is cut at call ${i}: ${r.stderr.toString()}`);
    const newline = out.indexOf(0x0a, end);
    const status = Number(out.subarray(end + 2, newline).toString());
    results.push({ status, output: out.subarray(start + begin.length, end) });
    pos = newline + 1;
  }
  return results;
}

export function runShell(argv: ShellArg[]): ShellResult {
  return runShellBatch([argv])[0];
}

// glibc's strerror texts (and the attr tools' own wording) to errno names.
const MESSAGES: Array<[string, string]> = [
  ['No such file or directory', 'ENOENT'],
  ['Operation not permitted', 'EPERM'],
  ['Permission denied', 'EACCES'],
  ['Not a directory', 'ENOTDIR'],
  ['Is a directory', 'EISDIR'],
  ['No such attribute', 'ENODATA'],
  ['No data available', 'ENODATA'],
  ['File exists', 'EEXIST'],
  ['Operation not supported', 'EOPNOTSUPP'],
  ['Read-only file system', 'EROFS'],
  ['File name too long', 'ENAMETOOLONG'],
  ['Too many levels of symbolic links', 'ELOOP'],
  ['Invalid argument', 'EINVAL'],
  ['Numerical result out of range', 'ERANGE'],
  ['Argument list too long', 'E2BIG'],
  ['No space left on device', 'ENOSPC'],
  ['Input/output error', 'EIO'],
  ['Invalid cross-device link', 'EXDEV'],
  ['Device or resource busy', 'EBUSY'],
  ['Directory not empty', 'ENOTEMPTY'],
  ['Bad file descriptor', 'EBADF'],
  ['Stale file handle', 'ESTALE'],
  ['Function not implemented', 'ENOSYS'],
  ['Disk quota exceeded', 'EDQUOT'],
];

// Turns a failed tool's message into an errno name, or ERR(text) when the
// message is not one of the known ones, so results still compare.
export function errnoFromMessage(output: Buffer): string {
  const text = output.toString('latin1').trim();
  for (const [message, code] of MESSAGES) {
    if (text.includes(message)) return code;
  }
  return `ERR(${text.replace(/^.*: /s, '').slice(0, 80)})`;
}
