// The CUDA training executor's attention on tensor cores under the bf16 matmul mode
// (TrainingExecutorOptions.matmul = 'bf16'; trainOpOf picks these entries, as ops-bf16.ts's for the
// GEMMs): FlashAttention-2 over packed sequences instead of train-attention.ts's f32 SIMT kernels.
// Semantics (src/ir/ops-train.ts, targets/ref/eval-node.ts): inputs q [T, heads·hd], k, v
// [T, kvHeads·hd], seq int32 [T]; row t attends to rows s with seq[s] = seq[t], s ≤ t; GQA head h
// reads KV head h / (heads / kvHeads); scale 1/√hd.
//
//   attention       cast k, v → bf16 (cast.ts castRows, round to nearest even) into the scratch;
//                   flash-attention.ts with seq: true → o (f32, the node's output). q is read as f32
//                   by the kernel itself, which rounds it to bf16 with the same cvt.rn (no copy needed).
//   attention_grad  cast q, k, v, dy → bf16; the forward again → o (f32) and lse [heads, T] (f32) in
//                   the scratch; flash-attention-backward.ts: pre (D[h, t] = Σ dO·O from the bf16 dy,
//                   the dO the dP = dO·Vᵀ products use, so that dP − D cancels for a row that sees only
//                   itself), dkdv → dk, dv, dq → dq (the node's outputs, f32, padded rows).
//
// Recomputing the forward inside attention_grad is FlashAttention-2's own pattern: the graph passes
// the gradient node q, k, v, seq, dy only (no o, no lse), and keeping them from the forward node
// would hold T·heads·(hd + 1)·4 bytes a layer until its backward. The recompute costs one forward
// more a backward: 2 of the backward's 7 T²-sized matmul products (S and P·V against S, dP, dV, dK
// in dkdv and S, dP, dq in dq), ≈ 2/7 more tensor-core work in this node, plus its o and lse in the
// scratch (T·pad8(heads·hd)·4 + heads·T·4 bytes).
//
// Scratch (one buffer, ops.ts scratchBytes; each piece at a 256-byte aligned offset: cp.async reads
// 16-byte chunks, and bf16 rows of pad8(width) are 16·k bytes):
//   attention       [k bf16][v bf16]
//   attention_grad  [q bf16][k bf16][v bf16][dy bf16][o f32][lse f32 heads·T][D f32 heads·T]
//
// Head dims: both kernels take hd a multiple of 8 in 8..128 (flashAttentionHeadDimOk): stories260K's
// hd 8 and the 1B preset's 64 are in. A node with another hd keeps ops.ts's f32 SIMT entry
// (bf16AttentionOpOf returns undefined for it; tested in cuda-train-bf16-attention.test.ts).
//
// Padding: the kernels read only columns < heads·hd (or kvHeads·hd) of a row, and the casts convert
// the padding columns too (finite: executor.ts keeps the arena finite), so no NaN can enter.
import type { Node } from '../../../src/ir/types.js';
import { FA_THREADS, flashAttention, flashAttentionGrid, flashAttentionHeadDimOk, type FlashAttentionSpec } from '../ptx/flash-attention.js';
import {
  FAB_PRE_THREADS, FAB_THREADS, flashAttentionBackwardDkdv, flashAttentionBackwardDkdvGrid, flashAttentionBackwardDq, flashAttentionBackwardDqGrid,
  flashAttentionBackwardPre, flashAttentionBackwardPreGrid, type FlashAttentionBackwardPreSpec, type FlashAttentionBackwardSpec,
} from '../ptx/flash-attention-backward.js';
import { pad8 } from '../ptx/layout.js';
import { castBf16Launch } from './ops-bf16.js';
import type { DevPtr, LaunchArg } from './device.js';
import type { OpContext, TrainOp } from './ops.js';

const ALIGN = 256;
const alignUp = (n: number) => Math.ceil(n / ALIGN) * ALIGN;

interface Shape { T: number; heads: number; kvHeads: number; hd: number }
const shapeOf = (c: OpContext): Shape => ({
  T: c.inDim(0, 0), heads: c.node.attrs.heads as number, kvHeads: c.node.attrs.kv_heads as number, hd: c.node.attrs.head_dim as number,
});

/** The forward kernel's spec: bf16 K, V rows, f32 o, packed sequences; lse only for the gradient's recompute. */
export const trainFlashForwardSpec = (s: Shape, lse: boolean): FlashAttentionSpec => ({ heads: s.heads, kvHeads: s.kvHeads, hd: s.hd, cache: 'bf16', out: 'f32', lse, seq: true });
export const trainFlashBackwardSpec = (s: Shape): FlashAttentionBackwardSpec => ({ heads: s.heads, kvHeads: s.kvHeads, hd: s.hd, dtype: 'bf16' });
export const trainFlashPreSpec = (s: Shape): FlashAttentionBackwardPreSpec => ({ heads: s.heads, hd: s.hd, dtype: 'bf16', o: 'f32' });

