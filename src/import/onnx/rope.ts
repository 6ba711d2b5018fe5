// RoPE's theta from the numbers a graph holds: the inverse frequencies inv[i] = theta^(-2i/head_dim)
// (computed tables), or the angle step of cos/sin caches [positions, head_dim/2] (fused forms).
import { f32Decimal } from './f32.js';

/** theta from inv (head_dim/2 values), or a message saying why they are not plain RoPE frequencies. */
export function thetaFromInverse(inv: ArrayLike<number>, hd: number): number | string {
  const half = hd / 2;
  if (inv.length !== half || half < 2 || Math.abs(inv[0]! - 1) > 1e-6) return `no RoPE inverse-frequency table of ${half} values starting at 1`;
  const theta = f32Decimal(Math.pow(inv[half - 1]!, -hd / (2 * (half - 1))));
  const rounded = Number(theta.toPrecision(6));
  for (let i = 0; i < half; i++) {
    if (Math.abs(inv[i]! / Math.pow(rounded, (-2 * i) / hd) - 1) > 1e-5) return 'RoPE frequencies are not theta^(-2i/head_dim) (scaled RoPE is not supported from ONNX)';
  }
  return rounded;
}

/** The inverse frequencies behind cos/sin caches: the angle of position 1 in each column. */
export function inverseFromCaches(cosRow1: ArrayLike<number>, sinRow1: ArrayLike<number>): number[] {
  return Array.from(cosRow1, (c, i) => Math.atan2(sinRow1[i]!, c));
}
