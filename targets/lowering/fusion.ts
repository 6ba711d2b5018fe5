// Fusion patterns both GPU lowerings look for, found by structure. Each is a fact about the graph
// (these nodes form this pattern, and no other node reads the parts a fused kernel would not
// write); whether to fuse, and into which kernel, is each target's decision.
import type { Operand } from '../../src/ir/types.js';
import type { GraphFacts, Node } from './analysis.js';

/**
 * mul(silu(a), b) (either order) with the silu read only by the mul. `moc` when it is MoC's
 * SiLU(moc_gather(G, idx)) · moc_up(x, W_up, idx): gather and up read once, with one idx.
 */
export interface SiluMul {
  silu: Node;
  other: Operand;
  moc?: { gather: Node; up: Node };
}

/** The silu·mul pairs of the graph, by the mul's name. */
export function siluMuls(f: GraphFacts): Map<string, SiluMul> {
  const found = new Map<string, SiluMul>();
  for (const n of f.nodes) {
    if (n.op !== 'mul') continue;
    for (const [a, b] of [[n.inputs[0]!, n.inputs[1]!], [n.inputs[1]!, n.inputs[0]!]] as const) {
      const silu = f.producer(a);
      if (silu?.op !== 'silu' || f.useCount(silu.name) !== 1) continue;
      const gather = f.producer(silu.inputs[0]), up = f.producer(b);
      const moc = gather?.op === 'moc_gather' && up?.op === 'moc_up' && f.useCount(gather.name) === 1 && f.useCount(up.name) === 1 && gather.inputs[1]!.name === up.inputs[2]!.name;
      found.set(n.name, { silu, other: b, ...(moc ? { moc: { gather, up } } : {}) });
      break;
    }
  }
  return found;
}

/**
 * The add that is the only reader of value v (not a graph output), and the add's other operand
 * when that is a value: the add could be folded into v's producer as a residual (its kernel adds
 * `other` while writing). Undefined otherwise, and for add(v, v).
 */
export function residualAdd(f: GraphFacts, v: string): { add: Node; other: string } | undefined {
  const r = f.readers(v);
  if (r.length !== 1 || r[0]! >= f.outputIndex) return undefined;
  const add = f.nodes[r[0]!]!;
  if (add.op !== 'add') return undefined;
  const other = add.inputs.find((o) => !(o.kind === 'value' && o.name === v));
  return other?.kind === 'value' ? { add, other: other.name } : undefined;
}
