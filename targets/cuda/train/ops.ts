// The CUDA training executor's op table: one entry per op of a training graph (the forward ops of
// src/ir/ops.ts and the training ops of src/ir/ops-train.ts; meanings in targets/ref/eval-node.ts),
// each saying which kernels run a node, over which grid, with which params from its operands — as
// src/ir/ops.ts has one entry per op. A kernel lands in the table with one entry; an op without an
// entry is refused by the executor before anything is allocated, naming the node.
//
// All f32 (the correctness backbone); the executor's matmul option 'bf16' swaps in ops-bf16.ts's
// tensor-core entries for linear, logits, matmul, matmul_acc and matmul_tn, and ops-attention-bf16.ts's flash
// attention for attention and attention_grad; with it, the mocMatmul option 'dense-bf16' swaps in
// ops-moc-bf16.ts's dense GEMMs for moc_up, moc_down, moc_rows_grad (trainOpOf). Values are in the
// executor's padded layout (values.ts); a node's scratch (scratchBytes) is the executor's one scratch
// buffer, valid only during the node's own launches.
import type { Node } from '../../../src/ir/types.js';
import type { Kernel } from '../ptx/dense.js';
import { gemmF32, gemmF32Grid, gemmF32Threads, GEMM_F32_DEFAULT, type GemmF32Spec } from '../ptx/gemm-f32.js';
import { pad8 } from '../ptx/layout.js';
import { ROPE_THREADS } from '../ptx/attention.js';
import { ceFinalize, ceFinalizeGrid, ceFold, ceGrad, ceRowGrid, LOSS_THREADS } from '../ptx/train-loss.js';
import { klFinalize, klFold, klGrad, KL_STATE_WORDS } from '../ptx/train-kl.js';
import { columnSum, columnSumGrid, COLUMN_SUM_THREADS, rmsnormGradGrid, rmsnormGradPartRows, rmsnormGradRows, rmsnormGradThreads, type RmsnormGradSpec } from '../ptx/train-norm.js';
import { ELEMENTWISE_THREADS, elementwiseGrid, mapGrid, ropeGrad, ropeGradGrid, siluGrad } from '../ptx/train-elementwise.js';
import { embeddingGradGrids, embeddingGradRows, embeddingGradSlots, embeddingGradSort, EMBEDDING_ROWS_THREADS, EMBEDDING_SORT_THREADS, indexCast, indexCastGrid, mocScatter, mocScatterGrid, SCATTER_THREADS } from '../ptx/train-scatter.js';
import { mocDown, mocGather, mocRowGrid, mocRowsGrad, mocRowsGradGrid, mocRowThreads, mocSelect, mocSelectGrid, mocSelectThreads, mocUp, ROWS_GRAD_PER_THREAD, ROWS_GRAD_THREADS, type MocSelectSpec } from '../ptx/train-moc.js';
import { binary, embeddingRows, fill, rmsnormRows, rmsnormRowsThreads, ropeForward, silu } from '../ptx/train-forward.js';
import { matmulGrid, matmulNN, matmulTN, MATMUL_THREADS } from '../ptx/train-matmul.js';
import { ATTENTION_THREADS, attentionForward, attentionGradKV, attentionGradQ, attentionKeyGrid, attentionRowGrid, attentionStatsBytes, attentionThreads, type TrainAttentionSpec } from '../ptx/train-attention.js';
import type { DevPtr, LaunchArg, LaunchOptions, WgmmaDevice } from './device.js';
import { checkInPlace } from './values.js';
import { BF16_MATMUL_OPS, castBf16Launch, type TrainMatmul, type TrainMocMatmul } from './ops-bf16.js';
import { bf16AttentionOpOf } from './ops-attention-bf16.js';
import { checkMocMatmul, DENSE_MOC_OPS } from './ops-moc-bf16.js';
import { LM_HEAD_OPS } from './ops-lm-head.js';
import { BF16_LM_HEAD_OPS } from './ops-lm-head-bf16.js';

