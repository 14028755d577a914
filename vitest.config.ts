import { defineConfig } from 'vitest/config';

/**
 * Building the images takes minutes and the npm registry: `npm run test:images` runs that file
 * alone (CI runs it after `npm test`); `npm test` runs everything else.
 */
const IMAGES_TEST = 'test/deploy/images.test.ts';
const imagesOnly = process.env.IMAGEPOD_TEST_IMAGES === '1';

export default defineConfig({
  test: {
    include: imagesOnly ? [IMAGES_TEST] : ['test/**/*.test.ts'],
    exclude: imagesOnly ? [] : [IMAGES_TEST, '**/node_modules/**'],
    globalSetup: ['test/setup/dockerd.ts'],
    testTimeout: 30_000,
    hookTimeout: 60_000,
    pool: 'forks',
    // Files share the Redis on 6379 (each under its own key prefix) and, later, one dockerd.
    maxWorkers: 2,
    reporters: ['default'],
  },
});
