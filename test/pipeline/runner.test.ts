import { afterEach, beforeEach, describe, expect, test } from 'vitest';
import { spawnSync } from 'node:child_process';
import { existsSync, promises as fsp } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { z } from 'zod';
import { fingerprint } from '../../core/hash.js';
import { ConfigError, MissingInputError, OutputError } from '../../core/errors.js';
import { writeDataset } from '../../data/writer.js';
import { readCuration } from '../../data/reader.js';
import { quietContext, type StageContext } from '../../stages/context.js';
import { defineStage } from '../../stages/define.js';
import { loadPipelineConfig, parsePipelineConfig } from '../../pipeline/config.js';
import { runPipeline } from '../../pipeline/runner.js';
import { LOCK_FILE } from '../../pipeline/lock.js';
import type { StageRegistry } from '../../pipeline/registry.js';
import { STAGES } from '../../pipeline/registry.js';
import { REPO, tempDir, tempEntries } from './helpers.js';

/** A stage that writes `rows` rows; its fingerprint follows its inputs' fingerprints, as real stages do. */
const fakeOptions = z.object({
  out: z.string(),
  overwrite: z.boolean().default(false),
  rows: z.number().int().positive().default(3),
  seed: z.number().int().optional(),
  size: z.union([z.number(), z.tuple([z.number(), z.number()])]).optional(),
}).refine((o) => o.rows !== 13, { message: 'rows may not be 13', path: ['rows'] });

function fakeStage(calls: string[]) {
  return defineStage({
    name: 'fake',
    version: '1',
    description: 'writes `rows` rows',
    options: fakeOptions,
    inputs: [{ name: 'upstream', description: 'earlier outputs', optional: true, many: true }],
    async plan(inputs, o) {
      const fps = await Promise.all(inputs.upstream.map(async (i) => (await readCuration(i))?.fingerprint ?? path.basename(i)));
      return { options: { rows: o.rows }, seed: o.seed, parents: fps.map((fp) => ({ fingerprint: fp })) };
    },
    async run(_ctx, _plan, o, out) {
      calls.push(path.basename(o.out));
      const writer = await out.dataset({ columns: [{ name: 'id', kind: 'string' }] });
      for (let i = 0; i < o.rows; i++) await writer.writeRow({ id: `r${i}` });
      return { summary: { rows: o.rows } };
    },
  });
}

function recordingContext(): StageContext & { warnings: string[] } {
  const base = quietContext();
  const warnings: string[] = [];
  return { ...base, warnings, log: { ...base.log, warn: (o: object | string, msg?: string) => void warnings.push(msg ?? String(o)) } };
}

let dir: string;
let calls: string[];
let registry: StageRegistry;
beforeEach(async () => {
  dir = await tempDir();
  calls = [];
  registry = { fake: fakeStage(calls) };
});
afterEach(async () => {
  await fsp.rm(dir, { recursive: true, force: true });
});

async function writePipeline(stages: unknown[], extra: Record<string, unknown> = {}): Promise<string> {
  const file = path.join(dir, 'p.json');
  await fsp.writeFile(file, JSON.stringify({ version: 1, workdir: 'work', stages, ...extra }));
  return file;
}

const twoStages = [
  { id: 'a', stage: 'fake', options: { rows: 3 } },
  { id: 'b', stage: 'fake', inputs: ['${a}'], options: { rows: 2 } },
];

