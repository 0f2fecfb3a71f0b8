/**
 * The vector-Jacobian product of one training step, written out for dense ReLU
 * networks (`logreg`, `mlp`) trained with SGD (any momentum, Nesterov, weight
 * decay) on weighted cross-entropy: the metagradient engine's reverse step
 * without a tape.
 *
 * The taped reverse step differentiates the whole step, backward pass included
 * (backward over backward). Here the step's VJP with cotangent v is split:
 *  - SGD is linear in the gradient g, so v gives the cotangent u on g, and the
 *    cotangents on the parameters and velocities, by a few elementwise ops;
 *  - what remains is the VJP of g(θ, w) = ∇_θ Σ_i w_i ℓ_i / B with cotangent u:
 *    ∂/∂w_i ⟨g, u⟩ = ⟨∇ℓ_i, u⟩ / B (the per-example terms) and ∂/∂θ ⟨g, u⟩ = H·u.
 * Both come from one pass forward along u (the logits' directional derivative
 * q_i = ⟨∂z_i/∂θ, u⟩, so ⟨∇ℓ_i, u⟩ = ⟨∂ℓ_i/∂z_i, q_i⟩) and one pass back. The
 * first layer's weight gradient is never formed: its inner product with u is
 * taken as ⟨x·U, δ⟩, which saves one of the four largest matrix products of the
 * taped step and all its bookkeeping. ReLU's second derivative is zero (almost
 * everywhere), which is what makes the backward pass this short.
 *
 * Exact, not an approximation: tests check it against the taped VJP and finite
 * differences on every backend.
 */
import * as tf from '@tensorflow/tfjs';
import type { Trainer } from './train.js';

type State = tf.Tensor[];

/**
 * The cotangent on the state before step t given the cotangent v on the state
 * after it, and dφ/dw for the batch's rows, [B]. Call it inside tf.tidy: the
 * batch's tensors and the intermediates are left to it.
 */
export type StepVjp = (state: State, t: number, v: State) => { vPrev: State; dw: tf.Tensor1D };

/** The written-out VJP of `trainer`'s step, or null when its model or optimizer is not one it covers. */
export function denseSgdVjp(trainer: Trainer): StepVjp | null {
  const spec = trainer.model.spec;
  const opt = trainer.optimizer.spec;
  if ((spec.kind !== 'mlp' && spec.kind !== 'logreg') || opt.kind !== 'sgd') return null;
  const P = trainer.numParams;
  const layers = P / 2;
  const s = spec.outputScale;
  const { momentum: mu, nesterov, weightDecay: wd } = opt;
  const inputNorm = spec.inputNorm;

  return (state, t, v) => {
    const params = state.slice(0, P);
    const lr = trainer.lr(t);

    // SGD's VJP. Cotangents on θ' and on the velocity v' (when there is momentum) give
    // u, the cotangent on the gradient g' = g + wd·θ, and the velocity's cotangent.
    const u: tf.Tensor[] = [];
    const vVelocity: tf.Tensor[] = [];
    for (let j = 0; j < P; j++) {
      const dirBar = tf.mul(v[j], -lr); // θ' = θ − lr·dir
      if (mu > 0) {
        // dir = v' (or g' + μ·v' with Nesterov); v' = μ·v + g'. vNew: the total cotangent on v'.
        const vNew = nesterov ? tf.add(v[P + j], tf.mul(dirBar, mu)) : tf.add(v[P + j], dirBar);
        u.push(nesterov ? tf.add(dirBar, vNew) : vNew);
        vVelocity.push(tf.mul(vNew, mu));
      } else {
        u.push(dirBar);
      }
    }

    // Forward pass of the batch, keeping each layer's input and ReLU mask.
    const { x, y } = trainer.batchInputs(t);
    const w = trainer.batchWeights(t);
    const B = x.shape[0];
    let h: tf.Tensor2D = inputNorm
      ? tf.reshape(tf.div(tf.sub(x, tf.tensor1d(inputNorm.mean)), tf.tensor1d(inputNorm.std)), [B, -1])
      : tf.reshape(x, [B, -1]);
    const inputsOf: tf.Tensor2D[] = [];
    const masks: tf.Tensor2D[] = [];
    let a = h;
    for (let l = 0; l < layers; l++) {
      inputsOf.push(h);
      a = tf.add(tf.matMul(h, params[2 * l] as tf.Tensor2D), params[2 * l + 1]);
      if (l < layers - 1) {
        const m = tf.step(a) as tf.Tensor2D; // tf.relu's derivative, 0 at 0
        masks.push(m);
        h = tf.mul(a, m);
      }
    }
    const p = tf.softmax(tf.mul(a, s));

    // Along u: the directional derivative of every layer's pre-activation; q for the logits (before the scale).
    const along: tf.Tensor2D[] = [];
    let da: tf.Tensor2D = tf.add(tf.matMul(inputsOf[0], u[0] as tf.Tensor2D), u[1]);
    along.push(da);
    for (let l = 1; l < layers; l++) {
      const viaW = tf.matMul(tf.mul(da, masks[l - 1]) as tf.Tensor2D, params[2 * l] as tf.Tensor2D);
      da = tf.add(tf.add(viaW, tf.matMul(inputsOf[l], u[2 * l] as tf.Tensor2D)), u[2 * l + 1]);
      along.push(da);
    }
    const q = da;

    // ∂ℓ_i/∂z_i = S_i·p_i − y_i (S_i = Σ_c y_ic; 1 for one-hot rows), z = s·a.
    const ySum = tf.sum(y, -1, true);
    const resid = tf.sub(tf.mul(p, ySum), y);
    const dw = tf.mul(tf.sum(tf.mul(q, resid), -1), s / B) as tf.Tensor1D;
    // δ: ∂L/∂a for the batch loss L = Σ_i w_i ℓ_i / B (the inner backward pass's signal).
    const wCol = tf.reshape(w, [B, 1]);
    let delta = tf.mul(resid, tf.mul(wCol, s / B)) as tf.Tensor2D;
    // ā: ∂⟨g, u⟩/∂a through the softmax's dependence on a: s²·w_i·S_i/B · (p⊙q − p·⟨p, q⟩).
    const pq = tf.mul(p, q);
    let aBar = tf.mul(tf.sub(pq, tf.mul(p, tf.sum(pq, -1, true))), tf.mul(tf.mul(wCol, ySum), (s * s) / B)) as tf.Tensor2D;

    // Back through both passes: H·u, layer by layer.
    const hvp: tf.Tensor[] = new Array(P);
    for (let l = layers - 1; l >= 0; l--) {
      const W = params[2 * l] as tf.Tensor2D;
      let wBar = tf.matMul(inputsOf[l], aBar, true, false);
      if (l > 0) wBar = tf.add(wBar, tf.matMul(tf.mul(along[l - 1], masks[l - 1]) as tf.Tensor2D, delta, true, false));
      hvp[2 * l] = wBar;
      hvp[2 * l + 1] = tf.sum(aBar, 0);
      if (l > 0) {
        const hBar = tf.add(tf.matMul(aBar, W, false, true), tf.matMul(delta, u[2 * l] as tf.Tensor2D, false, true));
        aBar = tf.mul(hBar, masks[l - 1]) as tf.Tensor2D;
        delta = tf.mul(tf.matMul(delta, W, false, true), masks[l - 1]) as tf.Tensor2D;
      }
    }

    const vParams = params.map((_, j) => {
      const direct = wd > 0 ? tf.add(v[j], tf.mul(u[j], wd)) : v[j];
      return tf.add(direct, hvp[j]);
    });
    return { vPrev: [...vParams, ...vVelocity], dw };
  };
}
