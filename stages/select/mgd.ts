/**
 * mgd: metagradient descent on integer counts at a fixed budget. Its
 * metagradient comes from the built-in engine (mgd-engine.ts: training on the
 * pool, φ = loss on the `target` set) or, from the library, a `metagrad` callback.
 * See docs/methods/mgd.md.
 */
import { z } from 'zod';
import { docsRef } from '../../core/version.js';
import { DataError, UsageError } from '../../core/errors.js';
import { loadExamples } from '../../data/batch.js';
import { openDataset } from '../../data/reader.js';
import { scheduleSpecSchema } from '../../ml/schedule.js';
import type { Rng } from '../../core/rng.js';
import type { TrainConfig } from '../../ml/train.js';
import { one } from '../define.js';
import { checkCompatible, checkLabelled, describeDataset, type DataInfo } from '../inputs.js';
import { METAGRAD_TRAIN_DEFAULTS, REPLAY_DEFAULTS, replayOptions, trainChoicesFor, trainConfigOf, trainingOptions, type TrainChoices } from '../training.js';
import { createMgdEngine, mgdEngineKey } from './mgd-engine.js';
import { topK } from './topk.js';
import { randomK } from './random.js';
import type { Selection, Strategy } from './types.js';

/**
 * 10 rounds; the first may move 20% of the budget, the limit shrinking linearly
 * (the last round moves a tenth of the first, at least 1 unit); each round only
 * rows in a random fifth of the pool may move (MGD's Bernoulli mask, so one
 * noisy round cannot swap the whole selection).
 */
export const MGD_DEFAULTS = { rounds: 10, swap: 0.2, maxCount: 1, mask: 0.2 } as const;

/**
 * The metagradient at the current counts: dφ/dc_i for every pool row, where φ is
 * the target loss after training with per-example weights c (ml/metagrad.ts);
 * optionally with the loss on held-out target rows after that training. The
 * best iterate is chosen when every round reports one and the last iterate can
 * be measured too (`validate`: the built-in engine); otherwise the last is kept.
 */
export type MetagradFn = (weights: Float32Array, info: { round: number }) => Promise<Float32Array | { grad: Float32Array; validationLoss?: number }>;

export interface MgdOptions {
  /** Rounds of metagradient + swap at most (stops early once no swap helps). */
  rounds: number;
  /** Count moved in the first round, as a fraction of the budget; decays linearly to 1 by the last. */
  swap: number;
  /** Highest count one row may reach (1 = a plain subset). */
  maxCount: number;
  /** Probability that a row may move in a round (1 = every row). */
  mask: number;
  rng: Rng;
  /** The held-out loss of the last iterate, which no metagradient call measured. */
  validate?: (counts: Float32Array) => Promise<number>;
  signal?: AbortSignal;
  onRound?: (round: MgdRound) => void;
}

export interface MgdRound {
  round: number;
  /** Units of count the round may move. */
  step: number;
  /** Units actually moved (each: +1 on a helpful row, −1 on a harmful one). */
  swaps: number;
  /** Mean metagradient over the selection (count-weighted) before the swap. */
  meanGrad: number;
  /** The held-out loss of the counts the round started from, when known. */
  validationLoss?: number;
}

export interface MgdResult extends Selection {
  weights: Float32Array;
  history: MgdRound[];
  /** The iterate kept: the round whose starting counts had the lowest held-out loss (rounds = the last iterate). */
  chosen: number;
  finalValidationLoss?: number;
}

/**
 * MGD selection at a fixed budget: integer counts c with Σc = budget, starting
 * from `initial` (count 1 each). Each round takes g = dφ/dc and, among the rows
 * a Bernoulli(`mask`) draw lets move, pairs +1 on the most negative g that may
 * still grow with −1 on the most positive g that hold a count, best-first, while
 * g(add) < g(drop) (the first-order change of φ is negative), up to `step`
 * pairs; `step` shrinks linearly over the rounds. When the metagradient reports
 * a held-out loss, the iterate with the lowest one is returned, not the last.
 * Equal g are ordered by a seeded permutation.
 */
