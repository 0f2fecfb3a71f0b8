/**
 * A time-left estimate that holds still: the phase's average rate since it
 * started, not a window of recent ticks. Worker threads report in bursts and
 * the first steps of a training run are slower (compilation, warm-up), so a
 * moving window swings by minutes; the average settles and then only drifts.
 * Until a phase has run a little (2% of it and 2 seconds) there is no estimate.
 */
export class Eta {
  private readonly started: number;
  constructor(private readonly now: () => number = Date.now) {
    this.started = now();
  }

  /** Seconds left, or undefined while too little has run to say. */
  secondsLeft(done: number, total: number | undefined): number | undefined {
    if (!total || done <= 0 || done >= total) return done >= (total ?? Infinity) ? 0 : undefined;
    const elapsed = (this.now() - this.started) / 1000;
    if (elapsed < 2 || done / total < 0.02) return undefined;
    return (elapsed * (total - done)) / done;
  }
}

/** `1h02m`, `3m05s`, `12s`; `…` when unknown. */
export function formatEta(seconds: number | undefined): string {
  if (seconds === undefined || !Number.isFinite(seconds)) return '…';
  const s = Math.round(seconds);
  if (s >= 3600) return `${Math.floor(s / 3600)}h${String(Math.floor((s % 3600) / 60)).padStart(2, '0')}m`;
  if (s >= 60) return `${Math.floor(s / 60)}m${String(s % 60).padStart(2, '0')}s`;
  return `${s}s`;
}
