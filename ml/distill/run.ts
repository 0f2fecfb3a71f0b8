/**
 * The outer loop of a distillation: steps until the step count or the deadline,
 * skipped steps counted, progress and checkpoints through callbacks. One home for
 * the loop, used by the distill stage (one run, with checkpoints) and by distill
 * jobs (one restart each, in a worker thread or on a `metacurate worker`).
 */
import type { Distiller } from './common.js';

export interface DistillLoopOptions {
  /** The first step (a resumed run's), and how many there are in all. */
  startStep: number;
  steps: number;
  /** performance.now() past which no step starts (Infinity: none). */
  deadline: number;
  signal?: AbortSignal;
  /** After each step: its index (1-based count so far), loss and details. */
  onStep?(t: number, loss: number, details?: Record<string, number>): void;
  onSkipped?(t: number, why: string): void;
  /** Writes a checkpoint at step t; called every `checkpointEvery` steps, and before an abort is rethrown. */
  checkpoint?(t: number): Promise<void>;
  checkpointEvery?: number;
}

export interface DistillLoopResult {
  stepsDone: number;
  stoppedBy: 'steps' | 'time-budget';
  /** Losses of the steps not skipped, in order. */
  losses: number[];
  skipped: number;
  details: Record<string, number>;
}

export async function runDistillLoop(distiller: Distiller, o: DistillLoopOptions): Promise<DistillLoopResult> {
  const losses: number[] = [];
  let skipped = 0;
  let details: Record<string, number> = {};
  let t = o.startStep;
  let stoppedBy: DistillLoopResult['stoppedBy'] = 'steps';
  let lastYield = Date.now();
  while (t < o.steps) {
    if (o.signal?.aborted) {
      if (o.checkpoint && t > o.startStep) await o.checkpoint(t);
      o.signal.throwIfAborted();
    }
    if (performance.now() >= o.deadline) {
      stoppedBy = 'time-budget';
      break;
    }
    await distiller.prepare?.(t);
    const r = distiller.step(t);
    t++;
    if (r.skipped) {
      skipped++;
      o.onSkipped?.(t - 1, r.skipped);
    } else losses.push(r.loss);
    details = r.details ?? details;
    o.onStep?.(t, r.loss, r.details);
    if (o.checkpoint && o.checkpointEvery && t % o.checkpointEvery === 0 && t < o.steps) await o.checkpoint(t);
    // Let timers and signals through.
    if (Date.now() - lastYield > 200) {
      await new Promise((res) => setImmediate(res));
      lastYield = Date.now();
    }
  }
  return { stepsDone: t, stoppedBy, losses, skipped, details };
}

/** Mean of the last (up to) 10 losses: what a summary reports as the run's last loss. */
export function lastLossOf(losses: readonly number[]): number | null {
  const tail = losses.slice(-10);
  return tail.length ? tail.reduce((a, b) => a + b, 0) / tail.length : null;
}
