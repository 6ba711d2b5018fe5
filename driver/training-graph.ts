// The training graph of a model: the pipeline from a model graph to forward + loss + backward with a
// checkpoint policy, each step verified (passes/index.ts runPipeline).
import type { Graph } from '../src/ir/types.js';
import { addLoss, lmHeadChunkRows, type LossSpec } from '../passes/loss.js';
import { autodiff } from '../passes/autodiff.js';
import { checkpoint, type CheckpointPolicy } from '../passes/checkpoint.js';
import { freeze } from '../passes/freeze.js';
import { runPipeline } from '../passes/index.js';

export interface TrainingGraphOptions {
  loss: LossSpec;
  policy: CheckpointPolicy;
  /** all | ffn | glob(s) over param names (passes/freeze.ts); default all. */
  trainable?: string;
  /**
   * Cross-entropy only: fuse the output projection with the loss (passes/loss.ts lm_head_loss), in
   * chunks of this many rows, or of lmHeadChunkRows(V) rows for `true`; default unfused.
   */
  fuseLmHead?: boolean | number;
}

/** The loss pass's options: opts.loss, with the fused chunk when opts.fuseLmHead asks for it. */
function lossSpec(model: Graph, opts: TrainingGraphOptions): LossSpec {
  if (!opts.fuseLmHead) return opts.loss;
  if (opts.loss.kind !== 'cross_entropy') throw new Error(`fuseLmHead: only the cross-entropy loss fuses with the output projection, not ${opts.loss.kind}`);
  const logits = model.nodes.find((n) => n.outputs.some((o) => o.name === model.outputs[0]));
  const V = logits?.outputs[0]!.type.shape[1];
  if (typeof V !== 'number') throw new Error(`fuseLmHead: graph ${model.name}'s output %${model.outputs[0]} has no static vocabulary width`);
  return { ...opts.loss, fusedChunkRows: opts.fuseLmHead === true ? lmHeadChunkRows(V) : opts.fuseLmHead };
}

export function trainingGraph(model: Graph, opts: TrainingGraphOptions, onStep?: (name: string, g: Graph) => void): Graph {
  return runPipeline(model, [
    { pass: freeze, options: opts.trainable ?? 'all' },
    { pass: addLoss, options: lossSpec(model, opts) },
    { pass: autodiff },
    { pass: checkpoint, options: opts.policy },
  ], onStep);
}
