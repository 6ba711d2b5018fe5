// swiglu-to-moc: rewrites every SwiGLU FFN  down(silu(gate(x)) ⊙ up(x))  into Mixture-of-Channels:
//   idx = moc_select(gate(x))            K largest gate pre-activations per token (or a:b groups)
//   y   = moc_down(silu(G[idx]) ⊙ moc_up(x, W_up, idx), W_down, idx)
// moc_down reads W_down as [d_ffn, d] (a kept channel is one row): the pass re-declares the W_down
// param in that layout, flagged `transposed` (the weight store holds [d, d_ffn]), so it stays one
// param — no transpose node, no second copy. A W_down param read elsewhere too keeps its layout and
// is read through transpose(@W_down) instead.
// The pattern is found by structure, not by names, so it works on any graph that contains it
// (SiLU may also appear decomposed as g ⊙ sigmoid(g), as in ONNX exports).
import { GraphBuilder } from '../src/ir/builder.js';
import type { AttrValue, Graph, Node, Operand } from '../src/ir/types.js';
import { nodeName, single } from '../src/ir/types.js';
import { UserError } from '../src/util/errors.js';
import { dce } from './dce.js';
import type { Pass } from './pass.js';

/** How many channels to keep. `k` as an array gives one K per FFN, in graph order. */
export type { MocSelection } from '../src/model/selection.js';
import type { MocSelection } from '../src/model/selection.js';

export interface SwigluMatch {
  down: Node;
  gate: Node;
  up: Node;
  x: Operand;
  /** The nodes the rewrite makes dead (for callers that report). */
  replaced: Node[];
  dFfn: number;
}

function defs(g: Graph): Map<string, Node> {
  return new Map(g.nodes.flatMap((n) => n.outputs.map((o) => [o.name, n] as const)));
}
/** The value a single-output node defines (the pattern's nodes all have one). */
const out = (n: Node) => single(n).name;

function useCounts(g: Graph): Map<string, number> {
  const uses = new Map<string, number>();
  for (const n of g.nodes) for (const o of n.inputs) if (o.kind === 'value') uses.set(o.name, (uses.get(o.name) ?? 0) + 1);
  for (const o of g.outputs) uses.set(o, (uses.get(o) ?? 0) + 1);
  return uses;
}

const sameOperand = (a: Operand, b: Operand) => a.kind === b.kind && a.name === b.name;

/** Finds every SwiGLU FFN whose intermediate values are used only inside the pattern. */
export function findSwiglu(g: Graph): SwigluMatch[] {
  const def = defs(g);
  const uses = useCounts(g);
  const producer = (o: Operand | undefined, op: string): Node | undefined => {
    if (!o || o.kind !== 'value') return undefined;
    const n = def.get(o.name);
    return n && n.op === op && n.outputs.length === 1 ? n : undefined;
  };
  const onlyUsedBy = (n: Node, count: number) => (uses.get(out(n)) ?? 0) === count;
  // silu(g) as a silu node, or as mul(g, sigmoid(g)); returns the gate linear and the nodes involved.
  const siluOf = (o: Operand): { gate: Node; nodes: Node[] } | undefined => {
    const s = producer(o, 'silu');
    if (s) {
      const gate = producer(s.inputs[0], 'linear');
      return gate && onlyUsedBy(s, 1) && onlyUsedBy(gate, 1) ? { gate, nodes: [s] } : undefined;
    }
    const m = producer(o, 'mul');
    if (!m || !onlyUsedBy(m, 1)) return undefined;
    for (const [a, b] of [[m.inputs[0]!, m.inputs[1]!], [m.inputs[1]!, m.inputs[0]!]] as const) {
      const sig = producer(b, 'sigmoid');
      const gate = producer(a, 'linear');
      if (sig && gate && sameOperand(sig.inputs[0]!, a) && onlyUsedBy(sig, 1) && onlyUsedBy(gate, 2)) return { gate, nodes: [m, sig] };
    }
    return undefined;
  };
  const found: SwigluMatch[] = [];
  for (const down of g.nodes) {
    if (down.op !== 'linear' || down.outputs.length !== 1 || down.inputs[1]!.kind !== 'param') continue;
    const prod = producer(down.inputs[0], 'mul');
    if (!prod || !onlyUsedBy(prod, 1)) continue;
    for (const [actIn, upIn] of [[prod.inputs[0]!, prod.inputs[1]!], [prod.inputs[1]!, prod.inputs[0]!]] as const) {
      const act = siluOf(actIn);
      const up = producer(upIn, 'linear');
      if (!act || !up || !onlyUsedBy(up, 1)) continue;
      const { gate } = act;
      if (gate.inputs[1]!.kind !== 'param' || up.inputs[1]!.kind !== 'param') continue;
      if (!sameOperand(gate.inputs[0]!, up.inputs[0]!)) continue;
      const dFfn = single(gate).type.shape[1];
      if (typeof dFfn !== 'number' || single(up).type.shape[1] !== dFfn) continue;
      found.push({ down, gate, up, x: gate.inputs[0]!, replaced: [prod, up, ...act.nodes], dFfn });
      break;
    }
  }
  return found;
}

