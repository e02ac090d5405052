// Copy-up: the first change to a lower object copies it to the upper with
// its data, mode, owner, times and xattrs. After each change the merged
// view and the upper must match the kernel's, and no lower may change.
import fs from 'node:fs';
import path from 'node:path';
import { expect, test } from 'vitest';
import { outcome, type Stack } from '../helpers/overlay';
import {
  expectSameEffect, NOBODY, onBoth, pairTest, run, statOf, sys, sysops,
  writeFiles,
} from '../helpers/conformance';

const MiB = 1024 * 1024;
const hasSetcap = run('sh', ['-c', 'command -v setcap']).status === 0;

function setxattr(file: string, name: string, value: string) {
  const r = sys('setxattr', file, name, Buffer.from(value).toString('hex'));
  if (r.r !== 'ok') throw new Error(`setxattr ${name} on ${file}: ${r.r}`);
}

function build(s: Stack) {
  const [l1, l2] = s.lowers;
  writeFiles(l1, {
    f: 'hello', suid: 'suid', sgid: 'sgid', ro: 'read only', zero: 'zero', 'dir/child': 'child',
    'a/b/c/f': 'deep', hl1: 'linked', nw: 'world', cap: 'cap', 'shut/open': 'open',
  });
  writeFiles(l2, { 'dir/below': 'below', 'a/b/other': 'other' });
  const l = (rel: string) => path.join(l1, rel);
  fs.chownSync(l('f'), 1234, 5678);
  setxattr(l('f'), 'user.a', '1');
  setxattr(l('f'), 'user.b', 'two');
  setxattr(l('f'), 'trusted.mine', 'x');
  fs.chmodSync(l('suid'), 0o4755);
  fs.chownSync(l('suid'), 1000, 1000);
  fs.chmodSync(l('sgid'), 0o2755);
  fs.chownSync(l('sgid'), 1000, 1000);
  fs.chmodSync(l('ro'), 0o444);
  fs.chmodSync(l('zero'), 0);
  fs.chmodSync(l('nw'), 0o6777);
  fs.chmodSync(l('shut'), 0o755);
  fs.chmodSync(l('shut/open'), 0o666);
  fs.chmodSync(l('dir'), 0o750);
  fs.chownSync(l('dir'), 1234, 5678);
  setxattr(l('dir'), 'user.d', 'dir');
  fs.chmodSync(l('a'), 0o711);
  fs.chownSync(l('a'), 1001, 1002);
  fs.chmodSync(l('a/b'), 0o755);
  fs.chownSync(l('a/b'), 1003, 1004);
  fs.chmodSync(l('a/b/c'), 0o700);
  fs.linkSync(l('hl1'), l('hl2'));
  fs.symlinkSync('f', l('sym'));
  fs.lchownSync(l('sym'), 1234, 5678);
  sysops([['mkfifo', l('fifo'), 0o640]]);
  if (hasSetcap) run('setcap', ['cap_net_raw+ep', l('cap')]);

  // A 64 MiB sparse file with data at both ends, and an 8 MiB dense one.
  const fd = fs.openSync(l('sparse'), 'w');
  fs.writeSync(fd, 'start', 0);
  fs.writeSync(fd, 'end', 64 * MiB - 3);
  fs.closeSync(fd);
  const big = Buffer.alloc(8 * MiB);
  for (let i = 0; i < big.length; i += 4096) big.writeUInt32LE(i, i);
  fs.writeFileSync(l('big'), big);
}

const m = (s: Stack, rel: string) => path.join(s.merged, rel);


pairTest('append to lower file', 2, build, (pair) => {
  expectSameEffect(pair, (s) => outcome(() => fs.appendFileSync(m(s, 'f'), ' world')), ['f']);
});

pairTest('write in place', 2, build, (pair) => {
  expectSameEffect(pair, (s) => {
    const fd = fs.openSync(m(s, 'f'), 'r+');
    fs.writeSync(fd, 'J', 0);
    fs.closeSync(fd);
  }, ['f']);
});

