// Turns weight-only computations of a graph (transpose(@w)) into stored weights, so a package holds
// each weight in the layout its kernels read (W_down as [d_ffn, d] for moc_down).
import type { Graph, Node, Operand } from '../ir/types.js';

/** How to produce a stored weight from a source tensor. */
export interface StoredWeight {
  name: string;
  from: string;
  transpose: boolean;
}

export function materializeWeightLayouts(g: Graph): { graph: Graph; stored: StoredWeight[] } {
  const renamed = new Map<string, string>(); // node name → new weight name
  const nodes: Node[] = [];
  const extra: { name: string; type: Graph['weights'][number]['type'] }[] = [];
  const stored: StoredWeight[] = g.weights.map((w) => ({ name: w.name, from: w.name, transpose: false }));
  for (const n of g.nodes) {
    if (n.op === 'transpose' && n.inputs[0]!.kind === 'weight') {
      const name = `${n.inputs[0]!.name}.t`;
      renamed.set(n.name, name);
      extra.push({ name, type: n.type });
      stored.push({ name, from: n.inputs[0]!.name, transpose: true });
      continue;
    }
    const inputs = n.inputs.map((o): Operand => (o.kind === 'value' && renamed.has(o.name) ? { kind: 'weight', name: renamed.get(o.name)! } : o));
    nodes.push({ ...n, inputs });
  }
  const weights = [...g.weights, ...extra];
  const used = new Set(nodes.flatMap((n) => n.inputs.filter((o) => o.kind === 'weight').map((o) => o.name)));
  return {
    graph: { ...g, nodes, weights: weights.filter((w) => used.has(w.name)) },
    stored: stored.filter((s) => used.has(s.name)),
  };
}
