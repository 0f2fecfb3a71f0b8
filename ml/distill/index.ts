/**
 * The distillation methods behind one interface (ml/distill/common.ts
 * `Distiller`): `krr` (KIP/RFAD), `dm` (distribution matching) and `rcig`
 * (convexified implicit gradients). See each module for the method.
 */
import type { RealSet, SavedState, Distiller } from './common.js';
import { createDmDistiller, type DmSettings } from './dm.js';
import type { FeatureFeed } from './feature-feed.js';
import { createKrrDistiller, type KrrSettings } from './krr.js';
import { createRcigDistiller, type RcigSettings } from './rcig.js';

export const DISTILL_METHODS = ['rcig', 'krr', 'dm'] as const;
export type DistillMethod = (typeof DISTILL_METHODS)[number];

export type MethodSettings =
  | ({ method: 'krr' } & KrrSettings)
  | ({ method: 'dm' } & DmSettings)
  | ({ method: 'rcig' } & RcigSettings);

/** A distiller for `settings.method`, fresh or continuing from a saved state; krr may take its real-batch features from a feed. */
export function createDistiller(real: RealSet, settings: MethodSettings, saved?: SavedState, feed?: FeatureFeed): Distiller {
  switch (settings.method) {
    case 'krr': return createKrrDistiller(real, settings, saved, feed);
    case 'dm': return createDmDistiller(real, settings, saved);
    case 'rcig': return createRcigDistiller(real, settings, saved);
  }
}

export type { Distiller, RealSet, SavedState, StepReport } from './common.js';
export { makeRealSet, toUint8 } from './common.js';
export type { KrrSettings, DmSettings, RcigSettings };
