// The loss fused with the output projection (src/ir/ops-train.ts lm_head_loss / lm_head_loss_grad):
// logits = x·Wᵀ and cross-entropy over them, chunk_rows rows at a time, so that only a
// [chunk_rows, V] block of logits exists at a time.
//
// Bit for bit the unfused path's results (logits → cross_entropy, and cross_entropy_grad → matmul,
// matmul_tn), which is what lets a training graph switch between the two:
//  - a block's logits are kernels.ts linear of its rows (each row's sums independent of the others);
//  - the loss sums (lse − target logit) in float64 in row order, over all chunks, divided by the
//    counted rows n of the whole batch (not of the chunk), as crossEntropy does;
//  - dlogits rows are crossEntropyGrad's, rounded to float32 as it stores them; dx rows are matmul's
//    (its rows are independent);
//  - dW keeps one float64 sum a weight entry across chunks and adds the terms in row order, skipping
//    zero dlogits — matmulTn's order (its four-k passes add left to right: ((acc + a0·b0) + a1·b1)…),
//    so the rounding to float32 happens once, at the end. (matmulTn's non-finite-x case skips zeros
//    one term at a time as this loop always does.)
import { linear } from './kernels.js';
import { countedRows, matmul, softmaxRow } from './train-kernels.js';
import { floatsFrom, newFloats } from './precision.js';

/** Row blocks [r0, r1) of at most `chunk` rows. */
function* chunks(T: number, chunk: number): Generator<[number, number]> {
  for (let r0 = 0; r0 < T; r0 += chunk) yield [r0, Math.min(T, r0 + chunk)];
}

export function lmHeadLoss(x: Float32Array, w: Float32Array, targets: Int32Array, chunk: number): Float32Array {
  const T = targets.length, d = x.length / T, V = w.length / d;
  const n = countedRows(targets, V);
  const p = new Float64Array(V);
  let total = 0;
  for (const [r0, r1] of chunks(T, chunk)) {
    const logits = linear(x.subarray(r0 * d, r1 * d), w, d);
    for (let r = r0; r < r1; r++) {
      const t = targets[r]!, off = (r - r0) * V;
      if (t >= 0) total += softmaxRow(logits, off, V, 1, p) - logits[off + t]!;
    }
  }
  return floatsFrom([n ? total / n : 0]);
}

export function lmHeadLossGrad(x: Float32Array, w: Float32Array, targets: Int32Array, dloss: Float32Array, chunk: number): [Float32Array, Float32Array] {
  const T = targets.length, d = x.length / T, V = w.length / d;
  const n = countedRows(targets, V);
  const dx = newFloats(T * d);
  const dw = new Float64Array(V * d);
  const p = new Float64Array(V);
  for (const [r0, r1] of chunks(T, chunk)) {
    const C = r1 - r0;
    const logits = linear(x.subarray(r0 * d, r1 * d), w, d);
    const dl = newFloats(C * V); // the block's dlogits, as crossEntropyGrad stores them
    for (let r = r0; r < r1; r++) {
      const t = targets[r]!, off = (r - r0) * V;
      if (t < 0) continue;
      softmaxRow(logits, off, V, 1, p);
      p[t]! -= 1;
      for (let v = 0; v < V; v++) dl[off + v] = (p[v]! * dloss[0]!) / n;
    }
    dx.set(matmul(dl, w, C, V), r0 * d);
    for (let r = 0; r < C; r++) {
      const xo = (r0 + r) * d;
      for (let v = 0; v < V; v++) {
        const a = dl[r * V + v]!;
        if (a === 0) continue;
        const o = v * d;
        for (let i = 0; i < d; i++) dw[o + i] += a * x[xo + i]!;
      }
    }
  }
  return [dx, floatsFrom(dw)];
}
