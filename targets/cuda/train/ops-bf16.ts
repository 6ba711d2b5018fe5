// The CUDA training executor's bf16 tensor-core matmuls (TrainingExecutorOptions.matmul = 'bf16'):
// the four GEMM ops of a training graph run on tensor cores instead of the f32 SIMT kernels of ops.ts
// (gemm-f32.ts, train-matmul.ts). Each node:
//   1. casts both operands, f32 → bf16 rounded to nearest even (cast.ts castRows: rows of
//      pad8(width), padding converted too), into the node's scratch;
//   2. multiplies them, f32 accumulation, 'store' epilogue (f32) into its output ('accumulate' for
//      matmul_acc: the product added, with one add.f32 as the add kernel's, to the acc input whose
//      storage the output takes: passes/matmul-accumulate.ts, values.ts checkInPlace), with the kernel
//      trainGemmKernel picks: gemm-sm90.ts's wgmma + TMA kernel where the device offers it
//      (TrainDevice.wgmma: compute capability 9.0, MOCC_CUDA_WGMMA not 0), else gemm.ts's mma.sync
//      m16n8k16 kernel (sm_80, sm_90). Both take the same operands in the same layouts.
// Operand roles (src/ir/ops-train.ts, targets/ref/eval-node.ts; gemm.ts's header), all direct, none
// transposed:
//   linear / logits  y[T, N] = x[T, K]·W[N, K]ᵀ   'xwt': x = x, w = W;  M = T, N = out, K = in
//   matmul           y[M, N] = a[M, K]·b[K, N]     'xw':  x = a, w = b;  (dx = dy·W: M = T, K = out, N = in)
//   matmul_tn        y[M, N] = a[K, M]ᵀ·b[K, N]    'xtw': x = a, w = b;  (dW = dyᵀ·x: K = T, M = out, N = in)
// and gemm.ts's params are y, x, w, M, N, K with grid gemmGrid(spec, M, N); gemm-sm90.ts's y, a
// tensor map of x, one of w (gemm90TensorMap: M rows of x, N of w, K; made here, when the launch is
// prepared, from the scratch addresses, fixed for the executor's life), M, N, K, a persistent grid
// (gemm90Grid), dynamic shared memory gemm90SharedBytes, an sm_90a module.
//
// A param the executor stores bf16 (--optimizer-state bf16-params: executor.ts bf16Params) is not
// cast: the GEMM reads its own buffer, the same padded bf16 rows with zero padding (bf16Operand), and
// its copy takes no scratch.
//
// Scratch: the bf16 x copy at offset 0, the w copy at alignUp(x bytes, 256). gemm.ts's cp.async
// copies 16 bytes from 16-byte aligned addresses: rows of pad8(width) bf16 are 16·k bytes, the
// scratch buffer is 256-byte aligned (device.ts alloc) and so is the second copy.
//
// Padding. gemm-sm90.ts reads no padding: its tensor maps end at K, M and N, and the copy engine
// zero-fills a box past them (its header, "Tails"). gemm.ts multiplies the padding columns of a K-contiguous operand (x of 'xwt' and 'xw',
// w of 'xwt') into the sum. There they meet zeros: in 'xwt' the weight's padding (params are
// uploaded with zero padding, values.ts padRows), in 'xw' rows K.. of w, which gemm.ts zero-fills. The
// activation's padding is whatever finite numbers the arena holds (executor.ts: zeroed once, never
// written with non-finite values; castRows keeps them finite below bf16's 3.39e38), so · 0 adds 0 —
// the f32 GEMM's (gemm-f32.ts) same assumption. Padding columns of a [K, ·] operand ('xw' w, 'xtw'
// both) reach only output rows/columns past M or N, which are never stored.
//
// Cost of casting the weights each step, in the modes with f32 master weights ('bf16-params' stores
// the GEMM weights bf16 and casts none; the f32 weights stay the only copy, nothing to keep in
// sync with the optimizer): every weight matrix is cast twice a step (forward 'xwt', backward 'xw'),
// 6 bytes of traffic an element each time: for the 1B preset's ~1.1e9 weights ≈ 13 GB a step, ~5 ms
// at H100 bandwidth against ~6·1.1e9·16384 ≈ 1.1e14 flops of GEMMs (≥ 150 ms): a few percent. The
// activations' casts are of the same order (each GEMM operand once). The largest scratch is
// logits' backward: dlogits [T, V] in bf16 (T·pad8(V)·2 bytes, 1 GiB at T = 16384, V = 32000) plus
// the embedding table or the last hidden state.
import { castGrid, castRows, CAST_THREADS } from '../ptx/cast.js';
import { gemm, GEMM_DEFAULT, gemmGrid, gemmThreads, type GemmLayout, type GemmSpec } from '../ptx/gemm.js';
import { gemm90, GEMM90_DEFAULT, gemm90Grid, gemm90SharedBytes, gemm90TensorMap, gemm90Threads, type Gemm90Spec } from '../ptx/gemm-sm90.js';
import { pad8 } from '../ptx/layout.js';
import { UserError } from '../../../src/util/errors.js';
import type { DevPtr, LaunchArg, WgmmaDevice } from './device.js';
import type { Launch, OpContext, TrainOp } from './ops.js';
import { checkInPlace } from './values.js';

