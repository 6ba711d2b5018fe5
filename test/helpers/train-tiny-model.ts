// The tiny synthetic LLaMA and its inputs that the CUDA training tests run on the PTX interpreter
// (cuda-train-executor.test.ts, cuda-train-optimizer.test.ts): awkward sizes (dim 24, head_dim 6, GQA
// 4:2 heads, FFN 36 and kv width 12 not multiples of 8, so padded rows have padding; vocabulary 40,
// tied embeddings), random weights, packed sequences.
import type { ModelSpec } from '../../src/import/spec.js';
import type { Graph } from '../../src/ir/types.js';
import { MODEL_INPUTS, TRAIN_INPUTS } from '../../src/model/graph-inputs.js';
import { rng } from './random.js';

export const TINY: ModelSpec = {
  arch: 'llama', dim: 24, nLayers: 2, nHeads: 4, nKvHeads: 2, headDim: 6, dFfn: 36, vocabSize: 40, normEps: 1e-5, maxSeqLen: 64,
  rope: { theta: 10000, style: 'half' }, tiedEmbeddings: true, bosId: 1, eosId: 2,
};

/** Not a multiple of 4 (f32 GEMM chunks), finite, large: an element no kernel wrote shows up as a wrong value. */
export const POISON = 0x7e967699;

/** Random weights for the params of g: norms near 1, matrices ±0.3 (logits of a few units). */
export function randomWeights(g: Graph, seed: number): Map<string, Float32Array> {
  const r = rng(seed);
  return new Map(g.params.map((p) => {
    const n = p.type.shape.reduce<number>((a, d) => a * (d as number), 1);
    const norm = p.type.shape.length === 1;
    return [p.name, Float32Array.from({ length: n }, () => (norm ? 1 + 0.2 * r() : 0.3 * r()))];
  }));
}

/** Random packed sequences of the given lengths (packedInputs of tokens drawn from `seed`). */
export function batch(lengths: number[], vocab: number, seed: number): Record<string, Int32Array> {
  const r = rng(seed);
  return packedInputs(lengths.map((len) => Array.from({ length: len }, () => Math.floor(((r() + 1) / 2) * vocab))));
}

/** A training graph's inputs for these sequences packed: tokens, positions, sequence ids, next-token targets (−1 at each end). */
export function packedInputs(seqs: readonly (readonly number[])[]): Record<string, Int32Array> {
  return {
    [MODEL_INPUTS.tokens]: Int32Array.from(seqs.flat()),
    [MODEL_INPUTS.pos]: Int32Array.from(seqs.flatMap((s) => s.map((_, i) => i))),
    [MODEL_INPUTS.seq]: Int32Array.from(seqs.flatMap((s, j) => s.map(() => j))),
    [TRAIN_INPUTS.targets]: Int32Array.from(seqs.flatMap((s) => s.map((_, i) => (i + 1 < s.length ? s[i + 1]! : -1)))),
  };
}
