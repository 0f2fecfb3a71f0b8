/** Shared by the CLI and pipeline tests: temp dirs, the built CLI, tiny IDX fixtures. */
import { spawn } from 'node:child_process';
import { existsSync, promises as fsp } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

export const REPO = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..');
export const BIN = path.join(REPO, 'bin/metacurate.js');

/** The CLI runs from dist/; `npm test` builds it first (pretest). */
export function assertBuilt(): void {
  if (!existsSync(path.join(REPO, 'dist/pipeline/cli.js')) || !existsSync(path.join(REPO, 'dist/index.js'))) {
    throw new Error('dist/ is missing: run `npm run build` first (npm test does it in pretest)');
  }
}

export async function tempDir(prefix = 'metacurate-test-'): Promise<string> {
  return fsp.mkdtemp(path.join(os.tmpdir(), prefix));
}

export interface Spawned {
  code: number | null;
  signal: NodeJS.Signals | null;
  stdout: string;
  stderr: string;
}

/** Runs a command to completion and collects its output (never rejects on a non-zero exit). */
export function run(cmd: string, args: string[], opts: { cwd?: string; env?: NodeJS.ProcessEnv; input?: string } = {}): Promise<Spawned> {
  return new Promise((resolve, reject) => {
    const child = spawn(cmd, args, { cwd: opts.cwd ?? REPO, env: { ...process.env, ...opts.env }, stdio: ['pipe', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (d) => (stdout += d));
    child.stderr.on('data', (d) => (stderr += d));
    child.on('error', reject);
    child.on('close', (code, signal) => resolve({ code, signal, stdout, stderr }));
    child.stdin.end(opts.input ?? '');
  });
}

/** `node bin/metacurate.js ...args`. */
export function cli(args: string[], opts: { cwd?: string } = {}): Promise<Spawned> {
  return run(process.execPath, [BIN, ...args], opts);
}

/**
 * Writes a tiny IDX pair (`<prefix>-images-idx3-ubyte`, `<prefix>-labels-idx1-ubyte`)
 * with `n` h×w images: image i is filled with the value 8·i % 256 and has label i % classes.
 */
export async function writeIdxFixture(dir: string, opts: { prefix?: string; n: number; h?: number; w?: number; classes?: number }): Promise<void> {
  const { prefix = 'train', n, h = 8, w = 8, classes = 3 } = opts;
  await fsp.mkdir(dir, { recursive: true });
  const images = Buffer.alloc(16 + n * h * w);
  images.writeUInt32BE(2051, 0);
  images.writeUInt32BE(n, 4);
  images.writeUInt32BE(h, 8);
  images.writeUInt32BE(w, 12);
  for (let i = 0; i < n; i++) images.fill((8 * i) % 256, 16 + i * h * w, 16 + (i + 1) * h * w);
  const labels = Buffer.alloc(8 + n);
  labels.writeUInt32BE(2049, 0);
  labels.writeUInt32BE(n, 4);
  for (let i = 0; i < n; i++) labels[8 + i] = i % classes;
  await fsp.writeFile(path.join(dir, `${prefix}-images-idx3-ubyte`), images);
  await fsp.writeFile(path.join(dir, `${prefix}-labels-idx1-ubyte`), labels);
}

/** Runs the CLI and sends it `signal` at its first progress line: mid-work. */
export function cliSignalledMidWork(args: string[], signal: NodeJS.Signals): Promise<{ code: number | null; signalled: boolean; stderr: string }> {
  const child = spawn(process.execPath, [BIN, ...args], { cwd: REPO });
  let stderr = '';
  let signalled = false;
  child.stderr.on('data', (d) => {
    stderr += d;
    if (!signalled && /"msg":"progress"/.test(stderr)) {
      signalled = true;
      child.kill(signal);
    }
  });
  return new Promise((resolve) => child.on('close', (code) => resolve({ code, signalled, stderr })));
}

/** Parses JSON lines, failing on any line that is not JSON. */
export function jsonLines(text: string): Record<string, unknown>[] {
  return text.split('\n').filter((l) => l.trim()).map((l) => {
    try {
      return JSON.parse(l);
    } catch {
      throw new Error(`not a JSON line: ${l}`);
    }
  });
}

/** Entries of a directory that are temporary (partial) outputs. */
export async function tempEntries(dir: string): Promise<string[]> {
  return (await fsp.readdir(dir)).filter((n) => n.startsWith('.tmp-'));
}