/** K for `--k-ratio r`: round(r·d_ffn), but at least one channel. */
export function kFromRatio(r: number, dFfn: number): number {
  return Math.max(1, Math.round(r * dFfn));
}

/** The moc_select attributes for the i-th FFN; validates K against d_ffn. */
function selectAttrs(sel: MocSelection, i: number, count: number, dFfn: number): Record<string, AttrValue> {
  if ('pattern' in sel) {
    const { a, b } = sel.pattern;
    if (!Number.isInteger(a) || !Number.isInteger(b) || a < 1 || b < a) throw new UserError(`pattern ${a}:${b} is invalid: need whole numbers 1 ≤ a ≤ b`);
    if (b > dFfn) throw new UserError(`pattern ${a}:${b}: block size ${b} exceeds d_ffn = ${dFfn}`);
    return { a, b };
  }
  let k: number;
  if ('kRatio' in sel) {
    if (!(sel.kRatio > 0 && sel.kRatio <= 1)) throw new UserError(`--k-ratio must be in (0, 1], got ${sel.kRatio}`);
    k = kFromRatio(sel.kRatio, dFfn);
  } else if (Array.isArray(sel.k)) {
    if (sel.k.length !== count) throw new UserError(`${sel.k.length} per-layer K values given, but the graph has ${count} SwiGLU FFNs`);
    k = sel.k[i]!;
  } else {
    k = sel.k;
  }
  if (!Number.isInteger(k) || k < 1 || k > dFfn) throw new UserError(`K must be a whole number in 1..${dFfn} (d_ffn), got ${k}${count > 1 ? ` for FFN ${i}` : ''}`);
  return { k };
}

export const swigluToMoc: Pass<MocSelection> = {
  name: 'swiglu-to-moc',
  run(g: Graph, sel: MocSelection): Graph {
    const matches = findSwiglu(g);
    if (matches.length === 0) throw new UserError(`graph ${g.name}: no SwiGLU FFN (down(silu(gate(x)) * up(x))) found to convert`);
    const byDown = new Map(matches.map((m, i) => [out(m.down), { m, attrs: selectAttrs(sel, i, matches.length, m.dFfn) }]));
    // W_down params read only by their down projection change layout; others get a transpose node.
    const reads = new Map<string, number>();
    for (const n of g.nodes) for (const o of n.inputs) if (o.kind === 'param') reads.set(o.name, (reads.get(o.name) ?? 0) + 1);
    const relaid = new Set(matches.map((m) => m.down.inputs[1]!.name).filter((p) => reads.get(p) === 1));
    const b = new GraphBuilder(g.name);
    for (const i of g.inputs) b.input(i.name, i.type);
    for (const s of g.states) b.state(s.name, s.type);
    b.declareParams(g.params.map((p) => (relaid.has(p.name)
      ? { name: p.name, type: { ...p.type, shape: [p.type.shape[1]!, p.type.shape[0]!] }, trainable: p.trainable, ...(p.transposed ? {} : { transposed: true }) }
      : p)));
    for (const n of g.nodes) {
      const hit = byDown.get(nodeName(n));
      if (!hit) {
        b.copy(n);
        continue;
      }
      const { m, attrs } = hit;
      const name = out(n);
      const prefix = name.includes('.') ? name.slice(0, name.lastIndexOf('.') + 1) : '';
      const g_ = { kind: 'value', name: out(m.gate) } as const;
      const idx = b.op('moc_select', [g_], attrs, prefix + 'moc_idx');
      const gk = b.op('moc_gather', [g_, idx], {}, prefix + 'moc_gate');
      const uk = b.op('moc_up', [m.x, m.up.inputs[1]!, idx], {}, prefix + 'moc_up');
      const z = b.op('mul', [b.op('silu', [gk], {}, prefix + 'moc_act'), uk], {}, prefix + 'moc_z');
      const wd = n.inputs[1]!;
      const wdT = relaid.has(wd.name) ? wd : b.op('transpose', [wd], {}, prefix + 'w_down_t');
      // The FFN output keeps its name (it was not copied, so it is free): later nodes read it unchanged.
      b.op('moc_down', [z, wdT, idx], {}, name);
    }
    return dce.run(b.finish(g.outputs.map((name) => ({ kind: 'value', name })), Object.fromEntries(g.states.map((s) => [s.name, { kind: 'value', name: s.next }]))));
  },
};
