// Global-norm gradient clipping, as torch.nn.utils.clip_grad_norm_ (2-norm): the norm of all
// gradients together is ‖g‖ = √(Σ over every element of g²); when it exceeds maxNorm every gradient is
// multiplied by maxNorm / (‖g‖ + 1e-6). (torch multiplies by min(1, that) always; ×1 changes nothing.)

/** torch's guard against dividing by a zero norm. */
const CLIP_EPS = 1e-6;

/**
 * Clips `grads` in place to global 2-norm `maxNorm` and returns the norm before clipping. Sums in f64,
 * so the norm is at least as accurate as torch's f32 reduction. A non-finite norm is returned as is
 * and nothing is scaled (the caller decides what to do with an overflowed step).
 */
export function clipGlobalNorm(grads: Map<string, Float32Array>, maxNorm: number): number {
  if (!(maxNorm > 0)) throw new Error(`clipGlobalNorm: maxNorm ${maxNorm} must be > 0`);
  const norm = globalNorm(grads.values());
  const scale = clipFactor(norm, maxNorm);
  if (scale === 1) return norm;
  for (const g of grads.values()) {
    for (let i = 0; i < g.length; i++) g[i] = g[i]! * scale;
  }
  return norm;
}

/**
 * The factor clipGlobalNorm multiplies every gradient by at global norm `norm`: maxNorm / (norm + 1e-6)
 * above maxNorm, else 1 (and 1 for a non-finite norm). The CUDA kernel (targets/cuda/ptx/train-clip.ts)
 * computes the same in f32.
 */
export function clipFactor(norm: number, maxNorm: number): number {
  return Number.isFinite(norm) && norm > maxNorm ? maxNorm / (norm + CLIP_EPS) : 1;
}

/** √(Σ x²) over every element of every array, accumulated in f64. */
export function globalNorm(arrays: Iterable<Float32Array>): number {
  let sum = 0;
  for (const a of arrays) {
    for (let i = 0; i < a.length; i++) sum += a[i]! * a[i]!;
  }
  return Math.sqrt(sum);
}
