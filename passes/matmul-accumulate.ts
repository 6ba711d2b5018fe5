// matmul-accumulate: for a target whose GEMMs can add their product to what their output holds (the
// CUDA training executor's bf16 GEMMs, 'accumulate' epilogue: targets/cuda/train/ops-bf16.ts), folds
// `s = add(a, m)` with `m = matmul(x, w)` into one node `s = matmul_acc(x, w, a)` (src/ir/ops-train.ts),
// whose GEMM adds x·w into a's storage: the add's launch and m's buffer go.
//
// Why. Autodiff sums the gradient of a value read by several GEMMs with adds of their products: the
// attention input's dx = dq·Wq + dk·Wk + dv·Wv (two adds), the FFN input's dx = dgate·Wg + dup·Wu
// (MoC: moc_down's dup plus the gate's matmul). Each add reads two [T, d] f32 tensors and writes one
// (the 1B step's add family: 168 launches, 27 ms, bench/NOTES.md session 16); folded, the GEMM reads
// a once in its epilogue instead of writing m that the add then reads back.
//
// When it folds (every condition, else the add stays):
//   - one operand m is the output of a `matmul` whose only reader is this add (not a graph output);
//     when both operands are, m is the one whose matmul comes later (the other exists by then);
//   - the other operand a is a node's value (not a graph input: the executor uploads those), different
//     from m, whose last reader is this add and which the graph does not keep (not an output or a
//     state's next value): a dies at the add, so s may be written over it (OpDef.consumes: the
//     memory plan gives s a's storage, passes/memory-plan.ts), and a is not x or w.
//   Forward residual adds (h = x + o·Wo) do not fold: x lives on (the checkpoint keeps it, the norm
//   gradient reads it), so writing over it would need a copy, which costs what the add does.
// The fused node takes the add's place (x and w exist before the matmul, a before the add; moving the
// GEMM later keeps x and w live a few nodes longer: on the training graphs, matmul_tn reads them there
// anyway) and its output keeps the add's name, type and ckpt annotation. The matmul node goes.
//
// Invariants: the result computes the same numbers as the input on a target whose accumulate epilogue
// rounds acc + a once in f32, as add does (gemm.ts and gemm-sm90.ts: add.f32 of the accumulator and
// the loaded value; f32 addition is commutative, so `add(m, a)` folds as well); the ref target's
// matmul_acc is K.add(a, matmul(x, w)) (targets/ref/eval-node.ts). Node order stays a valid schedule.
// Only `matmul` folds: linear, logits and matmul_tn products meet no add with a dying operand on the
// training graphs (bench/NOTES.md session 17's census), so they keep one op each.
import type { Graph, Node } from '../src/ir/types.js';
import type { Pass } from './pass.js';

/** The add nodes this pass folds: add index → the index of the matmul folded into it and the operand slot of the add that is the matmul's product. */
export function foldableAdds(g: Graph): Map<number, { matmul: number; slot: number }> {
  const producer = new Map<string, number>();
  const reads = new Map<string, number>();
  const lastRead = new Map<string, number>();
  g.nodes.forEach((n, i) => {
    for (const o of n.outputs) producer.set(o.name, i);
    for (const o of n.inputs) {
      if (o.kind !== 'value') continue;
      reads.set(o.name, (reads.get(o.name) ?? 0) + 1);
      lastRead.set(o.name, i);
    }
  });
  const kept = new Set([...g.outputs, ...g.states.map((s) => s.next)]);
  const folds = new Map<number, { matmul: number; slot: number }>();
  g.nodes.forEach((n, i) => {
    if (n.op !== 'add') return;
    const product = (slot: number): number | undefined => {
      const o = n.inputs[slot]!, p = o.kind === 'value' ? producer.get(o.name) : undefined;
      return p !== undefined && g.nodes[p]!.op === 'matmul' && reads.get(o.name) === 1 && !kept.has(o.name) ? p : undefined;
    };
    const dies = (slot: number, matmul: number): boolean => {
      const o = n.inputs[slot]!;
      if (o.kind !== 'value' || producer.get(o.name) === undefined || lastRead.get(o.name) !== i || kept.has(o.name)) return false;
      return !g.nodes[matmul]!.inputs.some((x) => x.kind === 'value' && x.name === o.name) && n.inputs[1 - slot]!.name !== o.name;
    };
    const candidates = [0, 1].flatMap((slot) => {
      const p = product(slot);
      return p !== undefined && dies(1 - slot, p) ? [{ matmul: p, slot }] : [];
    });
    const pick = candidates.sort((x, y) => y.matmul - x.matmul)[0];
    if (pick) folds.set(i, pick);
  });
  return folds;
}

export const matmulAccumulate: Pass = {
  name: 'matmul-accumulate',
  run(g: Graph): Graph {
    const folds = foldableAdds(g);
    if (folds.size === 0) return g;
    const gone = new Set([...folds.values()].map((f) => f.matmul));
    const nodes = g.nodes.flatMap((n, i): Node[] => {
      if (gone.has(i)) return [];
      const f = folds.get(i);
      if (!f) return [n];
      const mm = g.nodes[f.matmul]!;
      const { op: _op, inputs: _inputs, attrs: _attrs, ...rest } = n;
      return [{ ...rest, op: 'matmul_acc', inputs: [mm.inputs[0]!, mm.inputs[1]!, n.inputs[1 - f.slot]!], attrs: {} }];
    });
    return { ...g, nodes };
  },
};
