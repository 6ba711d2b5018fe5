// The CUDA training executor (targets/cuda/train/): a training graph run node by node with the
// generated f32 PTX kernels, in one arena placed by the memory plan, against the ref target's
// executor (targets/ref/train.ts runTrainingGraph, itself checked against PyTorch in
// test/train/model-grads.test.ts) on the same weights and inputs.
//
// - On the CPU PTX interpreter (test/helpers/train-sim-device.ts), always: a tiny synthetic LLaMA
//   (2 layers, awkward sizes: dim 24, head_dim 6, GQA 4:2 heads, FFN 36 and kv width 12 not multiples
//   of 8, so every padded row has padding; vocabulary 40, tied embeddings), two packed sequences.
//   stories260K itself is too slow for the interpreter (one layer at T = 16 takes about two minutes
//   here: the interpreter decodes every instruction each time it runs it), so it runs on the GPU.
//   The same model as MoC (swiglu-to-moc: K = 12 of 36 channels, or the pattern 4:12): policy none
//   with 2 layers; moc and moc-gcp (which save the indices as u16: index_narrow / index_widen) with 1;
//   gcp-attn with 2 layers, moc-gcp-attn with 1 (each layer's attention block recomputed as clones
//   within its backward: ordinary ops, nothing of the executor's own);
//   and distillation (recover's kl_div loss at τ = 2, the f32 teacher logits a graph input) with 1.
// - On a GPU (skipped without one): stories260K, all 5 layers, T = 32: dense with policies none,
//   gcp and gcp-attn; MoC K = 32 with policies none, moc-gcp and moc-gcp-attn.
// - ptxas (skipped without it): every kernel the stories260K graphs (dense, MoC K = 32) launch
//   assembles for sm_80 and sm_90 with no local memory.
//
// Tolerance: loss and every gradient within 1e-4 of the ref's, relative to that tensor's largest
// |entry| (the measure model-grads.test.ts uses). Both are f32 computations of the same graph; the ref
// accumulates its sums in float64, the kernels in f32 fma chains (matmul over V = 512 or T terms,
// attention over ≤ T rows) and use ex2.approx / lg2.approx (relative error ~2^-22): differences are
// ~1e-6 of a tensor's scale. 1e-4 leaves room for the GPU's reassociated trees while any indexing
// or formula error (O(1) relative) fails it.
import test from 'ava';
import { checkpointGraph } from '../../driver/load.js';
import { trainingGraph } from '../../driver/training-graph.js';
import type { CheckpointPolicy } from '../../passes/checkpoint.js';
import { checkArena, planMemory } from '../../passes/memory-plan.js';
import type { Graph } from '../../src/ir/types.js';
import type { MocSelection } from '../../src/model/selection.js';
import { MODEL_INPUTS, TRAIN_INPUTS } from '../../src/model/graph-inputs.js';
import { randomFrom, rng } from '../helpers/random.js';
import { runTrainingGraph } from '../../targets/ref/train.js';
import { CudaTrainingExecutor } from '../../targets/cuda/train/executor.js';
import { cudaTrainDevice } from '../../targets/cuda/train/cuda-device.js';
import type { TrainDevice } from '../../targets/cuda/train/device.js';
import { deviceBytes } from '../../targets/cuda/train/values.js';
import { storiesTraining } from '../helpers/stories-training.js';
import { batch, POISON, randomWeights, TINY } from '../helpers/train-tiny-model.js';
import { simTrainDevice } from '../helpers/train-sim-device.js';
import { cudaDeviceRequirement, findPtxas, ptxasRequirement, testsNeeding } from '../helpers/requires.js';
import { assertEachAssembles } from '../helpers/ptxas.js';
import type { ExecutionContext } from 'ava';

