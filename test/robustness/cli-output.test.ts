/**
 * The CLI's output reaches a slow reader whole: it never exits before stdout
 * has drained (a pipe holds 64 KiB; the rest used to be cut at exit).
 */
import { spawn } from 'node:child_process';
import path from 'node:path';
import { beforeAll, expect, test } from 'vitest';
import { writeImageDataset } from '../helpers/datasets.js';
import { useTmpDir } from '../helpers/tmp.js';
import { BIN, REPO, assertBuilt } from '../pipeline/helpers.js';

const tmp = useTmpDir('mc-cli-output-');
beforeAll(() => assertBuilt());

test('--json inspect of a dataset with many shards prints all of its JSON to a reader that waits before reading', async () => {
  const dir = path.join(tmp(), 'many-shards');
  await writeImageDataset(dir, 1500, { shardRows: 1 });
  const child = spawn(process.execPath, [BIN, '--json', 'inspect', dir], { cwd: REPO, stdio: ['ignore', 'pipe', 'pipe'] });
  // Read nothing for a while: the child fills the pipe and, unfixed, exits with the rest unwritten.
  child.stdout.pause();
  const chunks: Buffer[] = [];
  child.stdout.on('data', (d: Buffer) => chunks.push(d));
  let stderr = '';
  child.stderr.on('data', (d) => (stderr += d));
  await new Promise((r) => setTimeout(r, 1500));
  child.stdout.resume();
  const code = await new Promise<number | null>((resolve) => child.on('close', resolve));
  expect(code, stderr).toBe(0);
  const text = Buffer.concat(chunks).toString('utf8');
  expect(text.length).toBeGreaterThan(65536);
  const result = JSON.parse(text);
  expect(result.shards).toHaveLength(1500);
}, 60_000);
