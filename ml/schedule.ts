/**
 * Learning-rate schedules: plain functions of the step index, so the metagradient
 * engine can replay any step's learning rate without running the ones before it.
 * Fractions are of the total number of steps T, so a schedule stays meaningful
 * when the number of epochs changes.
 */
import { z } from 'zod';

export const scheduleSpecSchema = z.discriminatedUnion('kind', [
  z.object({ kind: z.literal('constant') }).strict(),
  /** Multiply by `gamma` at each milestone (fractions of T; DC-bench: ×0.1 at 0.5). */
  z.object({
    kind: z.literal('step'),
    milestones: z.array(z.number().gt(0).lt(1)).default([0.5]),
    gamma: z.number().positive().default(0.1),
  }).strict(),
  /** Cosine decay from the base LR to `minFactor` × base at the last step. */
  z.object({ kind: z.literal('cosine'), minFactor: z.number().min(0).max(1).default(0) }).strict(),
  /** Linear warmup over the first `warmup` × T steps, then linear decay to `finalFactor` × base. */
  z.object({
    kind: z.literal('linear'),
    warmup: z.number().min(0).lt(1).default(0),
    finalFactor: z.number().min(0).max(1).default(0),
  }).strict(),
]);

export type ScheduleSpec = z.input<typeof scheduleSpecSchema>;
type ParsedSchedule = z.output<typeof scheduleSpecSchema>;

/** The factor (× base LR) at step t of T (t = 0 … T−1). */
export function scheduleFactor(spec: ScheduleSpec, t: number, totalSteps: number): number {
  return factorOf(scheduleSpecSchema.parse(spec), t, totalSteps);
}

function factorOf(s: ParsedSchedule, t: number, totalSteps: number): number {
  const T = Math.max(1, totalSteps);
  switch (s.kind) {
    case 'constant':
      return 1;
    case 'step': {
      // Milestone m takes effect at step floor(m·T), as PyTorch's MultiStepLR at epoch boundaries.
      let f = 1;
      for (const m of s.milestones) if (t >= Math.floor(m * T)) f *= s.gamma;
      return f;
    }
    case 'cosine': {
      const progress = T <= 1 ? 0 : t / (T - 1);
      return s.minFactor + (1 - s.minFactor) * 0.5 * (1 + Math.cos(Math.PI * progress));
    }
    case 'linear': {
      const warm = Math.floor(s.warmup * T);
      if (t < warm) return (t + 1) / warm;
      const span = T - warm;
      const progress = span <= 1 ? 0 : (t - warm) / (span - 1);
      return 1 + (s.finalFactor - 1) * progress;
    }
  }
}

/** A schedule bound to a base LR and T: t ↦ learning rate. */
export function makeSchedule(spec: ScheduleSpec, baseLr: number, totalSteps: number): (t: number) => number {
  const parsed = scheduleSpecSchema.parse(spec);
  return (t: number) => baseLr * factorOf(parsed, t, totalSteps);
}
