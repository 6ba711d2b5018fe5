// Seeded random test inputs, one generator for the CUDA and the WGSL kernel checks: xorshift32,
// uniform in [-1, 1), so a seed names the same values in every test and benchmark.

/** Seeded uniform [-1, 1) values. */
export function rng(seed: number): () => number {
  let s = seed >>> 0 || 1;
  return () => {
    s ^= s << 13; s >>>= 0; s ^= s >>> 17; s ^= s << 5; s >>>= 0;
    return (s / 4294967296) * 2 - 1;
  };
}

/** n values from `r`, scaled to [-scale, scale). */
export function randomFrom(n: number, r: () => number, scale = 1): Float32Array {
  return Float32Array.from({ length: n }, () => r() * scale);
}
