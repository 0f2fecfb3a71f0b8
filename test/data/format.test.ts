import { describe, expect, test } from 'vitest';
import { FixedSizeList, Struct } from 'apache-arrow';
import {
  HF_METADATA_KEY, PIXEL_SHAPE_KEY, arrowType, columnFromArrowType, columnFromHfFeature, hfDatasetInfo, hfFeature,
  hfFeatures, hfState, makeSchema, shardFileName, type ColumnKind, type ColumnSpec,
} from '../../data/format.js';

const EVERY_KIND: ColumnSpec[] = [
  { name: 's', kind: 'string' },
  { name: 'i64', kind: 'int64' },
  { name: 'i32', kind: 'int32' },
  { name: 'f32', kind: 'float32' },
  { name: 'f64', kind: 'float64' },
  { name: 'b', kind: 'bool' },
  { name: 'label', kind: 'classLabel', names: ['cat', 'dog'] },
  { name: 'image', kind: 'image' },
  { name: 'pixels', kind: 'uint8Vector', length: 12 },
  { name: 'emb', kind: 'float32Vector', length: 5 },
];

describe('shard file names', () => {
  test('follow HF save_to_disk: data-XXXXX-of-NNNNN.arrow', () => {
    expect(shardFileName(0, 1)).toBe('data-00000-of-00001.arrow');
    expect(shardFileName(3, 4)).toBe('data-00003-of-00004.arrow');
    expect(shardFileName(11, 120)).toBe('data-00011-of-00120.arrow');
  });
});

describe('HF features', () => {
  test('are written as datasets Features.to_dict() writes them', () => {
    expect(hfFeatures(EVERY_KIND)).toEqual({
      s: { dtype: 'string', _type: 'Value' },
      i64: { dtype: 'int64', _type: 'Value' },
      i32: { dtype: 'int32', _type: 'Value' },
      f32: { dtype: 'float32', _type: 'Value' },
      f64: { dtype: 'float64', _type: 'Value' },
      b: { dtype: 'bool', _type: 'Value' },
      label: { names: ['cat', 'dog'], _type: 'ClassLabel' },
      image: { _type: 'Image' },
      pixels: { feature: { dtype: 'uint8', _type: 'Value' }, length: 12, _type: 'Sequence' },
      emb: { feature: { dtype: 'float32', _type: 'Value' }, length: 5, _type: 'Sequence' },
    });
  });

  test('map back to the same column kinds (through the feature and through the Arrow type)', () => {
    for (const spec of EVERY_KIND) {
      const type = arrowType(spec);
      expect(columnFromHfFeature(spec.name, hfFeature(spec), type)).toEqual(spec);
      // Without features, the Arrow type alone gives the kind, except ClassLabel (plain int64 then).
      const expected = spec.kind === 'classLabel' ? { name: spec.name, kind: 'int64' } : spec;
      expect(columnFromArrowType(spec.name, type)).toEqual(expected);
    }
  });

  test('HF list features ("List" with a length, as datasets >= 4 writes them) map to vectors', () => {
    const f = { feature: { dtype: 'uint8', _type: 'Value' }, length: 12, _type: 'List' };
    expect(columnFromHfFeature('pixels', f, arrowType({ kind: 'uint8Vector', length: 12 }))).toEqual({ name: 'pixels', kind: 'uint8Vector', length: 12 });
  });
});

describe('Arrow types', () => {
  test('image is HF Image storage: struct {bytes: binary, path: string}', () => {
    const t = arrowType({ kind: 'image' });
    expect(t).toBeInstanceOf(Struct);
    expect((t as Struct).children.map((f) => [f.name, String(f.type), f.nullable])).toEqual([
      ['bytes', 'Binary', true],
      ['path', 'Utf8', true],
    ]);
  });

  test('vectors are fixed-size lists', () => {
    const t = arrowType({ kind: 'float32Vector', length: 7 } as ColumnKind) as FixedSizeList;
    expect(t).toBeInstanceOf(FixedSizeList);
    expect(t.listSize).toBe(7);
    expect(String(t.children[0].type)).toBe('Float32');
    expect(String(arrowType({ kind: 'classLabel', names: [] }))).toBe('Int64');
  });

  test('the schema carries HF features and the pixel shape in its metadata', () => {
    const cols: ColumnSpec[] = [{ name: 'id', kind: 'string' }, { name: 'caption', kind: 'string', nullable: true }, ...EVERY_KIND.slice(6)];
    const schema = makeSchema(cols, [2, 2, 3]);
    expect(schema.fields.map((f) => f.name)).toEqual(cols.map((c) => c.name));
    expect(schema.fields.map((f) => f.nullable)).toEqual(cols.map((c) => c.nullable ?? false));
    expect(JSON.parse(schema.metadata.get(HF_METADATA_KEY)!)).toEqual({ info: { features: hfFeatures(cols) } });
    expect(JSON.parse(schema.metadata.get(PIXEL_SHAPE_KEY)!)).toEqual([2, 2, 3]);
    expect(makeSchema(cols).metadata.has(PIXEL_SHAPE_KEY)).toBe(false);
  });
});

describe('HF metadata files', () => {
  test('state.json has the keys save_to_disk writes', () => {
    const files = [shardFileName(0, 2), shardFileName(1, 2)];
    expect(hfState(files, 'abcdef0123456789')).toEqual({
      _data_files: [{ filename: 'data-00000-of-00002.arrow' }, { filename: 'data-00001-of-00002.arrow' }],
      _fingerprint: 'abcdef0123456789',
      _format_columns: null,
      _format_kwargs: {},
      _format_type: null,
      _output_all_columns: false,
      _split: null,
    });
  });

  test('dataset_info.json holds the features', () => {
    const info = hfDatasetInfo(EVERY_KIND, { description: 'd', license: 'MIT' });
    expect(info.features).toEqual(hfFeatures(EVERY_KIND));
    expect(info).toMatchObject({ description: 'd', license: 'MIT', citation: '', homepage: '' });
  });
});
