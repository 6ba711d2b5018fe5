// Per-layer K of a graph, read off its moc_select nodes (for the manifest and `mocc inspect`).
import type { Graph } from '../ir/types.js';
import { single } from '../ir/types.js';
import type { ModelSpec } from '../import/spec.js';
import type { Manifest } from './manifest.js';

export function mocSummary(g: Graph, spec: ModelSpec): Manifest['moc'] {
  const selects = g.nodes.filter((n) => n.op === 'moc_select');
  const perLayerK = Array.from({ length: spec.nLayers }, () => spec.dFfn);
  const attention = g.nodes.filter((n) => n.op === 'attention' || n.op === 'kv_attention');
  // Attribute each selection to the layer of the last attention before it.
  for (const s of selects) {
    const pos = g.nodes.indexOf(s);
    const att = [...attention].reverse().find((a) => g.nodes.indexOf(a) < pos);
    const layer = att ? attention.indexOf(att) : selects.indexOf(s);
    perLayerK[layer] = single(s).type.shape[1] as number;
  }
  const pattern = selects.find((s) => s.attrs.a !== undefined);
  return {
    mode: selects.length === 0 ? 'dense' : pattern ? 'pattern' : 'topk',
    dFfn: spec.dFfn,
    perLayerK,
    ...(pattern ? { pattern: `${pattern.attrs.a}:${pattern.attrs.b}` } : {}),
  };
}
