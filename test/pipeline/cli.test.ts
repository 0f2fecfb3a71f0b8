/** The CLI end to end: `node bin/metacurate.js ...` on tiny generated IDX files. */
import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import { existsSync, promises as fsp } from 'node:fs';
import path from 'node:path';
import sharp from 'sharp';
import { CODE_VERSION } from '../../core/version.js';
import { assertBuilt, cli, cliSignalledMidWork, jsonLines, tempDir, tempEntries, writeIdxFixture } from './helpers.js';

let dir: string;
let src: string;
beforeAll(async () => {
  assertBuilt();
  dir = await tempDir();
  src = path.join(dir, 'src');
  await writeIdxFixture(src, { prefix: 'train', n: 30, classes: 3 });
  await writeIdxFixture(src, { prefix: 't10k', n: 12, classes: 3 });
});
afterAll(async () => {
  await fsp.rm(dir, { recursive: true, force: true });
});

const noStack = (stderr: string) => expect(stderr).not.toMatch(/^\s+at /m);

describe('help and usage', () => {
  test('--help works on the program and on every command', async () => {
    const runs = await Promise.all([[], ['ingest'], ['inspect'], ['export'], ['run']].map((c) => cli([...c, '--help'])));
    for (const [i, name] of ['', 'ingest ', 'inspect ', 'export ', 'run '].entries()) {
      expect(runs[i].code, name).toBe(0);
      expect(runs[i].stdout).toContain(`Usage: metacurate ${name}`);
    }
    expect(runs[0].stdout).toMatch(/--json[\s\S]*--log-level[\s\S]*ingest[\s\S]*inspect[\s\S]*export[\s\S]*run/);
    expect(runs[1].stdout).toMatch(/--out <dir>[\s\S]*--size <HxW>[\s\S]*--class-names/);
    const version = await cli(['--version']);
    expect(version.stdout.trim()).toBe(CODE_VERSION);
  });

  test('usage errors exit 64 with commander\'s message', async () => {
    const [unknownOption, unknownCommand, badNumber, missingOut, none] = await Promise.all([
      cli(['ingest', src, '--out', path.join(dir, 'x'), '--bogus']),
      cli(['frobnicate']),
      cli(['ingest', src, '--out', path.join(dir, 'x'), '--limit', 'ten']),
      cli(['ingest', src]),
      cli([]),
    ]);
    expect(unknownOption.code).toBe(64);
    expect(unknownOption.stderr).toMatch(/unknown option '--bogus'/);
    expect(unknownCommand.code).toBe(64);
    expect(unknownCommand.stderr).toMatch(/unknown command 'frobnicate'/);
    expect(badNumber.code).toBe(64);
    expect(badNumber.stderr).toMatch(/--limit <n>' argument 'ten' is invalid/);
    expect(missingOut.code).toBe(64);
    expect(missingOut.stderr).toMatch(/required option '-o, --out <dir>'/);
    expect(none.code).toBe(64);
    expect(existsSync(path.join(dir, 'x'))).toBe(false);
    // With --json every error is one JSON result on stdout, commander's own included.
    const json = await cli(['--json', 'ingest', src, '--out', path.join(dir, 'x'), '--bogus']);
    expect(json.code).toBe(64);
    expect(JSON.parse(json.stdout)).toEqual({ error: { name: 'UsageError', message: "unknown option '--bogus'", exit_code: 64 } });
  });
});

describe('ingest, inspect, export', () => {
  const out = () => path.join(dir, 'train');

  test('ingest prints one JSON summary with --json; logs and progress are JSON lines', async () => {
    const r = await cli(['--json', 'ingest', src, '--out', out(), '--class-names', 'a,b,c', '--shard-rows', '16']);
    expect(r.stderr === '' || r.code === 0 ? r.code : r.stderr).toBe(0);
    const result = JSON.parse(r.stdout);
    expect(result.numRows).toBe(30);
    expect(result.dir).toBe(out());
    expect(result.summary.per_class).toEqual({ a: 10, b: 10, c: 10 });
    const lines = jsonLines(r.stderr);
    expect(lines.some((l) => l.msg === 'progress' && l.done === 30 && l.total === 30)).toBe(true);
  });

  test('ingest prints a table for people; errors are one line: 73 for an existing output, 66 for a missing source', async () => {
    const human = await cli(['ingest', src, '--split', 'test', '--out', path.join(dir, 'test'), '--class-names', 'a,b,c']);
    expect(human.code).toBe(0);
    expect(human.stdout).toMatch(/^rows\s+12$/m);
    expect(human.stdout).toMatch(/^a\s+4$/m);

    const exists = await cli(['ingest', src, '--out', out()]);
    expect(exists.code).toBe(73);
    expect(exists.stderr).toMatch(/^metacurate: error: .*train: output already exists\. .*--overwrite/m);
    noStack(exists.stderr);

    const missing = await cli(['ingest', path.join(dir, 'nowhere'), '--out', path.join(dir, 'y')]);
    expect(missing.code).toBe(66);
    expect(missing.stderr).toMatch(/nowhere/);
    noStack(missing.stderr);
    expect(existsSync(path.join(dir, 'y'))).toBe(false);
  });

  test('--log-level debug adds the stack trace', async () => {
    const r = await cli(['--log-level', 'debug', 'inspect', path.join(dir, 'nowhere')]);
    expect(r.code).toBe(66);
    expect(r.stderr).toMatch(/^\s+at /m);
  });

  test('inspect --json reports schema, shards, classes, lineage and samples', async () => {
    const r = await cli(['inspect', out(), '--json', '--verify']);
    expect(r.code).toBe(0);
    const info = JSON.parse(r.stdout);
    expect(info.rows).toBe(30);
    expect(info.verified).toBe(true);
    expect(info.columns.map((c: { name: string; kind: string }) => [c.name, c.kind])).toEqual([
      ['id', 'string'], ['label', 'classLabel'], ['pixels', 'uint8Vector'], ['sha256', 'string'],
    ]);
    expect(info.shards.map((s: { rows: number }) => s.rows)).toEqual([16, 14]);
    expect(info.classes).toEqual([{ label: 0, name: 'a', count: 10 }, { label: 1, name: 'b', count: 10 }, { label: 2, name: 'c', count: 10 }]);
    expect(info.lineage[0]).toMatchObject({ depth: 0, stage: 'ingest', code_version: CODE_VERSION });
    expect(info.samples[1]).toMatchObject({ row: 1, label: 1, class_name: 'b', pixels: { min: 8, max: 8, mean: 8 } });
    expect(info.rejected).toEqual({ count: 0, reasons: {} });

    const human = await cli(['inspect', out()]);
    expect(human.code).toBe(0);
    expect(human.stdout).toMatch(/^rows\s+30$/m);
    expect(human.stdout).toMatch(/^classes\nlabel\s+name\s+count\s+share/m);
  });

  test('export --grid writes a contact sheet: one row per class', async () => {
    const png = path.join(dir, 'sheet.png');
    const r = await cli(['export', out(), '--grid', png, '--per-class', '4', '--scale', '3', '--seed', '1']);
    expect(r.code).toBe(0);
    const meta = await sharp(png).metadata();
    const cell = 8 * 3;
    const gap = 2;
    expect([meta.width, meta.height]).toEqual([4 * cell + 5 * gap, 3 * cell + 4 * gap]);
    // Image i is filled with 8·i and has label i % 3: every cell of row r holds such an image.
    const { data, info } = await sharp(png).raw().toBuffer({ resolveWithObject: true });
    for (let row = 0; row < 3; row++) {
      for (let k = 0; k < 4; k++) {
        const x = gap + k * (cell + gap) + cell / 2;
        const y = gap + row * (cell + gap) + cell / 2;
        const v = data[(y * info.width + x) * info.channels];
        expect(v % 8).toBe(0);
        expect((v / 8) % 3).toBe(row);
      }
    }
    const again = await cli(['export', out(), '--grid', png]);
    expect(again.code).toBe(73);
  });
});

describe('run', () => {
  async function pipeline(name: string, stages: unknown[]): Promise<string> {
    const file = path.join(dir, name);
    await fsp.writeFile(file, JSON.stringify({ version: 1, workdir: 'work', stages }));
    return file;
  }
  const stages = [
    { id: 'tr', stage: 'ingest', inputs: ['src'], options: { split: 'train', classNames: ['a', 'b', 'c'] } },
    { id: 'te', stage: 'ingest', inputs: ['src'], options: { split: 'test', classNames: ['a', 'b', 'c'] } },
  ];

  test('runs the stages, then skips them as current; --force reruns', async () => {
    const file = await pipeline('p.json', stages);
    const first = await cli(['run', file, '--json']);
    expect(first.code).toBe(0);
    const report = JSON.parse(first.stdout);
    expect(report.stages.map((s: { id: string; status: string; numRows: number }) => [s.id, s.status, s.numRows])).toEqual([['tr', 'ran', 30], ['te', 'ran', 12]]);
    expect(jsonLines(first.stderr).filter((l) => l.msg === 'stage started').map((l) => l.stage)).toEqual(['tr', 'te']);
    const work = path.join(dir, 'work');
    expect(existsSync(path.join(work, 'report.md'))).toBe(true);

    const second = await cli(['run', file]);
    expect(second.code).toBe(0);
    expect(second.stdout.match(/skipped \(current\)/g)).toHaveLength(2);

    const forced = await cli(['run', file, '--force', '--quiet']);
    expect(forced.code).toBe(0);
    expect(forced.stdout.match(/ran \(forced\)/g)).toHaveLength(2);
    expect(forced.stderr).toBe('');
    expect(await tempEntries(work)).toEqual([]);
  });

  test('a bad pipeline file exits 78 naming the file and the field', async () => {
    const file = await pipeline('bad.json', [{ ...stages[0], options: { fit: 'stretch' } }]);
    const r = await cli(['run', file]);
    expect(r.code).toBe(78);
    expect(r.stderr).toMatch(/bad\.json: stages\[0\]\.options\.fit: Invalid option/);
    noStack(r.stderr);
    const missing = await cli(['run', path.join(dir, 'nope.yaml')]);
    expect(missing.code).toBe(66);
  });
});

test('SIGINT stops a running ingest: exit 130, the partial output removed', async () => {
  const big = path.join(dir, 'big');
  // Resizing makes every image go through sharp: seconds of work, so the signal lands mid-stage.
  await writeIdxFixture(big, { prefix: 'train', n: 3000, classes: 3 });
  const out = path.join(dir, 'interrupted');
  const { code, signalled, stderr } = await cliSignalledMidWork(['--json', 'ingest', big, '--out', out, '--size', '32x32', '--concurrency', '1'], 'SIGINT');
  expect(signalled).toBe(true);
  expect(code).toBe(130);
  expect(jsonLines(stderr.split('\n').filter((l) => l.startsWith('{')).join('\n')).some((l) => /SIGINT: stopping/.test(String(l.msg)))).toBe(true);
  expect(stderr).toMatch(/^metacurate: interrupted$/m);
  expect(existsSync(out)).toBe(false);
  expect(await tempEntries(dir)).toEqual([]);
});
