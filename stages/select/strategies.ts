/**
 * The selection strategies select knows, and how a plug-in adds one. Adding a
 * built-in strategy is one file in this folder plus one line in STRATEGIES.
 */
import { UsageError } from '../../core/errors.js';
import { ccsStrategy } from './ccs.js';
import { curateStrategy } from './curate.js';
import { mgdStrategy } from './mgd.js';
import { pruneStrategy } from './prune.js';
import { randomStrategy } from './random.js';
import { shiftGsampleStrategy } from './shift-gsample.js';
import { stratifiedStrategy } from './stratified.js';
import { thresholdStrategy } from './threshold.js';
import { bottomkStrategy, topkStrategy } from './topk.js';
import type { Strategy } from './types.js';

const STRATEGIES: Strategy[] = [
  curateStrategy, ccsStrategy, topkStrategy, bottomkStrategy, thresholdStrategy, stratifiedStrategy, shiftGsampleStrategy, pruneStrategy, randomStrategy, mgdStrategy,
];

const registry = new Map<string, Strategy>();
let version = 0;

/** Adds a strategy; its name must be new, and an option it shares with another strategy must be the same schema. */
export function registerStrategy(s: Strategy, reserved: readonly string[] = []): void {
  const existing = registry.get(s.name);
  if (existing === s) return;
  if (existing) throw new UsageError(`a selection strategy named "${s.name}" is already registered`, { hint: 'Give the plug-in\'s strategy another name' });
  if (!/^[a-z][a-z0-9-]*$/.test(s.name)) throw new UsageError(`strategy name "${s.name}" must be lower case letters, digits or "-"`);
  for (const [key, schema] of Object.entries(s.options)) {
    if (reserved.includes(key)) throw new UsageError(`strategy ${s.name} declares option "${key}", which select itself owns`);
    const other = [...registry.values()].find((t) => key in t.options && t.options[key] !== schema);
    if (other) throw new UsageError(`strategy ${s.name} declares option "${key}" differently from strategy ${other.name}`, { hint: 'Share one schema for the option, or name it differently' });
  }
  registry.set(s.name, s);
  version++;
}

for (const s of STRATEGIES) registerStrategy(s);

export function strategyNames(): string[] {
  return [...registry.keys()];
}

export function getStrategy(name: string): Strategy {
  const s = registry.get(name);
  if (!s) throw new UsageError(`unknown strategy "${name}"`, { hint: `Use one of ${strategyNames().join(', ')}` });
  return s;
}

export function allStrategies(): Strategy[] {
  return [...registry.values()];
}

/** Bumped by every registration: whoever caches something built from the list rebuilds it. */
export function strategiesVersion(): number {
  return version;
}
