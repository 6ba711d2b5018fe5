// Next-token choice: greedy, or temperature + nucleus (top-p) sampling from a seeded generator.

/**
 * mulberry32: a small, fast, seedable PRNG; plenty for sampling and reproducible across platforms.
 * Its whole state is one uint32 (`state`), so a caller can save it and continue the same stream later.
 */
export class Mulberry32 {
  state: number;
  constructor(seed: number) { this.state = seed >>> 0; }
  /** The next value in [0, 1). */
  next(): number {
    this.state = (this.state + 0x6d2b79f5) >>> 0;
    let t = this.state;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  }
}

/** mulberry32 as a function (see Mulberry32). */
export function seededRandom(seed: number): () => number {
  const g = new Mulberry32(seed);
  return () => g.next();
}

export interface SamplingOptions {
  /** 0 means greedy. */
  temperature: number;
  /** Nucleus sampling: keep the smallest set of tokens whose probability reaches topP (1 = all). */
  topP: number;
  random: () => number;
}

/** Index of the largest logit (ties → lower index). */
export function argmax(logits: Float32Array): number {
  let best = 0;
  for (let i = 1; i < logits.length; i++) if (logits[i]! > logits[best]!) best = i;
  return best;
}

export function sampleToken(logits: Float32Array, opts: SamplingOptions): number {
  if (opts.temperature <= 0) return argmax(logits);
  const max = logits[argmax(logits)]!;
  const probs = Array.from(logits, (l, i) => ({ i, p: Math.exp((l - max) / opts.temperature) }));
  const total = probs.reduce((s, x) => s + x.p, 0);
  probs.forEach((x) => (x.p /= total));
  let pool = probs;
  if (opts.topP < 1) {
    pool = [...probs].sort((a, b) => b.p - a.p || a.i - b.i);
    let cum = 0;
    let n = 0;
    while (n < pool.length && cum < opts.topP) cum += pool[n++]!.p;
    pool = pool.slice(0, Math.max(1, n));
  }
  const mass = pool.reduce((s, x) => s + x.p, 0);
  let r = opts.random() * mass;
  for (const x of pool) {
    r -= x.p;
    if (r < 0) return x.i;
  }
  return pool[pool.length - 1]!.i;
}
