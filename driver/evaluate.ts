// Evaluation: mean next-token NLL (and perplexity) of a model over a text, every
// prediction counted once (src/train/batches.ts evalBatches); with a teacher, also the mean
// KL(teacher ‖ model) and how often the two agree on the most likely next token. The per-row numbers
// come from the loss kernels themselves (targets/ref/train-kernels.ts), so eval and training measure
// the same thing. The logits come from the ref target (batchLogits), or from any target's inference
// session (sessionLogits: `mocc eval --target cuda`).
import { MODEL_INPUTS } from '../src/model/graph-inputs.js';
import { forwardSync, paramF32, type ModelSession, type RunnableModel } from '../src/model/runnable.js';
import { evalBatches, type TokenBatch, type TokenData } from '../src/train/data.js';
import { crossEntropy, klDiv } from '../targets/ref/train-kernels.js';
import { runTrainingGraph } from '../targets/ref/train.js';

export interface EvalResult {
  /** Predictions counted. */
  tokens: number;
  nll: number;
  perplexity: number;
  /** With a teacher: mean KL(teacher ‖ model) in nats, and top-1 agreement in [0, 1]. */
  kl?: number;
  top1?: number;
}

export interface EvalOptions {
  /** Longest piece a document is cut into (default: the model's context, at most 256). */
  seq?: number;
  rowsPerBatch?: number;
  teacher?: RunnableModel;
  /** The model's logits [rows, V] of a batch (default: the ref target's, batchLogits with the weights given). */
  logits?: BatchLogits;
  /** The teacher's likewise (default: the ref target's). */
  teacherLogits?: BatchLogits;
  /** Called after each batch with (predictions done, total). */
  onProgress?: (done: number, total: number) => void;
}

/** The model graph's logits for a batch, on the ref target, with the given f32 weights. */
export function batchLogits(model: RunnableModel, weights: ReadonlyMap<string, Float32Array>, b: TokenBatch): Float32Array {
  const run = runTrainingGraph(model.graph, weights, { [MODEL_INPUTS.tokens]: b.tokens, [MODEL_INPUTS.pos]: b.pos, [MODEL_INPUTS.seq]: b.seq }, b.tokens.length);
  return run.outputs[0] as Float32Array;
}

/** A model's logits [rows, vocab] for every row of a batch. */
export type BatchLogits = (b: TokenBatch) => Float32Array;

/**
 * Logits of a batch from an inference session: each piece of the batch (evalBatches: consecutive rows
 * of one sequence id, positions from 0) runs alone from an empty KV cache, so every row sees exactly
 * the rows the training graph's attention lets it see. Synchronous sessions only (ref, cuda).
 */
export function sessionLogits(session: ModelSession, vocab: number): BatchLogits {
  return (b) => {
    const out = new Float32Array(b.tokens.length * vocab);
    for (let r0 = 0; r0 < b.tokens.length;) {
      let r1 = r0 + 1;
      while (r1 < b.tokens.length && b.seq[r1] === b.seq[r0]) r1++;
      if (b.pos[r0] !== 0) throw new Error(`sessionLogits: the piece at row ${r0} starts at position ${b.pos[r0]}, not 0`);
      session.reset();
      out.set(forwardSync(session, [...b.tokens.subarray(r0, r1)], 'sessionLogits'), r0 * vocab);
      r0 = r1;
    }
    return out;
  };
}

/** f32 weights of every param of a model, in each param's layout (what runTrainingGraph reads). */
export function modelWeights(model: RunnableModel): Map<string, Float32Array> {
  return new Map(model.graph.params.map((p) => [p.name, paramF32(model.weights, p)]));
}

function argmaxRow(x: Float32Array, off: number, V: number): number {
  let best = 0;
  for (let v = 1; v < V; v++) if (x[off + v]! > x[off + best]!) best = v;
  return best;
}

export function evaluate(model: RunnableModel, data: TokenData, opts: EvalOptions = {}, weights?: ReadonlyMap<string, Float32Array>): EvalResult {
  const seq = opts.seq ?? Math.min(256, model.spec.maxSeqLen);
  const batches = evalBatches(data, { seq, rowsPerBatch: opts.rowsPerBatch ?? Math.max(seq, 2048) });
  const counts = batches.map((b) => b.targets.filter((t) => t >= 0).length);
  const total = counts.reduce((s, c) => s + c, 0);
  const logitsOf = opts.logits ?? ((w) => (b: TokenBatch) => batchLogits(model, w, b))(weights ?? modelWeights(model));
  const teacher = opts.teacher;
  const teacherLogitsOf = opts.teacherLogits ?? (teacher ? ((tw) => (b: TokenBatch) => batchLogits(teacher, tw, b))(modelWeights(teacher)) : undefined);
  const V = model.spec.vocabSize;
  let n = 0, nll = 0, kl = 0, agree = 0;
  for (const [i, b] of batches.entries()) {
    const counted = counts[i]!;
    const logits = logitsOf(b);
    nll += crossEntropy(logits, b.targets)[0]! * counted;
    if (opts.teacher) {
      const t = teacherLogitsOf!(b);
      kl += klDiv(logits, t, b.targets, 1)[0]! * counted;
      b.targets.forEach((target, r) => {
        if (target >= 0 && argmaxRow(logits, r * V, V) === argmaxRow(t, r * V, V)) agree++;
      });
    }
    n += counted;
    opts.onProgress?.(n, total);
  }
  const mean = n ? nll / n : NaN;
  return { tokens: n, nll: mean, perplexity: Math.exp(mean), ...(opts.teacher ? { kl: kl / n, top1: agree / n } : {}) };
}
