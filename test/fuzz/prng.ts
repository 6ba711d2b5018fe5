// A small seeded PRNG (mulberry32) with the choices mutators make. A fuzz case is identified by
// (format, seed, index); its generator is seeded from a hash of the three, so any case replays alone.

export class Rng {
  private s: number;
  constructor(seed: number) {
    this.s = seed >>> 0;
  }
  /** Uniform in [0, 1). */
  next(): number {
    this.s = (this.s + 0x6d2b79f5) >>> 0;
    let t = this.s;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  }
  /** Integer in [0, n). */
  int(n: number): number {
    return Math.floor(this.next() * n);
  }
  /** Integer in [lo, hi]. */
  range(lo: number, hi: number): number {
    return lo + this.int(hi - lo + 1);
  }
  chance(p: number): boolean {
    return this.next() < p;
  }
  pick<T>(xs: readonly T[]): T {
    return xs[this.int(xs.length)]!;
  }
  /** Picks one of the weighted alternatives and runs it. */
  weighted<T>(alts: ReadonlyArray<readonly [number, () => T]>): T {
    let r = this.next() * alts.reduce((a, [w]) => a + w, 0);
    for (const [w, f] of alts) {
      if ((r -= w) < 0) return f();
    }
    return alts[alts.length - 1]![1]();
  }
}

/** FNV-1a of the case id: the seed of that case's generator. */
export function caseSeed(format: string, seed: number, index: number): number {
  let h = 0x811c9dc5;
  for (const ch of `${format}:${seed}:${index}`) h = Math.imul(h ^ ch.charCodeAt(0), 0x01000193) >>> 0;
  return h;
}