/** One kernel launch of a node (shared / target: device.ts LaunchOptions, for the Hopper GEMM). */
export interface Launch extends LaunchOptions {
  kernel: Kernel;
  grid: [number, number, number];
  block: number;
  args: LaunchArg[];
}

/** What an entry sees of its node: pointers and static sizes of its operands, T bound. */
export interface OpContext {
  readonly node: Node;
  /** The row count T of this run. */
  readonly T: number;
  /** Device address of input i (a value in the arena, a param in the weights) and of output i. */
  input(i: number): DevPtr;
  /**
   * Whether input i is a param the executor stores bf16 ('bf16-params' mode: executor.ts bf16Params),
   * rows of pad8(width) bf16 with zero padding — what castRows would make of it, so a bf16 GEMM reads
   * it directly (ops-bf16.ts bf16Operand). Absent: no input is.
   */
  bf16Input?(i: number): boolean;
  output(i: number): DevPtr;
  /** Size of axis `axis` of input i / output i (T bound); axis −1 is the last. */
  inDim(i: number, axis: number): number;
  outDim(i: number, axis: number): number;
  /** The node's scratch at byte `offset` (the entry's scratchBytes say how much). */
  scratch(offset?: number): DevPtr;
  /** The (cos, sin) table (lowering/rope-table.ts) of the node's rope attrs. */
  ropeTable(): DevPtr;
  /** The device's TrainDevice.wgmma: present where the bf16 GEMMs may run on gemm-sm90.ts (ops-bf16.ts). */
  readonly wgmma?: WgmmaDevice;
}

export interface TrainOp {
  /** Scratch bytes the node needs during its launches (none if absent). */
  scratchBytes?(c: OpContext): number;
  launches(c: OpContext): Launch[];
  /**
   * The entry writes output 0 as bf16 rows (pad8(width), zero padding: castRows' layout) when the
   * node declares it bf16 (a cast; an op of src/ir/ops.ts BF16_OUTPUT_OPS with dtype="bf16",
   * passes/bf16-producers.ts). The executor refuses a bf16 output of any other entry.
   */
  bf16Output?: true;
}

const ptr = (p: DevPtr): LaunchArg => ({ ptr: p });
const u32 = (v: number): LaunchArg => ({ u32: v });
const f32 = (v: number): LaunchArg => ({ f32: v });
/** Output 0's element type as the node declares it (bf16: an entry with bf16Output runs its bf16-output kernel). */
const out0 = (c: OpContext): 'f32' | 'bf16' => (c.node.outputs[0]!.type.dtype === 'bf16' ? 'bf16' : 'f32');


/** An elementwise node over [rows, width] of output 0 (a map kernel, train-elementwise.ts mapKernel): params out, then its inputs (or `args`). */
function elementwise(kernel: (width: number) => Kernel, args: (c: OpContext) => LaunchArg[] = (c) => c.node.inputs.map((_, i) => ptr(c.input(i)))): TrainOp {
  return {
    launches(c) {
      const w = c.outDim(0, -1), rows = outRows(c);
      return [{ kernel: kernel(w), grid: mapGrid(w, rows), block: ELEMENTWISE_THREADS, args: [ptr(c.output(0)), ...args(c)] }];
    },
  };
}
/** Rows of output 0: the product of all but its last axis (T for a [T, w] activation, 1 for the loss). */
const outRows = (c: OpContext) => {
  const rank = c.node.outputs[0]!.type.shape.length;
  let r = 1;
  for (let a = 0; a < rank - 1; a++) r *= c.outDim(0, a);
  return r;
};

/** The f32 GEMM tile: at most 64 rows (a 16-row tile when M is small, so fewer zero rows are multiplied). */
const gemmSpec = (M: number): GemmF32Spec => (M <= 16 ? { bm: 16, bn: 64, tm: 4, tn: 4 } : GEMM_F32_DEFAULT);

