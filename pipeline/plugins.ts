/**
 * Plug-ins: a module (JavaScript, ESM) that exports `scorers` and/or
 * `strategies`, arrays of objects implementing the Scorer and Strategy
 * interfaces. They are registered beside the built-in methods, so they work from
 * the CLI (`--plugin <module>`), from a pipeline file (`plugins: [...]`) and
 * from the library (`loadPlugins`). docs/extending.md shows one.
 */
import { existsSync } from 'node:fs';
import path from 'node:path';
import { pathToFileURL } from 'node:url';
import { MissingInputError, UsageError } from '../core/errors.js';
import { loadScorerPlugin } from '../ml/scores/index.js';
import { registerStrategy } from '../stages/select/strategies.js';
import type { Strategy } from '../stages/select/types.js';

export interface LoadedPlugin {
  file: string;
  scorers: number;
  strategies: number;
}

/** Imports each module (paths relative to `baseDir`) and registers what it exports. */
export async function loadPlugins(files: readonly string[], baseDir = process.cwd()): Promise<LoadedPlugin[]> {
  const loaded: LoadedPlugin[] = [];
  for (const f of files) {
    const file = path.resolve(baseDir, f);
    if (!existsSync(file)) throw new MissingInputError('no such plug-in module', { file: f, hint: 'Give the path of a JavaScript module that exports `scorers` or `strategies`' });
    const url = pathToFileURL(file).href;
    let mod: { strategies?: Strategy[]; scorers?: unknown[] };
    try {
      mod = await import(url);
    } catch (err) {
      throw new UsageError(`the plug-in cannot be loaded: ${(err as Error).message}`, { file: f, hint: 'A plug-in is an ES module (.mjs or .js in a "type": "module" package)' });
    }
    if (!Array.isArray(mod.scorers) && !Array.isArray(mod.strategies)) {
      throw new UsageError('the plug-in exports neither `scorers` nor `strategies`', { file: f, hint: 'Export an array of score methods as `scorers`, or of selection strategies as `strategies`' });
    }
    const scorers = await loadScorerPlugin(url);
    for (const s of mod.strategies ?? []) registerStrategy(s);
    loaded.push({ file, scorers, strategies: mod.strategies?.length ?? 0 });
  }
  return loaded;
}
