import { defineConfig } from 'vitest/config';

export default defineConfig({
  test: {
    include: ['test/**/*.test.ts', 'src/**/*.test.ts'],
    // test/binary needs `npm run build:binary` first; it runs via `npm run test:binary`.
    exclude: ['**/node_modules/**', 'test/binary/**'],
    testTimeout: 30_000,
    hookTimeout: 30_000,
    // Integration tests start real servers; keep the 2-core machine from oversubscribing.
    maxWorkers: 2,
  },
});
