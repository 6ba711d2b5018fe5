// The fusions only the CUDA lowering makes, found by structure on the shared facts
// (targets/lowering/): CUDA has kernels for them that the WGSL target lacks — GEMVs with an RMSNorm
// prologue, a paired gate/up GEMV, MoC's fused up·down and Top-K in the gate GEMV, RoPE + KV append in the Q/K/V GEMV.
// Each finder returns what it found; lower.ts maps it to kernels.
import type { Operand } from '../../src/ir/types.js';
import type { GraphFacts, Node } from '../lowering/analysis.js';
import type { SiluMul } from '../lowering/fusion.js';

type MocUp = Required<SiluMul>['moc'];

/** The MoC silu·mul pairs (SiLU(gather)·moc_up), by the mul's name. */
export function mocUps(siluMuls: Map<string, SiluMul>): Map<string, MocUp> {
  return new Map([...siluMuls].flatMap(([mul, s]) => (s.moc ? [[mul, s.moc] as const] : [])));
}

/** A dense FFN: mul(silu(linear(x, Wg)), linear(x, Wu)), each part read once, one weight dtype: one paired GEMV. */
export function ffnPairs(f: GraphFacts, mocUp: Map<string, MocUp>): Map<string, { gate: Node; up: Node }> {
  const found = new Map<string, { gate: Node; up: Node }>();
  for (const n of f.nodes) {
    if (n.op !== 'mul' || mocUp.has(n.name)) continue;
    for (const [a, b] of [[n.inputs[0]!, n.inputs[1]!], [n.inputs[1]!, n.inputs[0]!]] as const) {
      const s = f.producer(a);
      const gate = f.producer(s?.inputs[0]), up = f.producer(b);
      if (s?.op !== 'silu' || gate?.op !== 'linear' || up?.op !== 'linear' || f.useCount(gate.name) !== 1 || f.useCount(up.name) !== 1) continue;
      const gx = gate.inputs[0]!, ux = up.inputs[0]!, gw = gate.inputs[1]!, uw = up.inputs[1]!;
      if (gx.kind !== 'value' || ux.kind !== 'value' || gx.name !== ux.name || gw.kind !== 'param' || uw.kind !== 'param' || f.weight(gw.name).dtype !== f.weight(uw.name).dtype) continue;
      found.set(n.name, { gate, up });
      break;
    }
  }
  return found;
}

/** MoC: moc_down(SiLU(gather)·moc_up, W_downᵀ, idx) with the product read once: one fused up·down launch. */
export function mocUpDowns(f: GraphFacts, mocUp: Map<string, MocUp>): Map<string, MocUp & { mul: Node }> {
  const found = new Map<string, MocUp & { mul: Node }>();
  for (const n of f.nodes) {
    if (n.op !== 'moc_down') continue;
    const m = f.producer(n.inputs[0]);
    const parts = m && mocUp.get(m.name);
    if (!parts || f.useCount(m!.name) !== 1 || n.inputs[2]!.name !== parts.up.inputs[2]!.name) continue;
    found.set(n.name, { mul: m!, gather: parts.gather, up: parts.up });
  }
  return found;
}

/**
 * Select-hint slots: a Top-K whose kept indices feed a fused up·down leaves its threshold in a
 * slot, from which the next call's up·down kernel guesses the kept channels and warms the L2 with
 * their rows while that call's Top-K runs. By the Top-K's name.
 */
export function tauSlots(f: GraphFacts, upDowns: Map<string, unknown>): Map<string, number> {
  const slots = new Map<string, number>();
  for (const downName of upDowns.keys()) {
    const select = f.producer(f.node(downName)!.inputs[2]);
    if (select?.op !== 'moc_select' || select.attrs.k === undefined || slots.has(select.name)) continue;
    slots.set(select.name, slots.size);
  }
  return slots;
}

/**
 * MoC's Top-K over a gate linear's output G (a weight's GEMV, read by the Top-K as its scores):
 * the GEMV's last block of each row can select (gate-topk.ts), where `fits(F)` says Top-K over F
 * channels fits that block. G keeps its buffer (the up projection reads it too). By the linear's name.
 */
export function gateTopks(f: GraphFacts, fits: (channels: number) => boolean): Map<string, Node> {
  const found = new Map<string, Node>();
  for (const n of f.nodes) {
    if (n.op !== 'moc_select' || n.attrs.k === undefined) continue;
    const gate = f.producer(n.inputs[0]);
    if (gate?.op !== 'linear' || gate.inputs[1]!.kind !== 'param' || gate.inputs[0]!.kind !== 'value' || found.has(gate.name) || !fits(f.width(gate))) continue;
    found.set(gate.name, n);
  }
  return found;
}

