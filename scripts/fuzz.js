#!/usr/bin/env node
// Differential fuzz runner entry: compiles test/fuzz/*.ts to dist-fuzz/ with
// the project's tsc, then runs it. Usage: node scripts/fuzz.js --help
const { spawnSync } = require('node:child_process');
const path = require('node:path');

const root = path.join(__dirname, '..');
const tsc = spawnSync(path.join(root, 'node_modules', '.bin', 'tsc'), ['-p', path.join(root, 'test', 'fuzz', 'tsconfig.json')], { stdio: 'inherit' });
if (tsc.status !== 0) {
  process.stderr.write(`fuzz: compiling test/fuzz failed (tsc exit ${tsc.status})\n`);
  process.exit(tsc.status ?? 1);
}
require(path.join(root, 'dist-fuzz', 'fuzz', 'runner.js'))
  .main(process.argv.slice(2))
  .then((code) => process.exit(code));