pairTest('chmod lower file', 2, build, (pair) => {
  expectSameEffect(pair, (s) => outcome(() => fs.chmodSync(m(s, 'f'), 0o600)));
});

pairTest('chown lower file', 2, build, (pair) => {
  expectSameEffect(pair, (s) => outcome(() => fs.chownSync(m(s, 'f'), 42, 43)));
});

pairTest('chown lower setuid file', 2, build, (pair) => {
  expectSameEffect(pair, (s) => outcome(() => fs.chownSync(m(s, 'suid'), 42, 43)));
});

pairTest('chgrp lower setgid file', 2, build, (pair) => {
  expectSameEffect(pair, (s) => outcome(() => fs.chownSync(m(s, 'sgid'), 1000, 44)));
});

pairTest('utimes lower file to the ns', 2, build, (pair) => {
  expectSameEffect(pair, (s) => sys('utime', m(s, 'f'), '1234567890123456789', '1234567891987654321'));
});

pairTest('touch -a lower file', 2, build, (pair) => {
  expectSameEffect(pair, (s) => run('touch', ['-a', '-d', '2010-01-02 03:04:05.123456789', m(s, 'f')]).status);
});

pairTest('utimes lower dir', 2, build, (pair) => {
  expectSameEffect(pair, (s) => sys('utime', m(s, 'dir'), '1234567890123456789', '1234567891987654321'));
});

pairTest('touch -h lower symlink', 2, build, (pair) => {
  expectSameEffect(pair, (s) => run('touch', ['-h', '-d', '2012-01-02 03:04:05.5', m(s, 'sym')]).status);
});

pairTest('touch sets current time', 2, build, (pair) => {
  const r = onBoth(pair, (s) => {
    const before = statOf(m(s, 'f')).mtimeNs;
    run('touch', [m(s, 'f')]);
    return statOf(m(s, 'f')).mtimeNs > before;
  });
  expect(r.kernel).toBe(true);
  expect(r.ours).toBe(r.kernel);
});

pairTest('touch -m lower file', 2, build, (pair) => {
  expectSameEffect(pair, (s) => run('touch', ['-m', '-d', '2011-01-02 03:04:05.987654321', m(s, 'f')]).status);
});

pairTest('stat after touch -m', 2, build, (pair) => {
  const r = onBoth(pair, (s) => {
    run('touch', ['-m', '-d', '2011-01-02 03:04:05.987654321', m(s, 'f')]);
    return statOf(m(s, 'f')).mtimeNs;
  });
  expect(r.kernel).toBe(1293937445987654321n);
  expect(r.ours).toBe(r.kernel);
});

pairTest('truncate lower file shorter', 2, build, (pair) => {
  expectSameEffect(pair, (s) => outcome(() => fs.truncateSync(m(s, 'f'), 2)), ['f']);
});

pairTest('truncate lower file longer', 2, build, (pair) => {
  expectSameEffect(pair, (s) => outcome(() => fs.truncateSync(m(s, 'f'), 100)), ['f']);
});

pairTest('setxattr on lower file', 2, build, (pair) => {
  expectSameEffect(pair, (s) => [
    sys('setxattr', m(s, 'f'), 'user.new', '6e6577'), sys('listxattr', m(s, 'f')),
  ]);
});

pairTest('setxattr on lower dir', 2, build, (pair) => {
  expectSameEffect(pair, (s) => [
    sys('setxattr', m(s, 'dir'), 'user.new', '6e6577'), sys('listxattr', m(s, 'dir')),
    fs.readdirSync(m(s, 'dir')).sort(),
  ]);
});

pairTest('chmod lower dir', 2, build, (pair) => {
  expectSameEffect(pair, (s) => [outcome(() => fs.chmodSync(m(s, 'dir'), 0o700)), fs.readdirSync(m(s, 'dir'))]);
});