/** Byte offsets of the scratch pieces (header) and the total. */
export function attentionScratch(s: Shape) {
  const qBf16 = s.T * pad8(s.heads * s.hd) * 2, kvBf16 = s.T * pad8(s.kvHeads * s.hd) * 2;
  const k = 0, v = alignUp(kvBf16);
  const forward = { k, v, bytes: v + kvBf16 };
  const q = 0, gk = alignUp(qBf16), gv = gk + alignUp(kvBf16), dy = gv + alignUp(kvBf16), o = dy + alignUp(qBf16);
  const lse = o + alignUp(s.T * pad8(s.heads * s.hd) * 4), d = lse + alignUp(s.heads * s.T * 4);
  const grad = { q, k: gk, v: gv, dy, o, lse, d, bytes: d + s.heads * s.T * 4 };
  return { forward, grad };
}

const ptr = (p: DevPtr): LaunchArg => ({ ptr: p });
const u32 = (v: number): LaunchArg => ({ u32: v });

const attention: TrainOp = {
  scratchBytes: (c) => attentionScratch(shapeOf(c)).forward.bytes,
  launches(c) {
    const s = shapeOf(c), at = attentionScratch(s).forward, kvw = s.kvHeads * s.hd, spec = trainFlashForwardSpec(s, false);
    const kh = c.scratch(at.k), vh = c.scratch(at.v);
    return [
      castBf16Launch(c, s.T, kvw, kh, c.input(1)),
      castBf16Launch(c, s.T, kvw, vh, c.input(2)),
      { kernel: flashAttention(spec), grid: flashAttentionGrid(spec, s.T), block: FA_THREADS, args: [ptr(c.output(0)), ptr(c.input(0)), ptr(kh), ptr(vh), ptr(c.input(3)), u32(s.T)] },
    ];
  },
};

const attentionGrad: TrainOp = {
  scratchBytes: (c) => attentionScratch(shapeOf(c)).grad.bytes,
  launches(c) {
    const s = shapeOf(c), at = attentionScratch(s).grad, qw = s.heads * s.hd, kvw = s.kvHeads * s.hd;
    const [qh, kh, vh, dyh, o, lse, d] = [at.q, at.k, at.v, at.dy, at.o, at.lse, at.d].map((off) => c.scratch(off)) as [DevPtr, DevPtr, DevPtr, DevPtr, DevPtr, DevPtr, DevPtr];
    const seq = ptr(c.input(3)), T = u32(s.T);
    const fwd = trainFlashForwardSpec(s, true), bwd = trainFlashBackwardSpec(s), pre = trainFlashPreSpec(s);
    const bf16 = [qh, kh, vh, dyh].map(ptr);
    return [
      castBf16Launch(c, s.T, qw, qh, c.input(0)),
      castBf16Launch(c, s.T, kvw, kh, c.input(1)),
      castBf16Launch(c, s.T, kvw, vh, c.input(2)),
      castBf16Launch(c, s.T, qw, dyh, c.input(4)),
      // the forward again (header): o and lse into the scratch
      { kernel: flashAttention(fwd), grid: flashAttentionGrid(fwd, s.T), block: FA_THREADS, args: [ptr(o), ptr(c.input(0)), ptr(kh), ptr(vh), seq, ptr(lse), T] },
      { kernel: flashAttentionBackwardPre(pre), grid: flashAttentionBackwardPreGrid(pre, s.T), block: FAB_PRE_THREADS, args: [ptr(d), ptr(dyh), ptr(o), T] },
      { kernel: flashAttentionBackwardDkdv(bwd), grid: flashAttentionBackwardDkdvGrid(bwd, s.T), block: FAB_THREADS, args: [ptr(c.output(1)), ptr(c.output(2)), ...bf16, ptr(lse), ptr(d), seq, T] },
      { kernel: flashAttentionBackwardDq(bwd), grid: flashAttentionBackwardDqGrid(bwd, s.T), block: FAB_THREADS, args: [ptr(c.output(0)), ...bf16, ptr(lse), ptr(d), seq, T] },
    ];
  },
};

/** The bf16 entries of the attention ops (for nodes whose hd the kernels take). */
export const BF16_ATTENTION_OPS: Readonly<Record<string, TrainOp>> = { attention, attention_grad: attentionGrad };

/** Node n's bf16 attention entry, or undefined (not an attention op, or an hd the kernels do not take: ops.ts's f32 entry then). */
export function bf16AttentionOpOf(n: Node): TrainOp | undefined {
  const e = BF16_ATTENTION_OPS[n.op];
  return e && flashAttentionHeadDimOk(n.attrs.head_dim as number) ? e : undefined;
}
