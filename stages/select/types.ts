/**
 * The one interface every selection strategy implements (one file per strategy
 * in this folder, registered in strategies.ts). A strategy declares its own
 * options; the select stage merges them, refuses options given to a strategy
 * that does not take them, reads the columns the strategy needs, and writes what
 * it decides. How to add one: docs/extending.md.
 */
import type { z } from 'zod';
import type { Rng } from '../../core/rng.js';
import type { IdList } from '../../data/id-list.js';
import type { Dataset } from '../../data/reader.js';
import type { ParentRef } from '../../data/format.js';
import type { StageContext } from '../context.js';
import type { NamedInputs } from '../define.js';

/** Kept rows, ascending; `weights[j]` is the count of row `indices[j]` (absent = all 1). */
export interface Selection {
  indices: Uint32Array;
  weights?: Float32Array;
}

/** The parsed select options: the stage's own and every strategy's (a strategy reads its own keys). */
export type SelectOptions = Record<string, unknown> & {
  strategy: string;
  by?: string;
  budget?: number;
  seed: number;
  invert: boolean;
  shardRows?: number;
};

export interface DecideInput {
  ctx: StageContext;
  /** The pool: its directory, columns and class names. */
  dataset: Dataset;
  n: number;
  /** The pool's row ids (compact: `ids.get(i)`). */
  ids: IdList;
  /** The `by` column, when the strategy takes one and it was given (higher = keep). */
  scores?: Float64Array;
  /** Integer labels, when the dataset has them. */
  labels?: Int32Array;
  /** Other columns the strategy asked for (`columns()`), by name. */
  columns: Record<string, Float64Array>;
  /** The budget in rows (undefined only where the strategy's budget is optional). */
  budget?: number;
  options: SelectOptions;
  /** A generator seeded by the stage's seed and `label`, so each draw has its own stream. */
  rng(label: string): Rng;
  /** What the strategy's `plan` returned (e.g. a metagradient engine's setup). */
  plan?: unknown;
  /** Library callers' hooks (e.g. a metagradient callback). */
  hooks: Record<string, unknown>;
}

export interface Decision {
  selection: Selection;
  /** The budget as rows (Σ counts for weighted selections); null for an uncapped threshold. */
  budget: number | null;
  /** Strategy-specific summary entries, merged into the stage's summary. */
  summary?: Record<string, unknown>;
}

/** What a strategy adds to the stage's plan: parents, canonical options, inputs it consumes. */
export interface StrategyPlan {
  parents?: ParentRef[];
  /** Canonical entries only known after looking at the inputs (e.g. the engine's key). */
  options?: Record<string, unknown>;
  /** Handed back as DecideInput.plan. */
  state?: unknown;
}

export interface Strategy {
  name: string;
  /** One line for --help and the docs. */
  description: string;
  /** Its own options (zod fields, each described): merged into select's options. */
  options: z.ZodRawShape;
  /** Whether it ranks by a score column (`--by`): required, optional, or not at all. */
  by: 'required' | 'optional' | 'none';
  /** Whether it needs a budget ('cap': optional, a maximum). */
  budget: 'required' | 'cap';
  /** Draws random numbers (from `--seed`). */
  seeded: boolean;
  /** Needs integer labels. */
  needsLabels?: boolean;
  /** Needs a target set (the `target` input). */
  needsTarget?: boolean;
  /** Checks across its options after parsing. */
  check?(o: SelectOptions): void;
  /** Whether, with these options, each row is kept or not by its own values alone (then rows appended to the pool can be selected on their own). */
  perRow?(o: SelectOptions): boolean;
  /** Score columns it reads besides `by` (read in the stage's first pass). */
  columns?(o: SelectOptions): string[];
  /** Its options with defaults filled in: recorded in curation.json and hashed. */
  canonical(o: SelectOptions): Record<string, unknown>;
  /** Checks which inputs are given (the target, say) against its options, reading none: a pipeline runs it before any stage. */
  checkInputs?(inputs: NamedInputs, o: SelectOptions, hooks: Record<string, unknown>): void;
  /** Looks at the inputs before any work (e.g. a target set); may add parents and options to the fingerprint. */
  plan?(inputs: NamedInputs, o: SelectOptions, hooks: Record<string, unknown>): Promise<StrategyPlan>;
  decide(input: DecideInput): Promise<Decision>;
}
