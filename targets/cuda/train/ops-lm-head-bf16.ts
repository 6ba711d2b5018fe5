// The CUDA training executor's bf16 tensor-core entries for the loss fused with the output projection
// (src/ir/ops-train.ts lm_head_loss / lm_head_loss_grad; the f32 entries and their block scheme are
// ops-lm-head.ts's; oracle targets/ref/lm-head-loss.ts on bf16-rounded operands). Used when the
// executor's matmul option is 'bf16' (ops.ts trainOpOf), as ops-bf16.ts's entries are for the unfused
// logits → cross_entropy path, with the same GEMMs (gemmBf16Launch: gemm-sm90.ts's wgmma where the
// device offers it, else gemm.ts's mma.sync; the kernel choice is ops-bf16.ts's alone) and the same
// loss kernels (train-loss.ts) as the f32 entries, on blocks of C = min(T, chunk_rows) rows.
//
//   W → Wh (castRows, once a node)
//   fold(state, tlogit)   per block: castRows x[r0..] → Xh;  gemm 'xwt' Xh·Whᵀ → L (f32);  ceFold(L)
//   lm_head_loss          fold;  ceFinalize → the loss
//   lm_head_loss_grad     fold;  ceFinalize → (mean, n) in scratch; then per block:
//                         castRows x[r0..] → Xh;  gemm 'xwt' → L;  ceGrad('bf16') L → dLh (bf16,
//                         its padding columns zero);  gemm 'xw' dLh·Wh → dx rows r0.. (store);
//                         gemm 'xtw' dLhᵀ·Xh → dW ('store' for the first block, 'accumulate' after:
//                         the sum over blocks in the GEMM's epilogue, no partial buffer)
//
// The block size is the graph's chunk_rows attr, chosen by the loss pass (passes/loss.ts
// lmHeadChunkRows: a multiple of 128 rows at V = 32000, 2048, so the block GEMMs are tensor-core sized).
// The gradient computes each block's logits twice (fold, then grad), as the f32 entries do. Saving the
// forward's per-row lse instead (a second lm_head_loss output) is not done: ceGrad needs each row's lse
// and the batch's counted rows n, the ref's lmHeadLossGrad would have to ignore a saved f32 lse to stay
// bit-identical to the unfused path (it recomputes softmaxRow in float64), and it touches ops-train,
// grad-rules, loss pass and ref for one GEMM of five in the head: at the 1B preset (T 16384, d 2048,
// V 32000) 2·T·d·V = 2.1 TFLOP, about 3.5 ms on gemm90 (≈ 600 TFLOP/s), under 1% of a step.
//
// Operands (ops-bf16.ts's header, "Operand roles" and "Padding"): Xh [rows, pad8(d)] and Wh [V, pad8(d)]
// are castRows copies, padding converted (W's padding is zero, the activation's finite); dLh rows are
// pad8(V) with zero padding columns (ceGrad writes them), so 'xw' (K = V) and 'xtw' (M = V) add only
// zeros from padding. The tail block's GEMMs take its rows as M ('xwt', 'xw') or K ('xtw'): rows past
// it in Xh / dLh (an earlier block's) are never read (gemm.ts zero-fills past M and K; gemm90's
// tensor maps end there).
//
// W stored bf16 (--optimizer-state bf16-params: src/train/bf16-params.ts picks the head's W, read only
// here and as a GEMM operand) is read from its own buffer, not cast (ops-bf16.ts bf16Operand): no Wh.
//
// Scratch (256-byte aligned pieces): state [T, 2] f32 | tlogit [T] f32 | (mean, n) | L [C, pad8(V)]
// f32 | Wh [V, pad8(d)] bf16 | Xh [C, pad8(d)] bf16 | dLh [C, pad8(V)] bf16 (grad only). At the 1B
// preset (V = 32000, d = 2048, C = 2048): 262 + 131 + 8 + 131 MB.
import { ceGrad, ceRowGrid, LOSS_THREADS } from '../ptx/train-loss.js';
import { pad8 } from '../ptx/layout.js';
import { ptrAdd, type DevPtr, type LaunchArg } from './device.js';
import { alignUp, bf16Operand, bf16OperandBytes, bf16RowsBytes, castBf16Launch, gemmBf16Launch } from './ops-bf16.js';
import { blocksOf, foldBlocks, foldScratch, xRows } from './ops-lm-head.js';
import type { Launch, OpContext, TrainOp } from './ops.js';

