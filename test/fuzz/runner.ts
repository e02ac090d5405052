// Differential runner. It builds a random layer stack from a seed, mounts
// one copy with kernel overlayfs and one with tsoverlay, and applies the same
// random steps to both. It compares every step's result, the merged views at
// checkpoints, the upper layers after unmount, and each upper mounted by the
// other implementation. A mismatch is shrunk with fast-check to a short step
// list and saved as a regression case in test/fuzz/regressions/.
import { execFileSync, spawn } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import fc from 'fast-check';
import { mountKernel, mountTsoverlay, unmount, repoRoot } from '../helpers/overlay';
import { diffSnapshots, listWorkdir, snapshotTree, type Diff, type Snapshot } from './compare';
import { knownDifferences, type KnownDifference, type MismatchCase } from './known-differences';
import { describeOp, NOBODY, opArbitrary, Side, touchedPaths, type Op } from './ops';
import { baseOf, encodeName, fullPath, parentOf, type EncodedPath } from './paths';
import { buildStack, generateStack, stackDirs, withoutEntry, type EntrySpec, type LayerSpec, type PathPools, type StackDirs, type StackOptions, type StackSpec } from './stack';

export interface StepRecord {
  index: number;
  op: Op;
  kernel: string;
  ours: string;
}

export interface Mismatch {
  where: MismatchCase['where'];
  // The step that differed, or ops.length for comparisons after the last step.
  index: number;
  op?: Op;
  kernel: string;
  ours: string;
  diffs?: Diff[];
  // Short signatures of the difference. Shrinking keeps the first one.
  keys: string[];
  log?: string;
}

export interface SequenceResult {
  records: StepRecord[];
  steps: number;
  mismatch?: Mismatch;
  knownHits: string[];
  // Milliseconds spent in each phase, for tuning the budget.
  timings: Record<string, number>;
}

export interface RunOptions {
  knowns: KnownDifference[];
  // Compare the upper layers and workdirs after unmount.
  finalChecks: boolean;
  // Mount each upper with the other implementation and compare again.
  cross: boolean;
  // A directory already holding the built layers of the spec.
  template?: string;
}

const TEMP_PREFIX = path.join('/tmp', 'tsoverlay-fuzz-');

// Mounts and temp directories in use, so an interrupted run can clean up.
const activeMounts = new Set<string>();
const activeTemps = new Set<string>();

// Mounts the kernel on one stack and tsoverlay on the other. Returns each
// side's outcome ('ok' or the error), so a mount failure compares too.
function mountBoth(kernelDirs: StackDirs, oursDirs: StackDirs): { kernel: string; ours: string } {
  const attempt = (dir: string, mount: () => void) => {
    activeMounts.add(dir);
    try {
      mount();
      return 'ok';
    } catch (err) {
      return `mount failed: ${(err as Error).message.split('\n')[0]}`;
    }
  };
  return {
    kernel: attempt(kernelDirs.merged, () => mountKernel(kernelDirs)),
    ours: attempt(oursDirs.merged, () => mountTsoverlay(oursDirs, ['nowhiteout_markers'])),
  };
}

function unmountTracked(dir: string): void {
  unmount(dir);
  activeMounts.delete(dir);
}

export function cleanupActive(): void {
  for (const dir of [...activeMounts]) unmountTracked(dir);
  for (const dir of [...activeTemps]) {
    fs.rmSync(dir, { recursive: true, force: true });
    activeTemps.delete(dir);
  }
}

let childScript: string | undefined;

// The compiled child.js that runs a step as another uid. Under vitest the
// runner is TypeScript, so the fuzz sources are compiled once first.
function resolveChildScript(): string {
  if (childScript) return childScript;
  const sibling = path.join(__dirname, 'child.js');
  if (fs.existsSync(sibling)) {
    childScript = sibling;
  } else {
    execFileSync(path.join(repoRoot, 'node_modules', '.bin', 'tsc'), ['-p', path.join(repoRoot, 'test', 'fuzz', 'tsconfig.json')], { stdio: 'inherit' });
    childScript = path.join(repoRoot, 'dist-fuzz', 'fuzz', 'child.js');
  }
  return childScript;
}

// A worker process running as uid 65534 that takes steps over two fifos,
// so a step as another user costs a pipe round trip, not a process start.
class NobodyWorker {
  private request = -1;
  private reply = -1;
  private pending = '';

  constructor(private readonly dir: string) {}

  private start(): void {
    const requestPath = path.join(this.dir, 'request.fifo');
    const replyPath = path.join(this.dir, 'reply.fifo');
    execFileSync('mkfifo', ['-m', '0666', requestPath, replyPath]);
    fs.chmodSync(this.dir, 0o711);
    const child = spawn('setpriv', [
      '--reuid', String(NOBODY), '--regid', String(NOBODY), '--clear-groups', '--',
      process.execPath, resolveChildScript(), '--serve', requestPath, replyPath,
    ], { stdio: ['ignore', 'ignore', 'inherit'] });
    child.unref();
    // Blocking opens pair up with the worker's opens in the same order.
    this.request = fs.openSync(requestPath, 'w');
    this.reply = fs.openSync(replyPath, 'r');
  }

