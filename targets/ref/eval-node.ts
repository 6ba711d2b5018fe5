// One node of a graph on the ref target: the op's kernel applied to its input values. The model
// session (session.ts) and the training executor (train.ts) both evaluate nodes through here.
import type { Node } from '../../src/ir/types.js';
import * as K from './kernels.js';
import * as G from './train-kernels.js';
import { lmHeadLoss, lmHeadLossGrad } from './lm-head-loss.js';
import { newFloats } from './precision.js';
import { bf16ToF32, f32ToBf16 } from '../../src/util/dtype.js';

export type Value = Float32Array | Int32Array | Uint16Array;

/** Static size of axis `axis` of the node's i-th input (params, inputs and node values have static widths). */
export type DimOf = (input: number, axis: number) => number;

function ropeParams(a: Node['attrs']): K.RopeParams {
  return {
    heads: a.heads as number, headDim: a.head_dim as number, theta: a.theta as number, style: a.style as 'half' | 'interleaved',
    ...(a.scaling === 'llama3' ? { llama3: { factor: a.factor as number, lowFreqFactor: a.low_freq_factor as number, highFreqFactor: a.high_freq_factor as number, originalMaxPos: a.original_max_pos as number } } : {}),
  };
}

/**
 * The node's output values, one per output. A node with dtype="bf16" (a cast, or an op of
 * src/ir/ops.ts BF16_OUTPUT_OPS writing bf16) rounds its f32 result to nearest even, here only:
 * bf16 values are held as the f32 numbers they are (a bf16 value is exactly an f32).
 */
export function evalNode(n: Node, ins: Value[], dim: DimOf): Value[] {
  const outs = evalF32(n, ins, dim);
  return n.attrs.dtype === 'bf16' ? outs.map((v) => Float32Array.from(v as Float32Array, (x) => bf16ToF32(f32ToBf16(x)))) : outs;
}

function evalF32(n: Node, ins: Value[], dim: DimOf): Value[] {
  const f = (i: number) => ins[i] as Float32Array;
  const a = n.attrs;
  const heads = a.heads as number, kvHeads = a.kv_heads as number, hd = a.head_dim as number;
  switch (n.op) {
    case 'split': return K.split(f(0), dim(0, 1), a.parts as number);
    case 'rmsnorm_grad': return G.rmsnormGrad(f(0), f(1), f(2), a.eps as number);
    // exactly add(acc, rmsnorm_grad's dx) (passes/matmul-accumulate.ts): the same dx, then one f32 rounding of the sum (K.add)
    case 'rmsnorm_grad_acc': {
      const [dx, dw] = G.rmsnormGrad(f(0), f(1), f(2), a.eps as number);
      return [K.add(f(3), dx), dw];
    }
    case 'lm_head_loss_grad': return lmHeadLossGrad(f(0), f(1), ins[2] as Int32Array, f(3), a.chunk_rows as number);
    case 'attention_grad': return G.attentionGrad(f(0), f(1), f(2), ins[3] as Int32Array, f(4), heads, kvHeads, hd);
    default: return [evalSingle(n, ins, dim)];
  }
}

function evalSingle(n: Node, ins: Value[], dim: DimOf): Value {
  const f = (i: number) => ins[i] as Float32Array;
  const idx = (i: number) => ins[i] as Int32Array;
  const a = n.attrs;
  const kept = n.outputs[0]!.type.shape[1] as number;
  const heads = a.heads as number, kvHeads = a.kv_heads as number, hd = a.head_dim as number;
  switch (n.op) {
    case 'embedding': return K.embedding(f(0), dim(0, 1), idx(1));
    case 'rmsnorm': return K.rmsnorm(f(0), f(1), a.eps as number);
    case 'linear': case 'logits': return K.linear(f(0), f(1), dim(1, 1));
    case 'rope': return K.ropeAt(f(0), ropeParams(a), idx(1));
    case 'attention': return K.seqAttention(f(0), f(1), f(2), idx(3), heads, kvHeads, hd);
    case 'kv_write': return K.kvWrite(f(0), f(1), idx(2));
    case 'kv_attention': return K.cachedAttention(f(0), f(1), f(2), idx(3), heads, kvHeads, hd);
    case 'silu': return K.silu(f(0));
    case 'sigmoid': return K.sigmoid(f(0));
    case 'mul': return K.mul(f(0), f(1));
    case 'add': return K.add(f(0), f(1));
    case 'transpose': return K.transpose(f(0), dim(0, 0), dim(0, 1));
    case 'moc_select': return K.mocSelect(f(0), dim(0, 1), a.k !== undefined ? { k: a.k as number } : { a: a.a as number, b: a.b as number });
    case 'moc_gather': return K.mocGather(f(0), dim(0, 1), idx(1), kept);
    case 'moc_up': return K.mocUp(f(0), f(1), dim(0, 1), idx(2), kept);
    case 'moc_down': return K.mocDown(f(0), f(1), kept, idx(2), dim(0, 1));
    // training ops (src/ir/ops-train.ts)
    case 'cross_entropy': return G.crossEntropy(f(0), idx(1));
    case 'cross_entropy_grad': return G.crossEntropyGrad(f(0), idx(1), f(2));
    case 'lm_head_loss': return lmHeadLoss(f(0), f(1), idx(2), a.chunk_rows as number);
    case 'kl_div': return G.klDiv(f(0), f(1), idx(2), a.temperature as number);
    case 'kl_div_grad': return G.klDivGrad(f(0), f(1), idx(2), f(3), a.temperature as number);
    case 'fill_like': return newFloats(ins[0]!.length).fill(a.value as number);
    case 'matmul': return G.matmul(f(0), f(1), ins[0]!.length / dim(0, 1), dim(0, 1));
    // exactly add(acc, matmul(a, b)): the same product, then one f32 rounding of the sum (K.add)
    case 'matmul_acc': return K.add(f(2), G.matmul(f(0), f(1), ins[0]!.length / dim(0, 1), dim(0, 1)));
    case 'matmul_tn': return G.matmulTn(f(0), f(1), ins[0]!.length / dim(0, 1));
    case 'embedding_grad': return G.embeddingGrad(f(0), idx(1), a.rows as number);
    case 'rope_grad': return G.ropeGrad(f(0), ropeParams(a), idx(1));
    case 'silu_grad': return G.siluGrad(f(0), f(1));
    case 'sigmoid_grad': return G.sigmoidGrad(f(0), f(1));
    case 'moc_scatter': return G.mocScatter(f(0), idx(1), dim(0, 1), a.channels as number);
    case 'moc_rows_grad': return G.mocRowsGrad(f(0), f(1), idx(2), dim(0, 1), a.rows as number);
    case 'concat': return G.concat(ins as Float32Array[], ins.map((_, i) => dim(i, 1)));
    case 'index_narrow': return G.indexNarrow(idx(0));
    case 'index_widen': return G.indexWiden(ins[0] as Uint16Array);
    case 'cast': return f(0); // rounded by evalNode (dtype="bf16")
    default: throw new Error(`ref target has no kernel for op '${n.op}'`);
  }
}
