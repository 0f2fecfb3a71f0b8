/**
 * Fingerprints are how a rerun knows an output is current: a refactor that
 * changed them would make every user's cached run start over. These were
 * computed by the code before the stage template and the plug-in registries
 * (commit dff9ab1) on the same inputs; the same options must still give them.
 * Three changed on purpose afterwards, because what they name changed: the
 * metagrad defaults (an ensemble of six late-entry runs, and later more epochs
 * on small pools) and MGD (masked steps, the iterate chosen on held-out target rows).
 */
import { afterAll, beforeAll, expect, test } from 'vitest';
import { promises as fsp } from 'node:fs';
import path from 'node:path';
import { ingest } from '../../stages/ingest.js';
import { score, scoreStage } from '../../stages/score.js';
import { select, selectStage } from '../../stages/select/index.js';
import { rateStage } from '../../stages/rate.js';
import { evaluateStage } from '../../stages/evaluate.js';
import { distillStage } from '../../stages/distill.js';
import type { Stage, StageInputs } from '../../stages/define.js';
import { REPO, assertBuilt, tempDir } from './helpers.js';

const PINNED = {
  ingest: 'bcd24b495f389543',
  ingestTest: 'f88d71468c40605e',
  target: '724d74ace5984007',
  pool: 'd14c550e6022364a',
  scoreLoss: 'bc57e772641dddec',
  // a15e6604030b7f75 before the ensemble defaults, then dfad30a90a91a1ac until a pool this small (500 rows,
  // 1 step an epoch) trained more epochs than the method's 2: its output changed, so must its fingerprint.
  scoreMetagrad: '6a0be48831bac0a9',
  scoreEl2nSeeds: '25c59e64b89189db',
  topk: '5e398bb997bbe458',
  prune: 'e5d907d60a41f7f5',
  pruneDrop: '272f0cb349bdbb2c',
  shift: '69519aea237c8533',
  stratified: 'c2dc1a2f48775770',
  threshold: 'f8ba372c22694168',
  mgd: '87e7bca645608fcf', // was 775f7106c63f9ab0 before masked MGD
  mgdEpochs: '48d6450cb7e13882', // was 6451fd6e1b008cb3
  rateMeta: '27087696f5394475',
  rateRegress: '7de20cd80a1f6b35',
  evaluate: '3c8297ce59c99881',
  evaluateNoFull: 'ecc368646a9f07e0',
  distill: '95b6faf360cb77ec',
};

let work: string;
beforeAll(async () => {
  assertBuilt();
  work = await tempDir();
});
afterAll(async () => {
  await fsp.rm(work, { recursive: true, force: true });
});

test('outputs made before the refactor keep their fingerprints', async () => {
  const at = (p: string) => path.join(work, p);
  const builtin = path.join(REPO, 'data/builtin/fashion-mnist');
  const fp = async (stage: Stage, inputs: StageInputs, options: Record<string, unknown>) => (await stage.prepare(inputs, options)).fingerprint;
  const got: Record<string, string> = {};
  got.ingest = (await ingest(builtin, { split: 'train', preset: 'fashion-mnist', limit: 600, out: at('train') })).fingerprint;
  got.ingestTest = (await ingest(builtin, { split: 'test', preset: 'fashion-mnist', limit: 200, out: at('test') })).fingerprint;
  got.target = (await select(at('train'), { strategy: 'random', budget: 100, out: at('target') })).fingerprint;
  got.pool = (await select(at('train'), { strategy: 'random', budget: 100, invert: true, out: at('pool') })).fingerprint;
  got.scoreLoss = (await score(at('pool'), { method: 'loss', epochs: 1, out: at('loss') })).fingerprint;
  got.scoreMetagrad = await fp(scoreStage, [at('pool'), at('target')], { method: 'metagrad', out: at('mg') });
  got.scoreEl2nSeeds = await fp(scoreStage, [at('pool')], { method: 'el2n', seeds: 2, epochs: 3, out: at('el2n') });
  const sel = (o: Record<string, unknown>) => fp(selectStage, [at('pool'), at('loss')], { by: 'loss', out: at('s'), ...o });
  got.topk = await sel({ strategy: 'topk', budget: 0.3 });
  got.prune = await sel({ strategy: 'prune', budget: 0.3 });
  got.pruneDrop = await sel({ strategy: 'prune', budget: 0.3, drop: 0.1, seed: 2 });
  got.shift = await sel({ strategy: 'shift-gsample', budget: 0.5 });
  got.stratified = await sel({ strategy: 'stratified', budget: 200 });
  got.threshold = await sel({ strategy: 'threshold', threshold: -1 });
  got.mgd = await fp(selectStage, [at('pool'), at('target')], { strategy: 'mgd', budget: 0.5, rounds: 4, out: at('mgd') });
  got.mgdEpochs = await fp(selectStage, [at('pool'), at('target')], { strategy: 'mgd', budget: 0.5, epochs: 3, k: 4, out: at('mgd') });
  got.rateMeta = await fp(rateStage, [at('pool'), at('target')], { trainRater: true, out: at('ratings') });
  got.rateRegress = await fp(rateStage, [at('pool'), at('loss')], { trainRater: true, mode: 'regress', by: 'loss', out: at('ratings') });
  got.evaluate = await fp(evaluateStage, [at('pool'), at('test'), at('train')], { preset: 'fast', out: at('eval') });
  got.evaluateNoFull = await fp(evaluateStage, [at('pool'), at('test')], { preset: 'fast', seeds: 2 });
  got.distill = await fp(distillStage, [at('pool')], { method: 'krr', ipc: 2, steps: 5, out: at('distilled') });
  expect(got).toEqual(PINNED);
  // The same inputs by name give the same fingerprints as by position.
  expect(await fp(evaluateStage, { train: at('pool'), test: at('test'), fullTrain: at('train') }, { preset: 'fast', out: at('eval') })).toBe(PINNED.evaluate);
  expect(await fp(selectStage, { dataset: at('pool'), target: at('target') }, { strategy: 'mgd', budget: 0.5, rounds: 4, out: at('mgd') })).toBe(PINNED.mgd);
}, 120_000);