  run(root: string, op: Op): string {
    if (this.request === -1) this.start();
    fs.writeSync(this.request, `${JSON.stringify({ root, op })}\n`);
    const buf = Buffer.alloc(65536);
    while (!this.pending.includes('\n')) {
      const n = fs.readSync(this.reply, buf, 0, buf.length, null);
      if (n === 0) throw new Error('the uid 65534 step worker exited');
      this.pending += buf.toString('utf8', 0, n);
    }
    const nl = this.pending.indexOf('\n');
    const line = this.pending.slice(0, nl);
    this.pending = this.pending.slice(nl + 1);
    return (JSON.parse(line) as { result: string }).result;
  }

  // Closing the request fifo ends the worker.
  stop(): void {
    if (this.request !== -1) fs.closeSync(this.request);
    if (this.reply !== -1) fs.closeSync(this.reply);
    this.request = -1;
    this.reply = -1;
  }
}

function runStep(side: Side, worker: NobodyWorker, op: Op, touchedNames?: Set<EncodedPath>): string {
  if (op.as === 'nobody') return worker.run(side.root, op);
  return side.run(op, { touchedNames });
}

// Tracks which objects got a "now" time from a step, on the kernel mount:
// their times legitimately differ between the mounts. Overlayfs keeps an
// object's st_ino across copy-up, so inode numbers follow renames.
class TimeTracker {
  private readonly dirtyInos = new Set<bigint>();
  private readonly dirtyNames = new Set<EncodedPath>();

  constructor(private readonly root: string) {}

  private ino(p: EncodedPath, follow: boolean): bigint | undefined {
    try {
      const file = fullPath(this.root, p);
      return (follow ? fs.statSync(file, { bigint: true }) : fs.lstatSync(file, { bigint: true })).ino;
    } catch {
      return undefined;
    }
  }

  // The merged path a symlink at p resolves to, when it stays in the mount.
  private resolved(p: EncodedPath): EncodedPath | undefined {
    try {
      const real = fs.realpathSync(fullPath(this.root, p), { encoding: 'buffer' });
      const prefix = Buffer.from(`${this.root}/`);
      return real.subarray(0, prefix.length).equals(prefix) ? encodeName(real.subarray(prefix.length)) : undefined;
    } catch {
      return undefined;
    }
  }

  private mark(p: EncodedPath | undefined, follow = false): void {
    if (p === undefined) return;
    this.dirtyNames.add(p);
    const ino = this.ino(p, follow);
    if (ino !== undefined) this.dirtyInos.add(ino);
  }

  // A parent directory as the path walk reaches it: a symlink among its
  // components leads to another directory, whose times change instead.
  private markParent(p: EncodedPath): void {
    this.mark(p, true);
    this.mark(this.resolved(p));
  }

  // Parents of names a step removes or moves, while they still resolve.
  before(op: Op): void {
    if (op.op === 'unlink' || op.op === 'rmdir' || op.op === 'rename') {
      this.markParent(parentOf(op.path ?? ''));
      if (op.to !== undefined) this.markParent(parentOf(op.to));
    }
  }

  after(op: Op, kernel: Side, result: string): void {
    const p = op.path ?? '';
    switch (op.op) {
      case 'open':
        if (/creat|trunc/.test(op.flags ?? '')) {
          this.mark(p, true);
          this.markParent(parentOf(p));
          // O_CREAT through a dangling symlink creates the link's target.
          const target = this.resolved(p);
          if (target !== undefined) this.markParent(parentOf(target));
        }
        break;
      case 'write': case 'truncate':
        this.mark(p, true);
        break;
      case 'fwrite': case 'ftruncate': {
        const ino = kernel.slotIno(op.slot);
        if (ino !== undefined) this.dirtyInos.add(ino);
        break;
      }
      case 'mkdir': case 'symlink': case 'mkfifo':
        this.mark(p);
        this.markParent(parentOf(p));
        break;
      case 'link':
        this.markParent(parentOf(op.to ?? ''));
        break;
      case 'unlink': case 'rmdir': case 'rename':
        this.markParent(parentOf(p));
        if (op.to !== undefined) this.markParent(parentOf(op.to));
        break;
      case 'utimes':
        if (result === 'ok' && op.which !== 'atime') {
          const ino = this.ino(p, !op.nofollow);
          if (ino !== undefined) this.dirtyInos.delete(ino);
          this.dirtyNames.delete(p);
        }
        break;
      default:
        break;
    }
  }

  dirtyPaths(view: Snapshot): Set<EncodedPath> {
    const out = new Set<EncodedPath>();
    for (const [p, e] of view) if (this.dirtyNames.has(p) || this.dirtyInos.has(e.ino)) out.add(p);
    return out;
  }
}

function resultFields(r: string): Map<string, string> {
  const fields = new Map<string, string>();
  const body = r.slice(3);
  if (!body.includes('=')) {
    fields.set('value', body);
    return fields;
  }
  for (const part of body.split(',')) {
    const eq = part.indexOf('=');
    fields.set(eq === -1 ? part : part.slice(0, eq), eq === -1 ? '' : part.slice(eq + 1));
  }
  return fields;
}

