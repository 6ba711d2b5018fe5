// The byte floor of a decode step at batch 1: the bytes a step must read from memory, at the copy
// bandwidth torch_ffn.py measures. Shared by decode-e2e (weights only: short contexts) and
// decode-context (weights + the KV cache read at a given context); prefill takes its weight bytes and
// FLOPs from weightBytesPerToken too.
import type { ModelSpec } from '../../src/import/spec.js';
import type { KvDType } from '../../targets/cuda/program.js';
import { elemBytes } from '../../targets/cuda/ptx/layout.js';

/** Weight bytes a token reads (bf16, or `bytesPerParam`): Q/K/V/O, the FFN with `kept` of its channels used by up and down (dFfn: dense), the logits. */
export function weightBytesPerToken(spec: ModelSpec, kept: number, bytesPerParam = 2): number {
  return bytesPerParam * (spec.nLayers * (spec.dim * (spec.nHeads + 2 * spec.nKvHeads) * spec.headDim + spec.nHeads * spec.headDim * spec.dim + spec.dim * (spec.dFfn + 2 * kept)) + spec.vocabSize * spec.dim);
}

/** KV-cache bytes a token reads when it attends to `positions` cached positions (keys and values, every layer). */
export function kvBytesPerToken(spec: ModelSpec, positions: number, dtype: KvDType): number {
  return spec.nLayers * 2 * positions * spec.nKvHeads * spec.headDim * elemBytes(dtype);
}
