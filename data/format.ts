/**
 * The on-disk dataset format (docs/architecture.md#a-dataset-on-disk): HF
 * save_to_disk layout, Arrow IPC stream shards, plus our curation.json. This
 * module is the one home of the mapping between our column kinds, Arrow types
 * and HF features.
 */
import {
  Binary, Bool, Field, FixedSizeList, Float32, Float64, Int32, Int64, Schema, Struct, Uint8, Utf8,
  type DataType,
} from 'apache-arrow';

export const FORMAT_VERSION = 1;
export const DATASET_INFO_FILE = 'dataset_info.json';
export const STATE_FILE = 'state.json';
export const CURATION_FILE = 'curation.json';
export const REJECTED_FILE = 'rejected.jsonl';
/** Schema-metadata key holding the pixel shape [H, W, C]. */
export const PIXEL_SHAPE_KEY = 'metacurate.pixel_shape';
/** Schema-metadata key HF reads features from. */
export const HF_METADATA_KEY = 'huggingface';

/** `data-00000-of-00003.arrow`, as HF names shards; shards appended later carry the append's tag (`data-<tag>-00000-of-00001.arrow`). */
export function shardFileName(index: number, count: number, tag?: string): string {
  return `data-${tag ? `${tag}-` : ''}${String(index).padStart(5, '0')}-of-${String(count).padStart(5, '0')}.arrow`;
}

/** Column kinds metacurate writes. */
export type ColumnKind =
  | { kind: 'string' }
  | { kind: 'int64' }
  | { kind: 'int32' }
  | { kind: 'float32' }
  | { kind: 'float64' }
  | { kind: 'bool' }
  | { kind: 'classLabel'; names: string[] }
  | { kind: 'image' }
  | { kind: 'uint8Vector'; length: number }
  | { kind: 'float32Vector'; length: number };

export type ColumnSpec = ColumnKind & { name: string; nullable?: boolean };

export function arrowType(spec: ColumnKind): DataType {
  switch (spec.kind) {
    case 'string': return new Utf8();
    case 'int64':
    case 'classLabel': return new Int64();
    case 'int32': return new Int32();
    case 'float32': return new Float32();
    case 'float64': return new Float64();
    case 'bool': return new Bool();
    case 'image':
      return new Struct([new Field('bytes', new Binary(), true), new Field('path', new Utf8(), true)]);
    case 'uint8Vector': return new FixedSizeList(spec.length, new Field('item', new Uint8(), true));
    case 'float32Vector': return new FixedSizeList(spec.length, new Field('item', new Float32(), true));
  }
}

/** HF `datasets` feature JSON for a column, as `Features.to_dict()` writes it. */
export function hfFeature(spec: ColumnKind): Record<string, unknown> {
  switch (spec.kind) {
    case 'string': return { dtype: 'string', _type: 'Value' };
    case 'int64': return { dtype: 'int64', _type: 'Value' };
    case 'int32': return { dtype: 'int32', _type: 'Value' };
    case 'float32': return { dtype: 'float32', _type: 'Value' };
    case 'float64': return { dtype: 'float64', _type: 'Value' };
    case 'bool': return { dtype: 'bool', _type: 'Value' };
    case 'classLabel': return { names: spec.names, _type: 'ClassLabel' };
    case 'image': return { _type: 'Image' };
    case 'uint8Vector':
      return { feature: { dtype: 'uint8', _type: 'Value' }, length: spec.length, _type: 'Sequence' };
    case 'float32Vector':
      return { feature: { dtype: 'float32', _type: 'Value' }, length: spec.length, _type: 'Sequence' };
  }
}

export function hfFeatures(columns: ColumnSpec[]): Record<string, unknown> {
  return Object.fromEntries(columns.map((c) => [c.name, hfFeature(c)]));
}

/** Recovers our column kinds from HF features (for datasets written by Python `datasets`). */
export function columnFromHfFeature(name: string, feature: any, type: DataType): ColumnSpec {
  const t = feature?._type;
  if (t === 'ClassLabel') return { name, kind: 'classLabel', names: feature.names ?? [] };
  if (t === 'Image') return { name, kind: 'image' };
  if ((t === 'Sequence' || t === 'List') && feature.length > 0) {
    const dtype = feature.feature?.dtype;
    if (dtype === 'uint8') return { name, kind: 'uint8Vector', length: feature.length };
    if (dtype === 'float32') return { name, kind: 'float32Vector', length: feature.length };
  }
  return columnFromArrowType(name, type);
}