export function stepKey(op: Op, kernel: string, ours: string): string {
  const cls = (r: string) => (r.startsWith('ok') ? 'ok' : r);
  let detail = `${cls(kernel)}|${cls(ours)}`;
  if (kernel.startsWith('ok:') && ours.startsWith('ok:')) {
    const k = resultFields(kernel);
    const o = resultFields(ours);
    const keys = [...new Set([...k.keys(), ...o.keys()])].filter((f) => k.get(f) !== o.get(f));
    detail += `[${keys.join(',')}]`;
  }
  return `step:${op.op}${op.as === 'nobody' ? '@nobody' : ''}:${detail}`;
}

// Types and presence are short and stable, so they go into the key, and so
// do the names of xattrs that differ. Other values (hashes, times, modes)
// would make every case look new.
function diffKey(where: string, d: Diff): string {
  if (d.field === 'type' || d.field === 'presence') return `${where}:${d.field}:${d.type}:${d.kernel}|${d.ours}`;
  if (d.field === 'xattrs') {
    const items = (s: string) => new Set(s.split(';').filter((x) => x !== ''));
    const k = items(d.kernel);
    const o = items(d.ours);
    const names = [...k].filter((x) => !o.has(x)).concat([...o].filter((x) => !k.has(x))).map((x) => x.split('=')[0]);
    return `${where}:xattrs:${d.type}:${[...new Set(names)].sort().join(',')}`;
  }
  return `${where}:${d.field}:${d.type}`;
}

function matchesKnown(knowns: KnownDifference[], c: MismatchCase): KnownDifference | undefined {
  return knowns.find((k) => k.matches(c));
}

function formatDiffs(diffs: Diff[], side: 'kernel' | 'ours'): string {
  return diffs.map((d) => `'${d.path}' ${d.field}=${d[side]}`).join('\n');
}

// Compares two snapshots and returns a mismatch unless every diff is known.
function viewMismatch(
  where: Mismatch['where'],
  index: number,
  kernel: Snapshot,
  ours: Snapshot,
  dirty: Set<EncodedPath>,
  knowns: KnownDifference[],
  hits: string[],
  comparable: (p: EncodedPath) => boolean = () => true,
): Mismatch | undefined {
  const diffs = diffSnapshots(kernel, ours, (p) => !dirty.has(p) && comparable(p)).filter((d) => {
    const known = matchesKnown(knowns, { where, path: d.path, field: d.field, entryType: d.type, kernel: d.kernel, ours: d.ours });
    if (known) hits.push(known.reason);
    return !known;
  });
  if (diffs.length === 0) return undefined;
  return { where, index, kernel: formatDiffs(diffs, 'kernel'), ours: formatDiffs(diffs, 'ours'), diffs, keys: diffs.map((d) => diffKey(where, d)) };
}

// Error lines of the daemon's log, which explain an EIO or a crash.
function daemonErrors(root: string): string | undefined {
  try {
    const lines = fs.readFileSync(path.join(root, 'tsoverlay.log'), 'utf8').split('\n');
    const errors = lines.filter((l) => /"level":(50|60)/.test(l)).slice(-3);
    return errors.length > 0 ? errors.map((l) => l.slice(0, 600)).join('\n') : undefined;
  } catch {
    return undefined;
  }
}

function copyTree(from: string, to: string): void {
  execFileSync('cp', ['-a', '--', from, to]);
}

export function buildTemplate(spec: StackSpec, dir: string): string {
  buildStack(dir, spec);
  return dir;
}

