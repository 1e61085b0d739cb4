import { defineConfig } from 'vitest/config';

export default defineConfig({
  test: {
    include: ['test/**/*.test.ts'],
    // Each test file in its own process: the CPU path and thread count are process-wide.
    pool: 'forks',
    testTimeout: 120_000,
  },
});
