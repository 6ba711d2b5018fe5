// The CUDA training executor's MoC products as dense bf16 tensor-core GEMMs around a scatter / gather
// (TrainingExecutorOptions.mocMatmul = 'dense-bf16', only together with matmul = 'bf16'; trainOpOf
// picks these entries). Meanings (src/ir/ops.ts, targets/ref/kernels.ts mocUp / mocDown,
// targets/ref/train-kernels.ts mocRowsGrad); both FFN weights are W [F, d] (w_down is the param
// flagged `transposed`), idx [T, K] holds K distinct channels < F a row:
//
//   moc_up(x [T, d], W, idx) → z [T, K], z[t, k] = x[t]·W[idx[t, k]]:
//     cast x, W → bf16; gemm 'xwt' G[T, F] = x·Wᵀ (f32, scratch; M = T, N = F, K = d);
//     moc_gather(G, idx) → z (train-moc.ts mocGather).
//   moc_down(z [T, K], W, idx) → y [T, d], y[t] = Σ_k z[t, k]·W[idx[t, k]]:
//     moc_scatter(z, idx) → S[T, F] bf16 (zero but the kept channels, rounded: train-scatter.ts
//     mocScatter's 'bf16' rows, bit for bit the cast of the f32 scatter); cast W → bf16;
//     gemm 'xw' y = S·W (x = S [M = T, K = F], w = W as [K = F, N = d]).
//   moc_rows_grad(a [T, K], b [T, d], idx) → out [F, d], out[r] = Σ_{idx[t, k] = r} a[t, k]·b[t]:
//     moc_scatter(a, idx) → S[T, F] bf16; cast b → bf16; gemm 'xtw' out = Sᵀ·b (x = S [K = T, M = F],
//     w = b [K = T, N = d]). Rows never selected come out 0, as the ref's.
// (also the backward's uses: d(moc_down)/dz is moc_up(dy, W_down, idx), d(moc_up)/dx is
// moc_down(dy, W_up, idx): train-moc.ts's header.)
//
// Cost trade. The gathered products (train-moc.ts) do T·K·d multiply-adds each, in f32 SIMT; the
// dense ones T·F·d, F/K times more (the 1B preset: F = 5461, K = 1024, 5.3×), but on tensor cores:
// 2·T·F·d ≈ 3.7e11 flops at T = 16384, d = 2048, ≈ 0.6 ms a GEMM at H100 bf16 rates, plus the casts
// and scatter (≈ 1 GB of traffic a node, < 1 ms). Against it, moc_rows_grad's SIMT kernel scans all
// T·K indices once per weight row (F·T·K ≈ 9e10 index reads a call, 48 calls a step of the 1B), the
// likeliest cause of the 12.9 s a MoC+GCP step took on the H100 against dense GCP's 0.75 s (session 14;
// not profiled per kernel). The price is scratch: S (or G) [T, pad8(F)] f32 plus its bf16 copy, ≈ 540 MB at
// T = 16384, below the logits' bf16 copies (ops-bf16.ts header, 1 GiB) that size the one scratch buffer.
// Rounding: the operands are rounded to bf16 (relative 2^-9 each) where the SIMT kernels multiply f32;
// the scattered zeros are exact, so each output element is the same sum of the same K (or occurrence)
// terms, accumulated in f32 in another order.
//
// Scratch (ops.ts scratchBytes; each piece at a 256-byte aligned offset, ops-bf16.ts alignUp: the
// buffer is 256-aligned and gemm.ts's cp.async reads 16-byte chunks of rows of pad8 elements):
//   moc_up         [G f32 T·pad8(F)][x bf16 T·pad8(d)][W bf16 F·pad8(d)]
//   moc_down       [S bf16 T·pad8(F)][W bf16 F·pad8(d)]
//   moc_rows_grad  [S bf16 T·pad8(F)][b bf16 T·pad8(d)]
// (S used to be scattered in f32 and then cast, 6 bytes an element more of traffic: about 86 GB a
// 1B MoC+GCP step; the scatter writes it in bf16 now.)
//
// A param stored bf16 (--optimizer-state bf16-params, the W of moc_up / moc_down) is read from its own
// buffer, not cast (ops-bf16.ts bf16Operand), and its scratch piece is empty.
//
// Padding. gemm.ts multiplies the padding columns of a K-contiguous operand into the sum (ops-bf16.ts
// header): moc_up's x (arena: finite) and W (params: zero padding) as linear's; moc_down's S, whose
// padding columns F..pad8(F) meet rows ≥ F of w, which gemm.ts zero-fills — but S lives in the scratch,
// whose stale bits may read as NaN / Inf (NaN·0 = NaN), so the scatter here zeroes S's padding too
// (mocScatter's 'bf16' rows zero every padding column). In 'xtw' (moc_rows_grad) padding columns of S and b reach only
// output rows / columns past M, N, never stored. G's padding (gemm.ts does not write past column N)
// is never read: mocGather reads only the idx channels < F.
import { UserError } from '../../../src/util/errors.js';
import type { DevPtr, LaunchArg } from './device.js';
import { mocGather, mocRowGrid, mocRowThreads } from '../ptx/train-moc.js';
import { mocScatter, mocScatterGrid, SCATTER_THREADS } from '../ptx/train-scatter.js';
import { pad8 } from '../ptx/layout.js';
import { alignUp, bf16Operand, bf16OperandBytes, bf16RowsBytes, gemmBf16Launch, type TrainMatmul, type TrainMocMatmul } from './ops-bf16.js';
import type { Launch, OpContext, TrainOp } from './ops.js';

