// Which command lines the CLI hands to the daemon process unparsed. A form
// that is turned down still works; it is only parsed in the first process.
import { expect, test } from 'vitest';
import { isPlainBackgroundMount } from '../../src/cli';

const plain = [
  ['mount', '-o', 'lowerdir=/l', '/m'],
  ['-o', 'lowerdir=/l,upperdir=/u,workdir=/w', '/m'],
  ['overlay', '/m', '-o', 'lowerdir=/l'],
  ['mount', '/m', '-olowerdir=/l', '--log-level', 'debug', '--log-file=/tmp/x.log'],
];
const parsedHere = [
  ['mount', '-f', '-o', 'lowerdir=/l', '/m'],
  ['mount', '--foreground', '-o', 'lowerdir=/l', '/m'],
  ['mount', '-o', 'lowerdir=/l', '/m', '--help'],
  ['--version'],
  ['umount', '/m'],
  ['mount', '/m', '/extra', '-o', 'lowerdir=/l'],
  ['mount', '-o', 'lowerdir=/l'],
  ['-o', 'lowerdir=/l'],
  ['a', 'b', 'c', '-o', 'lowerdir=/l'],
  ['mount', '/m', '-o'],
  ['mount', '-o', 'lowerdir=/l', '/m', '--ready-fd', '3'],
];

test.each(plain)('goes to the daemon: %s', (...argv) => {
  expect(isPlainBackgroundMount(argv)).toBe(true);
});

test.each(parsedHere)('is parsed in the first process: %s', (...argv) => {
  expect(isPlainBackgroundMount(argv)).toBe(false);
});
