// Plain-TypeScript kernels: the oracle every other target is tested against. Clarity over speed;
// sums accumulate in float64 (JS numbers) and results are stored as float32.
// All matrices are row-major; `T` is the number of tokens in the call.
import { floatsFrom, newFloats } from './precision.js';

export function embedding(table: Float32Array, d: number, tokens: Int32Array): Float32Array {
  const out = newFloats(tokens.length * d);
  const vocab = table.length / d;
  tokens.forEach((tok, t) => {
    if (tok < 0 || tok >= vocab) throw new RangeError(`token id ${tok} outside the vocabulary (0..${vocab - 1})`);
    out.set(table.subarray(tok * d, (tok + 1) * d), t * d);
  });
  return out;
}

export function rmsnorm(x: Float32Array, w: Float32Array, eps: number): Float32Array {
  const d = w.length;
  const out = newFloats(x.length);
  for (let r = 0; r < x.length / d; r++) {
    let ss = 0;
    for (let i = 0; i < d; i++) ss += x[r * d + i]! * x[r * d + i]!;
    const inv = 1 / Math.sqrt(ss / d + eps);
    for (let i = 0; i < d; i++) out[r * d + i] = x[r * d + i]! * inv * w[i]!;
  }
  return out;
}

/** y[t,o] = Σ_i x[t,i]·w[o,i]; w is [out, in]. */
export function linear(x: Float32Array, w: Float32Array, inDim: number): Float32Array {
  const T = x.length / inDim;
  const out = w.length / inDim;
  const y = newFloats(T * out);
  for (let t = 0; t < T; t++) {
    for (let o = 0; o < out; o++) {
      let acc = 0;
      for (let i = 0; i < inDim; i++) acc += x[t * inDim + i]! * w[o * inDim + i]!;
      y[t * out + o] = acc;
    }
  }
  return y;
}

export interface RopeParams {
  heads: number;
  headDim: number;
  theta: number;
  style: 'half' | 'interleaved';
  llama3?: { factor: number; lowFreqFactor: number; highFreqFactor: number; originalMaxPos: number };
}

/** Inverse frequencies θ^(-2i/hd), adjusted by llama3 rope scaling when given (as transformers does). */
export function ropeInvFreq(p: RopeParams): Float64Array {
  const half = p.headDim / 2;
  const inv = new Float64Array(half);
  for (let i = 0; i < half; i++) inv[i] = 1 / p.theta ** ((2 * i) / p.headDim);
  if (p.llama3) {
    const { factor, lowFreqFactor, highFreqFactor, originalMaxPos } = p.llama3;
    const lowWavelen = originalMaxPos / lowFreqFactor;
    const highWavelen = originalMaxPos / highFreqFactor;
    for (let i = 0; i < half; i++) {
      const wavelen = (2 * Math.PI) / inv[i]!;
      if (wavelen > lowWavelen) inv[i] = inv[i]! / factor;
      else if (wavelen >= highWavelen) {
        const smooth = (originalMaxPos / wavelen - lowFreqFactor) / (highFreqFactor - lowFreqFactor);
        inv[i] = (1 - smooth) * (inv[i]! / factor) + smooth * inv[i]!;
      }
    }
  }
  return inv;
}

/** Rotates x [T, heads·hd] in place of a copy, row t at position pos[t]. */
export function ropeAt(x: Float32Array, p: RopeParams, pos: ArrayLike<number>): Float32Array {
  const { heads, headDim: hd } = p;
  const half = hd / 2;
  const inv = ropeInvFreq(p);
  const out = newFloats(x.length);
  const T = x.length / (heads * hd);
  for (let t = 0; t < T; t++) {
    for (let i = 0; i < half; i++) {
      const ang = pos[t]! * inv[i]!;
      const c = Math.cos(ang);
      const s = Math.sin(ang);
      for (let h = 0; h < heads; h++) {
        const base = t * heads * hd + h * hd;
        const [ia, ib] = p.style === 'half' ? [base + i, base + i + half] : [base + 2 * i, base + 2 * i + 1];
        const a = x[ia]!;
        const b = x[ib]!;
        out[ia] = a * c - b * s;
        out[ib] = a * s + b * c;
      }
    }
  }
  return out;
}