describe('runPipeline', () => {
  test('runs stages in order, then skips current ones; --force reruns; changed options rerun downstream', async () => {
    const file = await writePipeline(twoStages, { seed: 7 });
    const first = await runPipeline(file, { registry });
    expect(calls).toEqual(['a', 'b']);
    expect(first.stages.map((s) => [s.id, s.status, s.numRows])).toEqual([['a', 'ran', 3], ['b', 'ran', 2]]);
    const work = path.join(dir, 'work');
    const a = await readCuration(path.join(work, 'a'));
    const b = await readCuration(path.join(work, 'b'));
    expect(b!.parents.map((p) => p.fingerprint)).toEqual([a!.fingerprint]);
    expect(a!.seed).toBe(7); // the pipeline's seed fills the stage's
    const report = JSON.parse(await fsp.readFile(path.join(work, 'report.json'), 'utf8'));
    expect(report.stages.map((s: { fingerprint: string }) => s.fingerprint)).toEqual([a!.fingerprint, b!.fingerprint]);
    expect(await fsp.readFile(path.join(work, 'report.md'), 'utf8')).toMatch(/\| a \| fake \| ran \|/);

    const second = await runPipeline(file, { registry });
    expect(calls).toEqual(['a', 'b']);
    expect(second.stages.map((s) => s.status)).toEqual(['skipped', 'skipped']);
    expect(second.stages[0].numRows).toBe(3);

    const forced = await runPipeline(file, { registry, force: true });
    expect(calls).toEqual(['a', 'b', 'a', 'b']);
    expect(forced.stages.map((s) => s.reason)).toEqual(['forced', 'forced']);
    expect(forced.stages.map((s) => s.fingerprint)).toEqual(first.stages.map((s) => s.fingerprint));

    // A new option for `a` changes its fingerprint, and so `b`'s (its parent changed).
    await writePipeline([{ ...twoStages[0], options: { rows: 4 } }, twoStages[1]], { seed: 7 });
    const changed = await runPipeline(file, { registry });
    expect(changed.stages.map((s) => [s.status, s.reason])).toEqual([['ran', 'stale'], ['ran', 'stale']]);
    expect(changed.stages[1].fingerprint).not.toBe(first.stages[1].fingerprint);
    expect(existsSync(path.join(work, LOCK_FILE))).toBe(false);
    expect(await tempEntries(work)).toEqual([]);
  });

  test('refuses to replace a directory that is not a dataset', async () => {
    const file = await writePipeline(twoStages);
    await fsp.mkdir(path.join(dir, 'work/a'), { recursive: true });
    await fsp.writeFile(path.join(dir, 'work/a/notes.txt'), 'mine');
    await expect(runPipeline(file, { registry })).rejects.toThrow(OutputError);
    expect(await fsp.readFile(path.join(dir, 'work/a/notes.txt'), 'utf8')).toBe('mine');
  });

  test('stops before the next stage when the signal is aborted, and releases the lock', async () => {
    const file = await writePipeline(twoStages);
    const abort = new AbortController();
    const ctx = { ...quietContext(), signal: abort.signal };
    abort.abort(new Error('stop'));
    await expect(runPipeline(file, { registry, ctx })).rejects.toThrow('stop');
    expect(calls).toEqual([]);
    expect(existsSync(path.join(dir, 'work', LOCK_FILE))).toBe(false);
  });
});

describe('lock', () => {
  test('a lock held by a live process is refused (exit 73), and left in place', async () => {
    const file = await writePipeline(twoStages);
    const lock = path.join(dir, 'work', LOCK_FILE);
    await fsp.mkdir(path.dirname(lock), { recursive: true });
    // This test process is alive, so its lock is live.
    const held = JSON.stringify({ pid: process.pid, hostname: os.hostname(), started_at: new Date().toISOString(), token: 'x' });
    await fsp.writeFile(lock, held);
    const err = await runPipeline(file, { registry }).catch((e) => e);
    expect(err).toBeInstanceOf(OutputError);
    expect(err.exitCode).toBe(73);
    expect(err.message).toMatch(new RegExp(`locked by another run \\(pid ${process.pid}`));
    expect(calls).toEqual([]);
    expect(await fsp.readFile(lock, 'utf8')).toBe(held);
  });

  test('a lock from another host is refused: its process cannot be checked', async () => {
    const file = await writePipeline(twoStages);
    const lock = path.join(dir, 'work', LOCK_FILE);
    await fsp.mkdir(path.dirname(lock), { recursive: true });
    await fsp.writeFile(lock, JSON.stringify({ pid: 1, hostname: `not-${os.hostname()}`, started_at: 'then', token: 'x' }));
    await expect(runPipeline(file, { registry })).rejects.toThrow(/locked by another run.*on not-.*pass --take-over-lock/);
    // Told that run is gone (a pod that died), the run takes the lock over, says so, and releases it.
    const ctx = recordingContext();
    const report = await runPipeline(file, { registry, ctx, takeOverLock: true });
    expect(report.stages.map((s) => s.status)).toEqual(['ran', 'ran']);
    expect(ctx.warnings).toContain('taking over the lock of a run on another host, as asked');
    expect(existsSync(lock)).toBe(false);
  });

  test('a stale lock (dead process on this host) is taken over with a warning', async () => {
    const file = await writePipeline(twoStages);
    const lock = path.join(dir, 'work', LOCK_FILE);
    await fsp.mkdir(path.dirname(lock), { recursive: true });
    const dead = spawnSync(process.execPath, ['-e', '']).pid!;
    await fsp.writeFile(lock, JSON.stringify({ pid: dead, hostname: os.hostname(), started_at: 'then', token: 'x' }));
    const ctx = recordingContext();
    const report = await runPipeline(file, { registry, ctx });
    expect(report.stages.map((s) => s.status)).toEqual(['ran', 'ran']);
    expect(ctx.warnings.some((w) => /stale lock/.test(w))).toBe(true);
    expect(existsSync(lock)).toBe(false);
  });
});