/** Runs g on the device and on the ref target; checks the arena, the loss and every gradient. */
function compareWithRef(t: ExecutionContext, g: Graph, weights: Map<string, Float32Array>, inputs: Record<string, Int32Array | Float32Array>, dev: TrainDevice): void {
  const T = inputs[MODEL_INPUTS.tokens]!.length;
  const ex = new CudaTrainingExecutor(g, weights, T, dev, { poison: POISON });
  try {
    const plan = planMemory(g, { T }, deviceBytes);
    t.is(ex.arenaBytes, plan.arenaBytes, 'the arena is the memory plan\'s, in the device layout');
    t.notThrows(() => checkArena(ex.plan));
    const got = ex.run(inputs).outputs;
    const want = runTrainingGraph(g, weights, inputs, T).outputs as Float32Array[];
    t.is(got.length, want.length);
    let worst = 0, worstName = '';
    g.outputs.forEach((name, i) => {
      const a = got[i]!, b = want[i]!;
      t.is(a.length, b.length, name);
      let maxRef = 0, maxDiff = 0;
      for (let j = 0; j < b.length; j++) {
        maxRef = Math.max(maxRef, Math.abs(b[j]!));
        maxDiff = Math.max(maxDiff, Number.isFinite(a[j]!) ? Math.abs(a[j]! - b[j]!) : Infinity);
      }
      const rel = maxDiff / Math.max(maxRef, 1e-30);
      if (rel > worst) [worst, worstName] = [rel, name];
      t.true(maxRef > 0, `${name}: the ref's tensor is not all zero (the check can fail)`);
      t.true(rel <= 1e-4, `%${name}: max |Δ| / max |ref| = ${rel.toExponential(2)}`);
    });
    t.log(`loss ${got[0]![0]} (ref ${want[0]![0]}); worst %${worstName} at ${worst.toExponential(2)}; arena ${ex.arenaBytes} bytes`);
  } finally {
    ex.dispose();
  }
}

for (const policy of ['none', 'gcp', 'gcp-attn'] as CheckpointPolicy[]) {
  test(`interpreted: tiny 2-layer LLaMA, policy ${policy}: loss and every gradient equal the ref executor's, in the planned arena`, (t) => {
    const g = trainingGraph(checkpointGraph(TINY, () => 'f32', 'dense'), { loss: { kind: 'cross_entropy' }, policy });
    compareWithRef(t, g, randomWeights(g, 7), batch([7, 5], TINY.vocabSize, 11), simTrainDevice(16 << 20));
  });
}

/** The tiny model as MoC: F = 36 channels, 12 kept a row (K = F/3, not a multiple of 8), Top-K or 4 of every 12. */
const TINY_MOC_SELECTIONS: Record<'topK' | 'pattern', MocSelection> = { topK: { k: 12 }, pattern: { pattern: { a: 4, b: 12 } } };

// Two layers with policy none (gradients through one MoC FFN into the layer below); one layer for the
// policies that save the indices (their difference is per layer), to keep the interpreter's time down.
for (const [policy, sel, nLayers] of [['none', 'topK', 2], ['moc', 'topK', 1], ['moc-gcp', 'pattern', 1], ['moc-gcp-attn', 'topK', 1]] as [CheckpointPolicy, keyof typeof TINY_MOC_SELECTIONS, number][]) {
  test(`interpreted: tiny ${nLayers}-layer LLaMA as MoC (${sel === 'topK' ? 'K = 12 of 36' : '4:12'}), policy ${policy}: loss and every gradient equal the ref executor's, in the planned arena`, (t) => {
    const g = trainingGraph(checkpointGraph({ ...TINY, nLayers }, () => 'f32', TINY_MOC_SELECTIONS[sel]), { loss: { kind: 'cross_entropy' }, policy });
    const ops = new Set(g.nodes.map((n) => n.op));
    const moc = ['moc_select', 'moc_gather', 'moc_up', 'moc_down', 'moc_rows_grad', 'moc_scatter', ...(policy === 'none' ? [] : ['index_narrow', 'index_widen'])];
    t.deepEqual(moc.filter((op) => !ops.has(op)), [], 'the graph runs every MoC op of its policy');
    compareWithRef(t, g, randomWeights(g, 7), batch([7, 5], TINY.vocabSize, 11), simTrainDevice(16 << 20));
  });
}

// Distillation (`mocc recover`: the MoC student, policy moc-gcp) at τ = 2: the kl_div loss and its
// gradient, with the f32 teacher logits [T, 40] uploaded as a graph input in the padded layout.
test('interpreted: tiny 1-layer LLaMA as MoC (K = 12 of 36), distillation at temperature 2, policy moc-gcp: loss and every gradient equal the ref executor\'s', (t) => {
  const g = trainingGraph(checkpointGraph({ ...TINY, nLayers: 1 }, () => 'f32', TINY_MOC_SELECTIONS.topK), { loss: { kind: 'kl_div', temperature: 2 }, policy: 'moc-gcp' });
  const ops = new Set(g.nodes.map((n) => n.op));
  t.true(ops.has('kl_div') && ops.has('kl_div_grad'), 'the graph runs the distillation loss and its gradient');
  const inputs = batch([7, 5], TINY.vocabSize, 11);
  const teacher = randomFrom(12 * TINY.vocabSize, rng(13), 3);
  compareWithRef(t, g, randomWeights(g, 7), { ...inputs, [TRAIN_INPUTS.teacher]: teacher }, simTrainDevice(16 << 20));
});

