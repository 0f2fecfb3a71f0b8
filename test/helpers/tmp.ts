/** Temporary directories for tests: created under the OS tmpdir, removed after the file's tests. */
import { promises as fsp } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll } from 'vitest';

/**
 * Registers a temporary directory for the current test file and returns a getter
 * for it (valid inside tests and hooks). Call at the top level of a test file.
 */
export function useTmpDir(prefix = 'metacurate-test-'): () => string {
  let dir: string | undefined;
  beforeAll(async () => {
    dir = await fsp.mkdtemp(path.join(os.tmpdir(), prefix));
  });
  afterAll(async () => {
    if (dir) await fsp.rm(dir, { recursive: true, force: true });
  });
  return () => {
    if (!dir) throw new Error('useTmpDir: the directory exists only inside tests and hooks');
    return dir;
  };
}
