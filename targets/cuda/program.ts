// The launch program the CUDA lowering produces: target-specific, but plain data, so `mocc compile`
// can write it as a manifest and the runtime can run it. Sizes that depend on the number of tokens
// in a call are written as 'T'.
import type { ConstDecl, GridDim } from '../lowering/program.js';
import { persistentGrid, type Gemm90Spec } from './ptx/gemm-sm90.js';
import { elemBytes } from '../lowering/device-image.js';

export type { ConstDecl, GridDim };

/**
 * A CUDA grid dimension: also { tilesOfT: n } = ceil(T / n), e.g. a GEMM's row tiles over the
 * call's tokens; { persistentTiles } a persistent GEMM's CTAs: one a multiprocessor, fewer when its
 * ceil(T / bm) · ceil(n / bn) output tiles are fewer (gemm-sm90.ts persistentGrid).
 */
export type CudaGridDim = GridDim | { tilesOfT: number } | { persistentTiles: { bm: number; bn: number; n: number } };

/** A grid dimension's value for a call of T tokens (`device`: needed by persistent grids). */
export function gridDimFor(d: CudaGridDim, T: number, device?: { multiprocessors: number }): number {
  if (d === 'T') return T;
  if (typeof d === 'number') return d;
  if ('tilesOfT' in d) return Math.ceil(T / d.tilesOfT);
  if (!device) throw new Error('a persistent grid needs the device (its multiprocessor count)');
  const { bm, bn, n } = d.persistentTiles;
  return persistentGrid(bm, bn, T, n, device.multiprocessors);
}

export type Arg =
  | { kind: 'buf'; id: number }
  | { kind: 'weight'; name: string }
  /** Host-computed constants: transposed weights, RoPE cos/sin tables. */
  | { kind: 'const'; name: string }
  | { kind: 'kv'; layer: number; which: 'k' | 'v' }
  | { kind: 'pos' }
  | { kind: 'tokens' }
  | { kind: 'history' }
  /**
   * Slot `slot` of the select hints: one float per Top-K, the K-th largest gate value of the last
   * call, kept across calls (+inf before the first). Top-K writes it; the next call's fused up·down
   * kernel reads it to warm the L2 (UpDownSpec.warm). Only a hint: no result depends on it.
   */
  | { kind: 'tau'; slot: number }
  /**
   * Region `region` of the merge counters (Program.counters: u32, zero before the first call): a
   * kernel that merges in its last block counts the finished blocks of each unit of work there and
   * leaves them at zero (decode-attention.ts attentionSplit, moc.ts mocUpDown with merge 'tail', gate-topk.ts gemvTopk).
   */
  | { kind: 'counters'; region: CounterRegion }
  /** The number of tokens in the call, as a u32 parameter. */
  | { kind: 'T' }
  /** A u32 parameter fixed at lowering (a GEMM's N and K). */
  | { kind: 'u32'; value: number }
  /**
   * A tensor map (passed by value, 128 bytes) over the matrix at `of` (a buffer or a weight) whose
   * non-K extent is `rows` (M for x, N for w) and reduction extent `k` (either 'T': the call's
   * tokens; k is T for a weight gradient, layout 'xtw'), described as the Hopper GEMM reads its
   * operand `operand` in gemm.layout (gemm-sm90.ts gemm90TensorMap). Made when the launch is
   * prepared: it holds the address.
   */
  | { kind: 'tmap'; of: Arg; rows: 'T' | number; k: 'T' | number; operand: 'x' | 'w'; gemm: Gemm90Spec };

/**
 * The regions of the one zeroed allocation of merge counters: 'attention', a (row, head) of the split
 * decode attention each; 'moc', the fused MoC up·down's ticket and per-row counters with its reduce in
 * its tail blocks (moc.ts mocUpDown, merge 'tail'); 'topk', the gate GEMV's arrival count a row with
 * Top-K in its last block (gate-topk.ts gemvTopk). Regions are disjoint, so that no kernel depends on
 * another leaving its counters at zero. (Session 12's 'moc' region served the reduce merged into
 * up·down's single last block, measured 13–19% slower than the two kernels and removed, bench/NOTES.md
 * session 13.)
 */
