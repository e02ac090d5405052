#!/usr/bin/env node
// Benchmarks tsoverlay against kernel overlayfs, fuse-overlayfs, unionfs-fuse
// and a passthrough floor on the same FUSE binding (passthrough.js), on
// identical layers in a tmpfs, in interleaved rounds. Prints medians and
// ratios, and writes the table to docs/benchmarks.md.
//
//   node scripts/bench/run.js [--rounds N] [--quick] [--apt] [--fs a,b]
//                             [--out FILE | --no-doc] [--json FILE] [--note TEXT]
//   node scripts/bench/run.js --report FILE.json [--out FILE]
//
// Needs root (mounts, chroot, drop_caches), gcc, git, fuse-overlayfs and
// unionfs-fuse; --apt also needs debootstrap and the Debian mirror. Built
// data is kept in /var/cache/tsoverlay-bench. Exits 1 when any filesystem
// failed a workload, 2 when the benchmark itself could not run.
'use strict';

const { spawnSync } = require('node:child_process');
const fs = require('node:fs');
const os = require('node:os');
const path = require('node:path');

const repoRoot = path.join(__dirname, '..', '..');
const cliPath = path.join(repoRoot, 'dist', 'cli.js');
const passthroughPath = path.join(__dirname, 'passthrough.js');
const cacheDir = '/var/cache/tsoverlay-bench';
const MiB = 1024 * 1024;
const APT_PACKAGE = 'jq';
const APT_SUITE = 'bookworm';
const APT_MIRROR = 'http://deb.debian.org/debian';

const SIZES = {
  full: {
    rounds: 5, smallFiles: 20000, smallDirs: 250, bigMiB: 1024, copyUpMiB: 256,
    createCount: 5000, rmCount: 5000, srcDirs: ['/usr/include/node', '/usr/include'], memFiles: 100000,
    loopCount: 20000, tmpfsSize: '7g', timeoutMs: 600000,
  },
  quick: {
    rounds: 1, smallFiles: 2000, smallDirs: 25, bigMiB: 64, copyUpMiB: 16,
    createCount: 500, rmCount: 500, srcDirs: ['/usr/include/linux', '/usr/include'], memFiles: 10000,
    loopCount: 2000, tmpfsSize: '2g', timeoutMs: 120000,
  },
};

// ---------------------------------------------------------------- options

function parseArgs(argv) {
  const args = { quick: false, apt: false, rounds: undefined, fs: undefined, doc: true };
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i];
    const value = () => {
      if (i + 1 >= argv.length) usage(`${a} needs a value`);
      return argv[++i];
    };
    if (a === '--quick') args.quick = true;
    else if (a === '--apt') args.apt = true;
    else if (a === '--rounds') args.rounds = Number(value());
    else if (a === '--fs') args.fs = value().split(',');
    else if (a === '--out') args.out = value();
    else if (a === '--no-doc') args.doc = false;
    else if (a === '--json') args.json = value();
    else if (a === '--note') args.note = value();
    else if (a === '--report') args.report = value();
    else if (a === '--help' || a === '-h') usage();
    else usage(`unknown argument ${a}`);
  }
  if (args.rounds !== undefined && !(Number.isInteger(args.rounds) && args.rounds > 0)) {
    usage('--rounds needs a positive integer');
  }
  // A quick run is a smoke test: it leaves the published table alone unless asked.
  if (args.out === undefined && args.doc && !args.quick && args.report === undefined) {
    args.out = path.join(repoRoot, 'docs', 'benchmarks.md');
  }
  if (!args.doc) args.out = undefined;
  return args;
}

function usage(error) {
  const text = [
    'usage: node scripts/bench/run.js [--rounds N] [--quick] [--apt] [--fs LIST]',
    '                                 [--out FILE | --no-doc] [--json FILE] [--note TEXT]',
    '  --rounds N   rounds of every workload on every filesystem (default 5, quick 1)',
    '  --quick      small sizes for a fast smoke run; writes no doc unless --out is given',
    '  --apt        also time `apt-get install` in a chroot on a debootstrap root',
    '  --fs LIST    comma-separated subset of: kernel,fuse-overlayfs,unionfs-fuse,tsoverlay,floor',
    '  --out FILE   markdown output (default docs/benchmarks.md); --no-doc writes none',
    '  --json FILE  raw results of every round',
    '  --note TEXT  a line added to the notes of the markdown output',
    '  --report FILE  print (and with --out write) the report of a --json FILE; runs nothing',
  ].join('\n');
  if (error !== undefined) {
    process.stderr.write(`run.js: ${error}\n${text}\n`);
    process.exit(2);
  }
  process.stdout.write(`${text}\n`);
  process.exit(0);
}

// ---------------------------------------------------------------- helpers

