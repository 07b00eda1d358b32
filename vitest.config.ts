import { defineConfig } from 'vitest/config';

export default defineConfig({
  test: {
    projects: [
      {
        test: {
          name: 'unit',
          include: [
            '{protocols,edge,cloud,firmware-sim}/src/**/*.test.ts',
            'test/e2e/**/*.test.ts',
            'test/docs/**/*.test.ts',
          ],
          testTimeout: 30_000,
          hookTimeout: 30_000,
          // Vitest's default is cores - 1 = one file at a time on the 2-core machines this
          // runs on; most unit files wait on sockets, LevelDB and timers, so two at once
          // cut the wall time (~290 s to ~180 s) without starving either.
          maxWorkers: 2,
        },
      },
      {
        test: {
          name: 'system',
          include: ['test/system/**/*.test.ts'],
          testTimeout: 300_000,
          hookTimeout: 120_000,
          fileParallelism: false,
        },
      },
    ],
  },
});