describe('pipeline config', () => {
  async function configError(value: unknown): Promise<ConfigError> {
    const err = (() => {
      try {
        parsePipelineConfig(value, { file: 'p.yaml', registry });
      } catch (e) {
        return e;
      }
      throw new Error('expected a ConfigError');
    })();
    expect(err).toBeInstanceOf(ConfigError);
    expect((err as ConfigError).exitCode).toBe(78);
    return err as ConfigError;
  }
  const base = { version: 1, workdir: 'w' };

  test('resolves paths relative to the file and references to earlier outputs', () => {
    const cfg = parsePipelineConfig({ ...base, stages: [{ id: 'a', stage: 'fake', inputs: ['../src'] }, { id: 'b', stage: 'fake', inputs: ['${a}'] }] }, { file: '/x/pipes/p.yaml', registry });
    expect(cfg.name).toBe('p');
    expect(cfg.workdir).toBe(path.resolve('/x/pipes/w'));
    expect(cfg.stages[0].inputPaths).toEqual([path.resolve('/x/src')]);
    expect(cfg.stages[1].inputPaths).toEqual([path.resolve('/x/pipes/w/a')]);
    expect(cfg.stages[1].dependsOn).toEqual(['a']);
    expect(cfg.stages[0].options.rows).toBe(3); // the stage's default
  });

  test('errors name the file and the field', async () => {
    expect((await configError({ ...base, stages: [{ id: 'a', stage: 'nope' }] })).message)
      .toMatch(/^p\.yaml: stages\[0\]\.stage: unknown stage "nope"; known stages: fake/);
    expect((await configError({ ...base, stages: [{ id: 'a', stage: 'fak' }] })).message)
      .toMatch(/unknown stage "fak" \(did you mean "fake"\?\); known stages: fake/);
    expect((await configError({ ...base, stages: [{ id: 'a', stage: 'fake', options: { rows: 'many' } }] })).message)
      .toMatch(/stages\[0\]\.options\.rows: Invalid input: expected number/);
    expect((await configError({ ...base, stages: [{ id: 'a', stage: 'fake', options: { size: 'big' } }] })).message)
      .toMatch(/stages\[0\]\.options\.size: Invalid input: expected number, received string; or expected tuple/);
    expect((await configError({ ...base, stages: [{ id: 'a', stage: 'fake', options: { rowz: 1 } }] })).message)
      .toMatch(/stages\[0\]\.options: unknown option "rowz" \(did you mean "rows"\?\)/);
    expect((await configError({ ...base, stages: [{ id: 'a', stage: 'fake', options: { out: '/elsewhere' } }] })).message)
      .toMatch(/stages\[0\]\.options: unknown option "out"($|[^ ])/);
    // Refinements of the stage's schema are checked too.
    expect((await configError({ ...base, stages: [{ id: 'a', stage: 'fake', options: { rows: 13 } }] })).message)
      .toMatch(/stages\[0\]\.options\.rows: rows may not be 13/);
    expect((await configError({ ...base, stages: [{ id: 'a', stage: 'fake', inputs: ['${b}'] }] })).message)
      .toMatch(/stages\[0\]\.inputs\[0\]: "\$\{b\}" names no earlier stage/);
    expect((await configError({ ...base, stages: [{ id: 'a', stage: 'fake' }, { id: 'a', stage: 'fake' }] })).message)
      .toMatch(/stages\[1\]\.id: "a" is used twice/);
    expect((await configError({ version: 2, stages: [] })).message).toMatch(/version: .*workdir: .*stages: /);
    expect((await configError({ ...base, stages: [{ id: '../up', stage: 'fake' }] })).message).toMatch(/stages\[0\]\.id: use letters/);
  });

  test('the CLI\'s spellings work in a pipeline file: 28x28, 256MiB, a,b,c and kebab- or snake_case keys', () => {
    const cfg = parsePipelineConfig({
      ...base,
      stages: [
        { id: 'in', stage: 'ingest', inputs: ['src'], options: { size: '32x28', 'shard-bytes': '64MiB', class_names: 'a, b,c', 'max-file-bytes': '1 MiB' } },
        { id: 'loss', stage: 'score', inputs: ['${in}'], options: { method: 'loss', 'batch-size': 64 } },
      ],
    }, { file: '/x/p.yaml' });
    // Parsed as --size 32x28 --shard-bytes 64MiB --class-names a,b,c are; the stage parses them again unchanged.
    const parsed = { size: [32, 28], shardBytes: 64 * 2 ** 20, classNames: ['a', 'b', 'c'], maxFileBytes: 2 ** 20 };
    expect(cfg.stages[0].options).toMatchObject(parsed);
    expect(STAGES.ingest.options.parse({ ...cfg.stages[0].options, out: 'o' })).toMatchObject(parsed);
    expect(cfg.stages[1].options).toMatchObject({ batchSize: 64 });
  });

  test('bad spellings and options that depend on each other are refused before any stage runs', () => {
    const err = (stages: unknown[]) => {
      try {
        parsePipelineConfig({ ...base, stages }, { file: '/x/p.yaml' });
      } catch (e) {
        expect(e).toBeInstanceOf(ConfigError);
        return (e as Error).message;
      }
      throw new Error('no error');
    };
    const ingest = { id: 'in', stage: 'ingest', inputs: ['src'] };
    expect(err([{ ...ingest, options: { size: '28y28' } }])).toMatch(/stages\[0\]\.options\.size: .*expected HxW, e\.g\. 28x28/);
    expect(err([{ ...ingest, options: { shardBytes: 'lots' } }])).toMatch(/shardBytes: .*expected a byte count/);
    expect(err([{ ...ingest, options: { size: 28, Size: 32 } }])).toMatch(/"Size" and another key both spell option "size"/);
    // Each names the step, says what is wrong and what to do.
    expect(err([ingest, { id: 'mg', stage: 'score', inputs: ['${in}'], options: { method: 'metagrad' } }]))
      .toMatch(/^\/x\/p\.yaml: stages\[1\] \(mg\): metagrad scores need a target set\. Pass --target/);
    expect(err([ingest, { id: 'top', stage: 'select', inputs: { dataset: '${in}' }, options: { strategy: 'topk', budget: 0.5 } }]))
      .toMatch(/stages\[1\] \(top\): strategy topk needs a score column\. Name it with --by/);
    expect(err([ingest, { id: 'mgd', stage: 'select', inputs: { dataset: '${in}' }, options: { strategy: 'mgd', budget: 0.5 } }]))
      .toMatch(/stages\[1\] \(mgd\): mgd selection needs .* target set/);
    expect(err([ingest, { id: 'c', stage: 'select', inputs: { dataset: '${in}', target: '${in}' }, options: { strategy: 'curate', level: 'harmful', budget: 0.5, by: 'm' } }]))
      .toMatch(/curate --level harmful uses no target set/);
    expect(err([ingest, { id: 'p', stage: 'select', inputs: { dataset: '${in}' }, options: { strategy: 'prune', drop: 'auto', budget: 0.5, by: 'm' } }]))
      .toMatch(/prune --drop auto chooses on a target set/);
  });

  test('the hint of a schema error names the schema file where it is on this machine', async () => {
    const e = await configError({ ...base, stages: [{ id: 'a', stage: 'fake', options: { rows: 'many' } }] });
    const schema = path.join(REPO, 'schema', 'pipeline.schema.json');
    expect(e.message).toContain(`The schema of pipeline files is ${schema}`);
    expect(existsSync(schema)).toBe(true);
  });

  test('YAML syntax errors give the line; a missing file is missing input (66)', async () => {
    const file = path.join(dir, 'bad.yaml');
    await fsp.writeFile(file, 'version: 1\nworkdir: w\nstages:\n  - id: a\n   stage: [fake\n');
    await expect(loadPipelineConfig(file, registry)).rejects.toThrow(/bad\.yaml: invalid YAML at line \d+/);
    await expect(loadPipelineConfig(path.join(dir, 'none.yaml'), registry)).rejects.toBeInstanceOf(MissingInputError);
  });
});