const ptr = (p: DevPtr): LaunchArg => ({ ptr: p });

/** The refusal of mocMatmul 'dense-bf16' without matmul 'bf16' (the dense MoC GEMMs are the bf16 mode's): a UserError, as both come from the environment. */
export function checkMocMatmul(matmul: TrainMatmul, moc: TrainMocMatmul): void {
  if (moc === 'dense-bf16' && matmul !== 'bf16') throw new UserError(`mocMatmul 'dense-bf16' (MOCC_CUDA_TRAIN_MOC=dense) needs matmul 'bf16' (MOCC_CUDA_TRAIN_MATMUL=bf16), not '${matmul}'`);
}

/** f32 bytes of [rows, width] in padded rows. */
const f32RowsBytes = (rows: number, width: number) => rows * pad8(width) * 4;

/** Byte offsets of a node's scratch pieces: an f32 [T, F] matrix (`f32F` columns; 0: none), then two bf16 operands of the given sizes; and the total. */
function pieces(T: number, f32F: number, first: number, second: number) {
  const one = f32F ? alignUp(f32RowsBytes(T, f32F)) : 0, two = one + alignUp(first);
  return { f32: 0, bf16a: one, bf16b: two, bytes: two + second };
}

/** The [T, F] bf16 scatter of `from` [T, K] by idx (zeros and padding zeroed, values rounded: header) into `to`. */
function scatter(T: number, K: number, F: number, to: DevPtr, from: DevPtr, idx: DevPtr): Launch {
  return { kernel: mocScatter(K, F, 'bf16'), grid: mocScatterGrid(T), block: SCATTER_THREADS, args: [ptr(to), ptr(from), ptr(idx)] };
}

// inputs x [T, d], w [F, d], idx [T, K] → z [T, K]
const mocUpShape = (c: OpContext) => ({ T: c.inDim(0, 0), d: c.inDim(0, 1), F: c.inDim(1, 0), K: c.inDim(2, 1) });
const mocUpScratch = (c: OpContext) => {
  const { T, d, F } = mocUpShape(c);
  return pieces(T, F, bf16OperandBytes(c, 0, T, d), bf16OperandBytes(c, 1, F, d));
};

// inputs z [T, K], w [F, d], idx [T, K] → y [T, d]
const mocDownShape = (c: OpContext) => ({ T: c.inDim(0, 0), K: c.inDim(0, 1), F: c.inDim(1, 0), d: c.inDim(1, 1) });
const mocDownScratch = (c: OpContext) => {
  const { T, d, F } = mocDownShape(c);
  return pieces(T, 0, bf16RowsBytes(T, F), bf16OperandBytes(c, 1, F, d));
};

// inputs a [T, K], b [T, d], idx [T, K] → out [F, d] (F: the rows attr, the weight's channels)
const rowsGradShape = (c: OpContext) => ({ T: c.inDim(0, 0), K: c.inDim(0, 1), d: c.inDim(1, 1), F: c.outDim(0, 0) });
const rowsGradScratch = (c: OpContext) => {
  const { T, d, F } = rowsGradShape(c);
  return pieces(T, 0, bf16RowsBytes(T, F), bf16OperandBytes(c, 1, T, d));
};

/** The dense entries, replacing ops.ts's for these ops when mocMatmul is 'dense-bf16' (header). */
export const DENSE_MOC_OPS: Readonly<Record<string, TrainOp>> = {
  moc_up: {
    scratchBytes: (c) => mocUpScratch(c).bytes,
    launches(c) {
      const { T, d, F, K } = mocUpShape(c), s = mocUpScratch(c);
      const G = c.scratch(s.f32), x = bf16Operand(c, 0, T, d, c.scratch(s.bf16a)), w = bf16Operand(c, 1, F, d, c.scratch(s.bf16b));
      return [
        ...x.launches,
        ...w.launches,
        gemmBf16Launch('xwt', G, x.ptr, w.ptr, T, F, d, c.wgmma),
        { kernel: mocGather(F, K), grid: mocRowGrid(K, T), block: mocRowThreads(K), args: [ptr(c.output(0)), ptr(G), ptr(c.input(2))] },
      ];
    },
  },
  moc_down: {
    scratchBytes: (c) => mocDownScratch(c).bytes,
    launches(c) {
      const { T, K, F, d } = mocDownShape(c), s = mocDownScratch(c);
      const sh = c.scratch(s.bf16a), w = bf16Operand(c, 1, F, d, c.scratch(s.bf16b));
      return [
        scatter(T, K, F, sh, c.input(0), c.input(2)),
        ...w.launches,
        gemmBf16Launch('xw', c.output(0), sh, w.ptr, T, d, F, c.wgmma),
      ];
    },
  },
  moc_rows_grad: {
    scratchBytes: (c) => rowsGradScratch(c).bytes,
    launches(c) {
      const { T, K, d, F } = rowsGradShape(c), s = rowsGradScratch(c);
      const sh = c.scratch(s.bf16a), b = bf16Operand(c, 1, T, d, c.scratch(s.bf16b));
      return [
        scatter(T, K, F, sh, c.input(0), c.input(2)),
        ...b.launches,
        gemmBf16Launch('xtw', c.output(0), sh, b.ptr, F, d, T, c.wgmma),
      ];
    },
  },
};
