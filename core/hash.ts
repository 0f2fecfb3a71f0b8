import { createHash } from 'node:crypto';

/** JSON with object keys sorted, so equal values always hash equally. */
export function canonicalJson(value: unknown): string {
  return JSON.stringify(sortKeys(value));
}

function sortKeys(value: unknown): unknown {
  if (Array.isArray(value)) return value.map(sortKeys);
  if (value && typeof value === 'object' && !(value instanceof Uint8Array)) {
    const out: Record<string, unknown> = {};
    for (const k of Object.keys(value as object).sort()) {
      const v = (value as Record<string, unknown>)[k];
      if (v !== undefined) out[k] = sortKeys(v);
    }
    return out;
  }
  return value;
}

export function sha256Hex(data: string | Uint8Array): string {
  return createHash('sha256').update(data).digest('hex');
}

/**
 * A stage output's fingerprint: a function of the stage, its version, canonical
 * options, seed and the parents' fingerprints; the pipeline runner skips a stage
 * whose output already has it (docs/architecture.md#fingerprints-and-skipping).
 * 16 hex chars, as HF's `_fingerprint` uses.
 */
export function fingerprint(parts: {
  stage: string;
  stageVersion: string | number;
  options: unknown;
  seed?: number;
  parents: string[];
}): string {
  return sha256Hex(canonicalJson(parts)).slice(0, 16);
}
