// Attributes the overlay reports: link counts of merged and plain dirs,
// inode numbers across copy-up and remount, shared inodes of hard links,
// st_dev, and statfs. Inode numbers differ between the two stacks, so
// tests compare which stay equal or which names share one.
import fs from 'node:fs';
import path from 'node:path';
import { expect } from 'vitest';
import { mountKernel, mountTsoverlay, unmount, type Pair, type Stack } from '../helpers/overlay';
import {
  inodeGroups, NOBODY, onBoth, pairTest, run, statOf, sys, sysops, writeFiles,
} from '../helpers/conformance';

function build(s: Stack) {
  const [l1, l2] = s.lowers;
  writeFiles(l1, { lf: 'l', 'ld/a/x': 'x', 'ld/b/y': 'y', 'md/l1/f': 'f', 'deep/d/f': 'f', hl1: 'h' });
  writeFiles(l2, { 'md/l2/f': 'f', 'md/file': 'f' });
  writeFiles(s.upper, { uf: 'u', 'ud/u1/f': 'f', 'md/u/f': 'f' });
  fs.linkSync(path.join(l1, 'hl1'), path.join(l1, 'hl2'));
  fs.linkSync(path.join(s.upper, 'uf'), path.join(s.upper, 'uhl'));
  fs.symlinkSync('a-target-of-17', path.join(l1, 'sym'));
}

const m = (s: Stack, rel: string) => path.join(s.merged, rel);

function remount(pair: Pair) {
  unmount(pair.kernel.merged);
  unmount(pair.ours.merged);
  mountKernel(pair.kernel);
  mountTsoverlay(pair.ours);
}

for (const dir of ['.', 'md', 'ld', 'ld/a', 'ud', 'deep/d']) {
  pairTest(`st_nlink of ${dir}`, 2, build, (pair) => {
    const r = onBoth(pair, (s) => statOf(m(s, dir)).nlink);
    expect(r.ours).toBe(r.kernel);
  });
}

pairTest('st_nlink of dir after copy-up', 2, build, (pair) => {
  const r = onBoth(pair, (s) => {
    fs.writeFileSync(m(s, 'ld/new'), 'n');
    return [statOf(m(s, 'ld')).nlink, statOf(m(s, 'ld/a')).nlink];
  });
  expect(r.ours).toEqual(r.kernel);
});

pairTest('st_nlink of lower hard links', 2, build, (pair) => {
  const r = onBoth(pair, (s) => [statOf(m(s, 'hl1')).nlink, statOf(m(s, 'lf')).nlink]);
  expect(r.kernel).toEqual([2n, 1n]);
  expect(r.ours).toEqual(r.kernel);
});

pairTest('ino stable across copy-up', 2, build, (pair) => {
  const r = onBoth(pair, (s) => {
    const before = statOf(m(s, 'lf')).ino;
    run('touch', ['-a', m(s, 'lf')]);
    const afterTouch = statOf(m(s, 'lf')).ino;
    fs.appendFileSync(m(s, 'deep/d/f'), '!');
    return [before === afterTouch, fs.existsSync(path.join(s.upper, 'lf'))];
  });
  expect(r.kernel).toEqual([true, true]);
  expect(r.ours).toEqual(r.kernel);
});

pairTest('ino stable across chmod copy-up', 2, build, (pair) => {
  const r = onBoth(pair, (s) => {
    const before = statOf(m(s, 'lf')).ino;
    fs.chmodSync(m(s, 'lf'), 0o600);
    return before === statOf(m(s, 'lf')).ino;
  });
  expect(r.kernel).toBe(true);
  expect(r.ours).toBe(r.kernel);
});

pairTest('fstat ino stable across copy-up', 2, build, (pair) => {
  const r = onBoth(pair, (s) => {
    const fd = fs.openSync(m(s, 'lf'), 'r');
    try {
      const before = fs.fstatSync(fd, { bigint: true }).ino;
      fs.appendFileSync(m(s, 'lf'), '!');
      return [before === fs.fstatSync(fd, { bigint: true }).ino, before === statOf(m(s, 'lf')).ino];
    } finally {
      fs.closeSync(fd);
    }
  });
  expect(r.ours).toEqual(r.kernel);
});

pairTest('dir ino stable across copy-up', 2, build, (pair) => {
  const r = onBoth(pair, (s) => {
    const before = statOf(m(s, 'ld')).ino;
    fs.writeFileSync(m(s, 'ld/new'), 'n');
    return before === statOf(m(s, 'ld')).ino;
  });
  expect(r.kernel).toBe(true);
  expect(r.ours).toBe(r.kernel);
});

pairTest('ino stable across remount', 2, build, (pair) => {
  const names = ['lf', 'uf', 'ld', 'md', 'ud', 'copied', 'hl1', '.', 'ld/a/x'];
  const r = onBoth(pair, (s) => {
    fs.copyFileSync(m(s, 'lf'), m(s, 'copied'));
    fs.chmodSync(m(s, 'ld/a/x'), 0o600);
    return names.map((n) => statOf(m(s, n)).ino);
  });
  remount(pair);
  const after = onBoth(pair, (s) => names.map((n) => statOf(m(s, n)).ino));
  const same = {
    kernel: r.kernel.map((ino, i) => `${names[i]} ${ino === after.kernel[i]}`),
    ours: r.ours.map((ino, i) => `${names[i]} ${ino === after.ours[i]}`),
  };
  expect(same.ours).toEqual(same.kernel);
});

