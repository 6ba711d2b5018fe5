// Model shapes used without a checkpoint (lowering snapshots, PTX assembly, memory benchmarks): one
// place for each, so a test and a benchmark that say "the 1B preset" mean the same model.
import type { ModelSpec } from '../import/spec.js';

/**
 * A LLaMA-1B-shaped model (as bench/gpu/make_llama_1b.py builds for the GPU benchmarks): d 2048,
 * d_ffn 5461, 24 layers, 32 heads (32 KV, head_dim 64), vocab 32000, context 2048, untied head.
 */
export const PRESET_1B: ModelSpec = {
  arch: 'llama', dim: 2048, nLayers: 24, nHeads: 32, nKvHeads: 32, headDim: 64, dFfn: 5461, vocabSize: 32000,
  normEps: 1e-5, maxSeqLen: 2048, rope: { theta: 10000, style: 'half' }, tiedEmbeddings: false, bosId: 1, eosId: 2,
};
