// Differences between tsoverlay and kernel overlayfs that are understood
// and accepted. The runner skips a mismatch that an entry matches. A
// snapshot difference is dropped and the sequence goes on. A step
// difference ends the sequence, because the two mounts no longer have the
// same state.
import type { Op } from './ops';

// One difference as the runner found it: a step result, or one field of
// one entry in a snapshot comparison.
export interface MismatchCase {
  where: 'mount' | 'step' | 'view' | 'upper' | 'workdir' | 'cross-mount' | 'cross-kernel' | 'cross-ours';
  op?: Op;
  path?: string;
  field?: string;
  entryType?: string;
  kernel: string;
  ours: string;
}

export interface KnownDifference {
  // One line: what differs and why it is accepted.
  reason: string;
  matches(c: MismatchCase): boolean;
}

export const knownDifferences: KnownDifference[] = [];