/** How the executor runs linear / logits / matmul / matmul_tn: f32 SIMT (ops.ts) or bf16 tensor cores (here). */
export type TrainMatmul = 'f32' | 'bf16';

/** The environment switch, read here only: MOCC_CUDA_TRAIN_MATMUL=bf16 (or f32, the default when unset). */
export function trainMatmulFromEnv(env: NodeJS.ProcessEnv = process.env): TrainMatmul {
  const v = env.MOCC_CUDA_TRAIN_MATMUL;
  if (v === undefined || v === '' || v === 'f32') return 'f32';
  if (v === 'bf16') return 'bf16';
  throw new UserError(`MOCC_CUDA_TRAIN_MATMUL=${v}: expected f32 or bf16`);
}

/**
 * How the executor runs moc_up / moc_down / moc_rows_grad: f32 SIMT gathered products (ops.ts,
 * train-moc.ts) or dense bf16 GEMMs around a scatter / gather (ops-moc-bf16.ts; only with matmul 'bf16').
 */
export type TrainMocMatmul = 'simt' | 'dense-bf16';

/** The environment switch, read here only: MOCC_CUDA_TRAIN_MOC=dense (or simt, the default when unset). */
export function trainMocMatmulFromEnv(env: NodeJS.ProcessEnv = process.env): TrainMocMatmul {
  const v = env.MOCC_CUDA_TRAIN_MOC;
  if (v === undefined || v === '' || v === 'simt') return 'simt';
  if (v === 'dense') return 'dense-bf16';
  throw new UserError(`MOCC_CUDA_TRAIN_MOC=${v}: expected simt or dense`);
}

/**
 * The environment switch, read here only: MOCC_CUDA_TRAIN_MATMUL_ACC=0 keeps every add that
 * passes/matmul-accumulate.ts would fold into its producer (a matmul product, rmsnorm_grad's dx;
 * TrainingExecutorOptions.matmulAccumulate false, for side-by-side runs), 1 folds them in the f32
 * mode as well; unset: the executor's default (folded with bf16 GEMMs only).
 */
export function trainMatmulAccumulateFromEnv(env: NodeJS.ProcessEnv = process.env): boolean | undefined {
  const v = env.MOCC_CUDA_TRAIN_MATMUL_ACC;
  if (v === undefined || v === '') return undefined;
  if (v === '0' || v === '1') return v === '1';
  throw new UserError(`MOCC_CUDA_TRAIN_MATMUL_ACC=${v}: expected 0 or 1`);
}

