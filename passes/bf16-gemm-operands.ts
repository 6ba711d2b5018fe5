// bf16-gemm-operands: for a target whose GEMMs multiply bf16 (the CUDA training executor's bf16
// matmul mode, targets/cuda/train/ops-bf16.ts), makes the f32 → bf16 rounding of the GEMMs' value
// operands explicit `cast` nodes, shared by the GEMMs near each other that read the same value.
//
// Why. Each bf16 GEMM node used to cast both its operands itself, into its scratch: the 1B preset's
// dense GCP step cast 205.6 GB a step, half of it (104 GB) values another GEMM had just cast — q, k
// and v read one normed input; a linear's dx and dW read one dy; dW re-reads the forward's input —
// and the casts were the step's largest kernel family (21%, bench/NOTES.md session 16).
//
// What it rewrites. The value operands of linear, logits, matmul and matmul_tn: GEMM_OPERANDS, those
// four ops' entries of src/train/bf16-params.ts BF16_GEMM_OPERANDS (the one table of what bf16 GEMMs
// round; its MoC and fused-head entries round inside kernels this pass does not rewrite for). Params
// are left to the ops (cast per use, or stored bf16 under 'bf16-params':
// keeping a bf16 copy of every weight from forward to backward would cost a weight-sized buffer).
// For each f32 value v, its GEMM reads are grouped, in schedule order:
//   - if every read of v is a GEMM operand (and v is not a graph output), all of them form one
//     group: v's f32 dies at the cast, and only its bf16 copy is kept (half the bytes) until the
//     last GEMM reads it, backward included;
//   - else consecutive GEMM reads at most WINDOW nodes apart form a group (the forward's q/k/v, the
//     backward's dx/dW pair), so the bf16 copy never outlives a stretch of nearby nodes while the f32
//     value lives on anyway (no copy kept from forward to backward beside it).
// A group of one read is left alone (the op casts, as before: nothing to share, and a copy in the
// arena would only move scratch bytes into the plan). Each other group gets one `cast` right before
// its first reader, named %v.bf16 (then %v.bf16.1, …), and its readers read that instead.
//
// Invariants: the result computes exactly what the input graph computes on a bf16 GEMM target (the
// ops' own cast and this cast are the same round-to-nearest-even, the GEMMs read the same bf16
// numbers), so every output is bit-identical; only the number of casts and the memory plan change.
// Node order stays a valid schedule (each cast lands after v's producer and before its readers).
import type { Graph, Node, Operand } from '../src/ir/types.js';
import { opDef } from '../src/ir/ops.js';
import type { Pass } from './pass.js';
import { BF16_GEMM_OPERANDS } from '../src/train/bf16-params.js';

/** The operand positions the matmul ops' bf16 GEMMs read as bf16 (header; matmul_acc, matmul folded with an add, reads a and b as matmul does). */
export const GEMM_OPERANDS: Readonly<Record<string, readonly number[]>> = Object.fromEntries(['linear', 'logits', 'matmul', 'matmul_acc', 'matmul_tn'].map((op) => [op, BF16_GEMM_OPERANDS[op]!]));

/** Nearby: GEMM reads of a value at most this many nodes apart share one cast (the layer's forward or backward, never both). */
export const WINDOW = 16;

interface Read {
  node: number;
  slot: number;
  gemm: boolean;
}

/** The groups of GEMM reads that share a cast (header), each in schedule order. */
export function castGroups(reads: readonly Read[], isOutput: boolean): Read[][] {
  const gemm = reads.filter((r) => r.gemm);
  if (gemm.length < 2) return [];
  if (!isOutput && gemm.length === reads.length) return [gemm];
  const groups: Read[][] = [];
  for (const r of gemm) {
    const last = groups.at(-1)?.at(-1);
    if (last && r.node - last.node <= WINDOW) groups.at(-1)!.push(r);
    else groups.push([r]);
  }
  return groups.filter((g) => g.length >= 2);
}

export const bf16GemmOperands: Pass = {
  name: 'bf16-gemm-operands',
  run(g: Graph): Graph {
    const types = new Map(g.nodes.flatMap((n) => n.outputs.map((o) => [o.name, o.type] as const)));
    for (const i of g.inputs) types.set(i.name, i.type);
    const reads = new Map<string, Read[]>();
    g.nodes.forEach((n, node) => n.inputs.forEach((o, slot) => {
      if (o.kind !== 'value' || types.get(o.name)?.dtype !== 'f32') return;
      if (!reads.has(o.name)) reads.set(o.name, []);
      reads.get(o.name)!.push({ node, slot, gemm: GEMM_OPERANDS[n.op]?.includes(slot) ?? false });
    }));
    const outputs = new Set(g.outputs);
    const taken = new Set([...types.keys(), ...g.params.map((p) => p.name)]);
    const fresh = (base: string) => {
      let name = base;
      for (let i = 1; taken.has(name); i++) name = `${base}.${i}`;
      taken.add(name);
      return name;
    };
    /** Casts to insert before node i, and the operands to replace: node → slot → the cast's value. */
    const before = new Map<number, Node[]>();
    const replace = new Map<number, Map<number, Operand>>();
    for (const [v, rs] of reads) {
      for (const group of castGroups(rs, outputs.has(v))) {
        const type = opDef('cast').infer([types.get(v)!], { dtype: 'bf16' })[0]!;
        const cast: Node = { op: 'cast', inputs: [{ kind: 'value', name: v }], attrs: { dtype: 'bf16' }, outputs: [{ name: fresh(`${v}.bf16`), type }] };
        const first = group[0]!.node;
        if (!before.has(first)) before.set(first, []);
        before.get(first)!.push(cast);
        for (const r of group) {
          if (!replace.has(r.node)) replace.set(r.node, new Map());
          replace.get(r.node)!.set(r.slot, { kind: 'value', name: cast.outputs[0]!.name });
        }
      }
    }
    const nodes = g.nodes.flatMap((n, i) => {
      const slots = replace.get(i);
      const node = slots ? { ...n, inputs: n.inputs.map((o, s) => slots.get(s) ?? o) } : n;
      return [...(before.get(i) ?? []), node];
    });
    return { ...g, nodes };
  },
};