// Runs ops on a fresh pair of mounts of spec and compares as it goes.
export function runSequence(spec: StackSpec, ops: Op[], options: RunOptions): SequenceResult {
  const result: SequenceResult = { records: [], steps: 0, knownHits: [], timings: {} };
  let phaseStart = Date.now();
  const phase = (name: string) => {
    const now = Date.now();
    result.timings[name] = (result.timings[name] ?? 0) + now - phaseStart;
    phaseStart = now;
  };
  const tmp = fs.mkdtempSync(TEMP_PREFIX);
  activeTemps.add(tmp);
  const lowerCount = spec.lowers.length;
  const kernelDirs = stackDirs(path.join(tmp, 'kernel'), lowerCount);
  const oursDirs = stackDirs(path.join(tmp, 'ours'), lowerCount);
  const kernel = new Side(kernelDirs.merged);
  const ours = new Side(oursDirs.merged);
  const worker = new NobodyWorker(tmp);
  const fail = (m: Mismatch) => {
    m.log = daemonErrors(oursDirs.root);
    result.mismatch = m;
    return result;
  };

  try {
    const template = options.template ?? buildTemplate(spec, path.join(tmp, 'template'));
    copyTree(template, kernelDirs.root);
    copyTree(template, oursDirs.root);
    phase('build');
    const mounted = mountBoth(kernelDirs, oursDirs);
    phase('mount');
    if (mounted.kernel !== 'ok' || mounted.ours !== 'ok') {
      if (mounted.kernel.startsWith('mount failed') && mounted.ours.startsWith('mount failed')) return result;
      const known = matchesKnown(options.knowns, { where: 'mount', kernel: mounted.kernel, ours: mounted.ours });
      if (known) {
        result.knownHits.push(known.reason);
        return result;
      }
      return fail({ where: 'mount', index: -1, kernel: mounted.kernel, ours: mounted.ours, keys: [`mount:${mounted.kernel === 'ok' ? 'ok' : 'error'}|${mounted.ours === 'ok' ? 'ok' : 'error'}`] });
    }

    const tracker = new TimeTracker(kernelDirs.merged);
    const touchedSinceOpendir = new Map<number, Set<EncodedPath>>();
    const compareMerged = (index: number) => {
      const k = snapshotTree(kernelDirs.merged);
      const o = snapshotTree(oursDirs.merged);
      return { k, m: viewMismatch('view', index, k, o, tracker.dirtyPaths(k), options.knowns, result.knownHits) };
    };

    for (let i = 0; i < ops.length; i++) {
      const op = ops[i];
      if (op.op === 'check') {
        const { m } = compareMerged(i);
        phase('check');
        if (m) return fail(m);
        continue;
      }
      tracker.before(op);
      const touched = op.op === 'closedir' ? touchedSinceOpendir.get(op.slot ?? 0) : undefined;
      phase('track');
      const rk = runStep(kernel, worker, op, touched);
      phase('kernel');
      const ro = runStep(ours, worker, op, touched);
      phase('ours');
      tracker.after(op, kernel, rk);
      phase('track');
      if (op.op === 'opendir') touchedSinceOpendir.set(op.slot ?? 0, new Set());
      for (const set of touchedSinceOpendir.values()) for (const p of touchedPaths(op)) set.add(baseOf(p));
      result.records.push({ index: i, op, kernel: rk, ours: ro });
      result.steps += 1;
      if (rk === ro) continue;
      const known = matchesKnown(options.knowns, { where: 'step', op, kernel: rk, ours: ro });
      if (known) {
        result.knownHits.push(known.reason);
        return result;
      }
      return fail({ where: 'step', index: i, op, kernel: rk, ours: ro, keys: [stepKey(op, rk, ro)] });
    }

    const { k: baseline, m } = compareMerged(ops.length);
    phase('check');
    if (m) return fail(m);
    const dirty = tracker.dirtyPaths(baseline);
    kernel.closeAll();
    ours.closeAll();
    if (!options.finalChecks) return result;

    unmountTracked(kernelDirs.merged);
    unmountTracked(oursDirs.merged);
    phase('unmount');
    const inView = (p: EncodedPath) => baseline.has(p);
    const upper = viewMismatch('upper', ops.length, snapshotTree(kernelDirs.upper, { layer: true }), snapshotTree(oursDirs.upper, { layer: true }), dirty, options.knowns, result.knownHits, inView);
    phase('upper');
    if (upper) return fail(upper);
    const kernelWork = listWorkdir(kernelDirs.work).join('\n');
    const oursWork = listWorkdir(oursDirs.work).join('\n');
    if (kernelWork !== oursWork) {
      const c: MismatchCase = { where: 'workdir', kernel: kernelWork, ours: oursWork };
      const known = matchesKnown(options.knowns, c);
      if (known) result.knownHits.push(known.reason);
      else return fail({ where: 'workdir', index: ops.length, kernel: kernelWork, ours: oursWork, keys: ['workdir'] });
    }
    if (!options.cross) return result;

    // The kernel on tsoverlay's upper, tsoverlay on the kernel's upper.
    const remounted = mountBoth(oursDirs, kernelDirs);
    phase('mount');
    if (remounted.kernel !== 'ok' || remounted.ours !== 'ok') {
      const m: Mismatch = { where: 'cross-mount', index: ops.length, kernel: remounted.kernel, ours: remounted.ours, keys: [`cross-mount:${remounted.kernel === 'ok' ? 'ok' : 'error'}|${remounted.ours === 'ok' ? 'ok' : 'error'}`] };
      m.log = daemonErrors(kernelDirs.root);
      result.mismatch = m;
      return result;
    }
    const kernelOnOurs = viewMismatch('cross-kernel', ops.length, baseline, snapshotTree(oursDirs.merged), dirty, options.knowns, result.knownHits);
    if (kernelOnOurs) return fail(kernelOnOurs);
    const oursOnKernel = viewMismatch('cross-ours', ops.length, baseline, snapshotTree(kernelDirs.merged), dirty, options.knowns, result.knownHits);
    phase('cross');
    if (oursOnKernel) {
      oursOnKernel.log = daemonErrors(kernelDirs.root);
      result.mismatch = oursOnKernel;
    }
    return result;
  } finally {
    worker.stop();
    kernel.closeAll();
    ours.closeAll();
    unmountTracked(kernelDirs.merged);
    unmountTracked(oursDirs.merged);
    phase('unmount');
    fs.rmSync(tmp, { recursive: true, force: true });
    activeTemps.delete(tmp);
    phase('cleanup');
  }
}

