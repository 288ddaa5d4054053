/** Jest runs the TypeScript tests through ts-jest (type-checked against tsconfig.test.json). */
module.exports = {
  testEnvironment: 'node',
  roots: ['<rootDir>/test'],
  testMatch: ['**/*.test.ts'],
  transform: { '^.+\\.ts$': ['ts-jest', { tsconfig: 'tsconfig.test.json' }] },
  // Compiles dist/ when stale (the CLI tests spawn node dist/lib/cli/main.js).
  globalSetup: '<rootDir>/test/global-setup.js',
  testTimeout: 120000,
  maxWorkers: 2,
};
