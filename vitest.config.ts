import { defineConfig } from 'vitest/config';

export default defineConfig({
  test: {
    include: ['test/**/*.test.ts'],
    testTimeout: 120_000,
    hookTimeout: 120_000,
    // tfjs/wasm and sharp hold native state; forks isolate them per file.
    pool: 'forks',
  },
});
