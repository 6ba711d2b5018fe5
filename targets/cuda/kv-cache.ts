// The element type of the CUDA target's KV cache. A 16-bit cache halves the bytes a decode step
// reads per cached position (at 2048 positions the 1B preset's f32 cache is a third of its weight
// bytes); the keys and values are rounded once when stored, the attention accumulates in f32.
import type { GraphFacts, Node } from '../lowering/analysis.js';
import type { KvDType } from './program.js';

export type KvCacheOption = KvDType | 'auto';

/**
 * The cache dtype for option `option`: as given, or 'auto': the dtype of the key and value
 * projections' weights when they are all bf16 or all f16 (the model is already that precise),
 * else f32 (f32 weights, mixed dtypes, or keys/values that do not come straight from a weight).
 */
export function kvCacheDtype(facts: GraphFacts, option: KvCacheOption = 'auto'): KvDType {
  if (option !== 'auto') return option;
  const dtypes = new Set<string>();
  for (const n of facts.nodes) {
    if (n.op !== 'attention') continue;
    for (const o of [n.inputs[1], n.inputs[2]]) dtypes.add(projectionDtype(facts, facts.producer(o)) ?? 'none');
  }
  const [only] = dtypes;
  return dtypes.size === 1 && (only === 'bf16' || only === 'f16') ? only : 'f32';
}

/** The weight dtype of the linear that produces a key or value (through its RoPE for keys). */
function projectionDtype(facts: GraphFacts, n: Node | undefined): string | undefined {
  if (n?.op === 'rope') n = facts.producer(n.inputs[0]);
  if (n?.op !== 'linear' || n.inputs[1]!.kind !== 'param') return undefined;
  return facts.weight(n.inputs[1]!.name).dtype;
}
