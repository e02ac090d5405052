// Runs one step in a separate process, so the runner can start it under
// another uid with setpriv. Input: argv[2] is JSON {root, op}; output: the
// result string as JSON on stdout.
import { Side, type Op } from './ops';

const request = JSON.parse(process.argv[2] ?? '{}') as { root: string; op: Op };
process.umask(0o022);
process.stdout.write(JSON.stringify({ result: new Side(request.root).run(request.op) }));
