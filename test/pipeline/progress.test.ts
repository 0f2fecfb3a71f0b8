// The time left shown by progress bars and JSON progress lines: steady under bursty ticks, absent until it means something.
import { Writable } from 'node:stream';
import { afterEach, expect, test, vi } from 'vitest';
import { Eta, formatEta } from '../../pipeline/eta.js';
import { createCliContext } from '../../pipeline/progress.js';

afterEach(() => {
  vi.useRealTimers();
});

test('the estimate is the average rate since the start: none at first, then steady under bursts', () => {
  let now = 0;
  const eta = new Eta(() => now);
  // 1% done after 1 s: too early to say.
  now = 1000;
  expect(eta.secondsLeft(10, 1000)).toBeUndefined();
  // Four workers report every 10 s in one burst of 40 steps (1000 steps take 250 s). Right after each burst the
  // predicted end is 250 s; just before the next it lags, by less the longer the phase has run.
  const atBurst: number[] = [];
  const swing: number[] = [];
  for (let t = 10; t <= 60; t += 10) {
    const done = (t / 10) * 40;
    now = t * 1000;
    atBurst.push(t + eta.secondsLeft(done, 1000)!);
    now = (t + 9) * 1000;
    swing.push(t + 9 + eta.secondsLeft(done, 1000)! - 250);
  }
  for (const end of atBurst) expect(end).toBeCloseTo(250, 6);
  for (let i = 1; i < swing.length; i++) expect(swing[i]).toBeLessThan(swing[i - 1]);
  expect(eta.secondsLeft(1000, 1000)).toBe(0);
  expect(eta.secondsLeft(5, undefined)).toBeUndefined();
});

test('formats hours, minutes and seconds', () => {
  expect(formatEta(undefined)).toBe('…');
  expect(formatEta(12.4)).toBe('12s');
  expect(formatEta(185)).toBe('3m05s');
  expect(formatEta(3720)).toBe('1h02m');
});

test('JSON progress lines carry eta_s once the phase has run a little', () => {
  vi.useFakeTimers({ now: 0 });
  const lines: string[] = [];
  const stream = new Writable({ write(chunk, _enc, cb) { lines.push(String(chunk)); cb(); } }) as unknown as NodeJS.WriteStream;
  const ctx = createCliContext({ json: true, quiet: false, logLevel: 'info', stream, throttleMs: 0 });
  const p = ctx.progress('train', 100);
  vi.setSystemTime(500);
  p.tick(1);
  vi.setSystemTime(10_000);
  p.tick(19);
  p.done();
  ctx.close();
  const progress = lines.map((l) => JSON.parse(l)).filter((l) => l.progress === 'train');
  expect(progress[0]).not.toHaveProperty('eta_s');
  // 20 of 100 steps in 10 s: 40 s left.
  expect(progress[1]).toMatchObject({ done: 20, total: 100, eta_s: 40 });
});
