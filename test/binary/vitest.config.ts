import { defineConfig } from 'vitest/config';

// Only the single-executable tests (`npm run test:binary`, after `npm run build:binary`);
// the default config excludes test/binary.
export default defineConfig({
  test: {
    root: new URL('../..', import.meta.url).pathname,
    include: ['test/binary/**/*.test.ts'],
    testTimeout: 30_000,
    hookTimeout: 30_000,
  },
});
