// stories260K (the bundled checkpoint) as a training graph with its real weights: what the CUDA
// training executor's tests run on the GPU and lay out on the CPU (launch lists, ptxas).
import { modelWeights } from '../../driver/evaluate.js';
import { loadModel } from '../../driver/load.js';
import { trainingGraph } from '../../driver/training-graph.js';
import type { CheckpointPolicy } from '../../passes/checkpoint.js';
import { CHECKPOINTS } from './fixtures.js';
import { CudaTrainingExecutor, type TrainingExecutorOptions } from '../../targets/cuda/train/executor.js';
import { cudaTrainDevice } from '../../targets/cuda/train/cuda-device.js';
import { sameBits } from './pass-checks.js';
import { cudaDeviceRequirement, testsNeeding } from './requires.js';
import { batch } from './train-tiny-model.js';

/** stories260K (dense, or MoC keeping selection.k of its 768 channels), cross-entropy, under `policy`; the caller closes m. */
export function storiesTraining(policy: CheckpointPolicy, selection: { k: number } | 'dense' = 'dense') {
  const m = loadModel(CHECKPOINTS.hf, { selection });
  const g = trainingGraph(m.graph, { loss: { kind: 'cross_entropy' }, policy });
  return { m, g, weights: modelWeights(m) };
}

/** A stories260K case of the executor's switch tests: [title words, selection, policy, executor options]. */
export type StoriesCase = [string, 'dense' | { k: number }, CheckpointPolicy, TrainingExecutorOptions];

/**
 * Registers one GPU test a case (skipped without a CUDA device): stories260K's loss and gradients on
 * the CUDA executor (T = 45: one batch of 20 + 25 tokens) are the same bits with `option` on and off.
 * How the passes behind those switches (shared casts, bf16 producers, accumulate folds) are checked
 * with the real GEMMs, which the PTX interpreter cannot run.
 */
export function gpuSwitchKeepsBits(title: (what: string) => string, cases: readonly StoriesCase[], option: 'castOnce' | 'bf16Producers' | 'matmulAccumulate', extra: TrainingExecutorOptions = {}): void {
  const gpu = testsNeeding(cudaDeviceRequirement());
  for (const [what, selection, policy, opts] of cases) {
    gpu(title(what), (t) => {
      const { m, g, weights } = storiesTraining(policy, selection);
      try {
        const inputs = batch([20, 25], m.spec.vocabSize, 11);
        const run = (on: boolean) => {
          const ex = new CudaTrainingExecutor(g, weights, 45, cudaTrainDevice(), { ...opts, ...extra, [option]: on });
          try {
            return ex.run(inputs).outputs;
          } finally {
            ex.dispose();
          }
        };
        sameBits(t, run(true), run(false), g.outputs);
      } finally {
        m.close();
      }
    });
  }
}
