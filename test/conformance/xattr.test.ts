// Extended attributes through the overlay: get, set, list and remove on
// lower and upper objects, the overlay's private names never shown, and
// which failures copy up. The kernel's result is expected.
import fs from 'node:fs';
import path from 'node:path';
import { expect } from 'vitest';
import { type Stack } from '../helpers/overlay';
import {
  expectSameEffect, NOBODY, onBoth, pairTest, setOpaque, sys, sysops, writeFiles,
} from '../helpers/conformance';

const hex = (s: string) => Buffer.from(s).toString('hex');
const XATTR_CREATE = 1;
const XATTR_REPLACE = 2;

// A POSIX access ACL granting uid 1000 read: version 2, then entries of
// (tag u16, perm u16, id u32) for user::, user:1000:, group::, mask::, other::.
function aclValue(): string {
  const entries: [number, number, number][] = [
    [0x01, 6, 0xffffffff], [0x02, 4, 1000], [0x04, 4, 0xffffffff], [0x10, 4, 0xffffffff], [0x20, 4, 0xffffffff],
  ];
  const buf = Buffer.alloc(4 + entries.length * 8);
  buf.writeUInt32LE(2, 0);
  entries.forEach(([tag, perm, id], i) => {
    buf.writeUInt16LE(tag, 4 + i * 8);
    buf.writeUInt16LE(perm, 6 + i * 8);
    buf.writeUInt32LE(id, 8 + i * 8);
  });
  return buf.toString('hex');
}

function set(file: string, name: string, value: string) {
  const r = sys('setxattr', file, name, value);
  if (r.r !== 'ok') throw new Error(`setxattr ${name} on ${file}: ${r.r}`);
}

function build(s: Stack) {
  const [l1, l2] = s.lowers;
  writeFiles(l1, { lf: 'l', 'ld/x': 'x', 'md/a': 'a', acl: 'acl', 'opq/in': 'in' });
  writeFiles(l2, { 'md/b': 'b', 'opq/below': 'below' });
  writeFiles(s.upper, { uf: 'u', 'md/c': 'c' });
  set(path.join(l1, 'lf'), 'user.one', hex('1'));
  set(path.join(l1, 'lf'), 'user.bin', '00ff0001');
  set(path.join(l1, 'lf'), 'trusted.overlay.foreign', hex('x'));
  set(path.join(l1, 'ld'), 'user.dir', hex('lower dir'));
  set(path.join(l1, 'md'), 'user.dir', hex('lower md'));
  set(path.join(s.upper, 'md'), 'user.dir', hex('upper md'));
  set(path.join(s.upper, 'uf'), 'user.up', hex('u'));
  set(path.join(l1, 'acl'), 'system.posix_acl_access', aclValue());
  setOpaque(path.join(l1, 'opq'));
  fs.symlinkSync('lf', path.join(l1, 'sym'));
}

const m = (s: Stack, rel: string) => path.join(s.merged, rel);

for (const [name, rel, attr] of [
  ['lower file', 'lf', 'user.one'], ['binary value', 'lf', 'user.bin'], ['upper file', 'uf', 'user.up'],
  ['lower dir', 'ld', 'user.dir'], ['merged dir', 'md', 'user.dir'],
]) {
  pairTest(`get on ${name}`, 2, build, (pair) => {
    const r = onBoth(pair, (s) => sys('getxattr', m(s, rel), attr));
    expect(r.kernel.r).toBe('ok');
    expect(r.ours).toEqual(r.kernel);
  });
}

for (const rel of ['lf', 'uf', 'ld', 'md', 'opq', '.', 'acl']) {
  pairTest(`list on ${rel}`, 2, build, (pair) => {
    const r = onBoth(pair, (s) => sys('listxattr', m(s, rel)));
    expect(r.ours).toEqual(r.kernel);
  });
}

pairTest('list after copy-up', 2, build, (pair) => {
  const r = onBoth(pair, (s) => {
    fs.chmodSync(m(s, 'lf'), 0o600);
    fs.writeFileSync(m(s, 'ld/new'), 'n');
    return [sys('listxattr', m(s, 'lf')), sys('listxattr', m(s, 'ld'))];
  });
  expect(r.ours).toEqual(r.kernel);
});

pairTest('list of recreated dir', 2, build, (pair) => {
  const r = onBoth(pair, (s) => {
    fs.rmSync(m(s, 'md'), { recursive: true });
    fs.mkdirSync(m(s, 'md'));
    return sys('listxattr', m(s, 'md'));
  });
  expect(r.ours).toEqual(r.kernel);
});

pairTest('get private opaque xattr', 2, build, (pair) => {
  const r = onBoth(pair, (s) => sys('getxattr', m(s, 'opq'), 'trusted.overlay.opaque'));
  expect(r.ours).toEqual(r.kernel);
});

pairTest('get missing xattr', 2, build, (pair) => {
  const r = onBoth(pair, (s) => ['lf', 'uf', 'md', 'ld'].map((rel) => sys('getxattr', m(s, rel), 'user.none').r));
  expect(r.kernel).toEqual(['ENODATA', 'ENODATA', 'ENODATA', 'ENODATA']);
  expect(r.ours).toEqual(r.kernel);
});

pairTest('set on lower file', 2, build, (pair) => {
  expectSameEffect(pair, (s) => [sys('setxattr', m(s, 'lf'), 'user.new', hex('v')), sys('listxattr', m(s, 'lf'))]);
});

