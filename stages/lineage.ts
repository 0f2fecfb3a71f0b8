/**
 * How an output relates to the one a run would make now: what changed, and
 * whether only the inputs grew, by rows appended to them (each append lists the
 * fingerprints it extends in curation.json). The pipeline runner uses it for
 * refresh rules and to say why a stage ran; per-shard stages to decide whether
 * they may add to their output instead of remaking it.
 */
import { canonicalJson } from '../core/hash.js';
import type { CurationInfo } from '../data/format.js';
import { readCuration } from '../data/reader.js';
import type { Prepared } from './define.js';

/** What differs between an output and the one a run would make now; `grew` when only inputs grew, by rows appended to them. */
export interface Change {
  what: string;
  grew: boolean;
  /** Rows the inputs gained, where they recorded their rows. */
  newRows?: number;
}

export async function whatChanged(existing: CurationInfo, prepared: Pick<Prepared, 'stageVersion' | 'choices' | 'parents'>): Promise<Change> {
  if (existing.stage_version !== prepared.stageVersion) return { what: `stage version ${existing.stage_version} → ${prepared.stageVersion}`, grew: false };
  if (canonicalJson(existing.choices ?? existing.options) !== canonicalJson(prepared.choices)) return { what: 'options changed', grew: false };
  const was = existing.parents ?? [];
  if (was.length !== prepared.parents.length) return { what: 'inputs changed', grew: false };
  const parts: string[] = [];
  let grew = true;
  let newRows: number | undefined = 0;
  for (let i = 0; i < was.length; i++) {
    const [before, now] = [was[i], prepared.parents[i]];
    if (before.fingerprint === now.fingerprint) continue;
    const name = now.role ?? `input ${i + 1}`;
    const extended = now.path ? (await readCuration(now.path))?.extends?.includes(before.fingerprint) : false;
    if (!extended) {
      grew = false;
      parts.push(`${name} changed`);
      continue;
    }
    const added = before.rows !== undefined && now.rows !== undefined ? now.rows - before.rows : undefined;
    newRows = added === undefined || newRows === undefined ? undefined : newRows + added;
    parts.push(`${name} grew${added !== undefined ? ` by ${added} rows` : ''} (appended)`);
  }
  // Same options and inputs but another fingerprint: the seed or how the stage records its work.
  if (parts.length === 0) return { what: 'seed or code changed', grew: false };
  return { what: parts.join(', '), grew, newRows };
}

