// checkpoint: decides, in a training graph (autodiff.ts), which forward activations the backward
// pass reads as saved and which it recomputes, and rewrites the graph so. Policies, as the MoC paper
// names them (per token per layer, FFN values saved; d = width, F = d_ffn, K = kept channels):
//   none     every value the backward reads is saved:     dense 4F + d   MoC 4K + d, K i32 indices
//   gcp      the FFN's SiLU output S and product Z are recomputed in backward from the saved gate
//            and up values:                               dense 2F + d   MoC 2K + d, K i32 indices
//   moc      as none, indices saved in 16 bits (F ≤ 65536): MoC 4K + d values + K u16 indices
//   moc-gcp  as gcp, indices in 16 bits:                  MoC 2K + d values + K u16 indices
//            (the paper's MoC+GCP: G⊙M, U⊙M and M saved; S and Z recomputed)
// and two that also recompute the attention block (the `-attn` suffix: the same FFN policy, plus
// the attention block and the projections' norms recomputed from the saved residual stream):
//   gcp-attn      as gcp, without the FFN input x:         dense 2F       MoC 2K, K i32 indices
//   moc-gcp-attn  as moc-gcp, without the FFN input x:     MoC 2K values + K u16 indices
// moc and moc-gcp(-attn) need a MoC graph. The rest of the layer, under none / gcp / moc / moc-gcp:
// saved are each norm's input (the residual stream, 2d), the attention block's normed input (d), q
// and k after RoPE (d + d_kv), v (d_kv), the attention output (d, for W_o's gradient), the final
// norm's output and the logits; recomputed nothing (the attention softmax is never saved:
// attention_grad recomputes it). Under the -attn policies only the residual stream (2d) is saved of
// it: the attention RMSNorm, the q/k/v projections, RoPE and the attention forward are recomputed
// (attentionBlockNodes), and so is every RMSNorm whose output only feeds projections (the FFN's norm
// too; not the final norm, which feeds the logits and is read at the backward's very start).
// Rewrite: a recomputed node keeps its forward copy (marked [ckpt=recompute]), and the backward
// reads a clone `<name>.re` placed before its first backward reader, so the forward copy dies with
// its last forward reader; a clone's inputs that are recomputed too are cloned first, recursively,
// so a chain (norm → projection → RoPE → attention) lands, whole, before the first backward node of
// its layer that reads any of it, and each layer's recompute runs within that layer's backward. A
// saved index is narrowed right after moc_select and widened (`<name>.w`) before its first backward
// reader. Forward nodes whose outputs the backward reads, directly or through a clone, are
// [ckpt=save] (a narrowed index: its index_narrow, not the i32 moc_select).
// Gradients are bit-identical under every policy: recomputation runs the same kernels on the same
// values, and narrowing is exact.
import { GraphBuilder } from '../src/ir/builder.js';
import type { Graph, Node, Operand } from '../src/ir/types.js';
import { UserError } from '../src/util/errors.js';
import { forwardNodes } from './autodiff.js';
import type { Pass } from './pass.js';

export type CheckpointPolicy = 'none' | 'gcp' | 'moc' | 'moc-gcp' | 'gcp-attn' | 'moc-gcp-attn';
export const CHECKPOINT_POLICIES: readonly CheckpointPolicy[] = ['none', 'gcp', 'moc', 'moc-gcp', 'gcp-attn', 'moc-gcp-attn'];

/** What a policy does, part by part (the header's table): the one place a policy's name is read. */
export interface PolicyParts {
  /** SiLU and the product recomputed (GCP). */
  ffnRecompute: boolean;
  /** MoC indices saved in 16 bits; the policy needs a MoC graph. */
  u16Indices: boolean;
  /** The attention block and the projections' norms recomputed from the residual stream. */
  attention: boolean;
}

export function policyParts(policy: CheckpointPolicy): PolicyParts {
  return { ffnRecompute: policy.includes('gcp'), u16Indices: policy.startsWith('moc'), attention: policy.endsWith('-attn') };
}

const value = (name: string): Operand => ({ kind: 'value', name });

/** The FFN activation nodes gcp recomputes: each product Z feeding a down projection, and its SiLU (or x·sigmoid(x)). */
export function ffnActivationNodes(g: Graph, forward: Set<Node>): Set<Node> {
  const producer = new Map<string, Node>();
  for (const n of g.nodes) if (forward.has(n)) for (const o of n.outputs) producer.set(o.name, n);
  const made = (o: Operand | undefined, op: string) => (o?.kind === 'value' ? producer.get(o.name) : undefined)?.op === op ? producer.get(o!.name) : undefined;
  const out = new Set<Node>();
  for (const down of forward) {
    if (down.op !== 'linear' && down.op !== 'moc_down') continue;
    const z = made(down.inputs[0], 'mul');
    if (!z) continue;
    for (const a of z.inputs) {
      const silu = made(a, 'silu');
      if (silu) {
        out.add(z).add(silu);
        break;
      }
      const m = made(a, 'mul'); // x·sigmoid(x), as ONNX exports write SiLU
      const sig = m && m.inputs.map((i) => made(i, 'sigmoid')).find((s) => s);
      if (m && sig) {
        out.add(z).add(m).add(sig);
        break;
      }
    }
  }
  return out;
}

/**
 * The attention block's nodes the -attn policies recompute: each attention node, and back from its
 * q, k, v the RoPE and the projection (linear) that made them; and every RMSNorm whose forward readers
 * are all projections (linear, moc_up): the attention block's norm and the FFN's, not the final norm
 * (it feeds the logits). The norms' inputs, the residual stream, stay saved: the chain starts there.
 */
