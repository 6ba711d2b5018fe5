// The loss fused with the output projection (lm_head_loss, targets/ref/lm-head-loss.ts; passes/loss.ts
// fusedChunkRows): on the ref target it gives the unfused path's loss and gradients bit for bit
// (logits → cross_entropy; cross_entropy_grad → matmul, matmul_tn are the oracle), on random inputs
// with awkward sizes and on stories260K's whole training graph (dense and MoC, several checkpoint
// policies), and stories260K's gradients are PyTorch's within model-grads.test.ts's tolerance. The
// [T,V] logits and dlogits are no longer values of the graph, so the memory plan's peak drops.
import test from 'ava';
import { loadModel } from '../../driver/load.js';
import { trainingGraph } from '../../driver/training-graph.js';
import { gradOutputs } from '../../passes/autodiff.js';
import type { CheckpointPolicy } from '../../passes/checkpoint.js';
import { planMemory } from '../../passes/memory-plan.js';
import { addLoss, lmHeadChunkRows } from '../../passes/loss.js';
import { runPipeline } from '../../passes/index.js';
import { parseGraph } from '../../src/ir/parse.js';
import { paramF32 } from '../../src/model/runnable.js';
import { lmHeadLoss, lmHeadLossGrad } from '../../targets/ref/lm-head-loss.js';
import { linear } from '../../targets/ref/kernels.js';
import { crossEntropy, crossEntropyGrad, matmul, matmulTn } from '../../targets/ref/train-kernels.js';
import { runTrainingGraph } from '../../targets/ref/train.js';
import { CHECKPOINTS } from '../helpers/fixtures.js';
import { packedInputs } from '../helpers/train-tiny-model.js';
import { inParamLayout, referenceGrads } from '../helpers/grad-reference.js';
import { randomFrom, rng } from '../helpers/random.js';

/** The unfused path, kernel by kernel: what the fused kernels must equal bit for bit. */
function unfused(x: Float32Array, w: Float32Array, targets: Int32Array, dloss: Float32Array) {
  const T = targets.length, d = x.length / T;
  const logits = linear(x, w, d);
  const dl = crossEntropyGrad(logits, targets, dloss);
  return { loss: crossEntropy(logits, targets), dx: matmul(dl, w, T, w.length / d), dw: matmulTn(dl, x, T) };
}

test('lm_head_loss and its gradient equal the unfused kernels bit for bit, for every chunk size', (t) => {
  const cases = [
    { T: 1, V: 1, d: 1 }, { T: 7, V: 13, d: 5 }, { T: 33, V: 41, d: 9 }, { T: 64, V: 100, d: 16 },
  ];
  let seed = 7;
  for (const { T, V, d } of cases) {
    const r = rng(seed++);
    const x = randomFrom(T * d, r, 2), w = randomFrom(V * d, r, 2);
    // about a quarter of the rows predict nothing (-1), the rest any token, the last row never
    const targets = Int32Array.from({ length: T }, (_, i) => (i === T - 1 || r() < -0.5 ? -1 : Math.floor(((r() + 1) / 2) * V)));
    const dloss = Float32Array.of(0.75);
    const want = unfused(x, w, targets, dloss);
    for (const chunk of [1, 2, 3, 5, T, T + 4]) {
      t.deepEqual(lmHeadLoss(x, w, targets, chunk), want.loss, `T=${T} V=${V} d=${d} chunk=${chunk}: loss`);
      const [dx, dw] = lmHeadLossGrad(x, w, targets, dloss, chunk);
      t.deepEqual(dx, want.dx, `T=${T} V=${V} d=${d} chunk=${chunk}: dx`);
      t.deepEqual(dw, want.dw, `T=${T} V=${V} d=${d} chunk=${chunk}: dW`);
    }
  }
});

test('lm_head_loss: no counted row gives loss 0 and zero gradients; a target ≥ V is an error naming the row', (t) => {
  const r = rng(3);
  const x = randomFrom(4 * 3, r), w = randomFrom(5 * 3, r);
  const none = Int32Array.of(-1, -1, -1, -1);
  t.deepEqual(lmHeadLoss(x, w, none, 2), Float32Array.of(0));
  const [dx, dw] = lmHeadLossGrad(x, w, none, Float32Array.of(1), 3);
  t.true(dx.every((v) => v === 0) && dw.every((v) => v === 0));
  t.throws(() => lmHeadLoss(x, w, Int32Array.of(0, 5, 1, -1), 2), { message: /target 5 of row 1 is outside the vocabulary \(0\.\.4\)/ });
});

const TINY = `graph tiny
  input %tokens : i32[T]
  param @emb : f32[5,3]
  param @n : f32[3]
  %x = embedding(@emb, %tokens) : f32[T,3]
  %h = rmsnorm(%x, @n) {eps=0.00001} : f32[T,3]
  %logits = logits(%h, @emb) : f32[T,5]
  output %logits
end
`;

