import { defineConfig } from 'vitest/config';

export default defineConfig({
  test: {
    include: ['test/**/*.test.ts', 'src/**/*.test.ts'],
    // test/binary needs `npm run build:binary` first (`npm run test:binary`), test/release
    // `npm run build:all` (`npm run test:release`); test/package installs the packed package from
    // the registry (`npm run test:package`). CI runs each once.
    exclude: ['**/node_modules/**', 'test/binary/**', 'test/release/**', 'test/package/**'],
    testTimeout: 30_000,
    hookTimeout: 30_000,
    // Integration tests start real servers; keep the 2-core machine from oversubscribing.
    maxWorkers: 2,
  },
});
