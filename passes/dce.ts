// Dead-code elimination: drops nodes none of whose outputs reach a graph output, and params no node reads.
import type { Graph } from '../src/ir/types.js';
import type { Pass } from './pass.js';

export const dce: Pass = {
  name: 'dce',
  run(g: Graph): Graph {
    const live = new Set(g.outputs);
    const liveParams = new Set<string>();
    const kept = [];
    for (let i = g.nodes.length - 1; i >= 0; i--) {
      const n = g.nodes[i]!;
      if (!n.outputs.some((o) => live.has(o.name))) continue;
      kept.push(n);
      for (const o of n.inputs) (o.kind === 'param' ? liveParams : live).add(o.name);
    }
    return { ...g, nodes: kept.reverse(), params: g.params.filter((p) => liveParams.has(p.name)) };
  },
};
