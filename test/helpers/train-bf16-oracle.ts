// The oracle of the CUDA training executor's bf16 matmuls (targets/cuda/train/ops-bf16.ts): the ref
// target's training run (targets/ref/train.ts runTrainingGraph, node by node through evalNode, the
// ref kernels) with the f32 operands of every linear, logits, matmul and matmul_tn (and matmul_acc's
// a and b) rounded to bf16
// (round to nearest even, src/util/dtype.ts f32ToBf16) before the ref kernel multiplies them in
// float64: the arithmetic ops-bf16.ts's castRows + tensor-core GEMM performs, up to the GEMM's f32
// accumulation. Likewise the attention operands where ops-attention-bf16.ts runs flash attention (hd
// the kernels take): q, k, v of attention, q, k, v, dy of attention_grad (their softmax probabilities'
// bf16 rounding inside the kernels is not modelled: relative 2^-9 of an output's Σ p|v|). Everything
// else is the ref's. Keeps every value (small graphs only).
import type { Graph, TensorType } from '../../src/ir/types.js';
import { evalNode, type Value } from '../../targets/ref/eval-node.js';
import { bf16ToF32, f32ToBf16 } from '../../src/util/dtype.js';
import { flashAttentionHeadDimOk } from '../../targets/cuda/ptx/flash-attention.js';

export const BF16_MATMUL_FAMILY: ReadonlySet<string> = new Set(['linear', 'logits', 'matmul', 'matmul_tn']);

/**
 * The inputs of the fused head + loss that ops-lm-head-bf16.ts casts to bf16: x and W (its dlogits'
 * bf16 rounding inside the gradient is not modelled: relative 2^-9 of each dx / dW term).
 */
const BF16_LM_HEAD_INPUTS: Readonly<Record<string, readonly number[]>> = { lm_head_loss: [0, 1], lm_head_loss_grad: [0, 1] };

/** matmul_acc (a matmul folded with an add, passes/matmul-accumulate.ts): its a and b, as matmul's; acc is added in f32. */
const BF16_ACC_INPUTS: Readonly<Record<string, readonly number[]>> = { matmul_acc: [0, 1] };

/** The inputs of attention / attention_grad that ops-attention-bf16.ts casts to bf16 (seq is not). */
const BF16_ATTENTION_INPUTS: Readonly<Record<string, readonly number[]>> = { attention: [0, 1, 2], attention_grad: [0, 1, 2, 4] };

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
    const head = BF16_LM_HEAD_INPUTS[n.op] ?? BF16_ACC_INPUTS[n.op];
    if (head) ins = ins.map((v, i) => (head.includes(i) ? roundBf16(v as Float32Array) : v));
    const att = BF16_ATTENTION_INPUTS[n.op];
    if (att && flashAttentionHeadDimOk(n.attrs.head_dim as number)) ins = ins.map((v, i) => (att.includes(i) ? roundBf16(v as Float32Array) : v));
    const outs = evalNode(n, ins, (i, axis) => {
      const o = n.inputs[i]!;
      const d = types.get(o.kind === 'param' ? `@${o.name}` : o.name)!.shape[axis]!;
      return typeof d === 'number' ? d : rows;
    });
    n.outputs.forEach((o, k) => values.set(o.name, outs[k]!));
  }
  return g.outputs.map((o) => values.get(o)!);
}

/** max|Δ|/max|want| of each of g's outputs (the loss: |Δ|/|want|), non-finite got as ∞: the end-to-end bf16 tests' measure. */
export function relErrors(g: Graph, got: Float32Array[], want: Float32Array[]): { name: string; rel: number }[] {
  return g.outputs.map((name, i) => {
    let maxRef = 0, maxDiff = 0;
    for (let j = 0; j < want[i]!.length; j++) {
      maxRef = Math.max(maxRef, Math.abs(want[i]![j]!));
      maxDiff = Math.max(maxDiff, Number.isFinite(got[i]![j]!) ? Math.abs(got[i]![j]! - want[i]![j]!) : Infinity);
    }
    return { name, rel: maxDiff / Math.max(maxRef, 1e-30) };
  });
}