export interface CampaignOptions {
  seed: number;
  runs: number;
  steps: number;
  timeLimitMs: number;
  shrinkMs: number;
  stack: StackOptions;
  nobodyShare: number;
  cross: boolean;
  save: boolean;
  knowns: KnownDifference[];
  regressionsDir: string;
  verbose: boolean;
  log: (line: string) => void;
}

export interface Sequence {
  spec: StackSpec;
  pools: PathPools;
  ops: Op[];
}

// Draws the stack and steps of one sequence. `--seed N --runs 1` replays it.
export function drawSequence(seed: number, steps: number, stack: StackOptions, nobodyShare: number): Sequence {
  const { spec, pools } = generateStack(seed, stack);
  const arb = fc.array(opArbitrary({ pools, nobodyShare }), { minLength: steps, maxLength: steps });
  const [ops] = fc.sample(arb, { seed, numRuns: 1 });
  return { spec, pools, ops };
}

let stopRequested = false;

const tick = () => new Promise<void>((resolve) => setImmediate(resolve));

// Which comparisons a shrink trial needs to see the mismatch again.
function trialOptions(m: Mismatch, knowns: KnownDifference[]): RunOptions {
  const late = !(m.where === 'step' || m.where === 'view' || m.where === 'mount');
  return { knowns, finalChecks: late, cross: m.where.startsWith('cross') };
}

export interface ShrinkResult {
  spec: StackSpec;
  ops: Op[];
  result: SequenceResult;
  trials: number;
}

// Shrinks a failing sequence: first the steps with fast-check, starting
// from the steps up to the mismatch, then the layers, greedily. A trial
// counts as failing only when it shows the same difference (its first key).
export async function shrinkSequence(seq: Sequence, mismatch: Mismatch, options: CampaignOptions): Promise<ShrinkResult> {
  const key = mismatch.keys[0];
  const deadline = Date.now() + options.shrinkMs;
  const runOptions = trialOptions(mismatch, options.knowns);
  let trials = 0;
  const reproduces = (spec: StackSpec, ops: Op[], template?: string): boolean => {
    if (Date.now() > deadline || stopRequested) return false;
    trials += 1;
    const r = runSequence(spec, ops, { ...runOptions, template });
    const failed = r.mismatch?.keys.includes(key) ?? false;
    if (options.verbose) options.log(`  trial ${trials}: ${ops.length} steps, ${spec.lowers.length} lowers, ${failed ? 'reproduces' : `no (${r.mismatch?.keys[0] ?? 'same results'})`}`);
    return failed;
  };

  const prefix = mismatch.index < seq.ops.length ? seq.ops.slice(0, Math.max(0, mismatch.index + 1)) : seq.ops;
  const templateRoot = fs.mkdtempSync(TEMP_PREFIX);
  activeTemps.add(templateRoot);
  let ops = prefix;
  try {
    const template = buildTemplate(seq.spec, path.join(templateRoot, 'template'));
    // Delta debugging first: drop runs of steps anywhere in the list, which
    // fast-check's array shrinker, cutting from the front, does slowly.
    for (let chunk = Math.ceil(ops.length / 2); chunk >= 1 && ops.length > 0; chunk = Math.floor(chunk / 2)) {
      for (let start = 0; start < ops.length; start += chunk) {
        const candidate = [...ops.slice(0, start), ...ops.slice(start + chunk)];
        await tick();
        if (reproduces(seq.spec, candidate, template)) {
          ops = candidate;
          start -= chunk;
        }
      }
      if (chunk === 1) break;
    }
    const reduced = ops;
    const arb = fc.array(opArbitrary({ pools: seq.pools, nobodyShare: options.nobodyShare }), { maxLength: Math.max(1, reduced.length) });
    const details = await fc.check(
      fc.asyncProperty(arb, async (candidate) => {
        await tick();
        return !reproduces(seq.spec, candidate, template);
      }),
      { seed: options.seed, numRuns: 1, examples: [[reduced]] },
    );
    if (details.failed && details.counterexample) ops = details.counterexample[0];
  } finally {
    fs.rmSync(templateRoot, { recursive: true, force: true });
    activeTemps.delete(templateRoot);
  }

  let spec = seq.spec;
  const attempt = async (candidate: StackSpec) => {
    await tick();
    if (reproduces(candidate, ops)) spec = candidate;
  };
  for (let i = spec.lowers.length - 1; i >= 0 && spec.lowers.length > 1; i--) {
    await attempt({ ...spec, lowers: spec.lowers.filter((_, j) => j !== i) });
  }
  const layerOf = (s: StackSpec, i: number) => (i < s.lowers.length ? s.lowers[i] : s.upper);
  const withLayer = (s: StackSpec, i: number, layer: LayerSpec): StackSpec =>
    i < s.lowers.length ? { ...s, lowers: s.lowers.map((l, j) => (j === i ? layer : l)) } : { ...s, upper: layer };
  for (let i = 0; i <= spec.lowers.length; i++) {
    // Remove halves, then quarters, down to single entries.
    for (let chunk = Math.ceil(layerOf(spec, i).entries.length / 2); chunk >= 1; chunk = Math.floor(chunk / 2)) {
      for (let start = 0; start < layerOf(spec, i).entries.length; start += chunk) {
        const doomed = layerOf(spec, i).entries.slice(start, start + chunk).map((e) => e.path);
        const reduced = doomed.reduce((layer, p) => withoutEntry(layer, p), layerOf(spec, i));
        if (reduced.entries.length === layerOf(spec, i).entries.length) continue;
        const before = layerOf(spec, i).entries.length;
        await attempt(withLayer(spec, i, reduced));
        if (layerOf(spec, i).entries.length < before) start -= chunk;
      }
      if (chunk === 1) break;
    }
  }

  // A last run without a deadline, to report the minimal case in full.
  const result = runSequence(spec, ops, { ...runOptions, finalChecks: true, cross: options.cross || runOptions.cross });
  return { spec, ops, result, trials };
}