pairTest('upper hard links share inode', 2, build, (pair) => {
  const r = onBoth(pair, (s) => {
    fs.linkSync(m(s, 'lf'), m(s, 'ld/lfl'));
    return inodeGroups(s.merged, ['uf', 'uhl', 'lf', 'ld/lfl', 'hl1', 'hl2']);
  });
  expect(r.ours).toEqual(r.kernel);
});

pairTest('lower hard links after copy-up', 2, build, (pair) => {
  const r = onBoth(pair, (s) => {
    fs.appendFileSync(m(s, 'hl1'), '!');
    return [inodeGroups(s.merged, ['hl1', 'hl2']), statOf(m(s, 'hl1')).nlink, statOf(m(s, 'hl2')).nlink];
  });
  expect(r.ours).toEqual(r.kernel);
});

pairTest('distinct inodes in tree', 2, build, (pair) => {
  const names = [
    'lf', 'uf', 'uhl', 'ld', 'ld/a', 'ld/a/x', 'md', 'md/l1', 'md/l2', 'md/u', 'md/file', 'sym', 'hl1', 'hl2',
  ];
  const r = onBoth(pair, (s) => inodeGroups(s.merged, names));
  expect(r.ours).toEqual(r.kernel);
});

pairTest('uniform st_dev', 2, build, (pair) => {
  const r = onBoth(pair, (s) => {
    const devs = ['.', 'lf', 'uf', 'ld', 'md', 'sym', 'ld/a/x'].map((n) => statOf(m(s, n)).dev);
    return new Set(devs).size;
  });
  expect(r.ours).toBe(r.kernel);
});

pairTest('symlink st_size', 2, build, (pair) => {
  const r = onBoth(pair, (s) => statOf(m(s, 'sym')).size);
  expect(r.kernel).toBe(14n);
  expect(r.ours).toBe(r.kernel);
});

pairTest('merged dir times from upper', 2, build, (pair) => {
  const r = onBoth(pair, (s) => ['.', 'md', 'ld', 'ud'].map((n) => [statOf(m(s, n)).mtimeNs, statOf(m(s, n)).mode]));
  expect(r.ours).toEqual(r.kernel);
});

pairTest('lower file times', 2, build, (pair) => {
  const r = onBoth(pair, (s) => ['lf', 'hl1', 'md/file'].map((n) => {
    const st = statOf(m(s, n));
    return [st.mtimeNs, st.atimeNs];
  }));
  expect(r.ours).toEqual(r.kernel);
});

pairTest('mount root owner and mode', 2, (s) => {
  build(s);
  fs.chmodSync(s.upper, 0o750);
  fs.chownSync(s.upper, 12, 34);
}, (pair) => {
  const r = onBoth(pair, (s) => [statOf(s.merged).mode, statOf(s.merged).uid, statOf(s.merged).gid]);
  expect(r.ours).toEqual(r.kernel);
});

function buildModes(s: Stack) {
  build(s);
  writeFiles(s.lowers[0], { 'modes/r644': '', 'modes/w666': '', 'modes/x700': '', 'modes/x711': '' });
  const mode = (rel: string, bits: number) => fs.chmodSync(path.join(s.lowers[0], 'modes', rel), bits);
  mode('r644', 0o644);
  mode('w666', 0o666);
  mode('x700', 0o700);
  mode('x711', 0o711);
  writeFiles(s.lowers[0], { 'closed/f': '' });
  fs.chmodSync(path.join(s.lowers[0], 'closed'), 0o700);
}

pairTest('access checks for nobody', 2, buildModes, (pair) => {
  const checks: [string, string][] = [
    ['modes/r644', 'R'], ['modes/r644', 'W'], ['modes/w666', 'W'], ['modes/x711', 'X'],
    ['modes/x700', 'X'], ['closed/f', 'F'], ['closed', 'X'], ['lf', 'W'],
  ];
  const r = onBoth(pair, (s) => sysops(
    checks.map(([rel, mode]) => ['access', m(s, rel), mode]),
    { uid: NOBODY, gid: NOBODY },
  ).map((x) => x.v));
  expect(r.ours).toEqual(r.kernel);
});

pairTest('access checks for root', 2, buildModes, (pair) => {
  const checks: [string, string][] = [['modes/r644', 'X'], ['modes/x700', 'X'], ['modes/r644', 'W'], ['closed/f', 'R']];
  const r = onBoth(pair, (s) => sysops(checks.map(([rel, mode]) => ['access', m(s, rel), mode])).map((x) => x.v));
  expect(r.kernel).toEqual([false, true, true, true]);
  expect(r.ours).toEqual(r.kernel);
});

pairTest('statfs f_namemax', 2, build, (pair) => {
  const r = onBoth(pair, (s) => run('stat', ['-f', '-c', '%l', s.merged]).stdout.trim());
  expect(r.kernel).toBe('255');
  expect(r.ours).toBe(r.kernel);
});

pairTest('statfs block counts', 2, build, (pair) => {
  const r = onBoth(pair, (s) => run('stat', ['-f', '-c', '%S %b', s.merged]).stdout.trim());
  expect(r.ours).toBe(r.kernel);
});

pairTest('statvfs flags', 2, build, (pair) => {
  const r = onBoth(pair, (s) => sys('statvfs', s.merged).v.namemax);
  expect(r.ours).toBe(r.kernel);
});

pairTest('read-only statfs f_namemax', 2, build, (pair) => {
  const r = onBoth(pair, (s) => run('stat', ['-f', '-c', '%l', s.merged]).stdout.trim());
  expect(r.ours).toBe(r.kernel);
}, { readOnly: true });
