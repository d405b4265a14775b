import { defineConfig } from 'vitest/config';

export default defineConfig({
  test: {
    include: ['tests/**/*.test.ts'],
    pool: 'forks',
    testTimeout: 120_000,
    hookTimeout: 120_000,
    // native compute already uses every core; one test file at a time keeps timings sane
    fileParallelism: false,
  },
});
