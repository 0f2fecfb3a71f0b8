/**
 * CSV and JSONL manifests: one image per record with `path` (or HF's `file_name`),
 * `label` or `label_name`, and optional `caption` and `id`. Paths are relative to
 * the manifest's folder; a path leaving that folder is refused unless
 * `allowOutsideRoot`.
 *
 * Labels: `label_name` holds class names; `label` holds class indices when every
 * value is a non-negative integer, else names too. Without --class-names, the
 * classes are the sorted distinct names in the manifest (or '0'..max for
 * indices); with --class-names the list is fixed and unknown names or
 * out-of-range indices are rejected. The manifest is read twice (once to collect
 * names and count, once to yield items), streaming both times.
 */
import { createReadStream } from 'node:fs';
import { createInterface } from 'node:readline';
import path from 'node:path';
import { DataError } from '../../core/errors.js';
import { isWithin } from '../../core/paths.js';
import { parseCsv } from './csv.js';
import { StatFingerprint, contentFingerprint, statInput, toPosix } from './files.js';
import { classIndex, describeClasses, type Source, type SourceItem, type SourceOptions } from './types.js';

export type ManifestKind = 'csv' | 'jsonl';

const PATH_KEYS = ['path', 'file_name', 'filename'];

interface ManifestRecord {
  line: number;
  value?: Record<string, unknown>;
  error?: string;
}

export function manifestKind(file: string): ManifestKind | undefined {
  const ext = path.extname(file).toLowerCase();
  if (ext === '.csv') return 'csv';
  if (ext === '.jsonl' || ext === '.ndjson') return 'jsonl';
  return undefined;
}

async function* csvRecords(file: string): AsyncGenerator<ManifestRecord> {
  let header: string[] | undefined;
  for await (const rec of parseCsv(createReadStream(file, { encoding: 'utf8' }), file)) {
    if (!header) {
      header = rec.fields.map((f) => f.trim());
      if (!header.some((h) => PATH_KEYS.includes(h))) {
        throw new DataError(`the CSV header has no "path" column (columns: ${header.join(', ')})`, {
          file, row: rec.line, hint: 'The first line must name the columns: path,label (or label_name)[,caption][,id]',
        });
      }
      if (!header.includes('label') && !header.includes('label_name')) {
        throw new DataError(`the CSV header has no "label" or "label_name" column (columns: ${header.join(', ')})`, {
          file, row: rec.line, hint: 'Add a label column: a class name or a class index per image',
        });
      }
      continue;
    }
    if (rec.fields.length !== header.length) {
      yield { line: rec.line, error: `expected ${header.length} fields, found ${rec.fields.length}` };
      continue;
    }
    const value: Record<string, unknown> = {};
    header.forEach((h, i) => { value[h] = rec.fields[i]; });
    yield { line: rec.line, value };
  }
  if (!header) throw new DataError('the CSV manifest is empty', { file });
}

async function* jsonlRecords(file: string): AsyncGenerator<ManifestRecord> {
  const rl = createInterface({ input: createReadStream(file, { encoding: 'utf8' }), crlfDelay: Infinity });
  let line = 0;
  for await (const raw of rl) {
    line++;
    // A UTF-8 BOM (Windows editors write one) is not part of the first record.
    const text = line === 1 && raw.charCodeAt(0) === 0xfeff ? raw.slice(1) : raw;
    if (text.trim() === '') continue;
    let value: unknown;
    try {
      value = JSON.parse(text);
    } catch (err: any) {
      yield { line, error: `invalid JSON: ${err?.message ?? err}` };
      continue;
    }
    if (!value || typeof value !== 'object' || Array.isArray(value)) {
      yield { line, error: 'not a JSON object' };
      continue;
    }
    yield { line, value: value as Record<string, unknown> };
  }
}

/** The most classes a manifest, or a dataset or Parquet file without class names, may define through its labels. */
export const MAX_CLASSES = 100_000;

/** Refuses a label that would make more than MAX_CLASSES classes. */
export function tooManyClasses(file: string, label: string, row: number): never {
  throw new DataError(`label "${label.slice(0, 40)}" makes more than ${MAX_CLASSES.toLocaleString('en-US')} classes`, {
    file, row, hint: 'Labels are class indices from 0 or class names; pass --class-names to fix the list',
  });
}

function records(file: string, kind: ManifestKind): AsyncGenerator<ManifestRecord> {
  return kind === 'csv' ? csvRecords(file) : jsonlRecords(file);
}

const present = (v: unknown): boolean => v !== undefined && v !== null && v !== '';

function pathOf(v: Record<string, unknown>): string | undefined {
  for (const k of PATH_KEYS) if (present(v[k])) return String(v[k]);
  return undefined;
}

/** The raw label of a record and whether it is a name (label_name) or may be an index (label). */
function labelOf(v: Record<string, unknown>): { value: unknown; named: boolean } | undefined {
  if (present(v.label_name)) return { value: v.label_name, named: true };
  if (present(v.label)) return { value: v.label, named: false };
  return undefined;
}

