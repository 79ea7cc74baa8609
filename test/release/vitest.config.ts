import { defineConfig } from 'vitest/config';

// The release files of `npm run build:all` (`npm run test:release`); the default config excludes
// test/release.
export default defineConfig({
  test: {
    root: new URL('../..', import.meta.url).pathname,
    include: ['test/release/**/*.test.ts'],
    testTimeout: 60_000,
    hookTimeout: 60_000,
  },
});
