/**
 * Each bad input gets its own clear error and exit code, and text from the
 * input (class names, pipeline names, paths) cannot break out of the report's
 * Markdown or drive the terminal.
 */
import { promises as fsp } from 'node:fs';
import path from 'node:path';
import sharp from 'sharp';
import { beforeAll, describe, expect, test } from 'vitest';
import { ConfigError, DataError, UsageError } from '../../core/errors.js';
import { writeContactSheet } from '../../data/export.js';
import { loadPipelineConfig } from '../../pipeline/config.js';
import { reportMarkdown, type PipelineReport } from '../../pipeline/report.js';
import { formatTable, markdownBlock, markdownCode, markdownText, terminalSafe } from '../../pipeline/table.js';
import { ingest } from '../../stages/ingest.js';
import { writeImageDataset } from '../helpers/datasets.js';
import { useTmpDir } from '../helpers/tmp.js';
import { assertBuilt, cli } from '../pipeline/helpers.js';

const tmp = useTmpDir('mc-errors-');
const at = (...p: string[]) => path.join(tmp(), ...p);
beforeAll(() => assertBuilt());

async function png(file: string): Promise<void> {
  await fsp.mkdir(path.dirname(file), { recursive: true });
  await sharp({ create: { width: 4, height: 4, channels: 3, background: { r: 9, g: 9, b: 9 } } }).png().toFile(file);
}

async function rejection(p: Promise<unknown>): Promise<Error & { exitCode?: number; file?: string; row?: number | string }> {
  const err = await p.then(() => undefined, (e: unknown) => e);
  expect(err).toBeInstanceOf(Error);
  return err as Error;
}

describe('one clear error with the right code', () => {
  test('numeric manifest labels that would make a huge class list: 65 naming the row, before any memory is spent', async () => {
    const dir = at('huge-label');
    await png(path.join(dir, 'a.png'));
    await fsp.writeFile(path.join(dir, 'list.csv'), 'path,label\na.png,0\na.png,99999999999\n');
    const err = await rejection(ingest(path.join(dir, 'list.csv'), { out: at('huge-label-out') }));
    expect(err).toBeInstanceOf(DataError);
    expect(err.exitCode).toBe(65);
    expect(err.row).toBe(3);
    expect(err.message).toMatch(/more than 100,000 classes/);
  });

  test('a JSONL manifest that starts with a BOM keeps its first record', async () => {
    const dir = at('bom');
    await png(path.join(dir, 'a.png'));
    await png(path.join(dir, 'b.png'));
    await fsp.writeFile(path.join(dir, 'list.jsonl'), '\ufeff{"path":"a.png","label":"cat"}\n{"path":"b.png","label":"dog"}\n');
    const res = await ingest(path.join(dir, 'list.jsonl'), { out: at('bom-out') });
    expect(res.summary.rows).toBe(2);
    expect(res.summary.rejected).toBe(0);
  });

  test('a run where every item is rejected fails (65) with the first reasons, and writes nothing', async () => {
    const dir = at('all-bad');
    await fsp.mkdir(path.join(dir, 'cat'), { recursive: true });
    await fsp.writeFile(path.join(dir, 'cat', 'x.png'), 'not a png');
    await fsp.writeFile(path.join(dir, 'cat', 'y.png'), '');
    const err = await rejection(ingest(dir, { out: at('all-bad-out') }));
    expect(err).toBeInstanceOf(DataError);
    expect(err.message).toMatch(/every one of the 2 items was rejected \(cat\/x\.png: .+; cat\/y\.png: .+\)/);
    await expect(fsp.stat(at('all-bad-out'))).rejects.toThrow(/ENOENT/);
  });

  test('a working size no image can be decoded to fails (65) instead of writing an empty dataset', async () => {
    const dir = at('huge-size');
    await png(path.join(dir, 'cat', 'a.png'));
    const err = await rejection(ingest(dir, { out: at('huge-size-out'), size: [100_000, 100_000] }));
    expect(err).toBeInstanceOf(DataError);
    expect(err.message).toMatch(/every one of the 1 items was rejected/);
  });

  test('a YAML alias bomb is a bad config (78), not a crash', async () => {
    const file = at('bomb.yaml');
    const levels = ['a: &a [x, x, x, x, x, x, x, x, x, x]'];
    for (let i = 1; i < 9; i++) levels.push(`${String.fromCharCode(97 + i)}: &${String.fromCharCode(97 + i)} [${Array(10).fill(`*${String.fromCharCode(96 + i)}`).join(', ')}]`);
    await fsp.writeFile(file, `version: 1\n${levels.join('\n')}\nstages: []\n`);
    const err = await rejection(loadPipelineConfig(file));
    expect(err).toBeInstanceOf(ConfigError);
    expect(err.exitCode).toBe(78);
    expect(err.message).toMatch(/invalid YAML/);
  });

  test('a contact sheet too large to draw is a usage error (64) before anything is read', async () => {
    const dir = at('grid-src');
    await writeImageDataset(dir, 6);
    const err = await rejection(writeContactSheet(dir, at('grid.png'), { perClass: 100_000, scale: 10 }));
    expect(err).toBeInstanceOf(UsageError);
    expect(err.message).toMatch(/above 16384 px a side/);
  });

  test('numbers on the command line are decimal: --budget 0x10 is refused (64), not read as 16', async () => {
    const dir = at('budget-src');
    await writeImageDataset(dir, 20);
    const r = await cli(['select', dir, '--strategy', 'random', '--budget', '0x10', '--out', at('budget-out')]);
    expect(r.code, r.stderr).toBe(64);
    expect(r.stderr).toMatch(/--budget.*expected a number/);
  });
});

