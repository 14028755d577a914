import { defineConfig } from 'vitest/config';

export default defineConfig({
  test: {
    include: ['test/**/*.test.ts'],
    globalSetup: ['test/setup/dockerd.ts'],
    testTimeout: 30_000,
    hookTimeout: 60_000,
    pool: 'forks',
    // Files share the Redis on 6379 (each under its own key prefix) and, later, one dockerd.
    maxWorkers: 2,
    reporters: ['default'],
  },
});