export function columnFromArrowType(name: string, type: DataType): ColumnSpec {
  const s = String(type);
  if (type instanceof Utf8 || s === 'Utf8' || s === 'LargeUtf8') return { name, kind: 'string' };
  if (s === 'Int64' || s === 'Uint32' || s === 'Uint64') return { name, kind: 'int64' };
  // Narrower integers (other tools' labels are often int8/int16) read as int32.
  if (s === 'Int32' || s === 'Int16' || s === 'Int8' || s === 'Uint16' || s === 'Uint8') return { name, kind: 'int32' };
  if (s === 'Float32') return { name, kind: 'float32' };
  if (s === 'Float64') return { name, kind: 'float64' };
  if (s === 'Bool') return { name, kind: 'bool' };
  if (type instanceof FixedSizeList) {
    const child = String(type.children[0]?.type);
    if (child === 'Uint8') return { name, kind: 'uint8Vector', length: type.listSize };
    if (child === 'Float32') return { name, kind: 'float32Vector', length: type.listSize };
  }
  if (type instanceof Struct && type.children.some((f) => f.name === 'bytes')) return { name, kind: 'image' };
  return { name, kind: 'string' };
}

export type PixelShape = [height: number, width: number, channels: number];

/** The value of the `huggingface` schema-metadata key for these features, as HF writes it. */
export function hfMetadata(features: Record<string, unknown>): string {
  return JSON.stringify({ info: { features } });
}

/**
 * The features in a `huggingface` schema-metadata value: `{info: {features}}` as
 * HF writes it, or a bare `{features}`. Throws a SyntaxError on bad JSON.
 */
export function featuresOfHfMetadata(value: string | undefined): Record<string, any> {
  if (value === undefined) return {};
  const meta = JSON.parse(value);
  return meta?.info?.features ?? meta?.features ?? {};
}

export function makeSchema(columns: ColumnSpec[], pixelShape?: PixelShape): Schema {
  const metadata = new Map<string, string>();
  metadata.set(HF_METADATA_KEY, hfMetadata(hfFeatures(columns)));
  if (pixelShape) metadata.set(PIXEL_SHAPE_KEY, JSON.stringify(pixelShape));
  return new Schema(
    columns.map((c) => new Field(c.name, arrowType(c), c.nullable ?? false)),
    metadata,
  );
}

/** Per-shard record in curation.json. */
export interface ShardRecord {
  file: string;
  rows: number;
  bytes: number;
  sha256: string;
}

/** A dataset (or source) an output was made from. */
export interface ParentRef {
  fingerprint: string;
  path?: string;
  /** What it was to the stage: 'source', 'train', 'target', ... */
  role?: string;
  /** Its rows when the output was made (datasets), so a later run can tell how much it grew. */
  rows?: number;
}

/** Our sidecar metadata: `curation.json`. */
export interface CurationInfo {
  format_version: number;
  stage: string;
  stage_version: string;
  fingerprint: string;
  options: Record<string, unknown>;
  /** When options hold something derived from the inputs: the choices that are not (what a rerun compares). */
  choices?: Record<string, unknown>;
  seed?: number;
  parents: ParentRef[];
  /** Set on sidecar datasets: the fingerprint of the dataset whose rows they annotate. */
  sidecar_of?: string;
  /** Set on sidecar datasets: that dataset's shard files, in order: the rows they cover. */
  sidecar_shards?: string[];
  /** Set on outputs rows were appended to: the fingerprints of their earlier versions, oldest first, whose rows they keep as their first rows. */
  extends?: string[];
  code_version: string;
  columns: ColumnSpec[];
  pixel_shape?: PixelShape;
  shards: ShardRecord[];
  num_rows: number;
  summary: Record<string, unknown>;
  created_at: string;
}

/** HF's `state.json`, as `save_to_disk` writes it. */
export function hfState(shardFiles: string[], fingerprint: string): Record<string, unknown> {
  return {
    _data_files: shardFiles.map((filename) => ({ filename })),
    _fingerprint: fingerprint,
    _format_columns: null,
    _format_kwargs: {},
    _format_type: null,
    _output_all_columns: false,
    _split: null,
  };
}

/** HF's `dataset_info.json`. */
export function hfDatasetInfo(columns: ColumnSpec[], extra: { description?: string; license?: string }): Record<string, unknown> {
  return {
    builder_name: 'metacurate',
    citation: '',
    description: extra.description ?? '',
    features: hfFeatures(columns),
    homepage: '',
    license: extra.license ?? '',
  };
}
