// Errors in Node's format (code, errno, syscall, path) and the errno table
// the overlay raises itself. Host calls throw the same shape, so a request
// handler needs only one conversion to a negative errno (fuse/reply.ts).
import os from 'node:os';

export interface ErrnoError extends Error {
  code: string;
  errno: number;
  syscall: string;
  path?: string;
  dest?: string;
}

const errnoByCode = os.constants.errno as Record<string, number>;

// Builds an error like the ones fs throws: errno is negative, as in Node.
export function errnoError(code: string, syscall: string, path?: string): ErrnoError {
  const errno = errnoByCode[code];
  if (errno === undefined) throw new TypeError(`unknown errno code ${code}`);

  const where = path === undefined ? '' : ` '${path}'`;
  // These errors are request results, not faults, and a stack trace would
  // cost more than the request itself.
  const limit = Error.stackTraceLimit;
  Error.stackTraceLimit = 0;
  const err = new Error(`${code}: ${describe(code)}, ${syscall}${where}`) as ErrnoError;
  Error.stackTraceLimit = limit;
  err.code = code;
  err.errno = -errno;
  err.syscall = syscall;
  if (path !== undefined) err.path = path;
  return err;
}

export function isErrno(err: unknown, code: string): boolean {
  return typeof err === 'object' && err !== null && (err as ErrnoError).code === code;
}

// Returns the negative errno carried by err, or undefined when err did not
// come from a system call.
export function errnoOf(err: unknown): number | undefined {
  if (typeof err !== 'object' || err === null) return undefined;
  const errno = (err as ErrnoError).errno;
  if (typeof errno === 'number' && errno < 0) return errno;
  const code = (err as ErrnoError).code;
  if (typeof code === 'string' && errnoByCode[code] !== undefined) return -errnoByCode[code];
  return undefined;
}

const descriptions: Record<string, string> = {
  ENOENT: 'no such file or directory',
  EEXIST: 'file already exists',
  ENOTDIR: 'not a directory',
  EISDIR: 'illegal operation on a directory',
  ENOTEMPTY: 'directory not empty',
  EXDEV: 'cross-device link not permitted',
  EROFS: 'read-only file system',
  EPERM: 'operation not permitted',
  EINVAL: 'invalid argument',
  ENODATA: 'no data available',
  EOPNOTSUPP: 'operation not supported',
  EBADF: 'bad file descriptor',
  ERANGE: 'result too large',
  EIO: 'i/o error',
};

function describe(code: string): string {
  return descriptions[code] ?? code.toLowerCase();
}
