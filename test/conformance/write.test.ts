// File data through the overlay: O_APPEND, writes past the end that leave
// holes, files larger than 4 GiB, large writes, SEEK_DATA and SEEK_HOLE,
// and fallocate. The kernel's result is expected.
import { createHash } from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import { expect } from 'vitest';
import { type Stack } from '../helpers/overlay';
import {
  attempt, expectSameEffect, onBoth, pairTest, statOf, sysops, writeFiles,
} from '../helpers/conformance';

const MiB = 1024 * 1024;
const GiB = 1024 * MiB;

function build(s: Stack) {
  writeFiles(s.lowers[0], { lf: 'lower data', 'ld/x': 'x' });
  writeFiles(s.lowers[1], { deep: 'deep' });
  writeFiles(s.upper, { uf: 'upper data' });
}

// A sparse lower file of 5 GiB less 88 bytes, with data at 1 MiB and at
// the end. Tests with it compare chosen reads, never whole trees.
const HUGE_SIZE = 5 * GiB - 88;

function buildHuge(s: Stack) {
  build(s);
  const fd = fs.openSync(path.join(s.lowers[0], 'huge'), 'w');
  fs.writeSync(fd, 'at one MiB', MiB);
  fs.writeSync(fd, 'near the end', 5 * GiB - 100);
  fs.closeSync(fd);
}

const m = (s: Stack, rel: string) => path.join(s.merged, rel);

function readAt(file: string, position: number, length: number): string {
  const fd = fs.openSync(file, 'r');
  try {
    const buf = Buffer.alloc(length);
    const n = fs.readSync(fd, buf, 0, length, position);
    return buf.subarray(0, n).toString('hex');
  } finally {
    fs.closeSync(fd);
  }
}

const sha = (file: string) => createHash('sha256').update(fs.readFileSync(file)).digest('hex');

pairTest('O_APPEND on lower file', 2, build, (pair) => {
  expectSameEffect(pair, (s) => {
    const fd = fs.openSync(m(s, 'lf'), 'a');
    fs.writeSync(fd, ' one');
    // With O_APPEND the offset is ignored.
    fs.writeSync(fd, ' two', 0);
    fs.closeSync(fd);
    return fs.readFileSync(m(s, 'lf'), 'utf8');
  }, ['lf']);
});

pairTest('O_APPEND from two fds', 2, build, (pair) => {
  const r = onBoth(pair, (s) => {
    const a = fs.openSync(m(s, 'deep'), 'a');
    const b = fs.openSync(m(s, 'deep'), 'a');
    fs.writeSync(a, '-a1');
    fs.writeSync(b, '-b1');
    fs.writeSync(a, '-a2');
    fs.closeSync(a);
    fs.closeSync(b);
    return fs.readFileSync(m(s, 'deep'), 'utf8');
  });
  expect(r.kernel).toBe('deep-a1-b1-a2');
  expect(r.ours).toBe(r.kernel);
});

pairTest('write past EOF of lower file', 2, build, (pair) => {
  expectSameEffect(pair, (s) => {
    const fd = fs.openSync(m(s, 'lf'), 'r+');
    fs.writeSync(fd, 'far', 8 * MiB);
    fs.closeSync(fd);
    return [statOf(m(s, 'lf')).size, readAt(m(s, 'lf'), 4 * MiB, 4), readAt(m(s, 'lf'), 8 * MiB, 3)];
  }, ['lf']);
  const blocks = onBoth(pair, (s) => Number(statOf(path.join(s.upper, 'lf')).blocks));
  // 8 MiB fully allocated would be 16384 blocks.
  expect(blocks.ours).toBeLessThan(4096);
});

pairTest('write past EOF of new file', 2, build, (pair) => {
  const r = onBoth(pair, (s) => {
    const fd = fs.openSync(m(s, 'new'), 'w');
    fs.writeSync(fd, 'far', 16 * MiB);
    fs.closeSync(fd);
    return [statOf(m(s, 'new')).size, Number(statOf(m(s, 'new')).blocks) < 4096, readAt(m(s, 'new'), MiB, 2)];
  });
  expect(r.ours).toEqual(r.kernel);
});

pairTest('pread past EOF', 2, build, (pair) => {
  const r = onBoth(pair, (s) => [readAt(m(s, 'lf'), 100, 10), readAt(m(s, 'uf'), 100, 10)]);
  expect(r.kernel).toEqual(['', '']);
  expect(r.ours).toEqual(r.kernel);
});

pairTest('stat of 5 GiB lower file', 2, buildHuge, (pair) => {
  const r = onBoth(pair, (s) => [statOf(m(s, 'huge')).size, fs.statSync(m(s, 'huge')).size]);
  expect(r.kernel).toEqual([BigInt(HUGE_SIZE), HUGE_SIZE]);
  expect(r.ours).toEqual(r.kernel);
});

