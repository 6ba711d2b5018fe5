// The CUDA training executor's entries for the loss fused with the output projection
// (src/ir/ops-train.ts lm_head_loss / lm_head_loss_grad; oracle targets/ref/lm-head-loss.ts): the same
// kernels as the unfused logits → cross_entropy path (gemm-f32.ts, train-loss.ts, train-matmul.ts),
// launched on blocks of C = chunk_rows rows, so only a [C, V] block of logits exists at a time — in
// the node's scratch, never in the arena. f32 (the bf16 executor option swaps in ops-lm-head-bf16.ts's
// entries, which reuse blocksOf and foldBlocks from here).
//
// Rows r0 .. r0 + c − 1 of a [T, w] value are at base + r0·pad8(w)·4 (the padded layout, values.ts),
// so a block's operands are pointer offsets; the loss kernels index rows by their CTA, so their
// per-row buffers (state, tlogit, targets) are offset by r0 the same way and their grid is the c rows.
//
//   fold(state, tlogit)   per block: gemmF32 x_blk·Wᵀ → L;  ceFold(L) into rows r0.. of state, tlogit
//   lm_head_loss          fold;  ceFinalize → the loss (mean over the counted rows of all T)
//   lm_head_loss_grad     fold;  ceFinalize → (mean, n) in scratch; then per block:
//                         gemmF32 → L;  ceGrad in place → dL;  matmulNN dL·W → dx rows r0..;
//                         matmulTN dLᵀ·x_blk → dW (first block) or → P, then dW += P (binary add)
//
// The gradient recomputes each block's logits twice (fold, then grad), as the unfused
// cross_entropy_grad folds its logits again: the forward keeps nothing but the loss (saving the
// per-row lse would spare the fold's GEMM — a third of the head's GEMM work — at the price of a
// second forward output; not done yet). dW's sum over T is blocked: per block in f32 by matmulTN,
// then the blocks added in order, so it differs from the unfused matmul_tn by f32 reassociation.
//
// Scratch (256-byte aligned pieces): state [T, 2] f32 | tlogit [T] f32 | (mean, n) | L [C, pad8(V)]
// f32 | P [V, pad8(d)] f32 (grad only, when there is more than one block).
import { gemmF32, gemmF32Grid, gemmF32Threads, GEMM_F32_DEFAULT } from '../ptx/gemm-f32.js';
import { pad8 } from '../ptx/layout.js';
import { ceFinalize, ceFinalizeGrid, ceFold, ceGrad, ceRowGrid, LOSS_THREADS } from '../ptx/train-loss.js';
import { matmulGrid, matmulNN, matmulTN, MATMUL_THREADS } from '../ptx/train-matmul.js';
import { binary } from '../ptx/train-forward.js';
import { ELEMENTWISE_THREADS, mapGrid } from '../ptx/train-elementwise.js';
import { ptrAdd, type DevPtr, type LaunchArg } from './device.js';
import type { Launch, OpContext, TrainOp } from './ops.js';

const ptr = (p: DevPtr): LaunchArg => ({ ptr: p });
const u32 = (v: number): LaunchArg => ({ u32: v });
const align = (n: number) => Math.ceil(n / 256) * 256;

/**
 * The node's sizes and the scratch the loss kernels use, shared with the bf16 entries (header): state
 * [T, 2] f32 | tlogit [T] f32 | (mean, n) | L [C, pad8(V)] f32; `end`: the first byte after L, where
 * each entry's own pieces start. Inputs x [T, d], W [V, d], targets [T](, dloss).
 */
export function foldScratch(c: OpContext) {
  const T = c.inDim(0, 0), d = c.inDim(0, 1), V = c.inDim(1, 0);
  const C = Math.min(T, c.node.attrs.chunk_rows as number);
  const tlogit = align(T * 8), pair = tlogit + align(T * 4), block = pair + 256;
  return { T, d, V, C, at: { state: 0, tlogit, pair, block }, end: block + align(C * pad8(V) * 4) };
}

/** The f32 entries' layout (header): foldScratch's, then P [V, pad8(d)] f32 (grad only, more than one block). */
function layout(c: OpContext) {
  const f = foldScratch(c), partial = f.end, blocks = Math.ceil(f.T / f.C);
  return { ...f, blocks, at: { ...f.at, partial }, grad: partial + (blocks > 1 ? f.V * pad8(f.d) * 4 : 0), loss: partial };
}

/** Rows r0.. of the node's [T, d] f32 input x: the padded layout's pointer offset (header). */
export const xRows = (c: OpContext, l: { d: number }, r0: number): DevPtr => ptrAdd(c.input(0), r0 * pad8(l.d) * 4);
type Layout = ReturnType<typeof layout>;