const isIndex = (v: unknown): boolean =>
  (typeof v === 'number' && Number.isInteger(v) && v >= 0) || (typeof v === 'string' && /^\d+$/.test(v.trim()));

/** Where a manifest path points, and whether it leaves the manifest's folder. */
function resolvePath(rootDir: string, p: string): { abs: string; rel: string; outside: boolean } {
  const abs = path.resolve(rootDir, p);
  const rel = path.relative(rootDir, abs);
  // `..x.png` is a file inside the root; only `..` as a whole segment climbs out.
  const outside = rel === '' || !isWithin(abs, rootDir);
  return { abs, rel: toPosix(rel), outside };
}

export async function openManifestSource(file: string, opts: SourceOptions, kind?: ManifestKind): Promise<Source> {
  const st = await statInput(file, 'manifest');
  const k = kind ?? manifestKind(file);
  if (!st.isFile() || !k) throw new DataError('a manifest must be a .csv or .jsonl file', { file });
  const rootDir = path.dirname(path.resolve(file));

  // Pass 1: count records and decide how labels map to classes.
  let count = 0;
  let namesMode = false;
  let maxIndex = -1;
  let maxIndexLine = 0;
  let hasCaptions = false;
  const seenNames = new Set<string>();
  for await (const r of records(file, k)) {
    count++;
    if (r.value && present(r.value.caption)) hasCaptions = true;
    const lab = r.value && labelOf(r.value);
    if (!lab) continue;
    if (lab.named || !isIndex(lab.value)) namesMode = true;
    const s = String(lab.value).trim();
    seenNames.add(s);
    if (isIndex(lab.value) && Number(s) > maxIndex) {
      maxIndex = Number(s);
      maxIndexLine = r.line;
    }
    // Labels make the class list: endless distinct names, or a huge index, would exhaust memory.
    if (seenNames.size > MAX_CLASSES) tooManyClasses(file, s, r.line);
  }
  if (!namesMode && !opts.classNames && maxIndex >= MAX_CLASSES) tooManyClasses(file, String(maxIndex), maxIndexLine);
  if (count === 0) throw new DataError('the manifest lists no images', { file });
  let classNames: string[];
  if (opts.classNames) classNames = opts.classNames;
  else if (namesMode) classNames = [...seenNames].sort();
  else classNames = Array.from({ length: maxIndex + 1 }, (_, i) => String(i));
  const lookup = classIndex(classNames);

  const resolveLabel = (lab: { value: unknown; named: boolean }): number | string => {
    const s = String(lab.value).trim();
    if (namesMode) return lookup.get(s) ?? `unknown label name "${s}" (classes: ${describeClasses(classNames)})`;
    const i = Number(s);
    return i < classNames.length ? i : `label index ${i} is out of range for the ${classNames.length} classes`;
  };

  return {
    format: 'manifest',
    root: file,
    fileRoot: rootDir,
    classNames,
    hasCaptions,
    count,
    async *items(): AsyncGenerator<SourceItem> {
      const firstLineOfId = new Map<string, number>();
      for await (const r of records(file, k)) {
        const row = r.line;
        if (!r.value) { yield { kind: 'rejected', row, reason: r.error ?? 'unreadable record' }; continue; }
        const v = r.value;
        const p = pathOf(v);
        if (p === undefined) { yield { kind: 'rejected', row, reason: 'no path' }; continue; }
        const where = resolvePath(rootDir, p);
        if (where.outside && !opts.allowOutsideRoot) {
          yield { kind: 'rejected', path: p, row, reason: "path leaves the manifest's folder (allow it with --allow-outside-root)" };
          continue;
        }
        const lab = labelOf(v);
        if (!lab) { yield { kind: 'rejected', path: p, row, reason: 'missing label' }; continue; }
        const label = resolveLabel(lab);
        if (typeof label === 'string') { yield { kind: 'rejected', path: p, row, reason: label }; continue; }
        const id = present(v.id) ? String(v.id) : where.outside ? toPosix(p) : where.rel;
        const first = firstLineOfId.get(id);
        if (first !== undefined) { yield { kind: 'rejected', id, path: p, row, reason: `duplicate id (first used on line ${first})` }; continue; }
        firstLineOfId.set(id, row);
        const caption = present(v.caption) ? String(v.caption) : undefined;
        yield { kind: 'file', id, path: toPosix(p), file: where.abs, label, caption, row };
      }
    },
    async fingerprint() {
      const fp = new StatFingerprint();
      fp.update('manifest', await contentFingerprint([file]), ...classNames);
      for await (const r of records(file, k)) {
        const p = r.value && pathOf(r.value);
        if (p !== undefined) await fp.addFile(p, resolvePath(rootDir, p).abs);
      }
      return fp.digest();
    },
  };
}