describe('text from the input cannot escape its medium', () => {
  const nasty = 'x\n```\n<script>alert(1)</script>\u001b[31m|red';

  test('terminal text shows control characters as escapes, tables too', () => {
    expect(terminalSafe('a\u001b[2Jb\u0007c\u009bd')).toBe('a\\x1b[2Jb\\x07c\\x9bd');
    expect(terminalSafe('tab\tand\nnewline')).toBe('tab\tand\nnewline');
    expect(formatTable(['class'], [[nasty]])).not.toContain('\u001b');
  });

  test('Markdown: inline text has no HTML and no table breaks; code cannot close its fence or span', () => {
    const text = markdownText(nasty);
    expect(text).not.toMatch(/<script>|\n|\u001b/);
    expect(text).not.toMatch(/(^|[^\\])\|/);
    const block = markdownBlock('before\n```\nafter ````');
    expect(block[0]).toBe('`````');
    expect(block.at(-1)).toBe('`````');
    expect(markdownCode('a`b')).toBe('``a`b``');
  });

  test('report.md keeps a hostile pipeline name and class name inside their places', () => {
    const report: PipelineReport = {
      name: '<img src=x onerror=alert(1)>',
      config: 'p.yaml',
      code_version: '0',
      started_at: 'now',
      finished_at: 'now',
      seconds: 1,
      stages: [{
        id: 'train', stage: 'ingest', status: 'ran', fingerprint: 'f', dir: 'train', inputs: ['src'], numRows: 1, seconds: 1,
        summary: { per_class: { [nasty]: 1 } },
      }],
    } as unknown as PipelineReport;
    const md = reportMarkdown(report);
    expect(md).not.toContain('\u001b');
    // The summary block's fence is longer than any backtick run inside it, so it closes only where it should.
    const lines = md.split('\n');
    const open = lines.findIndex((l) => /^`{3,}$/.test(l));
    expect(lines[open].length).toBeGreaterThan(3);
    const fences = lines.flatMap((l, i) => (l === lines[open] ? [i] : []));
    expect(fences).toHaveLength(2);
    // The class name's own ``` line is inside the block, shorter than its fence.
    expect(lines.slice(fences[0] + 1, fences[1])).toContain('```');
    // Inside the block HTML is inert text; outside it, none is left.
    const outside = [...lines.slice(0, fences[0]), ...lines.slice(fences[1] + 1)].join('\n');
    expect(outside).not.toMatch(/<img|<script/);
    expect(lines.slice(fences[0], fences[1]).join('\n')).toContain('<script>');
  });
});