/** Positions pos0, pos0+1, … for T rows. */
export const positionsFrom = (pos0: number, T: number) => Int32Array.from({ length: T }, (_, t) => pos0 + t);

/** Rotates x [T, heads·hd], token t at position pos0 + t. */
export function rope(x: Float32Array, p: RopeParams, pos0: number): Float32Array {
  return ropeAt(x, p, positionsFrom(pos0, x.length / (p.heads * p.headDim)));
}

export interface KvSlot {
  k: Float32Array; // [capacity, kvHeads·hd]
  v: Float32Array;
}

/** The cache [C, w] with row pos[t] replaced by x[t] (a new array: kv_write is pure). */
export function kvWrite(cache: Float32Array, x: Float32Array, pos: ArrayLike<number>): Float32Array {
  const out = cache.slice();
  const w = x.length / pos.length;
  for (let t = 0; t < pos.length; t++) {
    if (pos[t]! < 0 || (pos[t]! + 1) * w > cache.length) throw new RangeError(`position ${pos[t]} outside the cache (${cache.length / w} rows)`);
    out.set(x.subarray(t * w, (t + 1) * w), pos[t]! * w);
  }
  return out;
}

/**
 * GQA attention of q [T, heads·hd] over key/value rows k, v [·, kvHeads·hd]: row t attends to the
 * rows span(t) = [from, to) with softmax(q·k/√hd). Shared by the causal and the cached form.
 */
function attend(q: Float32Array, k: Float32Array, v: Float32Array, heads: number, kvHeads: number, hd: number, span: (t: number) => [number, number]): Float32Array {
  const kvw = kvHeads * hd;
  const T = q.length / (heads * hd);
  const group = heads / kvHeads;
  const scale = 1 / Math.sqrt(hd);
  const out = newFloats(q.length);
  for (let t = 0; t < T; t++) {
    const [from, to] = span(t);
    const scores = new Float64Array(to - from);
    for (let h = 0; h < heads; h++) {
      const kh = Math.floor(h / group);
      const qo = t * heads * hd + h * hd;
      let max = -Infinity;
      for (let s = from; s < to; s++) {
        let dot = 0;
        for (let i = 0; i < hd; i++) dot += q[qo + i]! * k[s * kvw + kh * hd + i]!;
        scores[s - from] = dot * scale;
        if (scores[s - from]! > max) max = scores[s - from]!;
      }
      let sum = 0;
      for (let s = 0; s < to - from; s++) sum += scores[s] = Math.exp(scores[s]! - max);
      for (let i = 0; i < hd; i++) {
        let acc = 0;
        for (let s = from; s < to; s++) acc += scores[s - from]! * v[s * kvw + kh * hd + i]!;
        out[qo + i] = acc / sum;
      }
    }
  }
  return out;
}

/** The attention op: causal within each sequence (row t attends to rows s ≤ t of its own sequence). */
export function seqAttention(q: Float32Array, k: Float32Array, v: Float32Array, seq: Int32Array, heads: number, kvHeads: number, hd: number): Float32Array {
  const start = new Int32Array(seq.length);
  for (let t = 0; t < seq.length; t++) {
    if (t > 0 && seq[t] !== seq[t - 1] && seq.subarray(0, t).includes(seq[t]!)) throw new RangeError(`sequence ${seq[t]}'s rows are not contiguous (row ${t})`);
    start[t] = t > 0 && seq[t] === seq[t - 1] ? start[t - 1]! : t;
  }
  return attend(q, k, v, heads, kvHeads, hd, (t) => [start[t]!, t + 1]);
}

/** The kv_attention op: row t attends to cache rows 0..pos[t]. */
export function cachedAttention(q: Float32Array, kCache: Float32Array, vCache: Float32Array, pos: ArrayLike<number>, heads: number, kvHeads: number, hd: number): Float32Array {
  return attend(q, kCache, vCache, heads, kvHeads, hd, (t) => [0, pos[t]! + 1]);
}

/**
 * Causal GQA attention through a mutable cache (the kernels' tests use it): appends k, v at pos0,
 * then each new token t attends to cache positions 0..pos0+t. q [T, heads·hd] → [T, heads·hd].
 */