pairTest('set on upper file', 2, build, (pair) => {
  expectSameEffect(pair, (s) => [
    sys('setxattr', m(s, 'uf'), 'user.new', hex('v')), sys('getxattr', m(s, 'uf'), 'user.new'),
  ]);
});

pairTest('set on merged dir', 2, build, (pair) => {
  expectSameEffect(pair, (s) => [
    sys('setxattr', m(s, 'md'), 'user.dir', hex('new')), sys('getxattr', m(s, 'md'), 'user.dir'),
  ]);
});

pairTest('set large value', 2, build, (pair) => {
  const value = Buffer.alloc(3000, 0xab).toString('hex');
  expectSameEffect(pair, (s) => [
    sys('setxattr', m(s, 'lf'), 'user.big', value), sys('getxattr', m(s, 'lf'), 'user.big'),
  ]);
});

pairTest('remove on lower file', 2, build, (pair) => {
  expectSameEffect(pair, (s) => [sys('removexattr', m(s, 'lf'), 'user.one'), sys('listxattr', m(s, 'lf'))]);
});

pairTest('remove on lower dir', 2, build, (pair) => {
  expectSameEffect(pair, (s) => [sys('removexattr', m(s, 'ld'), 'user.dir'), sys('listxattr', m(s, 'ld'))]);
});

pairTest('remove missing on lower file', 2, build, (pair) => {
  const { result, upper } = expectSameEffect(pair, (s) => sys('removexattr', m(s, 'lf'), 'user.none').r);
  expect(result).toBe('ENODATA');
  expect(upper.map((e) => Buffer.from(e.path, 'hex').toString())).not.toContain('lf');
});

pairTest('remove missing on lower dir', 2, build, (pair) => {
  const { result } = expectSameEffect(pair, (s) => sys('removexattr', m(s, 'ld'), 'user.none').r);
  expect(result).toBe('ENODATA');
});

pairTest('XATTR_CREATE on existing', 2, build, (pair) => {
  const { result } = expectSameEffect(pair, (s) => sys('setxattr', m(s, 'lf'), 'user.one', hex('2'), XATTR_CREATE).r);
  expect(result).toBe('EEXIST');
});

pairTest('XATTR_REPLACE on missing', 2, build, (pair) => {
  const { result } = expectSameEffect(pair, (s) => {
    return sys('setxattr', m(s, 'lf'), 'user.none', hex('2'), XATTR_REPLACE).r;
  });
  expect(result).toBe('ENODATA');
});

pairTest('set trusted.overlay name', 2, build, (pair) => {
  expectSameEffect(pair, (s) => [
    sys('setxattr', m(s, 'uf'), 'trusted.overlay.mine', hex('m')).r,
    sys('getxattr', m(s, 'uf'), 'trusted.overlay.mine'),
    sys('listxattr', m(s, 'uf')),
  ]);
});

pairTest('get foreign trusted.overlay name', 2, build, (pair) => {
  const r = onBoth(pair, (s) => sys('getxattr', m(s, 'lf'), 'trusted.overlay.foreign'));
  expect(r.ours).toEqual(r.kernel);
});

pairTest('set trusted.overlay.opaque', 2, build, (pair) => {
  expectSameEffect(pair, (s) => [
    sys('setxattr', m(s, 'md'), 'trusted.overlay.opaque', hex('y')).r, fs.readdirSync(m(s, 'md')).sort(),
  ]);
});

pairTest('user xattr on symlink', 2, build, (pair) => {
  const { result } = expectSameEffect(pair, (s) => sys('setxattr', m(s, 'sym'), 'user.x', hex('1')).r);
  expect(result).toBe('EPERM');
});

pairTest('security xattr on lower file', 2, build, (pair) => {
  expectSameEffect(pair, (s) => [
    sys('setxattr', m(s, 'lf'), 'security.test', hex('s')).r, sys('getxattr', m(s, 'lf'), 'security.test'),
  ]);
});

pairTest('unknown namespace', 2, build, (pair) => {
  expectSameEffect(pair, (s) => sys('setxattr', m(s, 'uf'), 'bogus.name', hex('1')).r);
});

pairTest('nobody sets on root file', 2, build, (pair) => {
  const nobody = { uid: NOBODY, gid: NOBODY };
  expectSameEffect(pair, (s) => sysops([['setxattr', m(s, 'lf'), 'user.n', hex('1')]], nobody)[0].r);
});

pairTest('nobody reads user xattr', 2, build, (pair) => {
  const r = onBoth(pair, (s) => sysops([['getxattr', m(s, 'lf'), 'user.one'], ['listxattr', m(s, 'lf')]], {
    uid: NOBODY, gid: NOBODY,
  }));
  expect(r.ours).toEqual(r.kernel);
});

pairTest('ACL copied up', 2, build, (pair) => {
  expectSameEffect(pair, (s) => {
    fs.chownSync(m(s, 'acl'), 5, 5);
    return [sys('getxattr', m(s, 'acl'), 'system.posix_acl_access'), statOf(m(s, 'acl'))];
  });
});

pairTest('ACL grants access', 2, build, (pair) => {
  const r = onBoth(pair, (s) => sysops([['readfile', m(s, 'acl')]], { uid: 1000, gid: 1000 })[0]);
  expect(r.kernel.r).toBe('ok');
  expect(r.ours).toEqual(r.kernel);
});

function statOf(file: string) {
  const st = fs.lstatSync(file);
  return [st.mode, st.uid, st.gid];
}
