// matmul-accumulate: for a target whose kernels can add their result to what their output holds (the
// CUDA training executor: its bf16 GEMMs' 'accumulate' epilogue, targets/cuda/train/ops-bf16.ts, the
// f32 SIMT matmul's and rmsnorm_grad's accumulate variants, ops.ts), folds `s = add(a, p)`, where p
// is output 0 of a producer in ACCUMULATE_FOLDS, into one node of the producer's accumulate op:
//   s = add(a, m), m = matmul(x, w)                          → s = matmul_acc(x, w, a)
//   s = add(a, dx), dx, dw = rmsnorm_grad(x, w, dy) {eps}     → s, dw = rmsnorm_grad_acc(x, w, dy, a) {eps}
// (src/ir/ops-train.ts): the fused op takes the producer's inputs and then a, which it consumes
// (OpDef.consumes: output 0 is written over a's storage, passes/memory-plan.ts); the add's launch and
// p's buffer go.
//
// Why. Autodiff sums the gradient of a value read by several nodes with adds. Those of GEMM products:
// the attention input's dx = dq·Wq + dk·Wk + dv·Wv (two adds), the FFN input's dx = dgate·Wg + dup·Wu
// (MoC: moc_down's dup plus the gate's matmul). Those of the residual stream: each norm's input x is
// also the residual, so its gradient is dh + rmsnorm_grad(x, w, dy)'s dx, where dh (the gradient
// arriving along the residual path) dies at the add: two a layer. Each add reads two [T, d] f32
// tensors and writes one (the 1B step's add family: 168 launches, 27 ms, bench/NOTES.md session 16);
// folded, the producer reads a once as it stores instead of writing p that the add then reads back.
//
// One pass with a table, not a pass per producer: when an add may fold (below), where the fused node
// goes and what it consumes are the same facts for every producer; only the op names differ. The
// file, the pass, the executor's option (TrainingExecutorOptions.matmulAccumulate) and its switch
// (MOCC_CUDA_TRAIN_MATMUL_ACC) keep the name of the first fold, matmul_acc: "matmul accumulate"
// means every add this table folds into its producer.
//
// When it folds (every condition, else the add stays):
//   - one operand p is output 0 of a node whose op is in ACCUMULATE_FOLDS, read only by this add (not
//     a graph output), and no other output of that producer is read before the add (the fused node
//     defines them at the add's place); when both operands are such, p is the one whose producer
//     comes later (the other exists by then);
//   - the other operand a is a node's value (not a graph input: the executor uploads those), different
//     from p, whose last reader is this add and which the graph does not keep (not an output or a
//     state's next value): a dies at the add, so s may be written over it; and a is not an input of
//     the producer;
//   - no producer moved past this add by another fold reads a (it would read a after s overwrote it).
//   Forward residual adds (h = x + o·Wo) do not fold: x lives on (the checkpoint keeps it, the norm
//   gradient reads it), so writing over it would need a copy, which costs what the add does.
// The fused node takes the add's place (the producer's inputs exist before it, a before the add;
// moving it later keeps its inputs live a few nodes longer: on the training graphs the add follows
// its rmsnorm_grad at once, and matmul_tn reads a matmul's operands there anyway); output 0 keeps the
// add's name, type and ckpt annotation, the other outputs the producer's. The producer node goes.
//
// Invariants: the result computes the same numbers as the input on a target whose accumulate store
// rounds a + p once in f32, as add does (gemm.ts, gemm-sm90.ts, train-matmul.ts, train-norm.ts:
// one f32 add of the loaded a and the result; f32 addition is commutative, so `add(p, a)` folds as
// well); the ref target's fused ops are K.add(a, producer's output 0) (targets/ref/eval-node.ts).
// Node order stays a valid schedule. Not folded: linear, logits and matmul_tn products meet no add
// with a dying operand on the training graphs (bench/NOTES.md session 17's census).
import type { Graph, Node } from '../src/ir/types.js';
import type { Pass } from './pass.js';

