// checkpoint: decides, in a training graph (autodiff.ts), which forward activations the backward
// pass reads as saved and which it recomputes, and rewrites the graph so. Policies, as the MoC paper
// names them (per token per layer, FFN values saved; d = width, F = d_ffn, K = kept channels):
//   none     every value the backward reads is saved:     dense 4F + d   MoC 4K + d, K i32 indices
//   gcp      the FFN's SiLU output S and product Z are recomputed in backward from the saved gate
//            and up values:                               dense 2F + d   MoC 2K + d, K i32 indices
//   moc      as none, indices saved in 16 bits (F ≤ 65536): MoC 4K + d values + K u16 indices
//   moc-gcp  as gcp, indices in 16 bits:                  MoC 2K + d values + K u16 indices
//            (the paper's MoC+GCP: G⊙M, U⊙M and M saved; S and Z recomputed)
// moc and moc-gcp need a MoC graph. The rest of the layer is the same under every policy: saved are
// each norm's input (the residual stream), the attention block's normed input, q and k after RoPE,
// v, the attention output (for W_o's gradient), the final norm's output and the logits; recomputed
// nothing (the attention softmax is never saved: attention_grad recomputes it).
// Rewrite: a recomputed node keeps its forward copy (marked [ckpt=recompute]), and the backward
// reads a clone `<name>.re` placed before its first backward reader, so the forward copy dies with
// its last forward reader; a saved index is narrowed right after moc_select and widened (`<name>.w`)
// before its first backward reader. Forward nodes whose outputs the backward reads are [ckpt=save]
// (a narrowed index: its index_narrow, not the i32 moc_select).
// Gradients are bit-identical under every policy: recomputation runs the same kernels on the same
// values, and narrowing is exact.
import { GraphBuilder } from '../src/ir/builder.js';
import type { Graph, Node, Operand } from '../src/ir/types.js';
import { UserError } from '../src/util/errors.js';
import { forwardNodes } from './autodiff.js';
import type { Pass } from './pass.js';

export type CheckpointPolicy = 'none' | 'gcp' | 'moc' | 'moc-gcp';
export const CHECKPOINT_POLICIES: readonly CheckpointPolicy[] = ['none', 'gcp', 'moc', 'moc-gcp'];

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

export const checkpoint: Pass<CheckpointPolicy> = {
  name: 'checkpoint',
  run(g: Graph, policy: CheckpointPolicy): Graph {
    if (!CHECKPOINT_POLICIES.includes(policy)) throw new UserError(`unknown checkpoint policy '${policy}': use ${CHECKPOINT_POLICIES.join(', ')}`);
    const forward = forwardNodes(g);
    const selects = g.nodes.filter((n) => forward.has(n) && n.op === 'moc_select');
    if (policy.startsWith('moc') && selects.length === 0) throw new UserError(`checkpoint policy ${policy} needs a MoC model (convert with --k or --k-ratio); this one is dense: use none or gcp`);
    const recompute = policy === 'gcp' || policy === 'moc-gcp' ? ffnActivationNodes(g, forward) : new Set<Node>();
    const producer = new Map<string, Node>();
    for (const n of g.nodes) for (const o of n.outputs) producer.set(o.name, n);
    // Indices fit 16 bits when the channel count does (moc_select reads G [T, F]).
    const channels = (sel: Node) => {
      const gIn = sel.inputs[0]!;
      return producer.get(gIn.name)?.outputs.find((o) => o.name === gIn.name)?.type.shape[1] as number;
    };
    const narrow = new Set(policy.startsWith('moc') ? selects.filter((n) => channels(n) <= 65536).map((n) => n.outputs[0]!.name) : []);
    const b = new GraphBuilder(g.name);
    for (const i of g.inputs) b.input(i.name, i.type);
    b.declareParams(g.params);

    const readByBackward = new Set<string>();
    for (const n of g.nodes) if (!forward.has(n)) for (const o of n.inputs) if (o.kind === 'value') readByBackward.add(o.name);
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