const q = (s) => `'${String(s).replace(/'/g, `'\\''`)}'`;

function log(message) {
  process.stderr.write(`${message}\n`);
}

function sleep(ms) {
  Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, ms);
}

// Runs a shell command; throws with its stderr when it fails or times out.
function sh(cmd, options = {}) {
  const r = spawnSync('sh', ['-c', cmd], {
    encoding: 'utf8',
    stdio: ['ignore', 'pipe', 'pipe'],
    maxBuffer: 64 * MiB,
    timeout: options.timeoutMs,
    killSignal: 'SIGKILL',
    env: options.env ?? process.env,
  });
  if (r.error !== undefined) throw new Error(`${cmd}: ${r.error.message}`);
  if (r.status !== 0) {
    const reason = r.signal ? `killed by ${r.signal}` : `exit ${r.status}`;
    throw new Error(`${cmd}: ${reason}: ${(r.stderr || '').trim().split('\n').slice(-3).join(' | ')}`);
  }
  return r.stdout;
}

function have(cmd) {
  return spawnSync('sh', ['-c', `command -v ${cmd}`], { stdio: 'ignore' }).status === 0;
}

function mountinfo() {
  return fs.readFileSync('/proc/self/mountinfo', 'utf8').split('\n').filter(Boolean)
    .map((line) => line.split(' '));
}

function isMounted(dir) {
  return mountinfo().some((f) => f[4] === dir);
}

// A zombie counts as gone: it has exited and only waits to be reaped.
function pidAlive(pid) {
  try {
    const stat = fs.readFileSync(`/proc/${pid}/stat`, 'utf8');
    return stat.slice(stat.lastIndexOf(')') + 2, stat.lastIndexOf(')') + 3) !== 'Z';
  } catch {
    return false;
  }
}

function dropCaches() {
  // No sync first: it would wait on every filesystem of the machine, and
  // tmpfs and FUSE pages here are never dirty in a way that matters.
  fs.writeFileSync('/proc/sys/vm/drop_caches', '3\n');
}

// The FUSE daemon serving dir: the process whose arguments name it.
function findDaemon(dir) {
  for (const entry of fs.readdirSync('/proc')) {
    if (!/^\d+$/.test(entry) || Number(entry) === process.pid) continue;
    let args;
    try {
      args = fs.readFileSync(`/proc/${entry}/cmdline`, 'utf8').split('\0');
    } catch {
      continue;
    }
    if (args.includes(dir)) return Number(entry);
  }
  return undefined;
}

function peakMemoryMiB(pid) {
  const status = fs.readFileSync(`/proc/${pid}/status`, 'utf8');
  const m = /^VmHWM:\s+(\d+) kB/m.exec(status);
  if (m === null) throw new Error(`no VmHWM for pid ${pid}`);
  return Number(m[1]) / 1024;
}

function median(values) {
  const s = [...values].sort((a, b) => a - b);
  const mid = Math.floor(s.length / 2);
  return s.length % 2 === 1 ? s[mid] : (s[mid - 1] + s[mid]) / 2;
}

// ---------------------------------------------------------------- mounts

// Every mount made here, innermost last, so cleanup can undo them all.
const mounted = [];
// Daemons started here (floor) or serving our mounts, by mountpoint.
const daemons = new Map();

function track(dir) {
  mounted.push(dir);
}

function untrack(dir) {
  const i = mounted.lastIndexOf(dir);
  if (i >= 0) mounted.splice(i, 1);
}

// Aborts the FUSE connection of dir, so a hung daemon cannot keep it.
// NOTE: does nothing unless fusectl is mounted on /sys/fs/fuse/connections.
function abortFuse(dir) {
  const f = mountinfo().find((x) => x[4] === dir);
  if (f === undefined) return;
  const fstype = f[f.indexOf('-') + 1] ?? '';
  if (!fstype.startsWith('fuse')) return;
  const minor = f[2].split(':')[1];
  try {
    fs.writeFileSync(`/sys/fs/fuse/connections/${minor}/abort`, '1');
  } catch {
    // Already gone.
  }
}

// Unmounts dir, aborting and lazily detaching it when busy or hung. Then
// waits for its daemon to exit, and ends it by pid if it does not.
function unmountDir(dir, command) {
  const pid = daemons.get(dir);
  for (let i = 0; i < 3 && isMounted(dir); i++) {
    const r = spawnSync('sh', ['-c', command ?? `umount ${q(dir)}`], {
      stdio: 'ignore', timeout: 30000, killSignal: 'SIGKILL',
    });
    if (r.status !== 0 && isMounted(dir)) sleep(200);
  }
  if (isMounted(dir)) {
    abortFuse(dir);
    spawnSync('umount', ['-l', dir], { stdio: 'ignore', timeout: 30000 });
  }
  untrack(dir);
  if (pid === undefined) return;
  daemons.delete(dir);
  for (let i = 0; i < 100 && pidAlive(pid); i++) sleep(100);
  if (pidAlive(pid)) {
    log(`daemon ${pid} of ${dir} did not exit after unmount; ending it`);
    try {
      process.kill(pid, 'SIGKILL');
    } catch {
      // It exited meanwhile.
    }
  }
}

// Node runs signal handlers only between synchronous calls, and this
// driver is one long synchronous call, so a signal would wait until the end.
// Signals therefore keep their default action, and a detached shell watches
// the driver: when it is gone, the shell unmounts, newest first, everything
// mounted under root (aborting FUSE connections that do not let go) and
// removes root. On a normal exit, cleanup() has already done that.
function startGuardian(root) {
  const script = `
    while kill -0 ${process.pid} 2>/dev/null; do sleep 1; done
    for i in 1 2 3; do
      tac /proc/self/mountinfo | while read -r id parent dev _ mnt _; do
        case "$mnt" in ${q(`${root}/`)}*) ;; *) continue ;; esac
        umount "$mnt" 2>/dev/null && continue
        { echo 1 > "/sys/fs/fuse/connections/\${dev#*:}/abort"; } 2>/dev/null
        umount -l "$mnt" 2>/dev/null
      done
    done
    rm -rf ${q(root)}`;
  spawnSync('sh', ['-c', `setsid sh -c ${q(script)} < /dev/null > /dev/null 2>&1 &`], { stdio: 'ignore' });
}

let cleanupDone = false;
let tmpRoot;
let tmpfsDir;

function cleanup() {
  if (cleanupDone) return;
  cleanupDone = true;
  for (const dir of [...mounted].reverse()) unmountDir(dir);
  if (tmpfsDir !== undefined && isMounted(tmpfsDir)) {
    spawnSync('umount', [tmpfsDir], { stdio: 'ignore' });
    if (isMounted(tmpfsDir)) spawnSync('umount', ['-l', tmpfsDir], { stdio: 'ignore' });
  }
  if (tmpRoot !== undefined) fs.rmSync(tmpRoot, { recursive: true, force: true });
}

// ---------------------------------------------------------------- filesystems

function overlayOpts(s) {
  return `lowerdir=${s.lower},upperdir=${s.upper},workdir=${s.work}`;
}

// Waits until dir is mounted, or the process serving it has exited.
function waitMounted(dir, pid, timeoutMs) {
  const deadline = Date.now() + timeoutMs;
  while (!isMounted(dir)) {
    if (pid !== undefined && !pidAlive(pid)) return false;
    if (Date.now() > deadline) return false;
    sleep(20);
  }
  return true;
}

const FILESYSTEMS = [
  {
    key: 'kernel',
    label: 'kernel overlayfs',
    daemon: false,
    mount: (s) => sh(`mount -t overlay overlay -o ${q(overlayOpts(s))} ${q(s.merged)}`),
  },
  {
    key: 'fuse-overlayfs',
    label: 'fuse-overlayfs',
    daemon: true,
    mount: (s) => sh(`fuse-overlayfs -o ${q(overlayOpts(s))} ${q(s.merged)}`),
  },
  {
    key: 'unionfs-fuse',
    label: 'unionfs-fuse',
    daemon: true,
    mount: (s) => sh(`unionfs-fuse -o cow,allow_other ${q(`${s.upper}=RW:${s.lower}=RO`)} ${q(s.merged)}`),
  },
  {
    key: 'tsoverlay',
    label: 'tsoverlay',
    daemon: true,
    mount: (s) => sh(`${q(process.execPath)} ${q(cliPath)} mount -o ${q(overlayOpts(s))} ${q(s.merged)}`
      + ` --log-file ${q(path.join(s.root, 'tsoverlay.log'))}`),
    unmount: (s) => `${q(process.execPath)} ${q(cliPath)} umount ${q(s.merged)}`,
  },
  {
    key: 'floor',
    label: 'floor (passthrough)',
    daemon: true,
    // Serves its own copy of the lower directly: writes land in it.
    mount: (s) => {
      // Started through sh so that it is not our child: it is reaped by
      // init when it exits, as the other daemons are.
      const logFile = path.join(s.root, 'passthrough.log');
      const pid = Number(sh(`setsid ${q(process.execPath)} ${q(passthroughPath)} ${q(s.lower)}`
        + ` ${q(s.merged)} < /dev/null >> ${q(logFile)} 2>&1 & echo $!`).trim());
      if (!waitMounted(s.merged, pid, 30000)) {
        const text = fs.readFileSync(logFile, 'utf8').trim();
        throw new Error(`passthrough did not mount: ${text.split('\n').slice(-2).join(' | ')}`);
      }
      return pid;
    },
  },
];

// ---------------------------------------------------------------- data

function ensureBenchtool() {
  const src = path.join(__dirname, 'benchtool.c');
  const bin = path.join(cacheDir, 'benchtool');
  if (!fs.existsSync(bin) || fs.statSync(bin).mtimeMs < fs.statSync(src).mtimeMs) {
    sh(`gcc -O2 -Wall -o ${q(bin)} ${q(src)}`);
  }
  return bin;
}

const gitEnv = () => ({
  ...process.env,
  GIT_CONFIG_NOSYSTEM: '1',
  GIT_CONFIG_GLOBAL: '/dev/null',
  GIT_AUTHOR_NAME: 'bench', GIT_AUTHOR_EMAIL: 'bench@localhost',
  GIT_COMMITTER_NAME: 'bench', GIT_COMMITTER_EMAIL: 'bench@localhost',
  GIT_AUTHOR_DATE: '2000-01-01T00:00:00Z', GIT_COMMITTER_DATE: '2000-01-01T00:00:00Z',
});

// The source tree: a copy of the first of srcDirs that exists, as a tar and
// as a one-commit git repo, built once and kept in the cache.
function ensureSource(size) {
  const srcDir = size.srcDirs.find((d) => fs.existsSync(d));
  if (srcDir === undefined) throw new Error(`none of ${size.srcDirs.join(', ')} exists`);
  const name = srcDir.slice(1).replace(/\//g, '-');
  const tar = path.join(cacheDir, `src-${name}.tar`);
  const repo = path.join(cacheDir, `checkout-${name}`);
  if (!fs.existsSync(tar)) {
    log(`building ${tar} from ${srcDir}`);
    sh(`tar -C ${q(path.dirname(srcDir))} -cf ${q(`${tar}.tmp`)} ${q(path.basename(srcDir))}`);
    fs.renameSync(`${tar}.tmp`, tar);
  }
  if (!fs.existsSync(repo)) {
    log(`building git checkout ${repo}`);
    const tmp = `${repo}.tmp`;
    fs.rmSync(tmp, { recursive: true, force: true });
    fs.mkdirSync(tmp);
    sh(`tar -C ${q(tmp)} --strip-components=1 -xf ${q(tar)}`);
    const git = `git -C ${q(tmp)}`;
    sh(`${git} init -q && ${git} add -A && ${git} commit -q -m import && ${git} gc -q`, { env: gitEnv() });
    fs.renameSync(tmp, repo);
  }
  return { srcDir, tar, repo };
}

// A minimal Debian root with APT_PACKAGE already downloaded, so the timed
// install reads the archive and does not touch the network.
function ensureAptRoot() {
  const root = path.join(cacheDir, 'aptroot');
  if (fs.existsSync(path.join(root, '.bench-ready'))) return root;
  if (!have('debootstrap')) throw new Error('--apt needs debootstrap (apt-get install debootstrap)');
  log(`building ${root} with debootstrap (needs the Debian mirror, a few minutes)`);
  fs.rmSync(root, { recursive: true, force: true });
  sh(`debootstrap --variant=minbase ${APT_SUITE} ${q(root)} ${APT_MIRROR}`, { timeoutMs: 1800000 });
  fs.copyFileSync('/etc/resolv.conf', path.join(root, 'etc', 'resolv.conf'));
  withChrootMounts(root, () => {
    sh(`chroot ${q(root)} apt-get update -q`, { timeoutMs: 600000 });
    sh(`chroot ${q(root)} apt-get install -q -y -d --no-install-recommends ${APT_PACKAGE}`,
      { timeoutMs: 600000 });
  });
  fs.writeFileSync(path.join(root, '.bench-ready'), '');
  return root;
}

function withChrootMounts(root, fn) {
  const proc = path.join(root, 'proc');
  const dev = path.join(root, 'dev');
  try {
    sh(`mount -t proc proc ${q(proc)}`);
    track(proc);
    sh(`mount --bind /dev ${q(dev)}`);
    track(dev);
    return fn();
  } finally {
    unmountDir(dev);
    unmountDir(proc);
  }
}

function writeFileOf(file, bytes, chunk) {
  const fd = fs.openSync(file, 'w');
  for (let done = 0; done < bytes; done += chunk.length) {
    fs.writeSync(fd, chunk, 0, Math.min(chunk.length, bytes - done));
  }
  fs.closeSync(fd);
}

// Fills the template layers in the tmpfs. Every stack's lower is a copy of them.
function buildTemplate(dir, size, source, aptRoot) {
  const lower = path.join(dir, 'lower');
  fs.mkdirSync(lower, { recursive: true });
  const perDir = Math.ceil(size.smallFiles / size.smallDirs);
  for (let i = 0; i < size.smallFiles; i++) {
    const d = path.join(lower, 'small', `d${String(Math.floor(i / perDir)).padStart(3, '0')}`);
    if (i % perDir === 0) fs.mkdirSync(d, { recursive: true });
    fs.writeFileSync(path.join(d, `f${String(i).padStart(5, '0')}`), 'x'.repeat((i * 37) % 4096));
  }
  const rmPerDir = 100;
  for (let i = 0; i < size.rmCount; i++) {
    const d = path.join(lower, 'rmtree', `d${String(Math.floor(i / rmPerDir)).padStart(3, '0')}`);
    if (i % rmPerDir === 0) fs.mkdirSync(d, { recursive: true });
    fs.writeFileSync(path.join(d, `f${String(i).padStart(5, '0')}`), 'rm me\n');
  }
  const chunk = require('node:crypto').randomBytes(MiB);
  writeFileOf(path.join(lower, 'big'), size.bigMiB * MiB, chunk);
  writeFileOf(path.join(lower, 'copyup'), size.copyUpMiB * MiB, chunk);
  sh(`cp -a ${q(source.repo)} ${q(path.join(lower, 'checkout'))}`);
  fs.copyFileSync(source.tar, path.join(dir, 'src.tar'));

  const memLower = path.join(dir, 'lower-mem');
  const memPerDir = 1000;
  for (let i = 0; i < size.memFiles; i++) {
    const d = path.join(memLower, `d${String(Math.floor(i / memPerDir)).padStart(3, '0')}`);
    if (i % memPerDir === 0) fs.mkdirSync(d, { recursive: true });
    fs.closeSync(fs.openSync(path.join(d, `f${String(i).padStart(6, '0')}`), 'w'));
  }
  if (aptRoot !== undefined) sh(`cp -a ${q(aptRoot)} ${q(path.join(dir, 'lower-apt'))}`);
}

// ---------------------------------------------------------------- workloads

// Each workload: key, label, unit, and run(ctx) returning its value. The
// value is the wall time of run unless run returns a number itself.
function mainWorkloads(size, ctx) {
  const merged = ctx.merged;
  const tool = ctx.benchtool;
  const timeout = { timeoutMs: size.timeoutMs };
  const loopFile = path.join(merged, 'small', 'd000', 'f00001');
  const loop = (mode) => () => Number(sh(`${q(tool)} ${mode} ${q(loopFile)} ${size.loopCount}`, timeout)) / 1000;
  const expectSize = (file, bytes) => {
    const actual = fs.statSync(file).size;
    if (actual !== bytes) throw new Error(`${file} has ${actual} bytes, expected ${bytes}`);
  };
  const git = `git -c safe.directory='*' -C ${q(path.join(merged, 'checkout'))} status`;
  return [
    { key: 'find-first', label: `find, first after mount (${size.smallFiles} files)`, unit: 'ms',
      before: dropCaches, run: () => sh(`find ${q(path.join(merged, 'small'))} > /dev/null`, timeout) },
    { key: 'find-warm', label: 'find, warm', unit: 'ms',
      run: () => sh(`find ${q(path.join(merged, 'small'))} > /dev/null`, timeout) },
    { key: 'stat-all', label: 'stat every file (find -printf %s)', unit: 'ms',
      run: () => sh(`find ${q(path.join(merged, 'small'))} -printf '%s\\n' > /dev/null`, timeout) },
    { key: 'git-first', label: 'git status, first (index stat data stale)', unit: 'ms',
      run: () => sh(`${git} > /dev/null`, { ...timeout, env: gitEnv() }) },
    { key: 'git-repeat', label: 'git status, repeated', unit: 'ms',
      run: () => sh(`${git} > /dev/null`, { ...timeout, env: gitEnv() }) },
    { key: 'du', label: 'du -s of the whole mount', unit: 'ms',
      run: () => sh(`du -s ${q(merged)} > /dev/null`, timeout) },
    { key: 'read-first', label: `sequential read ${size.bigMiB} MiB, first`, unit: 'ms',
      before: dropCaches, run: () => sh(`dd if=${q(path.join(merged, 'big'))} of=/dev/null bs=1M 2>/dev/null`, timeout) },
    { key: 'read-repeat', label: `sequential read ${size.bigMiB} MiB, repeated`, unit: 'ms',
      run: () => sh(`dd if=${q(path.join(merged, 'big'))} of=/dev/null bs=1M 2>/dev/null`, timeout) },
    // After drop_caches, as the notes explain.
    { key: 'write', label: `sequential write ${size.bigMiB} MiB (new file)`, unit: 'ms',
      before: dropCaches, run: () => sh(`dd if=/dev/zero of=${q(path.join(merged, 'written'))} bs=1M count=${size.bigMiB} 2>/dev/null`, timeout),
      check: () => expectSize(path.join(merged, 'written'), size.bigMiB * MiB) },
    { key: 'create', label: `create ${size.createCount} small files`, unit: 'ms',
      run: () => sh(`${q(tool)} create ${q(path.join(merged, 'created'))} ${size.createCount} 100`, timeout),
      check: () => {
        const n = fs.readdirSync(path.join(merged, 'created')).length;
        if (n !== size.createCount) throw new Error(`created/ lists ${n} files`);
      } },
    { key: 'tar-x', label: `tar -x of the source tree (${ctx.sourceSummary})`, unit: 'ms',
      run: () => sh(`mkdir ${q(path.join(merged, 'extract'))} && tar -xf ${q(ctx.srcTar)} -C ${q(path.join(merged, 'extract'))}`, timeout) },
    // After drop_caches, as the notes explain.
    { key: 'copy-up', label: `append 1 byte to a ${size.copyUpMiB} MiB lower file (copy-up)`, unit: 'ms',
      before: dropCaches, run: () => sh(`printf x >> ${q(path.join(merged, 'copyup'))}`, timeout),
      check: () => expectSize(path.join(merged, 'copyup'), size.copyUpMiB * MiB + 1) },
    { key: 'rm-rf', label: `rm -rf of a ${size.rmCount}-file lower tree`, unit: 'ms',
      run: () => sh(`rm -rf ${q(path.join(merged, 'rmtree'))}`, timeout),
      check: () => {
        if (fs.existsSync(path.join(merged, 'rmtree'))) throw new Error('rmtree still exists');
      } },
    { key: 'stat-loop', label: `stat(2) of one file, ${size.loopCount}×`, unit: 'µs',
      run: loop('stat') },
    { key: 'statsync-loop', label: `statx(AT_STATX_FORCE_SYNC), ${size.loopCount}×`,
      unit: 'µs', run: loop('statsync') },
    { key: 'open-loop', label: `open+close of one file, ${size.loopCount}×`, unit: 'µs',
      run: loop('open') },
  ];
}

const EXTRA_ROWS = [
  { key: 'mount', label: 'mount (command until the mount is ready)', unit: 'ms' },
  { key: 'mem-main', label: 'daemon peak memory, main workloads (VmHWM)', unit: 'MiB' },
];

function memWorkloads(size, ctx) {
  return [
    { key: 'find-mem', label: `find -printf %s over ${size.memFiles} files, first (round 1 only)`,
      unit: 'ms',
      before: dropCaches,
      run: () => sh(`find ${q(ctx.merged)} -printf '%s' > /dev/null`, { timeoutMs: size.timeoutMs }) },
  ];
}

const MEM_EXTRA = (size) => ({
  key: 'mem-lookups', label: `daemon peak memory after ${size.memFiles} lookups (VmHWM, round 1 only)`,
  unit: 'MiB',
});

function aptWorkloads(size, ctx) {
  return [
    { key: 'apt', label: `chroot apt-get install ${APT_PACKAGE} (debs cached)`, unit: 'ms',
      run: () => {
        const merged = ctx.merged;
        try {
          sh(`mount -t proc proc ${q(path.join(merged, 'proc'))}`);
          track(path.join(merged, 'proc'));
          sh(`mount --bind /dev ${q(path.join(merged, 'dev'))}`);
          track(path.join(merged, 'dev'));
          const env = { ...process.env, DEBIAN_FRONTEND: 'noninteractive' };
          const start = process.hrtime.bigint();
          sh(`chroot ${q(merged)} apt-get install -q -y --no-install-recommends ${APT_PACKAGE} > /dev/null`,
            { timeoutMs: size.timeoutMs, env });
          const ms = Number(process.hrtime.bigint() - start) / 1e6;
          sh(`chroot ${q(merged)} ${APT_PACKAGE} --version > /dev/null`);
          return ms;
        } finally {
          unmountDir(path.join(merged, 'dev'));
          unmountDir(path.join(merged, 'proc'));
        }
      } },
  ];
}

// ---------------------------------------------------------------- sessions

// Mounts fsDef afresh on stack s and runs workloads in order, passing each
// value or failure to record(fsKey, workloadKey, entry).
function session(fsDef, s, workloads, extras, record, prepare, cleanupAfter) {
  const fail = (keys, err) => {
    for (const key of keys) record(fsDef.key, key, { error: err.message });
  };
  // Emptied after the session as well, so the tmpfs contains one session's writes at a time.
  const emptyWritable = () => {
    for (const dir of [s.upper, s.work]) {
      fs.rmSync(dir, { recursive: true, force: true });
      fs.mkdirSync(dir, { recursive: true });
    }
  };
  try {
    emptyWritable();
    prepare?.();
  } catch (err) {
    fail([...extras.map((e) => e.key), ...workloads.map((w) => w.key)], err);
    log(`  ${fsDef.key}: preparing the layers FAILED: ${err.message}`);
    return;
  }

  let pid;
  const mountStart = process.hrtime.bigint();
  try {
    const started = fsDef.mount(s);
    track(s.merged);
    if (!isMounted(s.merged)) throw new Error('mount command returned but nothing is mounted');
    const mountMs = Number(process.hrtime.bigint() - mountStart) / 1e6;
    if (extras.some((e) => e.key === 'mount')) record(fsDef.key, 'mount', { value: mountMs });
    if (fsDef.daemon) {
      pid = typeof started === 'number' ? started : findDaemon(s.merged);
      if (pid === undefined) throw new Error(`no process found serving ${s.merged}`);
      daemons.set(s.merged, pid);
    }
  } catch (err) {
    if (isMounted(s.merged)) unmountDir(s.merged, fsDef.unmount?.(s));
    else untrack(s.merged);
    fail([...extras.map((e) => e.key), ...workloads.map((w) => w.key)], err);
    log(`  ${fsDef.key}: mount FAILED: ${err.message}`);
    return;
  }

  try {
    for (const w of workloads) {
      try {
        w.before?.();
        const start = process.hrtime.bigint();
        const returned = w.run();
        const elapsed = Number(process.hrtime.bigint() - start) / 1e6;
        w.check?.();
        const value = typeof returned === 'number' ? returned : elapsed;
        record(fsDef.key, w.key, { value });
        log(`  ${fsDef.key.padEnd(15)} ${w.key.padEnd(14)} ${fmt(value)} ${w.unit}`);
      } catch (err) {
        record(fsDef.key, w.key, { error: err.message });
        log(`  ${fsDef.key.padEnd(15)} ${w.key.padEnd(14)} FAIL: ${err.message}`);
        if (!isMounted(s.merged)) throw new Error(`mount is gone after ${w.key}`);
      }
    }
    const memKey = extras.find((e) => e.unit === 'MiB')?.key;
    if (memKey !== undefined) {
      if (pid === undefined) record(fsDef.key, memKey, { value: null });
      else if (pidAlive(pid)) record(fsDef.key, memKey, { value: peakMemoryMiB(pid) });
      else record(fsDef.key, memKey, { error: 'daemon exited' });
    }
  } catch (err) {
    log(`  ${fsDef.key}: session aborted: ${err.message}`);
    const done = new Set(Object.keys(roundOf(fsDef.key)));
    fail([...extras.map((e) => e.key), ...workloads.map((w) => w.key)].filter((k) => !done.has(k)), err);
  } finally {
    unmountDir(s.merged, fsDef.unmount?.(s));
    if (!isMounted(s.merged)) {
      emptyWritable();
      cleanupAfter?.();
    }
  }
}

// Results of the round being run, per filesystem: key -> {value} | {error}.
let currentRound = {};
function roundOf(fsKey) {
  currentRound[fsKey] ??= {};
  return currentRound[fsKey];
}

// ---------------------------------------------------------------- report

function fmt(v) {
  if (v === null || v === undefined) return '—';
  const a = Math.abs(v);
  if (a >= 100) return v.toFixed(0);
  if (a >= 10) return v.toFixed(1);
  return v.toFixed(2);
}

function summarize(rows, fsKeys, rounds) {
  const cells = {};
  let failed = false;
  for (const row of rows) {
    cells[row.key] = {};
    for (const f of fsKeys) {
      const entries = rounds.map((r) => r[f]?.[row.key]).filter((e) => e !== undefined);
      const errors = entries.filter((e) => e.error !== undefined);
      if (entries.length === 0) cells[row.key][f] = { text: '—' };
      else if (errors.length > 0) {
        failed = true;
        cells[row.key][f] = { text: `FAIL (${errors.length}/${entries.length})`, error: errors[0].error };
      } else if (entries.every((e) => e.value === null)) cells[row.key][f] = { text: 'n/a' };
      else {
        const m = median(entries.map((e) => e.value));
        cells[row.key][f] = { value: m, text: fmt(m) };
      }
    }
  }
  return { cells, failed };
}

function ratio(a, b) {
  if (a?.value === undefined || b?.value === undefined || b.value === 0) return '—';
  return `${(a.value / b.value).toFixed(2)}×`;
}

function table(rows, fsDefs, cells) {
  const head = ['workload', 'unit', ...fsDefs.map((f) => f.label),
    'ts/fuse-overlayfs', 'ts/kernel', 'ts/floor'];
  const lines = [`| ${head.join(' | ')} |`, `|${head.map((_, i) => (i < 2 ? ' --- ' : ' ---: ')).join('|')}|`];
  for (const row of rows) {
    const c = cells[row.key];
    const ts = c.tsoverlay;
    lines.push(`| ${[row.label, row.unit, ...fsDefs.map((f) => c[f.key].text),
      ratio(ts, c['fuse-overlayfs']), ratio(ts, c.kernel), ratio(ts, c.floor)].join(' | ')} |`);
  }
  return lines.join('\n');
}

function machineInfo() {
  const cpu = os.cpus()[0]?.model ?? 'unknown';
  const version = (cmd) => {
    const r = spawnSync('sh', ['-c', cmd], { encoding: 'utf8' });
    return `${r.stdout}${r.stderr}`.split('\n').find((l) => /version/i.test(l))?.trim() ?? 'unknown';
  };
  const commit = spawnSync('git', ['-C', repoRoot, 'rev-parse', '--short', 'HEAD'], { encoding: 'utf8' });
  const dirty = spawnSync('git', ['-C', repoRoot, '--no-optional-locks', 'status', '--porcelain', 'src'],
    { encoding: 'utf8' });
  return {
    nproc: os.availableParallelism?.() ?? os.cpus().length,
    memGiB: (os.totalmem() / 1024 ** 3).toFixed(1),
    kernel: os.release(),
    cpu,
    node: process.version,
    tsoverlay: `${commit.stdout.trim() || 'unknown'}${dirty.stdout.trim() ? ' (src/ modified)' : ''}`,
    fuseOverlayfs: version('fuse-overlayfs --version | grep fuse-overlayfs'),
    unionfsFuse: version('unionfs-fuse --version 2>&1 | grep unionfs'),
  };
}

// ---------------------------------------------------------------- main

function main() {
  const args = parseArgs(process.argv.slice(2));
  if (args.report !== undefined) {
    publish(JSON.parse(fs.readFileSync(args.report, 'utf8')), args.out);
    return;
  }
  const size = { ...(args.quick ? SIZES.quick : SIZES.full) };
  if (args.rounds !== undefined) size.rounds = args.rounds;
  const fsDefs = args.fs === undefined ? FILESYSTEMS : args.fs.map((k) => {
    const f = FILESYSTEMS.find((x) => x.key === k);
    if (f === undefined) usage(`unknown filesystem ${k}`);
    return f;
  });

  if (process.getuid() !== 0) usage('must run as root (mounts, chroot, drop_caches)');
  const tools = ['gcc', 'git', 'tar', 'find', 'du', 'dd', 'cp'];
  for (const f of fsDefs) if (f.key === 'fuse-overlayfs' || f.key === 'unionfs-fuse') tools.push(f.key);
  for (const tool of tools) {
    if (!have(tool)) usage(`${tool} is not installed`);
  }
  if (!fs.existsSync(cliPath)) usage(`${cliPath} is missing: run npx tsc -p . first`);

  process.on('exit', cleanup);

  const started = new Date();
  const loadAtStart = os.loadavg()[0];
  const command = `node scripts/bench/run.js ${process.argv.slice(2).join(' ')}`.trim();
  fs.mkdirSync(cacheDir, { recursive: true });
  const benchtool = ensureBenchtool();
  const source = ensureSource(size);
  const aptRoot = args.apt ? ensureAptRoot() : undefined;
  const srcFiles = Number(sh(`tar -tf ${q(source.tar)} | wc -l`).trim());
  const srcMiB = fs.statSync(source.tar).size / MiB;
  const sourceSummary = `${srcFiles} entries, ${srcMiB.toFixed(0)} MiB`;

  tmpRoot = fs.mkdtempSync(path.join(os.tmpdir(), 'tsoverlay-bench-'));
  startGuardian(tmpRoot);
  tmpfsDir = path.join(tmpRoot, 't');
  fs.mkdirSync(tmpfsDir);
  sh(`mount -t tmpfs -o size=${size.tmpfsSize},nr_inodes=0,mode=0755 bench ${q(tmpfsDir)}`);
  log(`building layers in ${tmpfsDir}`);
  const template = path.join(tmpfsDir, 'template');
  buildTemplate(template, size, source, aptRoot);
  const srcTar = path.join(template, 'src.tar');

  // Stacks: one per filesystem and kind of session. Lowers are hard-linked
  // copies of the template, which share its bytes at little memory cost. The
  // floor writes into its copy, so that copy is renewed before each session.
  const stacks = {};
  const makeStack = (kind, f, templateLower) => {
    const root = path.join(tmpfsDir, kind, f.key);
    const s = {
      root, lower: path.join(root, 'lower'), upper: path.join(root, 'upper'),
      work: path.join(root, 'work'), merged: path.join(root, 'merged'), templateLower,
    };
    fs.mkdirSync(s.merged, { recursive: true });
    if (f.key !== 'floor') sh(`cp -al ${q(templateLower)} ${q(s.lower)}`);
    stacks[`${kind}/${f.key}`] = s;
    return s;
  };
  const renewFloorLower = (s, kind) => () => {
    fs.rmSync(s.lower, { recursive: true, force: true });
    if (kind === 'apt') {
      sh(`cp -a ${q(s.templateLower)} ${q(s.lower)}`);
      return;
    }
    sh(`cp -al ${q(s.templateLower)} ${q(s.lower)}`);
    // Files the floor changes in place must not be links to the template.
    if (kind === 'main') {
      fs.rmSync(path.join(s.lower, 'copyup'));
      fs.copyFileSync(path.join(s.templateLower, 'copyup'), path.join(s.lower, 'copyup'));
      fs.rmSync(path.join(s.lower, 'checkout', '.git'), { recursive: true });
      sh(`cp -a ${q(path.join(s.templateLower, 'checkout', '.git'))} ${q(path.join(s.lower, 'checkout', '.git'))}`);
    }
  };
  for (const f of fsDefs) {
    makeStack('main', f, path.join(template, 'lower'));
    makeStack('mem', f, path.join(template, 'lower-mem'));
    if (args.apt) makeStack('apt', f, path.join(template, 'lower-apt'));
  }

  const rounds = [];
  const record = (fsKey, key, entry) => {
    roundOf(fsKey)[key] = entry;
  };
  const kinds = [
    { kind: 'main', workloads: (ctx) => mainWorkloads(size, ctx), extras: EXTRA_ROWS },
    // Peak memory does not change from round to round, so one round of this suffices.
    { kind: 'mem', workloads: (ctx) => memWorkloads(size, ctx), extras: [MEM_EXTRA(size)], once: true },
  ];
  if (args.apt) kinds.push({ kind: 'apt', workloads: (ctx) => aptWorkloads(size, ctx), extras: [] });

  for (let r = 0; r < size.rounds; r++) {
    currentRound = {};
    // Rotate the order each round so no filesystem always runs first.
    const order = fsDefs.map((_, i) => fsDefs[(i + r) % fsDefs.length]);
    for (const { kind, workloads, extras, once } of kinds) {
      if (once && r > 0) continue;
      for (const f of order) {
        log(`round ${r + 1}/${size.rounds}: ${kind} on ${f.key}`);
        const s = stacks[`${kind}/${f.key}`];
        const ctx = { merged: s.merged, benchtool, srcTar, sourceSummary };
        const floor = f.key === 'floor';
        session(f, s, workloads(ctx), extras, record, floor ? renewFloorLower(s, kind) : undefined,
          floor ? () => fs.rmSync(s.lower, { recursive: true, force: true }) : undefined);
      }
    }
    rounds.push(currentRound);
  }

  const result = {
    command, started: started.toISOString(), elapsedMin: (Date.now() - started.getTime()) / 60000,
    machine: machineInfo(), loads: [loadAtStart, os.loadavg()[0]], quick: args.quick, apt: args.apt,
    note: args.note, size, srcDir: source.srcDir, sourceSummary, fsKeys: fsDefs.map((f) => f.key),
    rounds,
  };
  if (args.json !== undefined) fs.writeFileSync(args.json, `${JSON.stringify(result, null, 1)}\n`);
  publish(result, args.out);
}

// Prints the report of a run and writes it to out; sets the exit code.
function publish(result, out) {
  const size = result.size;
  const fsDefs = result.fsKeys.map((k) => FILESYSTEMS.find((f) => f.key === k));
  const ctx = { merged: '', sourceSummary: result.sourceSummary };
  const rows = [
    EXTRA_ROWS[0],
    ...mainWorkloads(size, ctx),
    ...memWorkloads(size, ctx),
    ...(result.apt ? aptWorkloads(size, ctx) : []),
    EXTRA_ROWS[1],
    MEM_EXTRA(size),
  ];
  const { cells, failed } = summarize(rows, result.fsKeys, result.rounds);
  const text = report({ ...result, fsDefs, rows, cells });
  process.stdout.write(`${text}\n`);
  if (out !== undefined) {
    fs.mkdirSync(path.dirname(out), { recursive: true });
    fs.writeFileSync(out, `${text}\n`);
    log(`wrote ${out}`);
  }
  process.exitCode = failed ? 1 : 0;
}

function report(r) {
  const { size, fsDefs, rows, cells, machine } = r;
  const failures = [];
  for (const row of rows) {
    for (const f of fsDefs) {
      const c = cells[row.key][f.key];
      if (c.error !== undefined) failures.push(`- ${f.label}, ${row.label}: ${c.error}`);
    }
  }
  const notes = [
    `- Medians of ${size.rounds} interleaved round(s); time in ms unless the unit says otherwise;`
      + ' lower is better everywhere. Ratios are tsoverlay\'s median over the other\'s.',
    '- All layers live in one tmpfs. Each stack\'s lower is a hard-linked copy of the same'
      + ' template; each session mounts afresh on an emptied upper and workdir.',
    '- "first" rows run after `echo 3 > /proc/sys/vm/drop_caches` on a fresh mount. That'
      + ' drops FUSE page cache and dentries, but tmpfs data stays in memory, so kernel'
      + ' overlayfs\' "first" read is served from RAM.',
    '- The write and copy-up rows also run after drop_caches. On a VM whose balloon reports'
      + ' free pages to the host, as this one does, a page freed a while ago costs a host fault'
      + ' when it is touched again. The FUSE stacks\' page caches grow during a session, so'
      + ' their copy-up got pages of that kind and took 3 times as long as the same copy on a'
      + ' fresh mount. The write rounds of one stack ranged from 1.8 to 3.0 s. Dropping'
      + ' caches first gives every stack recently freed pages.',
    '- stat(2) of one file is mostly answered from the kernel\'s attribute cache on the FUSE'
      + ' mounts (attr_timeout); statx with AT_STATX_FORCE_SYNC reaches the daemon every time.',
    '- Peak memory is VmHWM of the daemon process (n/a for the kernel).',
    `- Source tree: ${r.srcDir} of this machine (${r.sourceSummary}), as a tar (extracted`
      + ' from the tmpfs into the mount) and as a one-commit git checkout in the lower,'
      + ` built once in ${cacheDir}.`,
    '- Mount options: kernel and fuse-overlayfs `lowerdir=,upperdir=,workdir=`; unionfs-fuse'
      + ' `-o cow,allow_other UPPER=RW:LOWER=RO`; tsoverlay `node dist/cli.js mount -o ...`;'
      + ' floor: scripts/bench/passthrough.js over its own copy of the lower, with'
      + ' tsoverlay\'s libfuse options (writes land in that copy).',
    `- Other jobs may share the machine: its 1-minute load average was ${r.loads[0].toFixed(1)}`
      + ` at the start and ${r.loads[1].toFixed(1)} at the end, on ${machine.nproc} CPUs.`
      + ' Numbers from a loaded machine are noisy, and probably favour the kernel, whose'
      + ' requests need no switch to a daemon process.',
  ];
  if (r.quick) notes.push('- `--quick`: reduced sizes for a smoke run; not comparable with full runs.');
  else {
    notes.push('- To keep a default run near 15 minutes, the source tree is not all of /usr/include'
      + ' (about 8,800 entries, 130 MiB), and the memory check runs in round 1 only.');
  }
  if (r.note !== undefined) notes.push(`- ${r.note}`);
  return [
    '# Benchmarks',
    '',
    `Written by \`${r.command}\` on ${r.started.replace(/\.\d+Z$/, 'Z')}`
      + ` (${r.elapsedMin.toFixed(1)} min).`,
    '',
    `Machine: ${machine.nproc} CPUs (${machine.cpu}), ${machine.memGiB} GiB RAM,`
      + ` Linux ${machine.kernel}, Node ${machine.node}.`,
    `Versions: tsoverlay ${machine.tsoverlay}; ${machine.fuseOverlayfs}; ${machine.unionfsFuse}.`,
    '',
    table(rows, fsDefs, cells),
    '',
    ...notes,
    ...(failures.length > 0 ? ['', '## Failures', '', ...failures] : []),
  ].join('\n');
}

try {
  main();
} catch (err) {
  log(`run.js: ${err.stack ?? err}`);
  process.exitCode = 2;
}
