// kv-cache: derives the decode graph from a model graph. The model graph's attention(q, k, v, seq)
// is pure, over whole sequences; decoding one sequence call by call needs the keys and values of
// earlier calls. This pass makes that explicit graph state: per attention, two states
//   state %l0.k_cache : f32[C, kv_heads·hd] next %l0.k_all
//   %l0.k_all = kv_write(%l0.k_cache, %l0.k, %pos)        (v likewise)
//   %l0.attn  = kv_attention(%l0.q, %l0.k_all, %l0.v_all, %pos)
// C is the cache capacity (the model's context). The seq input goes (one sequence); pos stays, and
// must count on from the cache's fill (the caller's contract: pos = past, past+1, …).
import { GraphBuilder } from '../src/ir/builder.js';
import type { Graph, Node, Operand } from '../src/ir/types.js';
import { nodeName, single } from '../src/ir/types.js';
import { verifyGraph } from '../src/ir/verify.js';
import { MODEL_INPUTS } from '../src/model/graph-inputs.js';
import type { Pass } from './pass.js';

export interface KvCacheOptions {
  /** Rows of each cache: the most positions a session can hold. */
  capacity: number;
}

/** The decode graph of a graph: itself if it already carries state, else kvCache's rewrite of it (verified). */
export function decodeGraph(g: Graph, capacity: number): Graph {
  if (g.states.length > 0) return g;
  const d = kvCache.run(g, { capacity });
  verifyGraph(d);
  return d;
}

export const kvCache: Pass<KvCacheOptions> = {
  name: 'kv-cache',
  run(g: Graph, { capacity }: KvCacheOptions): Graph {
    if (g.states.length > 0) throw new Error(`graph ${g.name}: kv-cache expects a model graph, this one already has state`);
    const attentions = g.nodes.filter((n) => n.op === 'attention');
    const b = new GraphBuilder(g.name);
    for (const i of g.inputs) if (i.name !== MODEL_INPUTS.seq) b.input(i.name, i.type);
    const pos: Operand = { kind: 'value', name: MODEL_INPUTS.pos };
    if (attentions.length > 0 && !g.inputs.some((i) => i.name === MODEL_INPUTS.pos)) throw new Error(`graph ${g.name}: kv-cache needs the %${MODEL_INPUTS.pos} input`);
    const taken = new Set([...g.inputs.map((i) => i.name), ...g.nodes.flatMap((n) => n.outputs.map((o) => o.name))]);
    const unique = (base: string) => {
      let name = base;
      for (let i = 1; taken.has(name); i++) name = `${base}.${i}`;
      taken.add(name);
      return name;
    };
    const prefixOf = (n: Node) => {
      const name = nodeName(n);
      return name.includes('.') ? name.slice(0, name.lastIndexOf('.') + 1) : `${name}.`;
    };
    // The states first (they are read like inputs), then the nodes with each attention rewritten.
    const caches = new Map<Node, { k: Operand; v: Operand }>();
    for (const n of attentions) {
      const kvw = (n.attrs.kv_heads as number) * (n.attrs.head_dim as number);
      const type = { dtype: 'f32', shape: [capacity, kvw] } as const;
      caches.set(n, { k: b.state(unique(prefixOf(n) + 'k_cache'), type), v: b.state(unique(prefixOf(n) + 'v_cache'), type) });
    }
    b.declareParams(g.params);
    const next: Record<string, Operand> = {};
    for (const n of g.nodes) {
      if (n.inputs.some((o) => o.kind === 'value' && o.name === MODEL_INPUTS.seq) && n.op !== 'attention') {
        throw new Error(`graph ${g.name}: %${nodeName(n)} = ${n.op} reads %${MODEL_INPUTS.seq}; only attention may (a decode graph has one sequence)`);
      }
      const cache = caches.get(n);
      if (!cache) {
        b.copy(n);
        continue;
      }
      const [q, k, v] = n.inputs as [Operand, Operand, Operand];
      const kAll = b.op('kv_write', [cache.k, k, pos], {}, unique(prefixOf(n) + 'k_all'));
      const vAll = b.op('kv_write', [cache.v, v, pos], {}, unique(prefixOf(n) + 'v_all'));
      next[cache.k.name] = kAll;
      next[cache.v.name] = vAll;
      // Keeps the attention's name: later nodes read it unchanged (and program steps are named by it).
      b.op('kv_attention', [q, kAll, vAll, pos], { ...n.attrs }, single(n).name);
    }
    return b.finish(g.outputs.map((name) => ({ kind: 'value', name })), next);
  },
};