export function attention(q: Float32Array, k: Float32Array, v: Float32Array, cache: KvSlot, pos0: number, heads: number, kvHeads: number, hd: number): Float32Array {
  const kvw = kvHeads * hd;
  cache.k.set(k, pos0 * kvw);
  cache.v.set(v, pos0 * kvw);
  return cachedAttention(q, cache.k, cache.v, positionsFrom(pos0, k.length / kvw), heads, kvHeads, hd);
}

export const silu = (x: Float32Array) => x.map((v) => v / (1 + Math.exp(-v)));
export const sigmoid = (x: Float32Array) => x.map((v) => 1 / (1 + Math.exp(-v)));
export const mul = (a: Float32Array, b: Float32Array) => a.map((v, i) => v * b[i]!);
export const add = (a: Float32Array, b: Float32Array) => a.map((v, i) => v + b[i]!);

export function transpose(x: Float32Array, rows: number, cols: number): Float32Array {
  const out = newFloats(x.length);
  for (let r = 0; r < rows; r++) for (let c = 0; c < cols; c++) out[c * rows + r] = x[r * cols + c]!;
  return out;
}

/** x [rows, parts·w] cut along the last axis into `parts` matrices [rows, w]. */
export function split(x: Float32Array, width: number, parts: number): Float32Array[] {
  const w = width / parts, rows = x.length / width;
  return Array.from({ length: parts }, (_, p) => {
    const out = newFloats(rows * w);
    for (let r = 0; r < rows; r++) out.set(x.subarray(r * width + p * w, r * width + (p + 1) * w), r * w);
    return out;
  });
}

/** Indices, ascending, of the k largest of row[from, to) (ties → lower index). NaN counts as smallest. */
function topK(row: Float32Array, from: number, to: number, k: number, out: number[]): void {
  const ids = [];
  for (let i = from; i < to; i++) ids.push(i);
  const val = (i: number) => (Number.isNaN(row[i]!) ? -Infinity : row[i]!);
  ids.sort((a, b) => val(b) - val(a) || a - b);
  out.push(...ids.slice(0, k).sort((a, b) => a - b));
}

/** MoC channel selection, per token row of g [T, F]: K largest, or the a largest of each b-block. */
export function mocSelect(g: Float32Array, F: number, sel: { k: number } | { a: number; b: number }): Int32Array {
  const T = g.length / F;
  const all: number[] = [];
  for (let t = 0; t < T; t++) {
    const row = g.subarray(t * F, (t + 1) * F);
    if ('k' in sel) topK(row, 0, F, sel.k, all);
    else for (let s = 0; s < F; s += sel.b) topK(row, s, Math.min(F, s + sel.b), sel.a, all);
  }
  return Int32Array.from(all);
}

export function mocGather(g: Float32Array, F: number, idx: Int32Array, K: number): Float32Array {
  const out = newFloats(idx.length);
  for (let i = 0; i < idx.length; i++) out[i] = g[Math.floor(i / K) * F + idx[i]!]!;
  return out;
}

/** Up projection of the kept channels only: y[t,k] = Σ_i x[t,i]·w_up[idx[t,k], i]. */
export function mocUp(x: Float32Array, wUp: Float32Array, d: number, idx: Int32Array, K: number): Float32Array {
  const out = newFloats(idx.length);
  for (let j = 0; j < idx.length; j++) {
    const t = Math.floor(j / K);
    const row = idx[j]! * d;
    let acc = 0;
    for (let i = 0; i < d; i++) acc += x[t * d + i]! * wUp[row + i]!;
    out[j] = acc;
  }
  return out;
}

/** Down projection from the kept channels: y[t,:] = Σ_k z[t,k]·w_down_t[idx[t,k], :], in channel order. */
export function mocDown(z: Float32Array, wDownT: Float32Array, d: number, idx: Int32Array, K: number): Float32Array {
  const T = idx.length / K;
  const out = newFloats(T * d);
  const acc = new Float64Array(d);
  for (let t = 0; t < T; t++) {
    acc.fill(0);
    for (let k = 0; k < K; k++) {
      const zk = z[t * K + k]!;
      const row = idx[t * K + k]! * d;
      for (let j = 0; j < d; j++) acc[j] += zk * wDownT[row + j]!;
    }
    out.set(acc, t * d);
  }
  return out;
}