/** linear / logits: y[T, N] = x[T, K] · W[N, K]ᵀ (gemm-f32.ts 'store'). */
const linear: TrainOp = {
  launches(c) {
    const M = c.inDim(0, 0), K = c.inDim(0, 1), N = c.inDim(1, 0);
    const s = gemmSpec(M);
    return [{ kernel: gemmF32(s), grid: gemmF32Grid(s, M, N), block: gemmF32Threads(s), args: [ptr(c.output(0)), ptr(c.input(0)), ptr(c.input(1)), u32(M), u32(N), u32(K)] }];
  },
};

const ropeAttrs = (n: Node) => ({ heads: n.attrs.heads as number, hd: n.attrs.head_dim as number, style: n.attrs.style as 'half' | 'interleaved' });

/** rope / rope_grad; `out` the output's element type (rope_grad may write bf16: ropeGrad's out). */
const rope = (kernel: (heads: number, hd: number, style: 'half' | 'interleaved', out: 'f32' | 'bf16') => Kernel): TrainOp => ({
  launches(c) {
    const { heads, hd, style } = ropeAttrs(c.node);
    return [{ kernel: kernel(heads, hd, style, out0(c)), grid: ropeGradGrid(heads, hd, style, outRows(c)), block: ROPE_THREADS, args: [ptr(c.output(0)), ptr(c.input(0)), ptr(c.ropeTable()), ptr(c.input(1))] }];
  },
});

const nextPow2 = (n: number) => 2 ** Math.ceil(Math.log2(Math.max(1, n)));

/**
 * The attention kernels' spec. Block threads: a block works through a row's visible keys (at most T)
 * in tiles of `threads`, so past nextPow2(T) threads would only idle: min(ATTENTION_THREADS,
 * nextPow2(T)), at least 32 (the interpreter, which runs idle threads too, gains most).
 */
const attentionSpec = (n: Node, T: number): TrainAttentionSpec => ({
  heads: n.attrs.heads as number, kvHeads: n.attrs.kv_heads as number, hd: n.attrs.head_dim as number,
  threads: Math.min(ATTENTION_THREADS, Math.max(32, nextPow2(T))),
});

/**
 * moc_rows_grad's block threads: enough for one tile to hold all T·K index entries
 * (ROWS_GRAD_PER_THREAD a thread) or one thread a column of d, whichever is more, in 32..ROWS_GRAD_THREADS:
 * more threads would only idle through the tile's scans.
 */
const rowsGradThreads = (entries: number, d: number) => Math.min(ROWS_GRAD_THREADS, Math.max(32, nextPow2(Math.max(Math.ceil(entries / ROWS_GRAD_PER_THREAD), d))));

/** Cross-entropy over the whole vocabulary as one slab (train-loss.ts): fold, then finalize into `loss`. */
function ceLoss(c: OpContext, loss: DevPtr): Launch[] {
  const T = c.inDim(0, 0), V = c.inDim(0, 1);
  const state = c.scratch(0), tlogit = c.scratch(T * 8);
  return [
    { kernel: ceFold(), grid: ceRowGrid(T), block: LOSS_THREADS, args: [ptr(state), ptr(tlogit), ptr(c.input(0)), ptr(c.input(1)), u32(0), u32(V)] },
    { kernel: ceFinalize(), grid: ceFinalizeGrid, block: LOSS_THREADS, args: [ptr(loss), ptr(state), ptr(tlogit), ptr(c.input(1)), u32(T)] },
  ];
}
/** ce state [T, 2], tlogit [T], the (mean, n) pair: 64-byte aligned pieces. */
const ceScratch = (T: number) => align64(T * 12) + 64;
const align64 = (n: number) => Math.ceil(n / 64) * 64;

