// The GPU lowerings run the decode graph (passes/kv-cache.ts) and read its kv_write + kv_attention as
// their device KV cache (targets/lowering/decode-view.ts): a model graph and its decode graph lower to
// the same program, and decode graphs the device cache cannot express are clear errors.
import test from 'ava';
import { buildLlamaGraph } from '../../src/import/llama-graph.js';
import type { ModelSpec } from '../../src/import/spec.js';
import type { Graph } from '../../src/ir/types.js';
import { kvCache } from '../../passes/kv-cache.js';
import { lowerToCuda } from '../../targets/cuda/lower.js';
import { lowerToWgsl } from '../../targets/wgsl/lower.js';

const SPEC: ModelSpec = {
  arch: 'llama', dim: 64, nLayers: 2, nHeads: 8, nKvHeads: 4, headDim: 8, dFfn: 172, vocabSize: 512,
  normEps: 1e-5, maxSeqLen: 256, rope: { theta: 10000, style: 'half' }, tiedEmbeddings: true, bosId: 1, eosId: 2,
};
const model = buildLlamaGraph(SPEC);
const decode = kvCache.run(model, { capacity: SPEC.maxSeqLen });

test('a model graph and its decode graph lower to the same programs', (t) => {
  t.deepEqual(lowerToCuda(decode, SPEC), lowerToCuda(model, SPEC));
  t.deepEqual(lowerToWgsl(decode, SPEC, { variant: 'gpu' }), lowerToWgsl(model, SPEC, { variant: 'gpu' }));
});

const edit = (g: Graph, f: (n: Graph['nodes'][number]) => Graph['nodes'][number]): Graph => ({ ...g, nodes: g.nodes.map(f) });

test('decode graphs the device cache cannot express are clear errors', (t) => {
  // a cache of another size than the model's context
  t.throws(() => lowerToCuda(kvCache.run(model, { capacity: 64 }), SPEC), { message: /cuda target: cannot lower %l0.attn = kv_attention: cache %l0.k_cache has 64 rows, the model's context is 256/ });
  // rope at positions other than %pos
  const shifted = edit(decode, (n) => (n.op === 'rope' ? { ...n, inputs: [n.inputs[0]!, { kind: 'value', name: 'tokens' }] } : n));
  t.throws(() => lowerToWgsl(shifted, SPEC, { variant: 'gpu' }), { message: /wgsl target: cannot lower %l0.q = rope: rope positions must be %pos/ });
  // a cache read by anything but its own append
  const peek = { ...decode, outputs: [...decode.outputs, 'l0.k_all'] };
  t.throws(() => lowerToCuda(peek, SPEC), { message: /cuda target: cannot lower/ });
});