export const COUNTER_REGIONS = ['attention', 'moc', 'topk'] as const;
export type CounterRegion = (typeof COUNTER_REGIONS)[number];
/** How many u32 counters each region holds (a region no launch uses is absent). */
export type CounterSizes = Partial<Record<CounterRegion, number>>;

/** Where each region starts in the counters' allocation (in u32), and its total: regions back to back in COUNTER_REGIONS order. */
export function counterLayout(sizes: CounterSizes | undefined): { offset: Record<CounterRegion, number>; total: number } {
  const offset = {} as Record<CounterRegion, number>;
  let total = 0;
  for (const r of COUNTER_REGIONS) {
    offset[r] = total;
    total += sizes?.[r] ?? 0;
  }
  return { offset, total };
}

/** a ∪ b, each region the larger of the two (e.g. the decode and prefill programs' needs), or undefined when empty. */
export function mergeCounterSizes(a: CounterSizes | undefined, b: CounterSizes | undefined): CounterSizes | undefined {
  const out: CounterSizes = {};
  for (const r of COUNTER_REGIONS) {
    const n = Math.max(a?.[r] ?? 0, b?.[r] ?? 0);
    if (n > 0) out[r] = n;
  }
  return Object.keys(out).length > 0 ? out : undefined;
}

export interface Launch {
  kernel: string;
  grid: [CudaGridDim, CudaGridDim, CudaGridDim];
  block: number;
  /** Dynamic shared memory bytes (absent: none). */
  shared?: number;
  args: Arg[];
  /** Which IR node this launch computes (for messages and the manifest). */
  node: string;
}

/** The KV cache's element type: stores round f32 to it (nearest even), the attention widens it back. */
export type KvDType = 'f32' | 'bf16' | 'f16';

export type Step = ({ kind: 'launch' } & Launch) | { kind: 'zero'; buf: number; node: string };

/** An activation buffer: rowsPerToken rows of `width` elements per token (row stride pad8(width)). */
export interface BufferDecl {
  id: number;
  width: number;
  rowsPerToken: number;
  /** bf16/f16 only for the 16-bit inputs of the tensor-core GEMMs (prefill). */
  dtype: 'f32' | 'i32' | 'bf16' | 'f16';
}

export const bufferElementBytes = (b: Pick<BufferDecl, 'dtype'>): number => (b.dtype === 'i32' ? 4 : elemBytes(b.dtype));

/**
 * A second set of launches for calls of many tokens (prefill): the same graph lowered with
 * tensor-core GEMMs for the linears (targets/cuda/lower.ts). Its kernels, weights and constants
 * are in the Program's; it shares the KV cache, positions and select hints with the decode steps.
 */
export interface PrefillProgram {
  /** Calls of fewer tokens run the decode steps with T rows instead (where those are faster). */
  minTokens: number;
  steps: Step[];
  buffers: BufferDecl[];
  logits: { buf: number; vocab: number };
}

export interface Program {
  /** Kernel name → PTX text of one entry (deterministic). */
  kernels: Map<string, string>;
  /**
   * Kernels with arch-specific Hopper instructions (wgmma, setmaxnreg): a second module, `.target
   * sm_90a`, which loads only on compute capability 9.0. Absent when there are none (the default).
   */
  kernelsSm90a?: Map<string, string>;
  steps: Step[];
  /** Run after `steps` when decoding greedily on the device: argmax into the token buffer, pos += T. */
  greedyTail: Step[];
  buffers: BufferDecl[];
  weights: string[];
  consts: ConstDecl[];
  /** Per layer, K and V caches of `capacity` rows of `width` elements of `dtype` (row stride pad8(width)). */
  kvCache: { layers: number; width: number; capacity: number; dtype: KvDType };
  /** How many select-hint slots (Arg 'tau') the program uses. */
  selectHints: number;
  /** u32 merge counters per region (Arg 'counters'), zeroed once when the model is loaded; absent: none used. */
  counters?: CounterSizes;
  logits: { buf: number; vocab: number };
  /** Launches for calls of T > 1 tokens; absent: those run `steps` with T rows. */
  prefill?: PrefillProgram;
}