test('add-loss with fusedChunkRows: logits → cross_entropy becomes one lm_head_loss node; the verifier names bad uses', (t) => {
  const g = runPipeline(parseGraph(TINY), [{ pass: addLoss, options: { kind: 'cross_entropy', fusedChunkRows: 2 } }]);
  t.deepEqual(g.nodes.map((n) => n.op), ['embedding', 'rmsnorm', 'lm_head_loss']);
  t.deepEqual(g.nodes[2]!.attrs, { chunk_rows: 2 });
  t.throws(() => runPipeline(parseGraph(TINY), [{ pass: addLoss, options: { kind: 'cross_entropy', fusedChunkRows: 0 } }]), { message: /chunk_rows must be an integer ≥ 1, got 0/ });
  const read = TINY.replace('  output %logits', '  %y = silu(%logits) : f32[T,5]\n  output %logits');
  t.throws(() => runPipeline(parseGraph(read), [{ pass: addLoss, options: { kind: 'cross_entropy', fusedChunkRows: 2 } }]), { message: /cannot drop %logits: node %y \(silu\) reads it/ });
  t.throws(() => trainingGraph(parseGraph(TINY), { loss: { kind: 'kl_div', temperature: 1 }, policy: 'none', fuseLmHead: true }), { message: /only the cross-entropy loss fuses/ });
  t.is(lmHeadChunkRows(32000), 2048, '256 MiB of f32 rows of 32000 (2097), down to a multiple of 128');
  t.is(lmHeadChunkRows(1 << 20), 64, 'fewer than 128 rows fit: as many as fit');
  t.is(lmHeadChunkRows(1 << 26), 1, 'at least one row');
});

for (const [label, selection, which, policies] of [
  ['dense', 'dense', 'dense', ['none', 'gcp']],
  ['MoC K=32', { k: 32 }, 'moc_k32', ['none', 'moc-gcp']],
] as const) {
  test(`stories260K ${label}: the fused training graph's loss and gradients equal the unfused graph's bit for bit, and PyTorch's`, (t) => {
    const ref = referenceGrads(which);
    const m = loadModel(CHECKPOINTS.hf, { selection });
    try {
      const seqs = ref.batch;
      const rows = seqs.flat().length;
      const inputs = packedInputs(seqs);
      const weights = new Map(m.graph.params.map((p) => [p.name, paramF32(m.weights, p)]));
      for (const policy of policies as readonly CheckpointPolicy[]) {
        const run = (fuseLmHead?: number | true) => {
          const g = trainingGraph(m.graph, { loss: { kind: 'cross_entropy' }, policy, ...(fuseLmHead ? { fuseLmHead } : {}) });
          const out = runTrainingGraph(g, weights, inputs, rows);
          const planned = planMemory(g, { T: rows }).peakBytes;
          t.is(out.peakBytes, planned, `${policy}: bytes held by the ref executor = the plan's peak`);
          return { g, out, planned, grads: new Map(gradOutputs(g).map(({ param }, i) => [param, out.outputs[i + 1] as Float32Array])) };
        };
        const base = run();
        t.false(base.g.nodes.some((n) => n.op === 'lm_head_loss'));
        for (const chunk of [7, true] as const) { // 7: several chunks and a tail of the batch's rows
          const fused = run(chunk);
          t.true(fused.g.nodes.some((n) => n.op === 'lm_head_loss') && fused.g.nodes.some((n) => n.op === 'lm_head_loss_grad'));
          t.false(fused.g.nodes.some((n) => n.op === 'logits' || n.op === 'cross_entropy_grad'), 'no [T,V] value left');
          t.deepEqual(fused.out.outputs[0], base.out.outputs[0], `${policy} chunk ${chunk}: loss`);
          for (const [name, gr] of base.grads) t.deepEqual(fused.grads.get(name), gr, `${policy} chunk ${chunk}: ${name}`);
          t.true(fused.planned < base.planned, `${policy}: planned peak ${fused.planned} < unfused ${base.planned}`);
          t.log(`${label} ${policy} chunk ${chunk}: planned peak ${base.planned} → ${fused.planned} bytes`);
        }
        // Independently of the unfused path: PyTorch's gradients (model-grads.test.ts's tolerance).
        const fused = run(5);
        const loss = (fused.out.outputs[0] as Float32Array)[0]!;
        t.true(Math.abs(loss - ref.loss) <= 1e-5 * ref.loss, `loss ${loss} vs PyTorch ${ref.loss}`);
        for (const [name, e] of inParamLayout(ref.grads, m.graph.params)) {
          const mine = fused.grads.get(name)!;
          let maxRef = 0, maxDiff = 0;
          for (let i = 0; i < e.data.length; i++) {
            maxRef = Math.max(maxRef, Math.abs(e.data[i]!));
            maxDiff = Math.max(maxDiff, Math.abs(mine[i]! - e.data[i]!));
          }
          t.true(maxDiff / maxRef <= 1e-4, `${policy} ${name}: max |Δ| / max |ref| = ${(maxDiff / maxRef).toExponential(2)}`);
        }
      }
    } finally {
      m.close();
    }
  });
}
