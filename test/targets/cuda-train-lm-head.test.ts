// The CUDA training executor's fused loss + output projection (targets/cuda/train/ops-lm-head.ts:
// lm_head_loss / lm_head_loss_grad on blocks of chunk_rows rows) against the ref executor, whose
// fused kernels equal the unfused path bit for bit (test/train/lm-head-loss.test.ts).
// - Interpreted (CPU PTX interpreter, always): the tiny LLaMA of cuda-train-executor.test.ts (dense,
//   2 layers; and as MoC K = 12 of 36, 1 layer, policy moc-gcp), 12 rows in blocks of 5 (5, 5, 2: a
//   tail block, and dW summed over three blocks through the partial buffer). V = 40 and d = 24 are
//   multiples of 8, so padded rows are not exercised here; the same kernels' padding is covered by
//   the unfused path's tests, and stories260K (V = 512, d = 64) is also a multiple of 8.
// - ptxas (skipped without it): every kernel of the fused stories260K graph assembles for sm_80 and
//   sm_90 with no local memory.
// - GPU (skipped without one): stories260K dense none / MoC K = 32 moc-gcp, T = 32, blocks of 7 rows.
// Tolerance: cuda-train-executor.test.ts's (1e-4 of each tensor's largest |entry|), for its reasons;
// dW's sum over T is blocked here (per block in f32, then added), one more f32 reassociation.
import test from 'ava';
import type { ExecutionContext } from 'ava';
import { checkpointGraph } from '../../driver/load.js';
import { trainingGraph } from '../../driver/training-graph.js';
import type { CheckpointPolicy } from '../../passes/checkpoint.js';
import { planMemory } from '../../passes/memory-plan.js';
import type { Graph } from '../../src/ir/types.js';
import { MODEL_INPUTS } from '../../src/model/graph-inputs.js';
import { runTrainingGraph } from '../../targets/ref/train.js';
import { CudaTrainingExecutor } from '../../targets/cuda/train/executor.js';
import { cudaTrainDevice } from '../../targets/cuda/train/cuda-device.js';
import type { TrainDevice } from '../../targets/cuda/train/device.js';
import { deviceBytes } from '../../targets/cuda/train/values.js';
import { loadModel } from '../../driver/load.js';
import { modelWeights } from '../../driver/evaluate.js';
import { CHECKPOINTS } from '../helpers/fixtures.js';
import { batch, POISON, randomWeights, TINY } from '../helpers/train-tiny-model.js';
import { simTrainDevice } from '../helpers/train-sim-device.js';
import { cudaDeviceRequirement, findPtxas, ptxasRequirement, testsNeeding } from '../helpers/requires.js';
import { assertEachAssembles } from '../helpers/ptxas.js';

function compareWithRef(t: ExecutionContext, g: Graph, weights: Map<string, Float32Array>, inputs: Record<string, Int32Array>, dev: TrainDevice): void {
  t.true(g.nodes.some((n) => n.op === 'lm_head_loss_grad'), 'the graph is fused');
  t.false(g.nodes.some((n) => n.op === 'logits'), 'no [T, V] logits value');
  const T = inputs[MODEL_INPUTS.tokens]!.length;
  const ex = new CudaTrainingExecutor(g, weights, T, dev, { poison: POISON });
  try {
    t.is(ex.arenaBytes, planMemory(g, { T }, deviceBytes).arenaBytes);
    const got = ex.run(inputs).outputs;
    const want = runTrainingGraph(g, weights, inputs, T).outputs as Float32Array[];
    g.outputs.forEach((name, i) => {
      const a = got[i]!, b = want[i]!;
      let maxRef = 0, maxDiff = 0;
      for (let j = 0; j < b.length; j++) {
        maxRef = Math.max(maxRef, Math.abs(b[j]!));
        maxDiff = Math.max(maxDiff, Number.isFinite(a[j]!) ? Math.abs(a[j]! - b[j]!) : Infinity);
      }
      t.true(maxRef > 0, `${name}: the ref's tensor is not all zero`);
      t.true(maxDiff / maxRef <= 1e-4, `%${name}: max |Δ| / max |ref| = ${(maxDiff / maxRef).toExponential(2)}`);
    });
    t.log(`loss ${got[0]![0]} (ref ${want[0]![0]})`);
  } finally {
    ex.dispose();
  }
}

test('interpreted: tiny 2-layer LLaMA, fused head in blocks of 5 of 12 rows, policy none: loss and gradients equal the ref executor\'s', (t) => {
  const g = trainingGraph(checkpointGraph(TINY, () => 'f32', 'dense'), { loss: { kind: 'cross_entropy' }, policy: 'none', fuseLmHead: 5 });
  compareWithRef(t, g, randomWeights(g, 7), batch([7, 5], TINY.vocabSize, 11), simTrainDevice(16 << 20));
});

test('interpreted: tiny 1-layer LLaMA as MoC (K = 12 of 36), fused head in blocks of 5, policy moc-gcp: loss and gradients equal the ref executor\'s', (t) => {
  const g = trainingGraph(checkpointGraph({ ...TINY, nLayers: 1 }, () => 'f32', { k: 12 }), { loss: { kind: 'cross_entropy' }, policy: 'moc-gcp', fuseLmHead: 5 });
  compareWithRef(t, g, randomWeights(g, 7), batch([7, 5], TINY.vocabSize, 11), simTrainDevice(16 << 20));
});

const stories = (policy: CheckpointPolicy, selection: 'dense' | { k: number }) => {
  const m = loadModel(CHECKPOINTS.hf, { selection });
  return { m, g: trainingGraph(m.graph, { loss: { kind: 'cross_entropy' }, policy, fuseLmHead: 7 }), weights: modelWeights(m) };
};

const ptxas = findPtxas();
testsNeeding(ptxasRequirement(ptxas))('every kernel of the fused stories260K training graph assembles for sm_80 and sm_90 with no local memory', (t) => {
  const { m, g, weights } = stories('none', 'dense');
  try {
    const ex = new CudaTrainingExecutor(g, weights, 32, simTrainDevice(8 << 20));
    assertEachAssembles(t, ex.kernels);
  } finally {
    m.close();
  }
});

for (const [selection, policy] of [['dense', 'none'], [{ k: 32 }, 'moc-gcp']] as ['dense' | { k: number }, CheckpointPolicy][]) {
  testsNeeding(cudaDeviceRequirement())(`GPU: stories260K ${selection === 'dense' ? 'dense' : 'MoC K = 32'}, T = 32, policy ${policy}, fused head in blocks of 7: loss and gradients equal the ref executor's`, (t) => {
    const { m, g, weights } = stories(policy, selection);
    try {
      compareWithRef(t, g, weights, batch([20, 12], m.spec.vocabSize, 5), cudaTrainDevice());
    } finally {
      m.close();
    }
  });
}
