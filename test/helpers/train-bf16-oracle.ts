// The oracle of the CUDA training executor's bf16 matmuls (targets/cuda/train/ops-bf16.ts): the ref
// target's training run (targets/ref/train.ts runTrainingGraph, node by node through evalNode, the
// ref kernels) with the f32 operands of every linear, logits, matmul and matmul_tn rounded to bf16
// (round to nearest even, src/util/dtype.ts f32ToBf16) before the ref kernel multiplies them in
// float64: the arithmetic ops-bf16.ts's castRows + tensor-core GEMM performs, up to the GEMM's f32
// accumulation. Everything else is the ref's. Keeps every value (small graphs only).
import type { Graph, TensorType } from '../../src/ir/types.js';
import { evalNode, type Value } from '../../targets/ref/eval-node.js';
import { bf16ToF32, f32ToBf16 } from '../../src/util/dtype.js';

export const BF16_MATMUL_FAMILY: ReadonlySet<string> = new Set(['linear', 'logits', 'matmul', 'matmul_tn']);

/** x rounded to bf16 (a new array). */
export const roundBf16 = (x: Float32Array): Float32Array => x.map((v) => bf16ToF32(f32ToBf16(v)));

/** The graph's outputs (loss, then the gradients) with the matmul family's operands rounded to bf16. */
export function runTrainingGraphBf16Matmuls(g: Graph, weights: ReadonlyMap<string, Float32Array>, inputs: Record<string, Value>, rows: number): Value[] {
  const types = new Map<string, TensorType>();
  for (const i of g.inputs) types.set(i.name, i.type);
  for (const p of g.params) types.set(`@${p.name}`, p.type);
  for (const n of g.nodes) for (const o of n.outputs) types.set(o.name, o.type);
  const values = new Map<string, Value>(g.inputs.map((i) => [i.name, inputs[i.name]!]));
  for (const n of g.nodes) {
    let ins = n.inputs.map((o) => (o.kind === 'param' ? weights.get(o.name) : values.get(o.name))!);
    if (BF16_MATMUL_FAMILY.has(n.op)) ins = ins.map((v) => roundBf16(v as Float32Array));
    const outs = evalNode(n, ins, (i, axis) => {
      const o = n.inputs[i]!;
      const d = types.get(o.kind === 'param' ? `@${o.name}` : o.name)!.shape[axis]!;
      return typeof d === 'number' ? d : rows;
    });
    n.outputs.forEach((o, k) => values.set(o.name, outs[k]!));
  }
  return g.outputs.map((o) => values.get(o)!);
}