/** Distillation over the whole vocabulary as one slab (train-kl.ts); inputs student, teacher, targets. */
function klLoss(c: OpContext, loss: DevPtr): Launch[] {
  const T = c.inDim(0, 0), V = c.inDim(0, 1), tau = f32(c.node.attrs.temperature as number);
  const state = c.scratch(0);
  return [
    { kernel: klFold(), grid: ceRowGrid(T), block: LOSS_THREADS, args: [ptr(state), ptr(c.input(0)), ptr(c.input(1)), ptr(c.input(2)), u32(0), u32(V), u32(V), tau] },
    { kernel: klFinalize(), grid: ceFinalizeGrid, block: LOSS_THREADS, args: [ptr(loss), ptr(state), ptr(c.input(2)), u32(T), tau] },
  ];
}
/** kl state [T, KL_STATE_WORDS], the (mean, n) pair: 64-byte aligned pieces. */
const klScratch = (T: number) => align64(T * 4 * KL_STATE_WORDS) + 64;

const rmsnormGradSpec = (n: Node, d: number): RmsnormGradSpec => ({ d, eps: n.attrs.eps as number });

/** rmsnorm_grad's entry (inputs x, w, dy; outputs dx, dweight); `accumulate`: rmsnorm_grad_acc's, dx added into input 3 where output 0 is stored. */
function rmsnormGradOp(accumulate: boolean): TrainOp {
  return {
    scratchBytes: (c) => rmsnormGradPartRows(rmsnormGradSpec(c.node, c.inDim(0, 1)), c.inDim(0, 0)) * pad8(c.inDim(0, 1)) * 4,
    launches(c) {
      if (accumulate) checkInPlace(c);
      const T = c.inDim(0, 0), d = c.inDim(0, 1), s = rmsnormGradSpec(c.node, d);
      return [
        { kernel: rmsnormGradRows(s, accumulate), grid: rmsnormGradGrid(s, T), block: rmsnormGradThreads(s), args: [ptr(c.output(0)), ptr(c.scratch()), ptr(c.input(0)), ptr(c.input(1)), ptr(c.input(2)), u32(T)] },
        { kernel: columnSum(d), grid: columnSumGrid(d), block: COLUMN_SUM_THREADS, args: [ptr(c.output(1)), ptr(c.scratch()), u32(rmsnormGradPartRows(s, T))] },
      ];
    },
  };
}

/** moc_select's spec from its attrs (k, or the a:b pattern) and its input's F channels. */
const mocSelectSpec = (c: OpContext): MocSelectSpec => {
  const a = c.node.attrs;
  return { F: c.inDim(0, 1), sel: a.k !== undefined ? { k: a.k as number } : { a: a.a as number, b: a.b as number } };
};

/** index_narrow / index_widen: [T, K] indices, i32 ↔ u16 (the u16 form is what a MoC policy saves). */
const indexCastOp = (dir: 'narrow' | 'widen'): TrainOp => ({
  launches(c) {
    const K = c.inDim(0, 1);
    return [{ kernel: indexCast(dir, K), grid: indexCastGrid(K, c.T), block: SCATTER_THREADS, args: [ptr(c.output(0)), ptr(c.input(0))] }];
  },
});

