// The one place where errors become negative errno replies. An error without
// an errno is a bug in the daemon: it becomes EIO and one error log line.
import os from 'node:os';
import { errnoOf } from '../errors';
import type { Logger } from '../log';

const EIO = -os.constants.errno.EIO;

export function toErrno(err: unknown, log: Logger, op: string, path: string | null): number {
  const errno = errnoOf(err);
  if (errno !== undefined) {
    log.debug({ op, path, errno, err }, 'request failed');
    return errno;
  }
  log.error({ op, path, err }, 'unexpected error in request');
  return EIO;
}