function describeEntry(e: EntrySpec): string {
  const parts = [`'${e.path}'`, e.type];
  if (e.mode !== undefined) parts.push(`0${e.mode.toString(8)}`);
  if (e.uid !== undefined) parts.push(`${e.uid}:${e.gid}`);
  if (e.size !== undefined) parts.push(`size=${e.size}${e.extents ? ' sparse' : ''}`);
  if (e.target !== undefined) parts.push(`-> '${e.target}'`);
  if (e.linkTo !== undefined) parts.push(`= '${e.linkTo}'`);
  if (e.opaque) parts.push('opaque');
  if (e.xattrs) parts.push(Object.keys(e.xattrs).join(','));
  return parts.join(' ');
}

export function describeStack(spec: StackSpec): string[] {
  const layer = (name: string, l: LayerSpec) => {
    const root = `root 0${l.root.mode.toString(8)}`;
    return `  ${name}: ${[root, ...l.entries.map(describeEntry)].join('; ')}`;
  };
  return [...spec.lowers.map((l, i) => layer(`lower${i + 1}`, l)), layer('upper', spec.upper)];
}

export function describeResult(result: SequenceResult, ops: Op[]): string[] {
  const lines: string[] = [];
  const byIndex = new Map(result.records.map((r) => [r.index, r]));
  const m = result.mismatch;
  ops.forEach((op, i) => {
    const r = byIndex.get(i);
    let outcome = '';
    if (r && r.kernel === r.ours) outcome = `-> ${r.kernel}`;
    else if (r) outcome = `-> kernel ${r.kernel} | tsoverlay ${r.ours}   <== differs`;
    lines.push(`  ${i + 1}. ${describeOp(op)} ${outcome}`.trimEnd());
  });
  if (m && m.where !== 'step') {
    const label: Record<string, string> = {
      mount: 'mount outcomes differ', 'cross-mount': 'mounting each upper with the other implementation: outcomes differ',
      view: 'merged views differ', upper: 'upper layers differ after unmount', workdir: 'workdirs differ after unmount',
      'cross-kernel': "kernel mount of tsoverlay's upper differs from the kernel's view",
      'cross-ours': "tsoverlay mount of the kernel's upper differs from the kernel's view",
    };
    let when = 'after the last step';
    if (m.index < 0) when = 'before the first step';
    else if (m.index < ops.length) when = `at step ${m.index + 1}`;
    lines.push(`  ${when}: ${label[m.where]}`);
    for (const d of (m.diffs ?? []).slice(0, 12)) {
      lines.push(`     '${d.path}' (${d.type}) ${d.field}: kernel ${d.kernel || '(none)'} | tsoverlay ${d.ours || '(none)'}`);
    }
    if ((m.diffs?.length ?? 0) > 12) lines.push(`     ... ${(m.diffs?.length ?? 0) - 12} more`);
    if (m.where === 'mount' || m.where === 'cross-mount') lines.push(`     kernel: ${m.kernel} | tsoverlay: ${m.ours}`);
    if (m.where === 'workdir') lines.push(`     kernel: [${m.kernel}] | tsoverlay: [${m.ours}]`);
  }
  if (m?.log) lines.push(`  tsoverlay log: ${m.log.split('\n').join('\n                 ')}`);
  return lines;
}

export interface RegressionCase {
  name: string;
  key: string;
  seed: number;
  found: { where: string; step: number; kernel: string; ours: string };
  spec: StackSpec;
  ops: Op[];
}

function slug(key: string): string {
  return key.toLowerCase().replace(/[^a-z0-9]+/g, '-').replace(/^-|-$/g, '').slice(0, 60);
}

export function loadRegressions(dir: string): RegressionCase[] {
  if (!fs.existsSync(dir)) return [];
  return fs.readdirSync(dir).filter((f) => f.endsWith('.json')).sort()
    .map((f) => JSON.parse(fs.readFileSync(path.join(dir, f), 'utf8')) as RegressionCase);
}

function saveRegression(dir: string, c: Omit<RegressionCase, 'name'>): string {
  fs.mkdirSync(dir, { recursive: true });
  let name = slug(c.key);
  for (let n = 2; fs.existsSync(path.join(dir, `${name}.json`)); n++) name = `${slug(c.key)}-${n}`;
  const file = path.join(dir, `${name}.json`);
  fs.writeFileSync(file, `${JSON.stringify({ name, ...c }, null, 1)}\n`);
  return file;
}

