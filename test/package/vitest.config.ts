import { defineConfig } from 'vitest/config';

// The packed-package test (`npm run test:package`): `npm pack`, then an install from the registry
// into an empty project. It runs once in CI (Node 20), not in the default suite.
export default defineConfig({
  test: {
    root: new URL('../..', import.meta.url).pathname,
    include: ['test/package/**/*.test.ts'],
    testTimeout: 180_000,
    hookTimeout: 180_000,
  },
});