/** Each block [r0, r0 + rows) with its row offset. */
export function* blocksOf(l: { T: number; C: number }): Generator<{ r0: number; rows: number }> {
  for (let r0 = 0; r0 < l.T; r0 += l.C) yield { r0, rows: Math.min(l.C, l.T - r0) };
}

/** gemmF32 'store' of the block's logits L [rows, V] = x[r0..]·Wᵀ (gemm-f32.ts: y, x, w, M, N, K). */
function logitsLaunch(c: OpContext, l: Layout, r0: number, rows: number): Launch {
  const s = GEMM_F32_DEFAULT;
  return { kernel: gemmF32(s), grid: gemmF32Grid(s, rows, l.V), block: gemmF32Threads(s), args: [ptr(c.scratch(l.at.block)), ptr(xRows(c, l, r0)), ptr(c.input(1)), u32(rows), u32(l.V), u32(l.d)] };
}

/** Where the loss kernels' buffers are: (state, tlogit) at these scratch offsets, the f32 logits block at `block`. */
export interface FoldLayout { T: number; C: number; V: number; at: { state: number; tlogit: number; block: number } }

/**
 * Every block's logits (the launches `logitsOf` gives for a block, ending with L [rows, V] f32 at
 * at.block) folded into (state, tlogit), then ceFinalize into `loss` (the mean, then n). Shared with
 * the bf16 entries (ops-lm-head-bf16.ts), which compute L on tensor cores.
 */
export function foldBlocks(c: OpContext, l: FoldLayout, loss: DevPtr, logitsOf: (r0: number, rows: number) => Launch[]): Launch[] {
  const state = c.scratch(l.at.state), tlogit = c.scratch(l.at.tlogit), targets = c.input(2);
  const out: Launch[] = [];
  for (const { r0, rows } of blocksOf(l)) {
    out.push(...logitsOf(r0, rows), {
      kernel: ceFold(), grid: ceRowGrid(rows), block: LOSS_THREADS,
      args: [ptr(ptrAdd(state, r0 * 8)), ptr(ptrAdd(tlogit, r0 * 4)), ptr(c.scratch(l.at.block)), ptr(ptrAdd(targets, r0 * 4)), u32(0), u32(l.V)],
    });
  }
  out.push({ kernel: ceFinalize(), grid: ceFinalizeGrid, block: LOSS_THREADS, args: [ptr(loss), ptr(state), ptr(tlogit), ptr(targets), u32(l.T)] });
  return out;
}

const fold = (c: OpContext, l: Layout, loss: DevPtr): Launch[] => foldBlocks(c, l, loss, (r0, rows) => [logitsLaunch(c, l, r0, rows)]);

export const LM_HEAD_OPS: Readonly<Record<string, TrainOp>> = {
  lm_head_loss: {
    scratchBytes: (c) => layout(c).loss,
    launches: (c) => fold(c, layout(c), c.output(0)),
  },
  // inputs x, W, targets, dloss; outputs dx [T, d], dW [V, d]
  lm_head_loss_grad: {
    scratchBytes: (c) => layout(c).grad,
    launches(c) {
      const l = layout(c);
      const pair = c.scratch(l.at.pair), L = c.scratch(l.at.block), P = c.scratch(l.at.partial);
      const out = fold(c, l, pair);
      for (const { r0, rows } of blocksOf(l)) {
        const xBlk = xRows(c, l, r0), first = r0 === 0;
        out.push(
          logitsLaunch(c, l, r0, rows),
          { kernel: ceGrad('f32'), grid: ceRowGrid(rows), block: LOSS_THREADS, args: [ptr(L), ptr(L), ptr(ptrAdd(c.scratch(l.at.state), r0 * 8)), ptr(pair), ptr(c.input(3)), ptr(ptrAdd(c.input(2), r0 * 4)), u32(0), u32(l.V)] },
          { kernel: matmulNN(l.V, l.d), grid: matmulGrid(rows, l.d), block: MATMUL_THREADS, args: [ptr(ptrAdd(c.output(0), r0 * pad8(l.d) * 4)), ptr(L), ptr(c.input(1)), u32(l.V)] },
          { kernel: matmulTN(l.V, l.d), grid: matmulGrid(l.V, l.d), block: MATMUL_THREADS, args: [ptr(first ? c.output(1) : P), ptr(L), ptr(xBlk), u32(rows)] },
        );
        if (!first) out.push({ kernel: binary('add', l.d), grid: mapGrid(l.d, l.V), block: ELEMENTWISE_THREADS, args: [ptr(c.output(1)), ptr(c.output(1)), ptr(P)] });
      }
      return out;
    },
  },
};
