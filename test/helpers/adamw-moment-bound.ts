// How far a kernel's bf16 first moment m may be from the oracle's (src/train/adamw.ts, f64 then
// rounded) in one step, for the AdamW kernel tests with bf16 moments (cuda-train-adamw-bf16-state,
// cuda-train-adamw-bf16-params).
// The kernel computes m = β1·m' + (1 − β1)·g in f32: each product and the sum round to f32 (and the
// clip scale's product, and β1, 1 − β1 themselves are f32 constants), so its f32 m is off by up to
// about 2^-22 · (β1·|m'| + (1 − β1)·|g|) ABSOLUTE: where the two terms nearly cancel, that is large
// against m itself (measured on the H100/H200: m' ≈ 6e-4, the oracle's m −4e-19, the kernel's 4e-11).
// Then both round to bf16: equal, or one bf16 ulp apart where the f32 values straddle a midpoint
// (≤ 2^-7 of the value). So: |got − want| ≤ 2^-7·|want| + 2^-22·(β1·|m'| + (1 − β1)·|g|).
// v = β2·v' + (1 − β2)·g² has no cancellation (both terms ≥ 0): its relative 2^-7 stays.

/** Whether the kernel's bf16 m (got) is within one step's bound of the oracle's (want), from the previous m (mPrev) and the clipped gradient g. */
export function momentWithin(got: number, want: number, mPrev: number, g: number, beta1: number): boolean {
  return Math.abs(got - want) <= 2 ** -7 * Math.abs(want) + 2 ** -22 * (beta1 * Math.abs(mPrev) + (1 - beta1) * Math.abs(g));
}
