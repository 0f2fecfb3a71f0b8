import { expect, test } from 'vitest';
import { formatBytes, formatNumber, formatPercent, formatSummary } from '../../pipeline/table.js';

test('formatNumber: thousands separators for integers, 2 or 1 decimals, small values kept visible', () => {
  expect(formatNumber(6000)).toBe('6,000');
  expect(formatNumber(0.7923)).toBe('0.79');
  expect(formatNumber(151.34)).toBe('151.3');
  // A ridge of 1e-3 or a std of 0.0045 must not print as 0.
  expect(formatNumber(0.001)).toBe('0.0010');
  expect(formatNumber(0.0045)).toBe('0.0045');
  expect(formatNumber(-0.0045)).toBe('-0.0045');
});

test('formatBytes picks the unit', () => {
  expect(formatBytes(512)).toBe('512 B');
  expect(formatBytes(1.55 * 2 ** 20)).toBe('1.55 MiB');
});

test('formatPercent: whole percents, one decimal below 10%', () => {
  expect(formatPercent(0.3005)).toBe('30%');
  expect(formatPercent(0.5)).toBe('50%');
  expect(formatPercent(0.0657)).toBe('6.6%');
  expect(formatPercent(1)).toBe('100%');
});

test('formatSummary: no JSON; records as tables, lists of records as rows, entries alike in every record once', () => {
  const text = formatSummary({
    accuracy: 0.79533,
    rows: 1500,
    seeds: [0, 1, 2],
    per_class: { before: { a: 10, b: 20, c: 30 }, after: { a: 5, b: 7, c: 9 } },
    model: { kind: 'mlp', hidden: [128] },
    training: { seconds: 3.79, settings: { mode: 'regress', lr: 0.001, holdout: 0.1, seed: 0, epochs: 10, featureDim: 32, weightDecay: 0.01 } },
    history: [{ round: 0, swaps: 244, replay: { k: 16 } }, { round: 1, swaps: 208, replay: { k: 16 } }],
    losses: Array.from({ length: 50 }, (_, i) => 1 / (i + 2)),
  });
  expect(text).not.toMatch(/[{}"]/);
  const lines = text.split('\n');
  // Fractions keep three significant digits; lists and small records fit on one line.
  expect(lines).toContain('accuracy  0.795');
  expect(lines).toContain('seeds     0, 1, 2');
  expect(lines).toContain('model     kind: mlp, hidden: [128]');
  // A record of records: one row per class (the longer side), a column per record.
  expect(text).toMatch(/per_class  before  after\n-+  -+  -+\na\s+10\s+5\nb\s+20\s+7\nc\s+30\s+9/);
  // A nested record with many entries gets its own table, named by its path.
  expect(text).toMatch(/training\.settings\s+value\n-+\s+-+\nmode\s+regress/);
  // A list of records: what is alike once, then a row per record.
  expect(text).toMatch(/history: in every entry\s+value\n-+\s+-+\nreplay\.k\s+16/);
  expect(text).toMatch(/history\s+round\s+swaps\n-+\s+-+\s+-+\n\s*0\s+0\s+244\n\s*1\s+1\s+208/);
  // A long list is cut, saying how long it is.
  expect(text).toMatch(/losses\s+0\.5, 0\.333, 0\.25, .*, … \(50 in all\)/);
});