const ptr = (p: DevPtr): LaunchArg => ({ ptr: p });
const u32 = (v: number): LaunchArg => ({ u32: v });

/** The node's sizes and scratch layout (header): ops-lm-head.ts foldScratch's pieces, then Wh, Xh, dLh. */
function layout(c: OpContext) {
  const f = foldScratch(c);
  const wh = f.end, xh = wh + alignUp(bf16OperandBytes(c, 1, f.V, f.d)), dlh = xh + alignUp(bf16RowsBytes(f.C, f.d));
  return { ...f, at: { ...f.at, wh, xh, dlh }, loss: dlh, grad: dlh + bf16RowsBytes(f.C, f.V) };
}
type Layout = ReturnType<typeof layout>;

/** W as the GEMMs read it: the param itself where it is stored bf16 ('bf16-params'), else its copy Wh (one cast a node). */
const weight = (c: OpContext, l: Layout) => bf16Operand(c, 1, l.V, l.d, c.scratch(l.at.wh));

/** The block's x rows cast to Xh, then its logits L [rows, V] = Xh·Whᵀ (f32). */
function blockLogits(c: OpContext, l: Layout, r0: number, rows: number): Launch[] {
  const xh = c.scratch(l.at.xh);
  return [
    castBf16Launch(c, rows, l.d, xh, xRows(c, l, r0)),
    gemmBf16Launch('xwt', c.scratch(l.at.block), xh, weight(c, l).ptr, rows, l.V, l.d, c.wgmma),
  ];
}

/** W cast once, then every block folded and finalized into `loss` (ops-lm-head.ts foldBlocks). */
const fold = (c: OpContext, l: Layout, loss: DevPtr): Launch[] => [
  ...weight(c, l).launches,
  ...foldBlocks(c, l, loss, (r0, rows) => blockLogits(c, l, r0, rows)),
];

export const BF16_LM_HEAD_OPS: Readonly<Record<string, TrainOp>> = {
  lm_head_loss: {
    scratchBytes: (c) => layout(c).loss,
    launches: (c) => fold(c, layout(c), c.output(0)),
  },
  // inputs x, W, targets, dloss; outputs dx [T, d], dW [V, d]
  lm_head_loss_grad: {
    scratchBytes: (c) => layout(c).grad,
    launches(c) {
      const l = layout(c);
      const pair = c.scratch(l.at.pair), L = c.scratch(l.at.block), wh = weight(c, l).ptr, xh = c.scratch(l.at.xh), dlh = c.scratch(l.at.dlh);
      const out = fold(c, l, pair);
      for (const { r0, rows } of blocksOf(l)) {
        out.push(
          ...blockLogits(c, l, r0, rows),
          { kernel: ceGrad('bf16'), grid: ceRowGrid(rows), block: LOSS_THREADS, args: [ptr(dlh), ptr(L), ptr(ptrAdd(c.scratch(l.at.state), r0 * 8)), ptr(pair), ptr(c.input(3)), ptr(ptrAdd(c.input(2), r0 * 4)), u32(0), u32(l.V)] },
          gemmBf16Launch('xw', ptrAdd(c.output(0), r0 * pad8(l.d) * 4), dlh, wh, rows, l.d, l.V, c.wgmma),
          gemmBf16Launch('xtw', c.output(1), dlh, xh, l.V, l.d, rows, c.wgmma, r0 === 0 ? 'store' : 'accumulate'),
        );
      }
      return out;
    },
  },
};
