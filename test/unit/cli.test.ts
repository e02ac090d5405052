// Which command lines the CLI hands to the daemon process without yargs,
// and what it reads from them. A form that is turned down still works,
// because yargs parses it in the first process.
import { expect, test } from 'vitest';
import { parsePlainMount } from '../../src/cli';

test('plain mount command', () => {
  expect(parsePlainMount(['mount', '-o', 'lowerdir=/l', '/m'])).toEqual({
    mountpoint: '/m', options: ['lowerdir=/l'], logLevel: 'info', logFile: undefined,
  });
});

test('podman mount_program form', () => {
  expect(parsePlainMount(['-o', 'lowerdir=/l,upperdir=/u,workdir=/w', '/m'])).toEqual({
    mountpoint: '/m', options: ['lowerdir=/l,upperdir=/u,workdir=/w'], logLevel: 'info', logFile: undefined,
  });
});

test('mount helper form', () => {
  expect(parsePlainMount(['overlay', '/m', '-o', 'lowerdir=/l', '-o', 'ro'])).toEqual({
    mountpoint: '/m', options: ['lowerdir=/l', 'ro'], logLevel: 'info', logFile: undefined,
  });
});

test('log flags in both spellings', () => {
  expect(parsePlainMount(['mount', '/m', '-o', 'lowerdir=/l', '--log-level', 'debug', '--log-file=/tmp/x.log'])).toEqual({
    mountpoint: '/m', options: ['lowerdir=/l'], logLevel: 'debug', logFile: '/tmp/x.log',
  });
});

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
  ['mount', '/m', '-olowerdir=/l'],
  ['mount', '/m', '-o', '-x'],
  ['mount', '/m', '-o', 'lowerdir=/l', '--log-level', 'info', '--log-level', 'debug'],
  ['mount', '-o', 'lowerdir=/l', '/m', '--ready-fd', '3'],
];

test.each(parsedHere)('parsed with yargs: %s', (...argv) => {
  expect(parsePlainMount(argv)).toBeUndefined();
});
