/**
 * Describing and checking a stage's input datasets: pixel shape, classes, labels.
 * Shared by the stages that train on one dataset and test or target another.
 */
import { z } from 'zod';
import { DataError } from '../core/errors.js';
import { BACKEND_REQUESTS } from '../ml/backend.js';
import type { PixelShape } from '../data/format.js';
import { openDataset, type Dataset } from '../data/reader.js';

export interface DataInfo {
  dir: string;
  role: string;
  ds: Dataset;
  n: number;
  shape: PixelShape;
  numClasses: number;
  classNames: string[];
  hasLabels: boolean;
  hasSoftLabels: boolean;
}

export async function describeDataset(dir: string, role: string): Promise<DataInfo> {
  const ds = await openDataset(dir);
  const shape = ds.pixelShape;
  if (!shape || !ds.column('pixels')) {
    throw new DataError(`the ${role} set has no pixels column`, { file: dir, hint: 'Ingest the images first (metacurate ingest)' });
  }
  const soft = ds.column('soft_label');
  const hasSoftLabels = soft?.kind === 'float32Vector';
  const classNames = ds.classNames ?? [];
  const numClasses = soft?.kind === 'float32Vector' ? soft.length : classNames.length;
  return {
    dir, role, ds, n: await ds.countRows(), shape, numClasses, classNames,
    hasLabels: ds.column('label') !== undefined, hasSoftLabels,
  };
}

/** Refuses sets that cannot be trained or tested together; names both. */
export function checkCompatible(a: DataInfo, b: DataInfo): void {
  if (a.shape.join() !== b.shape.join()) {
    throw new DataError(`the ${b.role} set's images are ${b.shape.join('×')} but the ${a.role} set's (${a.dir}) are ${a.shape.join('×')}`, {
      file: b.dir,
      hint: 'Ingest both at the same working resolution and channels (ingest --size/--channels)',
    });
  }
  if (a.numClasses !== b.numClasses) {
    throw new DataError(`the ${b.role} set has ${b.numClasses} classes but the ${a.role} set (${a.dir}) has ${a.numClasses}`, {
      file: b.dir,
      hint: 'Both must use the same class list (ingest --class-names)',
    });
  }
}

export function checkLabelled(d: DataInfo): void {
  if (!d.hasLabels && !d.hasSoftLabels) {
    throw new DataError(`the ${d.role} set has no labels`, { file: d.dir, hint: 'Evaluation needs a label (or soft_label) column; ingest with labels' });
  }
  if (d.numClasses < 2) {
    throw new DataError(`the ${d.role} set declares ${d.numClasses} classes`, { file: d.dir, hint: 'The label column needs its class names (a ClassLabel feature with at least 2 classes)' });
  }
  if (d.n === 0) throw new DataError(`the ${d.role} set is empty`, { file: d.dir });
}


/** The `backend` option of every stage that computes: a name, or 'auto' for the best available. */
export const backendOption = z.enum(BACKEND_REQUESTS).default('auto')
  .describe('compute backend: auto takes tensorflow (tfjs-node) if installed, then webgpu on a GPU, then wasm');