export async function mgdSelect(n: number, initial: Uint32Array, metagrad: MetagradFn, opts: MgdOptions): Promise<MgdResult> {
  const counts = new Int32Array(n);
  for (const i of initial) counts[i] = 1;
  const budget = initial.length;
  const tieRank = new Uint32Array(n);
  const perm = opts.rng.permutation(n);
  for (let r = 0; r < n; r++) tieRank[perm[r]] = r;
  const firstStep = Math.max(1, Math.round(opts.swap * budget));
  const history: MgdRound[] = [];
  // Only the best held-out iterate so far is kept (the earliest of equals): one copy of the counts, not one per round.
  let best: { round: number; loss: number; counts: Int32Array } | undefined;
  for (let round = 0; round < opts.rounds; round++) {
    opts.signal?.throwIfAborted();
    const out = await metagrad(Float32Array.from(counts), { round });
    const g = out instanceof Float32Array ? out : out.grad;
    const validationLoss = out instanceof Float32Array ? undefined : out.validationLoss;
    if (g.length !== n) {
      throw new UsageError(`the metagradient has ${g.length} values for ${n} rows`, { hint: 'The metagrad callback must return dφ/dc for every pool row' });
    }
    let meanGrad = 0;
    for (let i = 0; i < n; i++) {
      if (!Number.isFinite(g[i])) {
        throw new DataError(`the metagradient is ${g[i]} at row ${i} in round ${round}`, {
          row: i,
          hint: `Training diverged or is not metasmooth: lower the learning rate or use a smoother model${docsRef('docs/methods/metagradients.md')}`,
        });
      }
      meanGrad += counts[i] * g[i];
    }
    if (validationLoss !== undefined && validationLoss < (best?.loss ?? Infinity)) best = { round, loss: validationLoss, counts: counts.slice() };
    const step = Math.max(1, Math.round((firstStep * (opts.rounds - round)) / opts.rounds));
    const byGrad = (dir: 1 | -1) => (a: number, b: number) => (g[a] < g[b] ? -dir : g[a] > g[b] ? dir : tieRank[a] - tieRank[b]);
    const grow: number[] = [];
    const shrink: number[] = [];
    for (let i = 0; i < n; i++) {
      if (opts.mask < 1 && opts.rng.next() >= opts.mask) continue;
      if (counts[i] < opts.maxCount) grow.push(i);
      if (counts[i] > 0) shrink.push(i);
    }
    grow.sort(byGrad(1));
    shrink.sort(byGrad(-1));
    let swaps = 0;
    for (let j = 0; j < step && j < grow.length && j < shrink.length; j++) {
      const add = grow[j];
      const drop = shrink[j];
      if (!(g[add] < g[drop])) break;
      // A row in both lists (0 < c < maxCount) is never both added and dropped: that
      // would need g(x) < g(drop) for a drop ranked before x and g(add) < g(x) for an
      // add ranked before x, so x would pair earlier on both sides. Σc stays the budget.
      counts[add]++;
      counts[drop]--;
      swaps++;
    }
    const record: MgdRound = { round, step, swaps, meanGrad: budget > 0 ? meanGrad / budget : 0, ...(validationLoss !== undefined ? { validationLoss } : {}) };
    history.push(record);
    opts.onRound?.(record);
    // No helpful pair left and every row could move: g is unchanged next round (same counts), so stop.
    if (swaps === 0 && opts.mask >= 1) break;
  }
  // The last iterate, and which of all of them did best on held-out rows.
  const measured = history.every((h) => h.validationLoss !== undefined) && opts.validate !== undefined;
  const finalValidationLoss = measured ? await opts.validate!(Float32Array.from(counts)) : undefined;
  const earlier = measured && best && best.loss < finalValidationLoss! ? best : undefined;
  const chosen = earlier ? earlier.round : history.length;
  const final = earlier ? earlier.counts : counts;
  const indices: number[] = [];
  for (let i = 0; i < n; i++) if (final[i] > 0) indices.push(i);
  return {
    indices: Uint32Array.from(indices),
    weights: Float32Array.from(indices, (i) => final[i]),
    history,
    chosen,
    finalValidationLoss,
  };
}

