// Random bf16 weights for the WGSL benchmarks, made directly as bits (fast enough for GBs).

/**
 * A seeded source of bf16 weights: each call returns `elements` values (two to a u32 word, as the
 * wgsl target stores them) of magnitude ~0.01–0.03 with random signs, continuing one xorshift stream.
 */
export function bf16Source(seed: number): (elements: number) => Uint32Array {
  let s = seed;
  const half = (b: number) => ((b & 1) << 15) | ((120 + ((b >>> 1) & 3)) << 7) | ((b >>> 3) & 0x7f);
  return (elements) => {
    const out = new Uint32Array(elements / 2);
    for (let i = 0; i < out.length; i++) {
      s ^= s << 13; s ^= s >>> 17; s ^= s << 5;
      out[i] = (half(s & 0x3ff) | (half((s >>> 10) & 0x3ff) << 16)) >>> 0;
    }
    return out;
  };
}