/**
 * The environment switch, read here only: MOCC_CUDA_TRAIN_CAST_ONCE=0 makes every bf16 GEMM cast its
 * own operands (TrainingExecutorOptions.castOnce false, for side-by-side runs); unset or 1: shared casts.
 */
export function trainCastOnceFromEnv(env: NodeJS.ProcessEnv = process.env): boolean {
  const v = env.MOCC_CUDA_TRAIN_CAST_ONCE;
  if (v === undefined || v === '' || v === '1') return true;
  if (v === '0') return false;
  throw new UserError(`MOCC_CUDA_TRAIN_CAST_ONCE=${v}: expected 0 or 1`);
}

/**
 * The environment switch, read here only: MOCC_CUDA_TRAIN_BF16_PRODUCERS=0 keeps the casts of values
 * only casts read (TrainingExecutorOptions.bf16Producers false, for side-by-side runs); unset or 1:
 * their producers write bf16 (passes/bf16-producers.ts).
 */
export function trainBf16ProducersFromEnv(env: NodeJS.ProcessEnv = process.env): boolean {
  const v = env.MOCC_CUDA_TRAIN_BF16_PRODUCERS;
  if (v === undefined || v === '' || v === '1') return true;
  if (v === '0') return false;
  throw new UserError(`MOCC_CUDA_TRAIN_BF16_PRODUCERS=${v}: expected 0 or 1`);
}

/** The 64×64 tile (4 warps of 32×32) for a narrow output; else gemm.ts's 128×128 (8 warps of 64×32), the prefill's. */
const SMALL_TILE: Omit<GemmSpec, 'dtype'> = { bm: 64, bn: 64, warpsM: 2, warpsN: 2 };

/**
 * The tile for Y[M, N]: 128×128 when both M and N are at least 128, else 64×64 (a 128-wide tile of an
 * output 64 wide, stories260K's d, would multiply half zeros). Both tiles are the ones the gemm.ts
 * GPU tests run in every layout (cuda-gemm.test.ts, cuda-gemm-layouts.test.ts).
 */
export const trainGemmSpec = (layout: GemmLayout, M: number, N: number): GemmSpec => ({
  dtype: 'bf16', ...(M >= 128 && N >= 128 ? GEMM_DEFAULT : SMALL_TILE), ...(layout !== 'xwt' ? { layout } : {}),
});

/** Scratch pieces start at multiples of 256 bytes (header: cp.async's 16-byte chunks; the buffer itself is 256-aligned). */
const SCRATCH_ALIGN = 256;
export const alignUp = (n: number) => Math.ceil(n / SCRATCH_ALIGN) * SCRATCH_ALIGN;

/** A GEMM operand as stored: input `input` of the node, `rows` rows of `width` (f32, then its bf16 copy). */
interface Operand { input: number; rows: number; width: number }
/** One node's GEMM in gemm.ts's terms. */
export interface TrainGemm { layout: GemmLayout; x: Operand; w: Operand; M: number; N: number; K: number }

/** Bytes of `rows` rows of `width` bf16 in padded rows (castRows' output). */
export const bf16RowsBytes = (rows: number, width: number) => rows * pad8(width) * 2;

/** The GEMM of a matmul-family node (header: operand roles). */
function gemmOf(c: OpContext, layout: GemmLayout): TrainGemm {
  const a = { rows: c.inDim(0, 0), width: c.inDim(0, 1) }, b = { rows: c.inDim(1, 0), width: c.inDim(1, 1) };
  const x = { input: 0, ...a }, w = { input: 1, ...b };
  if (layout === 'xwt') return { layout, x, w, M: a.rows, N: b.rows, K: a.width }; // x [M, K], W [N, K]
  if (layout === 'xw') return { layout, x, w, M: a.rows, N: b.width, K: a.width }; // x [M, K], w [K, N]
  return { layout, x, w, M: a.width, N: b.width, K: a.rows }; // x [K, M], w [K, N]
}