/** Attention whose q and k come straight from RoPE (same rotation, each read once): rotate both and append to the cache in one launch. */
export function ropedAttentions(f: GraphFacts): Map<string, { q: Node; k: Node }> {
  const found = new Map<string, { q: Node; k: Node }>();
  for (const n of f.nodes) {
    if (n.op !== 'attention') continue;
    const q = f.producer(n.inputs[0]), k = f.producer(n.inputs[1]);
    if (q?.op !== 'rope' || k?.op !== 'rope' || f.useCount(q.name) !== 1 || f.useCount(k.name) !== 1) continue;
    if (q.attrs.style !== k.attrs.style || q.attrs.head_dim !== k.attrs.head_dim || q.attrs.theta !== k.attrs.theta || q.attrs.scaling !== k.attrs.scaling) continue;
    if (q.inputs[0]!.kind !== 'value' || f.useCount(q.inputs[0]!.name) !== 1 || k.inputs[0]!.kind !== 'value') continue;
    found.set(n.name, { q, k });
  }
  return found;
}

/**
 * …and when q, k and v of such an attention are projections of one x (distinct linears of one
 * weight dtype, each read once), that GEMV launch can rotate q and k itself and write k and v
 * straight into the KV cache. By each linear's name: its attention and role.
 */
export function qkvProjections(f: GraphFacts, roped: Map<string, { q: Node; k: Node }>): Map<string, { attention: Node; role: 'q' | 'k' | 'v' }> {
  const found = new Map<string, { attention: Node; role: 'q' | 'k' | 'v' }>();
  for (const [an, { q, k }] of roped) {
    const attn = f.node(an)!;
    const lins = [f.producer(q.inputs[0]), f.producer(k.inputs[0]), f.producer(attn.inputs[2])];
    const [lq, lk, lv] = lins;
    if (!lq || !lk || !lv || lins.some((l) => l!.op !== 'linear' || l!.inputs[1]!.kind !== 'param' || l!.inputs[0]!.kind !== 'value' || l!.inputs[0]!.name !== lq.inputs[0]!.name || f.useCount(l!.name) !== 1)) continue;
    if (new Set(lins.map((l) => f.weight(l!.inputs[1]!.name).dtype)).size !== 1 || lq === lk || lk === lv || lq === lv) continue;
    found.set(lq.name, { attention: attn, role: 'q' }).set(lk.name, { attention: attn, role: 'k' }).set(lv.name, { attention: attn, role: 'v' });
  }
  return found;
}

export interface FoldedNorm {
  src: Operand;
  weight: Operand;
  eps: number;
}

/**
 * RMSNorms read only by GEMVs (linear and logits of a weight, and the up projections of MoC
 * silu·mul pairs), none reading the norm other than as its x: each reader normalizes x itself.
 * Also returns the readers of each value once those norms are gone (a folded norm's readers read
 * its input), which buffer reuse and residual folding must go by.
 */
export function foldedNorms(f: GraphFacts, mocUp: Map<string, MocUp>): { normOf: Map<string, FoldedNorm>; readers: (v: string) => readonly number[] } {
  const ups = new Set([...mocUp.values()].map((m) => m.up));
  const isGemvReader = (u: Node, v: string) => u.inputs[0]!.kind === 'value' && u.inputs[0]!.name === v
    && ((u.op === 'linear' || u.op === 'logits') && u.inputs[1]!.kind === 'param' || u.op === 'moc_up' && ups.has(u))
    && !u.inputs.slice(1).some((o) => o.kind === 'value' && o.name === v);
  const normOf = new Map<string, FoldedNorm>();
  const moved = new Map<string, number[]>();
  const readers = (v: string) => moved.get(v) ?? f.readers(v);
  for (const n of f.nodes) {
    if (n.op !== 'rmsnorm' || n.inputs[1]!.kind !== 'param' || n.inputs[0]!.kind !== 'value') continue;
    const rs = readers(n.name).map((i) => f.nodes[i]);
    if (rs.length === 0 || rs.some((u) => !u || !isGemvReader(u, n.name))) continue;
    normOf.set(n.name, { src: n.inputs[0]!, weight: n.inputs[1]!, eps: n.attrs.eps as number });
    const src = n.inputs[0]!.name;
    moved.set(src, [...readers(src), ...readers(n.name)].sort((a, b) => a - b));
  }
  return { normOf, readers };
}
