// The float64 reference for the GEMM kernels (Y = X·Wᵀ, gemm.ts and gemm-sm90.ts; gemm.ts's other
// layouts and its silu_pair epilogue built from the logical matrices) and the check of a device
// result against it, shared by their GPU tests.
import type { GemmLayout } from '../../targets/cuda/ptx/gemm.js';
import { pad8 } from '../../targets/cuda/ptx/layout.js';

/** Y = X·Wᵀ in float64 from the rounded inputs; also Σ|x·w| per element, the scale of its rounding error. */
export function gemmReference(x: Float32Array, w: Float32Array, m: number, n: number, k: number): { y: Float64Array; mag: Float64Array } {
  const y = new Float64Array(m * n), mag = new Float64Array(m * n);
  for (let i = 0; i < m; i++) {
    for (let j = 0; j < n; j++) {
      let s = 0, a = 0;
      for (let c = 0; c < k; c++) {
        const p = x[i * k + c]! * w[j * k + c]!;
        s += p;
        a += Math.abs(p);
      }
      y[i * n + j] = s;
      mag[i * n + j] = a;
    }
  }
  return { y, mag };
}

/** `rows` × `cols` row-major → its transpose, `cols` × `rows`. */
export function transpose(a: Float32Array, rows: number, cols: number): Float32Array {
  const t = new Float32Array(rows * cols);
  for (let r = 0; r < rows; r++) for (let c = 0; c < cols; c++) t[c * rows + r] = a[r * cols + c]!;
  return t;
}

/**
 * The reference of gemm.ts's `layout` from x and w as stored (unpadded): 'xwt' x [M, K], w [N, K];
 * 'xw' x [M, K], w [K, N]; 'xtw' x [K, M], w [K, N]. Each is brought to X [M, K], W [N, K] first.
 */
export function gemmLayoutReference(layout: GemmLayout, x: Float32Array, w: Float32Array, m: number, n: number, k: number): { y: Float64Array; mag: Float64Array } {
  const xm = layout === 'xtw' ? transpose(x, k, m) : x;
  const wn = layout === 'xwt' ? w : transpose(w, k, n);
  return gemmReference(xm, wn, m, n, k);
}

/**
 * Row i of gemmLayoutReference, read straight from x and w as stored (no transposed copies, one
 * row's work): the spot check of a full-size product.
 */
export function gemmLayoutRowReference(layout: GemmLayout, x: Float32Array, w: Float32Array, i: number, m: number, n: number, k: number): { y: Float64Array; mag: Float64Array } {
  const y = new Float64Array(n), mag = new Float64Array(n);
  for (let j = 0; j < n; j++) {
    let s = 0, a = 0;
    for (let c = 0; c < k; c++) {
      const p = x[layout === 'xtw' ? c * m + i : i * k + c]! * w[layout === 'xwt' ? j * k + c : c * n + j]!;
      s += p;
      a += Math.abs(p);
    }
    y[j] = s;
    mag[j] = a;
  }
  return { y, mag };
}

export const silu64 = (g: number): number => g / (1 + Math.exp(-g));

/**
 * The silu_pair reference, Y[M, F] = silu(X·Gᵀ)·(X·Uᵀ), from the logical gate and up [F, K]. Its
 * `mag` is the scale of the allowed error for compareGemm: the f32-accumulation error of g and u
 * carried through (|silu'| ≤ 1.1), plus |y| for the approximate exp and the division.
 */
export function siluPairReference(x: Float32Array, gate: Float32Array, up: Float32Array, m: number, f: number, k: number): { y: Float64Array; mag: Float64Array } {
  const g = gemmReference(x, gate, m, f, k), u = gemmReference(x, up, m, f, k);
  const y = new Float64Array(m * f), mag = new Float64Array(m * f);
  for (let i = 0; i < y.length; i++) {
    y[i] = silu64(g.y[i]!) * u.y[i]!;
    mag[i] = 1.1 * Math.abs(u.y[i]!) * g.mag[i]! + Math.abs(silu64(g.y[i]!)) * u.mag[i]! + Math.abs(y[i]!);
  }
  return { y, mag };
}

/**
 * Compares `got` with the reference. An element passes when it is within `accum`·Σ|x·w| (f32
 * accumulation: a few roundings of the magnitude; a wrong fragment is off by O(1)) plus
 * `outRound`·|y| (the rounding of the stored output: 0 for f32, 2⁻⁸ for bf16). NaN (unwritten,
 * the output was poisoned) never passes. Returns the count of bad elements, the worst error in
 * units of the allowance, and the norm-wise relative error.
 */
export function compareGemm(got: Float32Array, want: { y: Float64Array; mag: Float64Array }, accum = 2e-5, outRound = 0): { bad: number; worst: number; rel: number } {
  let num = 0, den = 0, worst = 0, bad = 0;
  for (let i = 0; i < got.length; i++) {
    const d = Math.abs(got[i]! - want.y[i]!);
    const allow = accum * want.mag[i]! + outRound * Math.abs(want.y[i]!) + 1e-30;
    if (!(d <= allow)) bad++;
    num += d * d;
    den += want.y[i]! ** 2;
    worst = Math.max(worst, d / allow);
  }
  return { bad, worst, rel: Math.sqrt(num / Math.max(den, 1e-30)) };
}

/** An accumulating GEMM's Y before the call: y0 [M, N] in rows of pad8(N) whose padding is NaN (it must stay untouched). */
export function accumulatorStart(y0: Float32Array, m: number, n: number): Float32Array {
  const padded = new Float32Array(m * pad8(n)).fill(NaN);
  for (let i = 0; i < m; i++) padded.set(y0.subarray(i * n, (i + 1) * n), i * pad8(n));
  return padded;
}

/** The reference of Y += X·W…: `want` + y0, |y0| added to the scale of the allowed error (in place; returns want). */
export function plusStart(want: { y: Float64Array; mag: Float64Array }, y0: Float32Array): { y: Float64Array; mag: Float64Array } {
  for (let i = 0; i < y0.length; i++) {
    want.y[i] = want.y[i]! + y0[i]!;
    want.mag[i] = want.mag[i]! + Math.abs(y0[i]!);
  }
  return want;
}

/** How many padding elements (columns N..pad8(N) of M rows of pad8(N)) are no longer NaN. */
export function paddingTouched(rows: Float32Array, m: number, n: number): number {
  let count = 0;
  for (let i = 0; i < m; i++) for (let j = n; j < pad8(n); j++) if (!Number.isNaN(rows[i * pad8(n) + j]!)) count++;
  return count;
}
