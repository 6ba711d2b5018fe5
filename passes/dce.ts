// Dead-code elimination: drops nodes whose values reach no output, and weights no node reads.
import type { Graph } from '../src/ir/types.js';
import type { Pass } from './pass.js';

export const dce: Pass = {
  name: 'dce',
  run(g: Graph): Graph {
    const live = new Set(g.outputs);
    const liveWeights = new Set<string>();
    const kept = [];
    for (let i = g.nodes.length - 1; i >= 0; i--) {
      const n = g.nodes[i]!;
      if (!live.has(n.name)) continue;
      kept.push(n);
      for (const o of n.inputs) (o.kind === 'weight' ? liveWeights : live).add(o.name);
    }
    return { ...g, nodes: kept.reverse(), weights: g.weights.filter((w) => liveWeights.has(w.name)) };
  },
};