export function attentionBlockNodes(g: Graph, forward: Set<Node>): Set<Node> {
  const producer = new Map<string, Node>();
  const readers = new Map<string, Node[]>();
  for (const n of g.nodes) {
    if (!forward.has(n)) continue;
    for (const o of n.outputs) producer.set(o.name, n);
    for (const i of n.inputs) if (i.kind === 'value') readers.set(i.name, [...(readers.get(i.name) ?? []), n]);
  }
  const made = (o: Operand | undefined) => (o?.kind === 'value' ? producer.get(o.name) : undefined);
  const out = new Set<Node>();
  for (const att of forward) {
    if (att.op !== 'attention') continue;
    out.add(att);
    for (const qkv of att.inputs.slice(0, 3)) {
      let p = made(qkv);
      if (p?.op === 'rope') {
        out.add(p);
        p = made(p.inputs[0]);
      }
      if (p?.op === 'linear') out.add(p);
    }
  }
  const PROJECTIONS = new Set(['linear', 'moc_up']);
  for (const n of forward) {
    const rs = readers.get(n.outputs[0]!.name) ?? [];
    if (n.op === 'rmsnorm' && rs.length > 0 && rs.every((r) => PROJECTIONS.has(r.op))) out.add(n);
  }
  return out;
}

export const checkpoint: Pass<CheckpointPolicy> = {
  name: 'checkpoint',
  run(g: Graph, policy: CheckpointPolicy): Graph {
    if (!CHECKPOINT_POLICIES.includes(policy)) throw new UserError(`unknown checkpoint policy '${policy}': use ${CHECKPOINT_POLICIES.join(', ')}`);
    const forward = forwardNodes(g);
    const selects = g.nodes.filter((n) => forward.has(n) && n.op === 'moc_select');
    const parts = policyParts(policy);
    if (parts.u16Indices && selects.length === 0) throw new UserError(`checkpoint policy ${policy} needs a MoC model (convert with --k or --k-ratio); this one is dense: use ${CHECKPOINT_POLICIES.filter((p) => !policyParts(p).u16Indices).join(', ')}`);
    const recompute = new Set<Node>([
      ...(parts.ffnRecompute ? ffnActivationNodes(g, forward) : []),
      ...(parts.attention ? attentionBlockNodes(g, forward) : []),
    ]);
    const producer = new Map<string, Node>();
    for (const n of g.nodes) for (const o of n.outputs) producer.set(o.name, n);
    // Indices fit 16 bits when the channel count does (moc_select reads G [T, F]).
    const channels = (sel: Node) => {
      const gIn = sel.inputs[0]!;
      return producer.get(gIn.name)?.outputs.find((o) => o.name === gIn.name)?.type.shape[1] as number;
    };
    const narrow = new Set(parts.u16Indices ? selects.filter((n) => channels(n) <= 65536).map((n) => n.outputs[0]!.name) : []);
    const b = new GraphBuilder(g.name);
    for (const i of g.inputs) b.input(i.name, i.type);
    b.declareParams(g.params);

    // What the backward reads once rewritten: its own inputs, where a recomputed value's clone reads
    // its producer's inputs instead (recursively), so what a recompute starts from counts as saved.
    const readByBackward = new Set<string>();
    const read = (o: Operand) => {
      if (o.kind !== 'value' || readByBackward.has(o.name)) return;
      readByBackward.add(o.name);
      const p = producer.get(o.name);
      if (p && recompute.has(p)) p.inputs.forEach(read);
    };
    for (const n of g.nodes) if (!forward.has(n)) n.inputs.forEach(read);
    const replaced = new Map<string, Operand>(); // forward value → what the backward reads instead
    const narrowed = new Map<string, Operand>();
    for (const n of g.nodes) {
      if (!forward.has(n)) continue;
      // An index narrowed to u16 is saved in that form: the i32 original dies in the forward.
      const saves = n.outputs.some((o) => readByBackward.has(o.name) && !narrow.has(o.name)) && !recompute.has(n);
      b.copy({ ...n, ...(recompute.has(n) ? { ckpt: 'recompute' } : saves ? { ckpt: 'save' } : {}) });
      const idx = n.outputs[0]!.name;
      if (narrow.has(idx) && readByBackward.has(idx)) narrowed.set(idx, b.op('index_narrow', [value(idx)], {}, `${idx}.u16`, { ckpt: 'save' }));
    }
    // The backward, reading clones of recomputed values and widened indices.
    const backwardRead = (o: Operand): Operand => {
      if (o.kind !== 'value') return o;
      const done = replaced.get(o.name);
      if (done) return done;
      const n16 = narrowed.get(o.name);
      if (n16) return remember(o.name, b.op('index_widen', [n16], {}, `${o.name}.w`));
      const p = producer.get(o.name);
      if (!p || !recompute.has(p)) return o;
      const outs = b.opN(p.op, p.inputs.map(backwardRead), { ...p.attrs }, p.outputs.map((x) => `${x.name}.re`));
      p.outputs.forEach((x, i) => replaced.set(x.name, outs[i]!));
      return replaced.get(o.name)!;
    };
    const remember = (name: string, o: Operand) => (replaced.set(name, o), o);
    for (const n of g.nodes) {
      if (forward.has(n)) continue;
      b.copy({ ...n, inputs: n.inputs.map(backwardRead) });
    }
    return b.finish(g.outputs.map(value));
  },
};