test('a distillation graph\'s teacher logits are checked: f32, of shape [T, V]', (t) => {
  const g = trainingGraph(checkpointGraph({ ...TINY, nLayers: 1 }, () => 'f32', 'dense'), { loss: { kind: 'kl_div', temperature: 1 }, policy: 'none' });
  const inputs = batch([3], TINY.vocabSize, 3);
  const ex = new CudaTrainingExecutor(g, randomWeights(g, 1), 3, simTrainDevice(4 << 20));
  t.throws(() => ex.run(inputs), { message: /input %teacher_logits not given/ });
  t.throws(() => ex.run({ ...inputs, [TRAIN_INPUTS.teacher]: new Float32Array(2 * TINY.vocabSize) }), { message: /input %teacher_logits: 80 values for \[3, 40\]/ });
  t.throws(() => ex.run({ ...inputs, [TRAIN_INPUTS.teacher]: new Int32Array(3 * TINY.vocabSize) }), { message: /input %teacher_logits: a Int32Array for f32 values/ });
  t.throws(() => ex.run({ ...inputs, [MODEL_INPUTS.tokens]: Float32Array.of(0, 1, 2), [TRAIN_INPUTS.teacher]: new Float32Array(3 * TINY.vocabSize) }), { message: /input %tokens: a Float32Array for i32 values/ });
});

test('the executor refuses an op without kernels before allocating, naming the node (sigmoid)', (t) => {
  const g = trainingGraph(checkpointGraph(TINY, () => 'f32', 'dense'), { loss: { kind: 'cross_entropy' }, policy: 'none' });
  // the FFN's silu as a sigmoid: an op of NOT_YET_ON_CUDA (one input, one output of the same shape)
  const withSigmoid = { ...g, nodes: g.nodes.map((n) => (n.op === 'silu' ? { ...n, op: 'sigmoid' } : n)) };
  let allocs = 0;
  const dev = simTrainDevice(1 << 20);
  const counting: TrainDevice = { ...dev, alloc: (n) => (allocs++, dev.alloc(n)) };
  t.throws(() => new CudaTrainingExecutor(withSigmoid, randomWeights(g, 1), 8, counting), { message: /training node %\S+ \(sigmoid\) is not yet on cuda/ });
  t.is(allocs, 0);
});

test('inputs out of range are refused on the host (token ids, positions past the RoPE table)', (t) => {
  const g = trainingGraph(checkpointGraph(TINY, () => 'f32', 'dense'), { loss: { kind: 'cross_entropy' }, policy: 'none' });
  const inputs = batch([3], TINY.vocabSize, 3);
  const ex = new CudaTrainingExecutor(g, randomWeights(g, 1), 3, simTrainDevice(4 << 20));
  t.throws(() => ex.run({ ...inputs, [MODEL_INPUTS.tokens]: Int32Array.of(0, 40, 1) }), { message: /token id outside the vocabulary/ });
  t.throws(() => ex.run({ ...inputs, [MODEL_INPUTS.pos]: Int32Array.of(0, 1, 3) }), { message: /position outside 0..2/ });
});

const ptxas = findPtxas();
for (const selection of ['dense', { k: 32 }] as const) {
  const what = selection === 'dense' ? 'dense' : 'MoC K = 32';
  testsNeeding(ptxasRequirement(ptxas))(`every kernel of the stories260K training graph (${what}) assembles for sm_80 and sm_90 with no local memory`, (t) => {
    const { m, g, weights } = storiesTraining(selection === 'dense' ? 'none' : 'moc-gcp', selection);
    try {
      const ex = new CudaTrainingExecutor(g, weights, 32, simTrainDevice(8 << 20));
      assertEachAssembles(t, ex.kernels);
      t.log(`${ex.kernels.length} kernels`);
    } finally {
      m.close();
    }
  });
}

for (const [selection, policy] of [['dense', 'none'], ['dense', 'gcp'], ['dense', 'gcp-attn'], [{ k: 32 }, 'none'], [{ k: 32 }, 'moc-gcp'], [{ k: 32 }, 'moc-gcp-attn']] as ['dense' | { k: number }, CheckpointPolicy][]) {
  const what = selection === 'dense' ? 'dense' : `MoC K = ${selection.k}`;
  testsNeeding(cudaDeviceRequirement())(`GPU: stories260K ${what}, 5 layers, T = 32, policy ${policy}: loss and every gradient equal the ref executor's`, (t) => {
    const { m, g, weights } = storiesTraining(policy, selection);
    try {
      compareWithRef(t, g, weights, batch([20, 12], m.spec.vocabSize, 5), cudaTrainDevice());
    } finally {
      m.close();
    }
  });
}