pairTest('chown lower dir', 2, build, (pair) => {
  expectSameEffect(pair, (s) => outcome(() => fs.chownSync(m(s, 'dir'), 7, 8)));
});

pairTest('copy-up of deep file', 2, build, (pair) => {
  expectSameEffect(pair, (s) => outcome(() => fs.appendFileSync(m(s, 'a/b/c/f'), '!')), ['a/b/c/f']);
});

pairTest('chmod keeps setuid', 2, build, (pair) => {
  expectSameEffect(pair, (s) => outcome(() => fs.chmodSync(m(s, 'suid'), 0o4750)));
});

pairTest('setxattr keeps setuid', 2, build, (pair) => {
  expectSameEffect(pair, (s) => sys('setxattr', m(s, 'suid'), 'user.x', '78'));
});

pairTest('setxattr keeps setgid', 2, build, (pair) => {
  expectSameEffect(pair, (s) => sys('setxattr', m(s, 'sgid'), 'user.x', '78'));
});

pairTest('root append keeps setuid', 2, build, (pair) => {
  expectSameEffect(pair, (s) => outcome(() => fs.appendFileSync(m(s, 'suid'), '!')), ['suid']);
});

pairTest('user write drops setuid', 2, build, (pair) => {
  expectSameEffect(pair, (s) => sysops([
    ['open', m(s, 'nw'), ['O_WRONLY', 'O_APPEND']], ['write', 'fd', '!'], ['close', 'fd'],
  ], { uid: NOBODY, gid: NOBODY }), ['nw']);
});

pairTest('user write in root-owned lower dir', 2, build, (pair) => {
  // The copy-up creates shut/ in the upper with the mounter's rights.
  expectSameEffect(pair, (s) => sysops([
    ['open', m(s, 'shut/open'), ['O_WRONLY', 'O_APPEND']], ['write', 'fd', '!'], ['close', 'fd'],
  ], { uid: NOBODY, gid: NOBODY }).map((x) => x.r), ['shut/open']);
});

pairTest('user chmod of root file', 2, build, (pair) => {
  const { result } = expectSameEffect(pair, (s) => sysops([['chmod', m(s, 'f'), 0o777]], {
    uid: NOBODY, gid: NOBODY,
  })[0].r);
  expect(result).toBe('EPERM');
});

pairTest('open for write without writing', 2, build, (pair) => {
  expectSameEffect(pair, (s) => fs.closeSync(fs.openSync(m(s, 'f'), 'r+')));
});

pairTest('open read-only does not copy up', 2, build, (pair) => {
  const { upper } = expectSameEffect(pair, (s) => fs.readFileSync(m(s, 'big')).length);
  expect(upper.length).toBe(1);
});

pairTest('write to read-only lower file', 2, build, (pair) => {
  expectSameEffect(pair, (s) => outcome(() => fs.appendFileSync(m(s, 'ro'), '!')), ['ro']);
});

pairTest('chmod mode-0 lower file', 2, build, (pair) => {
  expectSameEffect(pair, (s) => outcome(() => fs.chmodSync(m(s, 'zero'), 0o600)));
});

pairTest('O_TRUNC of big lower file', 2, build, (pair) => {
  expectSameEffect(pair, (s) => {
    fs.writeFileSync(m(s, 'big'), 'x');
    return statOf(m(s, 'big')).size;
  }, ['big']);
});

pairTest('O_TRUNC copies no data', 2, build, (pair) => {
  const r = onBoth(pair, (s) => {
    fs.closeSync(fs.openSync(m(s, 'big'), 'r+'));
    const withData = statOf(path.join(s.upper, 'big')).blocks;
    fs.writeFileSync(m(s, 'big'), '');
    return { withData: withData > 0n, blocks: statOf(path.join(s.upper, 'big')).blocks };
  });
  expect(r.kernel.blocks).toBe(0n);
  expect(r.ours).toEqual(r.kernel);
});