/** Scratch of a node: both bf16 copies, less any operand that is a bf16 param (bf16Operand: no copy). */
export const trainGemmScratchBytes = (c: OpContext, g: TrainGemm): number => alignUp(copyBytes(c, g.x)) + copyBytes(c, g.w);
const copyBytes = (c: OpContext, o: Operand) => bf16OperandBytes(c, o.input, o.rows, o.width);

const ptr = (p: DevPtr): LaunchArg => ({ ptr: p });
const u32 = (v: number): LaunchArg => ({ u32: v });

/**
 * A bf16 GEMM operand from input `i` of the node ([rows, width]): the param's own buffer where the
 * executor stores it bf16 ('bf16-params': OpContext.bf16Input; the same padded bf16 rows castRows
 * makes, zero padding), with no launch; else castRows' copy at `to` (one launch). The one place the
 * bf16 GEMM entries (here, ops-moc-bf16.ts, ops-lm-head-bf16.ts) decide whether to cast an operand;
 * bf16OperandBytes is its scratch.
 */
export function bf16Operand(c: OpContext, i: number, rows: number, width: number, to: DevPtr): { ptr: DevPtr; launches: Launch[] } {
  if (c.bf16Input?.(i)) return { ptr: c.input(i), launches: [] };
  return { ptr: to, launches: [castBf16Launch(c, rows, width, to, c.input(i))] };
}

/** Scratch bytes bf16Operand's copy of input `i` takes: none for a bf16 param (no copy). */
export const bf16OperandBytes = (c: OpContext, i: number, rows: number, width: number): number => (c.bf16Input?.(i) ? 0 : bf16RowsBytes(rows, width));

/**
 * castRows of `rows` rows of `width` f32 at `from` into bf16 at `to` (padding converted too). Its grid
 * y is the row count: at most 65535 (T, or a weight's rows: the 1B preset's 32000); `c` names the node
 * in the refusal.
 */
export function castBf16Launch(c: OpContext, rows: number, width: number, to: DevPtr, from: DevPtr): Launch {
  if (rows > 65535) throw new Error(`bf16 cast for %${c.node.outputs[0]!.name} (${c.node.op}): ${rows} operand rows, more than castRows' grid takes (65535)`);
  return { kernel: castRows('bf16', width), grid: [castGrid(width), rows, 1], block: CAST_THREADS, args: [ptr(to), ptr(from)] };
}

/** The kernel of a bf16 GEMM: gemm-sm90.ts's (wgmma, TMA) or gemm.ts's (mma.sync), with its spec. */
export type TrainGemmKernel = { kind: 'wgmma'; spec: Gemm90Spec } | { kind: 'mma.sync'; spec: GemmSpec };

/**
 * The one place that decides which kernel runs Y[M, N] = op(X)·op(W) in `layout` ('store', f32 Y):
 * gemm-sm90.ts where the device offers it (`wgmma`: TrainDevice.wgmma) and the product is not empty,
 * else gemm.ts with trainGemmSpec's tile. gemm-sm90.ts takes every M, N, K ≥ 1 in every layout (its
 * tails are the copy engine's zero fill; the GPU tests run M, N, K of 1 to 2100, cuda-gemm-sm90.test.ts);
 * a tensor map needs every extent ≥ 1, so an empty product (M, N or K = 0: zeros or nothing) stays on
 * gemm.ts. Its tile is GEMM90_DEFAULT (128×256, 4 stages) on every shape, as the prefill's
 * (lower.ts hopperGemm): the fastest the gemm bench measured in all three layouts on the 1B
 * training shapes (session 12, 590–730 TFLOP/s on the H100 against gemm.ts's 210–350).
 */