export interface CampaignSummary {
  sequences: number;
  steps: number;
  mismatches: number;
  distinct: Map<string, string>;
  knownHits: number;
}

export async function runCampaign(options: CampaignOptions): Promise<CampaignSummary> {
  const { log } = options;
  const started = Date.now();
  const summary: CampaignSummary = { sequences: 0, steps: 0, mismatches: 0, distinct: new Map(), knownHits: 0 };
  const savedKeys = new Set(loadRegressions(options.regressionsDir).map((c) => c.key));
  const runOptions: RunOptions = { knowns: options.knowns, finalChecks: true, cross: options.cross };

  for (let i = 0; i < options.runs && !stopRequested; i++) {
    if (Date.now() - started > options.timeLimitMs) {
      log(`fuzz: time limit of ${Math.round(options.timeLimitMs / 1000)} s reached`);
      break;
    }
    const seed = options.seed + i;
    const seq = drawSequence(seed, options.steps, options.stack, options.nobodyShare);
    const t0 = Date.now();
    const result = runSequence(seq.spec, seq.ops, runOptions);
    summary.sequences += 1;
    summary.steps += result.steps;
    summary.knownHits += result.knownHits.length;
    const m = result.mismatch;
    let status = 'ok';
    if (m) status = `MISMATCH ${m.keys[0]}`;
    else if (result.knownHits.length > 0) status = `ok (known: ${[...new Set(result.knownHits)].join('; ')})`;
    log(`sequence seed=${seed} lowers=${seq.spec.lowers.length} steps=${result.steps}/${seq.ops.length} ${Date.now() - t0} ms: ${status}`);
    if (options.verbose) log(`  ms: ${Object.entries(result.timings).map(([k, v]) => `${k}=${v}`).join(' ')}`);
    await tick();
    if (!m) continue;

    summary.mismatches += 1;
    const key = m.keys[0];
    if (summary.distinct.has(key) || savedKeys.has(key)) {
      log(`  same difference as before (${summary.distinct.get(key) ?? 'saved regression'}); not shrinking again`);
      if (!summary.distinct.has(key)) summary.distinct.set(key, `seed ${seed}`);
      continue;
    }
    const remaining = options.timeLimitMs - (Date.now() - started);
    const shrinkMs = Math.max(10_000, Math.min(options.shrinkMs, remaining));
    const shrunk = await shrinkSequence(seq, m, { ...options, seed, shrinkMs });
    const final = shrunk.result.mismatch?.keys.includes(key) ? shrunk.result : result;
    const finalOps = final === result ? seq.ops.slice(0, Math.max(0, m.index + 1)) : shrunk.ops;
    const finalSpec = final === result ? seq.spec : shrunk.spec;
    log(`  shrunk in ${shrunk.trials} trials to ${finalOps.length} steps; layers of the minimal case:`);
    for (const line of describeStack(finalSpec)) log(line);
    log('  steps:');
    for (const line of describeResult(final, finalOps)) log(line);
    log(`  reproduce: node scripts/fuzz.js --seed ${seed} --runs 1 --steps ${options.steps}${options.stack.names === 'plain' ? ' --names plain' : ''}`);
    const fm = final.mismatch ?? m;
    let where = `seed ${seed}`;
    if (options.save) {
      const file = saveRegression(options.regressionsDir, {
        key, seed, spec: finalSpec, ops: finalOps,
        found: { where: fm.where, step: fm.index + 1, kernel: fm.kernel, ours: fm.ours },
      });
      where = path.relative(repoRoot, file);
      savedKeys.add(key);
      log(`  saved ${where}`);
    }
    summary.distinct.set(key, where);
  }
  return summary;
}

interface CliArgs {
  seed: number;
  runs: number;
  steps: number;
  soak: boolean;
  timeLimit?: number;
  shrinkTime?: number;
  names: 'all' | 'plain';
  maxLowers: number;
  nobodyShare: number;
  cross: boolean;
  save: boolean;
  known?: string;
  replay?: string;
  verbose: boolean;
}

const USAGE = `usage: node scripts/fuzz.js [--seed N] [--runs R] [--steps S] [--soak]
  --seed N          first sequence seed (default: random); sequence i uses N+i
  --runs R          sequences to run (default 30; --soak: no limit)
  --steps S         steps in each sequence (default 40; --soak: 80)
  --soak            long campaign: no run limit, 8 h time limit, longer shrinking
  --time-limit SEC  start no sequence after SEC seconds (default 140; --soak: 28800)
  --shrink-time SEC time for shrinking one mismatch (default 40; --soak: 300)
  --names plain     leave out names with spaces, newlines and bytes that are not UTF-8
  --max-lowers N    at most N lower layers (default 4)
  --nobody P        share of steps run as uid 65534 (default 0.2)
  --no-cross        skip mounting each upper with the other implementation
  --no-save         do not write test/fuzz/regressions/*.json
  --known FILE      a module whose knownDifferences array adds to the built-in list
  --replay FILE     run one saved regression case and print both results
  --verbose         print each shrink trial`;

