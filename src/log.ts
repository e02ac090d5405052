// The daemon's pino logger. Messages are short constant strings; data goes
// in fields (op, path, upperPath, layer, errno, ms), errors under err.
import pino from 'pino';

export type Logger = pino.Logger;

export interface LogOptions {
  level?: string;
  file?: string;
}

export function createLogger(options: LogOptions = {}): Logger {
  const destination = options.file
    ? pino.destination({ dest: options.file, append: true, mkdir: true, sync: true })
    : pino.destination({ fd: 2, sync: true });
  return pino({ level: options.level ?? 'info', base: { pid: process.pid } }, destination);
}

// A logger that drops everything, for library use and unit tests.
export const silentLogger: Logger = pino({ level: 'silent' });