export function trainGemmKernel(layout: GemmLayout, M: number, N: number, K: number, wgmma?: WgmmaDevice, epilogue: TrainGemmEpilogue = 'store'): TrainGemmKernel {
  const acc = epilogue === 'accumulate' ? { epilogue } : {};
  if (wgmma && M > 0 && N > 0 && K > 0) return { kind: 'wgmma', spec: { dtype: 'bf16', out: 'f32', ...GEMM90_DEFAULT, ...(layout !== 'xwt' ? { layout } : {}), ...acc } };
  return { kind: 'mma.sync', spec: { ...trainGemmSpec(layout, M, N), ...acc } };
}

/**
 * The epilogues a training GEMM may ask for (both kernels have both, f32 Y): 'store' Y = ·; 'accumulate'
 * Y += · (a gradient summed over blocks of rows: ops-lm-head-bf16.ts's dW).
 */
export type TrainGemmEpilogue = 'store' | 'accumulate';

/** A tensor map's global address must be 16-byte aligned (cuTensorMapEncodeTiled); the scratch pieces are 256-aligned (header). */
function mapAddress(p: DevPtr, what: string): bigint {
  const a = BigInt(p);
  if (a % 16n !== 0n) throw new Error(`bf16 GEMM: the ${what} operand at ${a} is not 16-byte aligned, as a tensor map needs`);
  return a;
}

/**
 * The bf16 GEMM launch, 'store' epilogue (f32 y; or `epilogue` 'accumulate': y +=), bf16 x and w in
 * `layout`, on trainGemmKernel's kernel (header: params; `wgmma`: the OpContext's, absent on devices
 * without the Hopper GEMM).
 */
export function gemmBf16Launch(layout: GemmLayout, y: DevPtr, x: DevPtr, w: DevPtr, M: number, N: number, K: number, wgmma?: WgmmaDevice, epilogue: TrainGemmEpilogue = 'store'): Launch {
  const k = trainGemmKernel(layout, M, N, K, wgmma, epilogue);
  if (k.kind === 'mma.sync') {
    const s = k.spec;
    return { kernel: gemm(s), grid: gemmGrid(s, M, N), block: gemmThreads(s), args: [ptr(y), ptr(x), ptr(w), u32(M), u32(N), u32(K)] };
  }
  const s = k.spec;
  const map = (which: 'x' | 'w', p: DevPtr, rows: number): LaunchArg => ({ tmap: gemm90TensorMap(s, which, mapAddress(p, which), rows, K) });
  return {
    kernel: gemm90(s), grid: gemm90Grid(s, M, N, wgmma!.multiprocessors), block: gemm90Threads(s), shared: gemm90SharedBytes(s), target: 'sm_90a',
    args: [ptr(y), map('x', x, M), map('w', w, N), u32(M), u32(N), u32(K)],
  };
}

/** A matmul-family node's entry; 'accumulate': matmul_acc, the product added into its acc input, whose storage the output takes (ops.ts checkInPlace). */
function bf16Gemm(layout: GemmLayout, epilogue: TrainGemmEpilogue = 'store'): TrainOp {
  return {
    scratchBytes: (c) => trainGemmScratchBytes(c, gemmOf(c, layout)),
    launches(c): Launch[] {
      if (epilogue === 'accumulate') checkInPlace(c);
      const g = gemmOf(c, layout);
      const x = bf16Operand(c, g.x.input, g.x.rows, g.x.width, c.scratch(0));
      const w = bf16Operand(c, g.w.input, g.w.rows, g.w.width, c.scratch(alignUp(copyBytes(c, g.x))));
      return [...x.launches, ...w.launches, gemmBf16Launch(layout, c.output(0), x.ptr, w.ptr, g.M, g.N, g.K, c.wgmma, epilogue)];
    },
  };
}

/** The bf16 entries, replacing ops.ts's for these ops when the executor's matmul option is 'bf16'. */
export const BF16_MATMUL_OPS: Readonly<Record<string, TrainOp>> = {
  linear: bf16Gemm('xwt'),
  logits: bf16Gemm('xwt'),
  matmul: bf16Gemm('xw'),
  matmul_acc: bf16Gemm('xw', 'accumulate'),
  matmul_tn: bf16Gemm('xtw'),
};

