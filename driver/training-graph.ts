// The training graph of a model: the pipeline from a model graph to forward + loss + backward with a
// checkpoint policy, each step verified (passes/index.ts runPipeline).
import type { Graph } from '../src/ir/types.js';
import { addLoss, type LossSpec } from '../passes/loss.js';
import { autodiff } from '../passes/autodiff.js';
import { checkpoint, type CheckpointPolicy } from '../passes/checkpoint.js';
import { freeze } from '../passes/freeze.js';
import { runPipeline } from '../passes/index.js';

export interface TrainingGraphOptions {
  loss: LossSpec;
  policy: CheckpointPolicy;
  /** all | ffn | glob(s) over param names (passes/freeze.ts); default all. */
  trainable?: string;
}

export function trainingGraph(model: Graph, opts: TrainingGraphOptions, onStep?: (name: string, g: Graph) => void): Graph {
  return runPipeline(model, [
    { pass: freeze, options: opts.trainable ?? 'all' },
    { pass: addLoss, options: opts.loss },
    { pass: autodiff },
    { pass: checkpoint, options: opts.policy },
  ], onStep);
}
