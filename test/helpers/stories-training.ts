// stories260K (the bundled checkpoint) as a training graph with its real weights: what the CUDA
// training executor's tests run on the GPU and lay out on the CPU (launch lists, ptxas).
import { modelWeights } from '../../driver/evaluate.js';
import { loadModel } from '../../driver/load.js';
import { trainingGraph } from '../../driver/training-graph.js';
import type { CheckpointPolicy } from '../../passes/checkpoint.js';
import { CHECKPOINTS } from './fixtures.js';

/** stories260K (dense, or MoC keeping selection.k of its 768 channels), cross-entropy, under `policy`; the caller closes m. */
export function storiesTraining(policy: CheckpointPolicy, selection: { k: number } | 'dense' = 'dense') {
  const m = loadModel(CHECKPOINTS.hf, { selection });
  const g = trainingGraph(m.graph, { loss: { kind: 'cross_entropy' }, policy });
  return { m, g, weights: modelWeights(m) };
}
