// Replays every minimal failing sequence the differential fuzz runner saved
// in test/fuzz/regressions/ on a kernel overlayfs mount and a tsoverlay
// mount, and expects tsoverlay to give the kernel's result at every step
// and in every comparison after the last step.
import path from 'node:path';
import { afterAll, beforeAll, expect, test } from 'vitest';
import { knownDifferences } from '../fuzz/known-differences';
import { cleanupActive, loadRegressions, replayRegression } from '../fuzz/runner';

const cases = loadRegressions(path.join(__dirname, '..', 'fuzz', 'regressions'));

beforeAll(() => {
  process.umask(0o022);
});
afterAll(() => cleanupActive());

test('regression directory has cases', () => {
  expect(cases.length).toBeGreaterThan(0);
});

for (const c of cases) {
  test(`fuzz regression ${c.name}`, async () => {
    // A replay runs synchronously for seconds; let vitest's RPC through first.
    await new Promise((resolve) => setImmediate(resolve));
    const result = replayRegression(c, knownDifferences);
    const m = result.mismatch;
    // On failure the message shows what differed: the step result or the
    // snapshot fields, the kernel's first.
    expect(m === undefined ? '' : `${m.where} at step ${m.index + 1}: ${m.ours}`).toBe(
      m === undefined ? '' : `${m.where} at step ${m.index + 1}: ${m.kernel}`,
    );
  }, 120_000);
}
