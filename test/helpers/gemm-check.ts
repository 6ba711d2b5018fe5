// The float64 reference for the GEMM kernels (Y = X·Wᵀ, gemm.ts and gemm-sm90.ts) and the check
// of a device result against it, shared by their GPU tests.

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