pairTest('read past 4 GiB of lower file', 2, buildHuge, (pair) => {
  const r = onBoth(pair, (s) => [readAt(m(s, 'huge'), 5 * GiB - 100, 12), readAt(m(s, 'huge'), MiB, 10)]);
  expect(r.ours).toEqual(r.kernel);
});

pairTest('copy-up of 5 GiB sparse file', 2, buildHuge, (pair) => {
  const r = onBoth(pair, (s) => {
    fs.chmodSync(m(s, 'huge'), 0o600);
    const upperFile = path.join(s.upper, 'huge');
    return [
      statOf(upperFile).size,
      Number(statOf(upperFile).blocks) < 65536,
      readAt(m(s, 'huge'), 5 * GiB - 100, 12),
    ];
  });
  expect(r.ours).toEqual(r.kernel);
});

pairTest('truncate lower file to 5 GiB', 2, build, (pair) => {
  const r = onBoth(pair, (s) => {
    fs.truncateSync(m(s, 'lf'), 5 * GiB);
    return [statOf(m(s, 'lf')).size, statOf(path.join(s.upper, 'lf')).size, readAt(m(s, 'lf'), 4.5 * GiB, 4)];
  });
  expect(r.ours).toEqual(r.kernel);
});

pairTest('write at 4.5 GiB', 2, build, (pair) => {
  const r = onBoth(pair, (s) => {
    const fd = fs.openSync(m(s, 'big'), 'w');
    fs.writeSync(fd, 'beyond', 4.5 * GiB);
    fs.closeSync(fd);
    return [statOf(m(s, 'big')).size, readAt(m(s, 'big'), 4.5 * GiB, 6), statOf(path.join(s.upper, 'big')).size];
  });
  expect(r.ours).toEqual(r.kernel);
});

pairTest('truncate 5 GiB file to 3 GiB', 2, buildHuge, (pair) => {
  const r = onBoth(pair, (s) => {
    fs.truncateSync(m(s, 'huge'), 3 * GiB);
    return [statOf(m(s, 'huge')).size, readAt(m(s, 'huge'), MiB, 10)];
  });
  expect(r.ours).toEqual(r.kernel);
});

pairTest('8 MiB write and read back', 2, build, (pair) => {
  const data = Buffer.alloc(8 * MiB);
  for (let i = 0; i < data.length; i += 4) data.writeUInt32LE(i ^ 0x5a5a5a5a, i);
  const r = onBoth(pair, (s) => {
    fs.writeFileSync(m(s, 'lf'), data);
    return [sha(m(s, 'lf')), sha(path.join(s.upper, 'lf'))];
  });
  expect(r.kernel[0]).toBe(createHash('sha256').update(data).digest('hex'));
  expect(r.ours).toEqual(r.kernel);
});

// A documented difference: libfuse 2.9 has no lseek request, so the
// kernel's FUSE client answers SEEK_DATA and SEEK_HOLE as for a file
// without holes: data at the offset asked, the only hole at the end.
pairTest('SEEK_DATA and SEEK_HOLE', 2, buildHuge, (pair) => {
  const r = onBoth(pair, (s) => sysops([
    ['open', m(s, 'huge'), ['O_RDONLY']],
    ['lseek', 'fd', 0, 'SEEK_DATA'],
    ['lseek', 'fd', 0, 'SEEK_HOLE'],
    ['lseek', 'fd', 2 * MiB, 'SEEK_DATA'],
    ['close', 'fd'],
  ]).map((x) => x.v ?? x.r));
  const size = fs.statSync(m(pair.ours, 'huge')).size;
  expect(r.kernel.slice(0, 3)).toEqual(['ok', MiB, 0]);
  expect(r.ours).toEqual(['ok', 0, size, 2 * MiB, 'ok']);
});

pairTest('fallocate on lower file', 2, build, (pair) => {
  const r = onBoth(pair, (s) => {
    const results = sysops([
      ['open', m(s, 'lf'), ['O_RDWR']], ['fallocate', 'fd', 0, MiB], ['close', 'fd'],
    ]).map((x) => x.r);
    return [results, statOf(m(s, 'lf')).size, fs.readFileSync(m(s, 'lf')).subarray(0, 10).toString()];
  });
  expect(r.ours).toEqual(r.kernel);
});

pairTest('write on read-only fd', 2, build, (pair) => {
  const r = onBoth(pair, (s) => {
    const fd = fs.openSync(m(s, 'lf'), 'r');
    try {
      return attempt(() => fs.writeSync(fd, 'x'));
    } finally {
      fs.closeSync(fd);
    }
  });
  expect(r.kernel).toBe('EBADF');
  expect(r.ours).toBe(r.kernel);
});