export const TRAIN_OPS: Readonly<Record<string, TrainOp>> = {
  embedding: {
    launches(c) {
      const d = c.outDim(0, 1), T = c.outDim(0, 0);
      return [{ kernel: embeddingRows(d), grid: elementwiseGrid(d, T), block: ELEMENTWISE_THREADS, args: [ptr(c.output(0)), ptr(c.input(0)), ptr(c.input(1))] }];
    },
  },
  rmsnorm: {
    bf16Output: true,
    launches(c) {
      const d = c.outDim(0, 1);
      return [{ kernel: rmsnormRows(d, c.node.attrs.eps as number, out0(c)), grid: [1, outRows(c), 1], block: rmsnormRowsThreads(d), args: [ptr(c.output(0)), ptr(c.input(0)), ptr(c.input(1))] }];
    },
  },
  linear,
  logits: linear,
  rope: rope(ropeForward),
  add: elementwise((w) => binary('add', w)),
  mul: elementwise((w) => binary('mul', w)),
  silu: elementwise(silu),
  fill_like: elementwise(fill, (c) => [f32(c.node.attrs.value as number)]), // reads no input: only its shape
  // inputs q, k, v, seq (train-attention.ts: one block a (row, head), the span found from seq)
  attention: {
    launches(c) {
      const T = outRows(c), s = attentionSpec(c.node, T);
      return [{ kernel: attentionForward(s), grid: attentionRowGrid(s, T), block: attentionThreads(s), args: [ptr(c.output(0)), ...[0, 1, 2, 3].map((i) => ptr(c.input(i)))] }];
    },
  },
  // inputs q, k, v, seq, dy; outputs dq, dk, dv. dq first: it leaves the softmax statistics in the
  // scratch, which the dk/dv kernel (one block a (key row, kv head), no atomics) reads.
  attention_grad: {
    scratchBytes: (c) => attentionStatsBytes(attentionSpec(c.node, c.T), c.T),
    launches(c) {
      const T = outRows(c), s = attentionSpec(c.node, T);
      const [q, k, v, seq, dy] = [0, 1, 2, 3, 4].map((i) => ptr(c.input(i))) as [LaunchArg, LaunchArg, LaunchArg, LaunchArg, LaunchArg];
      const stats = ptr(c.scratch());
      return [
        { kernel: attentionGradQ(s), grid: attentionRowGrid(s, T), block: attentionThreads(s), args: [ptr(c.output(0)), stats, q, k, v, seq, dy] },
        { kernel: attentionGradKV(s), grid: attentionKeyGrid(s, T), block: attentionThreads(s), args: [ptr(c.output(1)), ptr(c.output(2)), stats, q, k, v, seq, dy, u32(T)] },
      ];
    },
  },
  // MoC (train-moc.ts; meanings in src/ir/ops.ts). Both FFN weights are [F, d] in the graph (w_down
  // is the param flagged `transposed`: its rows are channels), which is the layout the kernels take.
  moc_select: {
    launches(c) {
      const s = mocSelectSpec(c);
      return [{ kernel: mocSelect(s), grid: mocSelectGrid(s, c.T), block: mocSelectThreads(s), args: [ptr(c.output(0)), ptr(c.input(0))] }];
    },
  },
  // inputs g [T, F], idx [T, K]
  moc_gather: {
    launches(c) {
      const F = c.inDim(0, 1), K = c.inDim(1, 1);
      return [{ kernel: mocGather(F, K), grid: mocRowGrid(K, c.T), block: mocRowThreads(K), args: [ptr(c.output(0)), ptr(c.input(0)), ptr(c.input(1))] }];
    },
  },
  // inputs x [T, d], w [F, d], idx [T, K] → [T, K] (also d(moc_down)/dz: x = dy, w = w_down)
  moc_up: {
    launches(c) {
      const d = c.inDim(0, 1), K = c.inDim(2, 1);
      return [{ kernel: mocUp(d, K), grid: mocRowGrid(K, c.T), block: mocRowThreads(K), args: [ptr(c.output(0)), ...[0, 1, 2].map((i) => ptr(c.input(i)))] }];
    },
  },
  // inputs z [T, K], w [F, d], idx [T, K] → [T, d] (also d(moc_up)/dx: z = dy, w = w_up)
  moc_down: {
    launches(c) {
      const d = c.outDim(0, 1), K = c.inDim(0, 1);
      return [{ kernel: mocDown(d, K), grid: mocRowGrid(d, c.T), block: mocRowThreads(d), args: [ptr(c.output(0)), ...[0, 1, 2].map((i) => ptr(c.input(i)))] }];
    },
  },
  // inputs a [T, K], b [T, d], idx [T, K] → [rows, d]: one block a weight row, no atomics
  moc_rows_grad: {
    launches(c) {
      const K = c.inDim(0, 1), d = c.inDim(1, 1), rows = c.outDim(0, 0);
      const threads = rowsGradThreads(c.T * K, d);
      return [{ kernel: mocRowsGrad(d, K, threads), grid: mocRowsGradGrid(rows), block: threads, args: [ptr(c.output(0)), ...[0, 1, 2].map((i) => ptr(c.input(i))), u32(c.T)] }];
    },
  },
  // inputs dy [T, K], idx [T, K] → [T, channels] (moc_gather's gradient)
  moc_scatter: {
    bf16Output: true,
    launches(c) {
      const K = c.inDim(0, 1), F = c.outDim(0, 1);
      return [{ kernel: mocScatter(K, F, out0(c)), grid: mocScatterGrid(c.T), block: SCATTER_THREADS, args: [ptr(c.output(0)), ptr(c.input(0)), ptr(c.input(1))] }];
    },
  },
  index_narrow: indexCastOp('narrow'),
  index_widen: indexCastOp('widen'),
  // f32 → bf16 (round to nearest even, padding converted too): a GEMM operand's copy that the bf16
  // GEMMs near each other share (passes/bf16-gemm-operands.ts); the same launch a bf16 GEMM makes
  // for its own operand (ops-bf16.ts bf16Operand)
  cast: { bf16Output: true, launches: (c) => [castBf16Launch(c, c.outDim(0, 0), c.outDim(0, 1), c.output(0), c.input(0))] },
  cross_entropy: {
    scratchBytes: (c) => ceScratch(c.inDim(0, 0)),
    launches: (c) => ceLoss(c, c.output(0)),
  },
  // The loss's per-row state is not kept from the cross_entropy node (its output is the loss alone):
  // the gradient folds the logits again into its own scratch, then writes dlogits in one pass (bf16
  // dlogits: ceGrad's bf16 rows, padding zeroed as its f32 rows' is).
  cross_entropy_grad: {
    bf16Output: true,
    scratchBytes: (c) => ceScratch(c.inDim(0, 0)),
    launches(c) {
      const T = c.inDim(0, 0), V = c.inDim(0, 1);
      const pair = c.scratch(align64(T * 12));
      return [
        ...ceLoss(c, pair),
        { kernel: ceGrad(out0(c)), grid: ceRowGrid(T), block: LOSS_THREADS, args: [ptr(c.output(0)), ptr(c.input(0)), ptr(c.scratch(0)), ptr(pair), ptr(c.input(2)), ptr(c.input(1)), u32(0), u32(V)] },
      ];
    },
  },
  kl_div: {
    scratchBytes: (c) => klScratch(c.inDim(0, 0)),
    launches: (c) => klLoss(c, c.output(0)),
  },
  // As cross_entropy_grad: the rows are folded again into the gradient's own scratch. Inputs student,
  // teacher, targets, dloss.
  kl_div_grad: {
    scratchBytes: (c) => klScratch(c.inDim(0, 0)),
    launches(c) {
      const T = c.inDim(0, 0), V = c.inDim(0, 1);
      const pair = c.scratch(align64(T * 4 * KL_STATE_WORDS));
      return [
        ...klLoss(c, pair),
        { kernel: klGrad(), grid: ceRowGrid(T), block: LOSS_THREADS, args: [ptr(c.output(0)), ptr(c.input(0)), ptr(c.input(1)), ptr(c.scratch(0)), ptr(pair), ptr(c.input(3)), ptr(c.input(2)), u32(0), u32(V), u32(V), f32(c.node.attrs.temperature as number)] },
      ];
    },
  },
  matmul: {
    launches(c) {
      const M = c.inDim(0, 0), K = c.inDim(0, 1), N = c.inDim(1, 1);
      return [{ kernel: matmulNN(K, N), grid: matmulGrid(M, N), block: MATMUL_THREADS, args: [ptr(c.output(0)), ptr(c.input(0)), ptr(c.input(1)), u32(K)] }];
    },
  },
  // the product added into acc's storage, which the output takes (checkInPlace)
  matmul_acc: {
    launches(c) {
      checkInPlace(c);
      const M = c.inDim(0, 0), K = c.inDim(0, 1), N = c.inDim(1, 1);
      return [{ kernel: matmulNN(K, N, true), grid: matmulGrid(M, N), block: MATMUL_THREADS, args: [ptr(c.output(0)), ptr(c.input(0)), ptr(c.input(1)), u32(K)] }];
    },
  },
  matmul_tn: {
    launches(c) {
      const K = c.inDim(0, 0), M = c.inDim(0, 1), N = c.inDim(1, 1);
      return [{ kernel: matmulTN(M, N), grid: matmulGrid(M, N), block: MATMUL_THREADS, args: [ptr(c.output(0)), ptr(c.input(0)), ptr(c.input(1)), u32(K)] }];
    },
  },
  rmsnorm_grad: rmsnormGradOp(false),
  // dx added into acc's storage (input 3), which output 0 takes (checkInPlace)
  rmsnorm_grad_acc: rmsnormGradOp(true),
  silu_grad: elementwise(siluGrad),
  rope_grad: { ...rope(ropeGrad), bf16Output: true },
  embedding_grad: {
    scratchBytes: (c) => embeddingGradSlots(c.inDim(0, 0)) * 4,
    launches(c) {
      const T = c.inDim(0, 0), d = c.inDim(0, 1), V = c.outDim(0, 0), N = embeddingGradSlots(T);
      const grids = embeddingGradGrids(V, T, d);
      return [
        { kernel: embeddingGradSort(), grid: grids.sort, block: EMBEDDING_SORT_THREADS, args: [ptr(c.scratch()), ptr(c.input(1)), u32(T), u32(N)] },
        { kernel: embeddingGradRows(d), grid: grids.rows, block: EMBEDDING_ROWS_THREADS, args: [ptr(c.output(0)), ptr(c.scratch()), ptr(c.input(0)), u32(T), u32(N)] },
      ];
    },
  },
  ...LM_HEAD_OPS, // lm_head_loss, lm_head_loss_grad (ops-lm-head.ts)
};

