// Starts the mount daemon as a background process, without loading the
// FUSE binding or the union code into the calling process.
import { spawn } from 'node:child_process';

// Starts serve() in a detached child and waits until it reports. Exits 0
// once the mount is ready, as mount helpers do.
// The child's stderr comes back through a pipe until the mount is ready, so
// that libfuse's own messages reach the user. After that no process keeps
// the caller's stderr open, because podman waits for it to close.
export function spawnBackground(argv: string[]): Promise<number> {
  return new Promise((resolve) => {
    const child = spawn(process.execPath, [...process.execArgv, ...argv, '--foreground', '--ready-fd', '3'], {
      // systemd spares root processes whose argv[0] starts with '@' when it
      // leaves the initrd, so a daemon started that way keeps the mark.
      argv0: process.argv0.startsWith('@') ? process.argv0 : undefined,
      detached: true,
      stdio: ['ignore', 'ignore', 'pipe', 'pipe'],
    });
    let output = '';
    let stderr = '';
    const pipe = child.stdio[3] as NodeJS.ReadableStream;
    const errPipe = child.stderr as NodeJS.ReadableStream & { destroy(): void };
    pipe.setEncoding('utf8');
    errPipe.setEncoding('utf8');
    pipe.on('data', (chunk: string) => (output += chunk));
    errPipe.on('data', (chunk: string) => (stderr += chunk));
    pipe.on('end', () => {
      if (output.startsWith('ready')) {
        errPipe.destroy();
        child.unref();
        resolve(0);
        return;
      }
      if (output.startsWith('already: ')) {
        // The layers are mounted there already, which counts as success.
        process.stderr.write(`tsoverlay: ${output.slice('already: '.length)}`);
        resolve(0);
        return;
      }
      child.once('close', (code: number | null) => {
        if (output === '' && code === 2) {
          // A usage error, which yargs reported in the child in full.
          process.stderr.write(stderr);
          resolve(2);
          return;
        }
        const reason = output.replace(/^error: /, '') || 'the mount daemon exited before the mount was ready\n';
        const details = stderr.trim() === '' ? '' : `${stderr.trim().replace(/^/gm, '  ')}\n`;
        process.stderr.write(`tsoverlay: ${reason}${details}`);
        resolve(1);
      });
    });
  });
}
