import { expect, test } from 'vitest';
import { formatBytes, formatNumber } from '../../pipeline/table.js';

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