/** Producer op → its accumulate op (inputs: the producer's, then acc; output 0 written over acc, the others the producer's). */
export const ACCUMULATE_FOLDS: Readonly<Record<string, string>> = { matmul: 'matmul_acc', rmsnorm_grad: 'rmsnorm_grad_acc' };

/** An add this pass folds: the index of the producer folded into it and the operand slot of the add that is the producer's output 0. */
export interface AddFold {
  producer: number;
  slot: number;
}

/** The add nodes this pass folds: add index → its fold. */
export function foldableAdds(g: Graph): Map<number, AddFold> {
  const producer = new Map<string, number>();
  const readers = new Map<string, number[]>();
  g.nodes.forEach((n, i) => {
    for (const o of n.outputs) producer.set(o.name, i);
    for (const o of n.inputs) if (o.kind === 'value') readers.set(o.name, [...(readers.get(o.name) ?? []), i]);
  });
  const kept = new Set([...g.outputs, ...g.states.map((s) => s.next)]);
  const candidates = new Map<number, AddFold>();
  g.nodes.forEach((n, i) => {
    if (n.op !== 'add') return;
    const product = (slot: number): number | undefined => {
      const o = n.inputs[slot]!, p = o.kind === 'value' ? producer.get(o.name) : undefined;
      if (p === undefined || !(g.nodes[p]!.op in ACCUMULATE_FOLDS) || g.nodes[p]!.outputs[0]!.name !== o.name) return undefined;
      if (readers.get(o.name)!.length !== 1 || kept.has(o.name)) return undefined;
      // the producer's other outputs are defined at the add's place: none may be read before it
      return g.nodes[p]!.outputs.slice(1).every((x) => (readers.get(x.name) ?? []).every((r) => r > i)) ? p : undefined;
    };
    const dies = (slot: number, p: number): boolean => {
      const o = n.inputs[slot]!;
      if (o.kind !== 'value' || producer.get(o.name) === undefined || readers.get(o.name)!.at(-1) !== i || kept.has(o.name)) return false;
      return !g.nodes[p]!.inputs.some((x) => x.kind === 'value' && x.name === o.name) && n.inputs[1 - slot]!.name !== o.name;
    };
    const found = [0, 1].flatMap((slot) => {
      const p = product(slot);
      return p !== undefined && dies(1 - slot, p) ? [{ producer: p, slot }] : [];
    });
    const pick = found.sort((x, y) => y.producer - x.producer)[0];
    if (pick) candidates.set(i, pick);
  });
  // A producer moved from p to its add j reads its inputs at j: a fold at an add i in (p, j) must not
  // consume one of them. Dropping such a fold removes no move, so one filter leaves none.
  const moved = [...candidates].map(([j, f]) => ({ from: f.producer, to: j, reads: new Set(g.nodes[f.producer]!.inputs.flatMap((x) => (x.kind === 'value' ? [x.name] : []))) }));
  return new Map([...candidates].filter(([i, f]) => {
    const a = g.nodes[i]!.inputs[1 - f.slot]!.name;
    return !moved.some((m) => m.from < i && i < m.to && m.reads.has(a));
  }));
}

export const matmulAccumulate: Pass = {
  name: 'matmul-accumulate',
  run(g: Graph): Graph {
    const folds = foldableAdds(g);
    if (folds.size === 0) return g;
    const gone = new Set([...folds.values()].map((f) => f.producer));
    const nodes = g.nodes.flatMap((n, i): Node[] => {
      if (gone.has(i)) return [];
      const f = folds.get(i);
      if (!f) return [n];
      const p = g.nodes[f.producer]!;
      return [{ ...n, op: ACCUMULATE_FOLDS[p.op]!, inputs: [...p.inputs, n.inputs[1 - f.slot]!], attrs: p.attrs, outputs: [n.outputs[0]!, ...p.outputs.slice(1)] }];
    });
    return { ...g, nodes };
  },
};
