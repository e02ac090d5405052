// Runs steps in a separate process, so the runner can start it under
// another uid with setpriv. Two modes:
//   child.js JSON                  one step; JSON is {root, op}; prints {result}
//   child.js --serve REQUEST REPLY  a worker: reads one JSON request a line
//                                  from the REQUEST fifo, writes one JSON
//                                  reply a line to REPLY, until end of file
import fs from 'node:fs';
import { Side, type Op } from './ops';

interface Request {
  root: string;
  op: Op;
}

function runRequest(line: string): string {
  const request = JSON.parse(line) as Request;
  return JSON.stringify({ result: new Side(request.root).run(request.op) });
}

// Serves requests with blocking reads until the runner closes its end.
function serve(requestPath: string, replyPath: string): void {
  const input = fs.openSync(requestPath, 'r');
  const output = fs.openSync(replyPath, 'w');
  const buf = Buffer.alloc(65536);
  let pending = '';
  for (;;) {
    const n = fs.readSync(input, buf, 0, buf.length, null);
    if (n === 0) break;
    pending += buf.toString('utf8', 0, n);
    for (let nl = pending.indexOf('\n'); nl !== -1; nl = pending.indexOf('\n')) {
      const line = pending.slice(0, nl);
      pending = pending.slice(nl + 1);
      fs.writeSync(output, `${runRequest(line)}\n`);
    }
  }
  fs.closeSync(output);
}

process.umask(0o022);
if (process.argv[2] === '--serve') {
  serve(process.argv[3], process.argv[4]);
} else {
  process.stdout.write(runRequest(process.argv[2] ?? '{}'));
}