/**
 * Ops of training graphs with no CUDA kernel here yet (the ops of graphs other than trainingGraph's
 * LLaMA / MoC ones). Named so the refusal says it is a known gap, not a typo.
 */
export const NOT_YET_ON_CUDA: ReadonlySet<string> = new Set(['sigmoid', 'sigmoid_grad', 'concat', 'split', 'transpose']);

/**
 * The entry of node n (under 'bf16': ops-bf16.ts's for its matmuls, ops-lm-head-bf16.ts's for the
 * fused head + loss, ops-attention-bf16.ts's for
 * attention / attention_grad where the flash kernels take its hd; with moc 'dense-bf16', which needs
 * 'bf16', ops-moc-bf16.ts's for the MoC products), or an error naming the node.
 */
export function trainOpOf(n: Node, matmul: TrainMatmul = 'f32', moc: TrainMocMatmul = 'simt'): TrainOp {
  checkMocMatmul(matmul, moc);
  const e = (moc === 'dense-bf16' ? DENSE_MOC_OPS[n.op] : undefined)
    ?? (matmul === 'bf16' ? BF16_MATMUL_OPS[n.op] ?? BF16_LM_HEAD_OPS[n.op] ?? bf16AttentionOpOf(n) : undefined) ?? TRAIN_OPS[n.op];
  if (e) return e;
  const what = NOT_YET_ON_CUDA.has(n.op) ? 'is not yet on cuda (no kernel in targets/cuda/train/ops.ts)' : 'is not an op the CUDA training executor knows';
  throw new Error(`training node %${n.outputs[0]?.name ?? '?'} (${n.op}) ${what}`);
}
