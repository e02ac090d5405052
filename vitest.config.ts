import { defineConfig } from 'vitest/config';

// Tests mount real filesystems and spawn the daemon, so each file runs in
// its own process and gets generous timeouts.
export default defineConfig({
  test: {
    pool: 'forks',
    testTimeout: 60_000,
    hookTimeout: 60_000,
    include: ['test/**/*.test.ts'],
    maxWorkers: 2,
  },
});
