// Plans the stored tensors of a package so each param is stored in the layout its kernels read
// (W_down as [d_ffn, d] for moc_down): a param flagged `transposed` is written transposed from the
// checkpoint's tensor under its own name (and loses the flag); a transpose(@w) node, where a pass
// left one, becomes a stored param `<w>.t`.
import type { Graph, Node, Operand, ParamDecl } from '../ir/types.js';
import { single } from '../ir/types.js';

/** How to produce a stored weight from a source tensor. */
export interface StoredWeight {
  name: string;
  from: string;
  transpose: boolean;
}

export function materializeWeightLayouts(g: Graph): { graph: Graph; stored: StoredWeight[] } {
  const renamed = new Map<string, string>(); // node output → new param name
  const nodes: Node[] = [];
  const extra: ParamDecl[] = [];
  const stored: StoredWeight[] = g.params.map((w) => ({ name: w.name, from: w.name, transpose: !!w.transposed }));
  const trainable = new Map(g.params.map((p) => [p.name, p.trainable]));
  for (const n of g.nodes) {
    if (n.op === 'transpose' && n.inputs[0]!.kind === 'param') {
      const of = n.inputs[0]!.name;
      const name = `${of}.t`;
      renamed.set(single(n).name, name);
      extra.push({ name, type: single(n).type, trainable: trainable.get(of)! });
      stored.push({ name, from: of, transpose: true });
      continue;
    }
    const inputs = n.inputs.map((o): Operand => (o.kind === 'value' && renamed.has(o.name) ? { kind: 'param', name: renamed.get(o.name)! } : o));
    nodes.push({ ...n, inputs });
  }
  const params = [...g.params.map(({ transposed: _, ...p }) => p), ...extra];
  const used = new Set(nodes.flatMap((n) => n.inputs.filter((o) => o.kind === 'param').map((o) => o.name)));
  return {
    graph: { ...g, nodes, params: params.filter((w) => used.has(w.name)) },
    stored: stored.filter((s) => used.has(s.name)),
  };
}