const positiveInt = z.number().int().positive();
const replay = replayOptions('mgd');
const training = trainingOptions('mgd');

/** The engine's options: they need `target`, and a library callback takes none of them. */
const ENGINE_OPTIONS = ['model', 'optimizer', 'lr', 'schedule', 'epochs', 'batchSize', 'k', 'maxMemoryMiB'] as const;

/** The built-in engine's setup: the target set and the run differentiated through. */
interface EngineSetup {
  target: DataInfo;
  train: TrainConfig;
  /** REPLAY branching factor; unset: the shallowest tree within the memory budget. */
  k?: number;
}

export const mgdStrategy: Strategy = {
  name: 'mgd',
  description: 'metagradient descent on the selection against a target set (--target), from a random start or the top-k by --by',
  options: {
    rounds: positiveInt.optional().describe(`mgd: rounds of metagradient + swap, at most (default ${MGD_DEFAULTS.rounds})`),
    swap: z.number().gt(0).max(1).optional().describe(`mgd: count moved in the first round as a fraction of the budget, shrinking linearly over the rounds (default ${MGD_DEFAULTS.swap})`),
    maxCount: positiveInt.optional().describe(`mgd: highest count one row may reach (default ${MGD_DEFAULTS.maxCount}: a plain subset)`),
    mask: z.number().gt(0).max(1).optional().describe(`mgd: probability that a row may move in a round (default ${MGD_DEFAULTS.mask}; 1 = every row)`),
    metagradKey: z.string().min(1).optional()
      .describe('mgd with a library metagrad callback: names its setup for the fingerprint (the engine computes its own key)'),
    ...training,
    schedule: scheduleSpecSchema.optional().describe('mgd: learning-rate schedule, a JSON spec (default: the metagradient\'s, linear decay)'),
    k: replay.k.optional(),
    maxMemoryMiB: replay.maxMemoryMiB.optional(),
  },
  by: 'optional',
  budget: 'required',
  seeded: true,
  needsTarget: true,
  canonical(o) {
    return {
      rounds: o.rounds ?? MGD_DEFAULTS.rounds,
      swap: o.swap ?? MGD_DEFAULTS.swap,
      maxCount: o.maxCount ?? MGD_DEFAULTS.maxCount,
      mask: o.mask ?? MGD_DEFAULTS.mask,
      metagradKey: o.metagradKey,
    };
  },
  checkInputs(inputs, o, hooks) {
    const targetDir = one(inputs, 'target');
    if (hooks.metagrad) {
      const given = [...(targetDir !== undefined ? ['target'] : []), ...ENGINE_OPTIONS.filter((key) => o[key] !== undefined)];
      if (given.length) {
        throw new UsageError(`option ${given.map((g) => `"${g}"`).join(', ')} configures the built-in metagradient engine, but a metagrad callback was given`, {
          hint: 'Pass either the callback or the engine\'s options (target, model, epochs, ...), not both',
        });
      }
      return;
    }
    if (targetDir === undefined) {
      throw new UsageError('mgd selection needs the score stage\'s metagradient engine, and the engine needs a target set to measure φ on', {
        hint: 'Pass --target <dir>: a clean, labelled set held out from the pool (e.g. carved with select --strategy random, the pool being the same selection with --invert)',
      });
    }
    if (o.metagradKey !== undefined) {
      throw new UsageError('metagradKey names the setup of a library metagrad callback; with a target the engine\'s key is computed', { hint: 'Drop metagradKey' });
    }
    if (o.seed < 0) throw new UsageError(`mgd trains with seed ${o.seed}; the training seed must be 0 or more`, { hint: 'Pass --seed <n ≥ 0>' });
  },
  async plan(inputs, o, hooks) {
    // checkInputs ran first: with a callback there is nothing to plan, else there is a target.
    if (hooks.metagrad) return {};
    const targetDir = one(inputs, 'target')!;
    const pool = await describeDataset(inputs.dataset[0], 'pool');
    const target = await describeDataset(targetDir, 'target');
    checkLabelled(pool);
    checkLabelled(target);
    checkCompatible(pool, target);
    const train = trainConfigOf(trainChoicesFor(METAGRAD_TRAIN_DEFAULTS, o as Partial<TrainChoices>), o.seed);
    const k = o.k as number | undefined;
    const setup: EngineSetup = { target, train, k };
    // k never changes dφ/dc: unset, it is recorded as the old default, so selections made before keep their fingerprints.
    const keyK = k ?? REPLAY_DEFAULTS.fingerprintK;
    return {
      parents: [{ fingerprint: target.ds.fingerprint, path: target.dir, role: 'target' }],
      // The key names everything that decides dφ/dc; train and k are spelled out too, so curation.json says how φ was trained.
      options: { metagradKey: mgdEngineKey(target.ds.fingerprint, { train, k: keyK }), train, k: keyK },
      state: setup,
    };
  },
  async decide({ ctx, dataset, n, scores, budget, options: o, rng, plan, hooks }) {
    const k = budget!;
    let metagrad = hooks.metagrad as MetagradFn | undefined;
    let validate: ((c: Float32Array) => Promise<number>) | undefined;
    let targetLosses: number[] | undefined;
    let split: { phi: number; validation: number } | undefined;
    const setup = plan as EngineSetup | undefined;
    if (setup) {
      ctx.log.info({ target: setup.target.dir, train: setup.train, k: setup.k }, 'select: loading the pool and the target for the metagradient engine');
      const engine = createMgdEngine(await loadExamples(await openDataset(dataset.dir)), await loadExamples(setup.target.ds), {
        train: setup.train,
        k: setup.k,
        maxStateBytes: ((o.maxMemoryMiB as number | undefined) ?? REPLAY_DEFAULTS.maxMemoryMiB) * 2 ** 20,
        backend: o.backend as never,
      }, ctx);
      metagrad = engine.metagrad;
      validate = engine.validate;
      targetLosses = engine.targetLosses;
      split = engine.split;
    }
    if (!metagrad) throw new UsageError('mgd needs a metagradient: a target set (--target) or a library metagrad callback');
    const rounds = (o.rounds as number | undefined) ?? MGD_DEFAULTS.rounds;
    const initial = scores ? topK(scores, k).indices : randomK(n, k, rng('mgd-init')).indices;
    const progress = ctx.progress('select: mgd rounds', rounds);
    try {
      const r = await mgdSelect(n, initial, metagrad, {
        rounds,
        swap: (o.swap as number | undefined) ?? MGD_DEFAULTS.swap,
        maxCount: (o.maxCount as number | undefined) ?? MGD_DEFAULTS.maxCount,
        mask: (o.mask as number | undefined) ?? MGD_DEFAULTS.mask,
        validate,
        rng: rng('mgd-ties'),
        signal: ctx.signal,
        onRound: (round) => {
          ctx.log.info({ ...round }, 'select: mgd round');
          progress.tick();
        },
      });
      return {
        selection: r,
        budget: k,
        summary: {
          mgd: {
            rounds_run: r.history.length, total_count: k, history: r.history, chosen_iterate: r.chosen,
            ...(r.finalValidationLoss !== undefined ? { final_validation_loss: r.finalValidationLoss } : {}),
            ...(targetLosses ? { target_loss: targetLosses, target_split: split } : {}),
          },
        },
      };
    } finally {
      progress.done();
    }
  },
};