pairTest('sparse copy-up keeps holes', 2, build, (pair) => {
  expectSameEffect(pair, (s) => outcome(() => fs.chmodSync(m(s, 'sparse'), 0o600)));
  const blocks = onBoth(pair, (s) => Number(statOf(path.join(s.upper, 'sparse')).blocks));
  // A fully allocated 64 MiB file has 131072 blocks of 512 bytes. The
  // kernel copies in 1 MiB chunks and allocates about 2048.
  expect(blocks.kernel).toBeLessThan(131072 / 8);
  expect(blocks.ours).toBeLessThan(131072 / 8);
});

pairTest('hard link broken by copy-up', 2, build, (pair) => {
  expectSameEffect(pair, (s) => {
    fs.appendFileSync(m(s, 'hl1'), '!');
    return [fs.readFileSync(m(s, 'hl2'), 'utf8'), statOf(m(s, 'hl1')).nlink, statOf(m(s, 'hl2')).nlink];
  }, ['hl1']);
});

pairTest('lchown lower symlink', 2, build, (pair) => {
  expectSameEffect(pair, (s) => outcome(() => fs.lchownSync(m(s, 'sym'), 9, 10)));
});

pairTest('chmod lower fifo', 2, build, (pair) => {
  expectSameEffect(pair, (s) => outcome(() => fs.chmodSync(m(s, 'fifo'), 0o600)));
});

pairTest('open lower fifo for write', 2, build, (pair) => {
  // O_NONBLOCK with no reader fails with ENXIO, and must not copy up.
  expectSameEffect(pair, (s) => sysops([['open', m(s, 'fifo'), ['O_WRONLY', 'O_NONBLOCK']]])[0].r);
});

// setcap comes from libcap2-bin, and without it the capability tests are skipped.
const capTest: typeof pairTest = hasSetcap ? pairTest : (name) => test.skip(name, () => undefined);

capTest('setxattr keeps capability', 2, build, (pair) => {
  expectSameEffect(pair, (s) => [
    sys('setxattr', m(s, 'cap'), 'user.x', '78'), run('getcap', [m(s, 'cap')]).stdout.trim().split(' ')[1],
  ]);
});

capTest('chmod keeps capability', 2, build, (pair) => {
  expectSameEffect(pair, (s) => [
    outcome(() => fs.chmodSync(m(s, 'cap'), 0o700)), run('getcap', [m(s, 'cap')]).stdout.trim().split(' ')[1],
  ]);
});

capTest('append drops capability', 2, build, (pair) => {
  expectSameEffect(pair, (s) => [
    outcome(() => fs.appendFileSync(m(s, 'cap'), '!')), run('getcap', [m(s, 'cap')]).stdout.trim(),
  ], ['cap']);
});

pairTest('xattrs of copied-up file', 2, build, (pair) => {
  const r = onBoth(pair, (s) => {
    fs.chmodSync(m(s, 'f'), 0o640);
    return [
      sys('listxattr', m(s, 'f')), sys('getxattr', m(s, 'f'), 'user.b'),
      sys('getxattr', m(s, 'f'), 'trusted.mine'),
    ];
  });
  expect(r.ours).toEqual(r.kernel);
});

pairTest('dir copy-up keeps lower entries', 2, build, (pair) => {
  expectSameEffect(pair, (s) => {
    fs.writeFileSync(m(s, 'dir/new'), 'n');
    return fs.readdirSync(m(s, 'dir')).sort();
  }, ['dir', 'dir/new']);
});

pairTest('parent times kept on copy-up', 2, build, (pair) => {
  const r = onBoth(pair, (s) => {
    fs.chmodSync(m(s, 'a/b/c/f'), 0o600);
    return ['a', 'a/b', 'a/b/c'].map((d) => statOf(m(s, d)).mtimeNs);
  });
  expect(r.ours).toEqual(r.kernel);
});