function parseArgs(argv: string[]): CliArgs {
  const args: CliArgs = {
    seed: Math.floor(Math.random() * 1_000_000_000), runs: 30, steps: 40, soak: false,
    names: 'all', maxLowers: 4, nobodyShare: 0.2, cross: true, save: true, verbose: false,
  };
  let runsSet = false;
  let stepsSet = false;
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i];
    const value = () => {
      const v = argv[++i];
      if (v === undefined) throw new Error(`Missing value for option ${a}\n${USAGE}`);
      return v;
    };
    const number = () => {
      const v = Number(value());
      if (!Number.isFinite(v)) throw new Error(`Invalid value '${argv[i]}' for option ${a}: expected a number`);
      return v;
    };
    if (a === '--seed') args.seed = number();
    else if (a === '--runs') { args.runs = number(); runsSet = true; }
    else if (a === '--steps') { args.steps = number(); stepsSet = true; }
    else if (a === '--soak') args.soak = true;
    else if (a === '--time-limit') args.timeLimit = number();
    else if (a === '--shrink-time') args.shrinkTime = number();
    else if (a === '--names') args.names = value() === 'plain' ? 'plain' : 'all';
    else if (a === '--max-lowers') args.maxLowers = number();
    else if (a === '--nobody') args.nobodyShare = number();
    else if (a === '--no-cross') args.cross = false;
    else if (a === '--no-save') args.save = false;
    else if (a === '--known') args.known = value();
    else if (a === '--replay') args.replay = value();
    else if (a === '--verbose') args.verbose = true;
    else if (a === '--help' || a === '-h') throw new Error(USAGE);
    else throw new Error(`Unknown option '${a}'\n${USAGE}`);
  }
  if (args.soak && !runsSet) args.runs = Number.MAX_SAFE_INTEGER;
  if (args.soak && !stepsSet) args.steps = 80;
  return args;
}

function loadKnowns(file?: string): KnownDifference[] {
  if (!file) return knownDifferences;
  // eslint-disable-next-line @typescript-eslint/no-require-imports
  const extra = require(path.resolve(file)) as { knownDifferences?: KnownDifference[] };
  return [...knownDifferences, ...(extra.knownDifferences ?? [])];
}

export function replayRegression(c: RegressionCase, knowns: KnownDifference[]): SequenceResult {
  return runSequence(c.spec, c.ops, { knowns, finalChecks: true, cross: true });
}

export async function main(argv: string[]): Promise<number> {
  let args: CliArgs;
  try {
    args = parseArgs(argv);
  } catch (err) {
    process.stderr.write(`${(err as Error).message}\n`);
    return 2;
  }
  if (process.getuid?.() !== 0) {
    process.stderr.write('fuzz: must run as root, to mount kernel overlayfs\n');
    return 2;
  }
  process.umask(0o022);
  const onSignal = () => {
    if (stopRequested) {
      cleanupActive();
      process.exit(130);
    }
    stopRequested = true;
    process.stderr.write('fuzz: stopping after the current sequence (again to stop now)\n');
  };
  process.on('SIGINT', onSignal);
  process.on('SIGTERM', onSignal);
  const knowns = loadKnowns(args.known);
  const log = (line: string) => process.stdout.write(`${line}\n`);

  try {
    if (args.replay) {
      const c = JSON.parse(fs.readFileSync(args.replay, 'utf8')) as RegressionCase;
      const result = replayRegression(c, knowns);
      log(`replay ${c.name} (${c.key})`);
      for (const line of describeStack(c.spec)) log(line);
      for (const line of describeResult(result, c.ops)) log(line);
      log(result.mismatch ? `replay: differs (${result.mismatch.keys[0]})` : 'replay: same results');
      return result.mismatch ? 1 : 0;
    }

    const started = Date.now();
    log(`fuzz: seed ${args.seed}, ${args.runs === Number.MAX_SAFE_INTEGER ? 'unlimited' : args.runs} sequences of ${args.steps} steps`);
    const summary = await runCampaign({
      seed: args.seed,
      runs: args.runs,
      steps: args.steps,
      timeLimitMs: (args.timeLimit ?? (args.soak ? 28_800 : 140)) * 1000,
      shrinkMs: (args.shrinkTime ?? (args.soak ? 300 : 40)) * 1000,
      stack: { names: args.names, maxLowers: args.maxLowers },
      nobodyShare: args.nobodyShare,
      cross: args.cross,
      save: args.save,
      knowns,
      regressionsDir: path.join(repoRoot, 'test', 'fuzz', 'regressions'),
      verbose: args.verbose,
      log,
    });
    if (summary.distinct.size > 0) {
      log('distinct differences:');
      for (const [key, where] of summary.distinct) log(`  ${key}  (${where})`);
    }
    log(`fuzz: ${summary.sequences} sequences, ${summary.steps} steps, ${summary.mismatches} mismatches (${summary.distinct.size} distinct, ${summary.knownHits} known skipped) in ${Math.round((Date.now() - started) / 1000)} s`);
    return summary.mismatches > 0 ? 1 : 0;
  } finally {
    cleanupActive();
  }
}
