// Plain-TypeScript kernels: the oracle every other target is tested against. Clarity first, then
// speed where training needs it; sums accumulate in float64 (JS numbers) and results are stored as
// float32. Where a kernel is written for speed (several rows or channels in one pass, independent
// accumulators), each output's terms are still added one by one in the order of the plain loop
// (the comment says why), so the results are bit for bit those of that loop.
// All matrices are row-major; `T` is the number of tokens in the call.
import { newFloats } from './precision.js';

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

/**
 * y[t,o] = Σ_i x[t,i]·w[o,i]; w is [out, in]. Four rows of x go through each row of w together (w is
 * read from memory once per four rows, and the four sums are independent chains the CPU overlaps);
 * each sum still adds its terms in i order. Past the last row, rows repeat the last one, unstored.
 */
export function linear(x: Float32Array, w: Float32Array, inDim: number): Float32Array {
  const T = x.length / inDim;
  const out = w.length / inDim;
  const y = newFloats(T * out);
  // Four rows at a time share each read of a weight row; the rows left over (all of them when
  // decoding one token) go one at a time. Each sum adds its terms in the same order either way.
  let t = 0;
  for (; t + 4 <= T; t += 4) {
    const x0 = t * inDim, x1 = x0 + inDim, x2 = x1 + inDim, x3 = x2 + inDim;
    for (let o = 0; o < out; o++) {
      const wo = o * inDim;
      let a0 = 0, a1 = 0, a2 = 0, a3 = 0;
      for (let i = 0; i < inDim; i++) {
        const wi = w[wo + i]!;
        a0 += x[x0 + i]! * wi;
        a1 += x[x1 + i]! * wi;
        a2 += x[x2 + i]! * wi;
        a3 += x[x3 + i]! * wi;
      }
      y[t * out + o] = a0;
      y[(t + 1) * out + o] = a1;
      y[(t + 2) * out + o] = a2;
      y[(t + 3) * out + o] = a3;
    }
  }
  for (; t < T; t++) {
    const x0 = t * inDim;
    for (let o = 0; o < out; o++) {
      const wo = o * inDim;
      let a0 = 0;
      for (let i = 0; i < inDim; i++) a0 += x[x0 + i]! * w[wo + i]!;
      y[t * out + o] = a0;
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
 * Rows [0, rows) of x [·, width] as columns: out[c·rows + r] = x[r, c], in float64 (exact). The
 * attention kernels read keys and values this way so that their inner loops run along the rows
 * (positions), contiguous and as long as the span, instead of along a head's few columns.
 */
export function columns(x: Float32Array, rows: number, width: number): Float64Array {
  const out = new Float64Array(rows * width);
  for (let r = 0; r < rows; r++) for (let c = 0; c < width; c++) out[c * rows + r] = x[r * width + c]!;
  return out;
}

/**
 * GQA attention of q [T, heads·hd] over key/value rows k, v [·, kvHeads·hd]: row t attends to the
 * rows span(t) = [from, to) with softmax(q·k/√hd). Shared by the causal and the cached form.
 * Every score is still Σ_i q_i·k_si in i order and every output Σ_s p_s·v_si in s order; the loops
 * run over s innermost (k and v as columns) because a head has only a few columns.
 */
function attend(q: Float32Array, k: Float32Array, v: Float32Array, heads: number, kvHeads: number, hd: number, span: (t: number) => [number, number]): Float32Array {
  const kvw = kvHeads * hd;
  const T = q.length / (heads * hd);
  const group = heads / kvHeads;
  const scale = 1 / Math.sqrt(hd);
  const out = newFloats(q.length);
  const spans = Array.from({ length: T }, (_, t) => span(t));
  const rows = spans.reduce((most, [, to]) => Math.max(most, to), 0); // key/value rows any query reads
  const kT = columns(k, rows, kvw), vT = columns(v, rows, kvw);
  const scores = new Float64Array(rows);
  for (let t = 0; t < T; t++) {
    const [from, to] = spans[t]!;
    const n = to - from;
    for (let h = 0; h < heads; h++) {
      const c0 = Math.floor(h / group) * hd; // the kv head's first column
      const qo = t * heads * hd + h * hd;
      scores.fill(0, 0, n);
      for (let i = 0; i < hd; i++) {
        const qi = q[qo + i]!, ko = (c0 + i) * rows + from;
        for (let s = 0; s < n; s++) scores[s] += qi * kT[ko + s]!;
      }
      let max = -Infinity;
      for (let s = 0; s < n; s++) {
        scores[s] *= scale;
        if (scores[s]! > max) max = scores[s]!;
      }
      let sum = 0;
      for (let s = 0; s < n; s++) sum += scores[s] = Math.exp(scores[s]! - max);
      for (let i = 0; i < hd; i++) {
        const vo = (c0 + i) * rows + from;
        let acc = 0;
        for (let s = 0; s < n; s++) acc += scores[s]! * vT[vo + s]!;
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

/** out[i] = f(x[i]) (a plain loop: TypedArray.map with a closure is several times slower). */
function each(x: Float32Array, f: (v: number) => number): Float32Array {
  const out = newFloats(x.length);
  for (let i = 0; i < x.length; i++) out[i] = f(x[i]!);
  return out;
}

export const silu = (x: Float32Array) => each(x, (v) => v / (1 + Math.exp(-v)));
export const sigmoid = (x: Float32Array) => each(x, (v) => 1 / (1 + Math.exp(-v)));

export function mul(a: Float32Array, b: Float32Array): Float32Array {
  const out = newFloats(a.length);
  for (let i = 0; i < a.length; i++) out[i] = a[i]! * b[i]!;
  return out;
}

export function add(a: Float32Array, b: Float32Array): Float32Array {
  const out = newFloats(a.length);
  for (let i = 0; i < a.length; i++) out[i] = a[i]! + b[i]!;
  return out;
}

export function transpose(x: ArrayLike<number>, rows: number, cols: number): Float32Array {
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

/**
 * Indices, ascending, of the k largest of row[from, to) (ties → lower index). NaN counts as smallest.
 * How: sort a copy of the values (NaN as −∞; a native numeric sort) to find the threshold, the k-th
 * largest value; then, in index order, take every index above it and, of those equal to it, the
 * first (k − number above) — exactly the indices a stable sort by value, descending, puts first.
 * (−0 and +0 compare equal here, as in the comparator this replaced.) `sorted` is scratch space.
 */
function topK(row: Float32Array, from: number, to: number, k: number, out: number[], sorted: Float64Array): void {
  const n = to - from;
  if (k >= n) {
    for (let i = from; i < to; i++) out.push(i);
    return;
  }
  if (k <= 0) return;
  const val = (i: number) => (Number.isNaN(row[i]!) ? -Infinity : row[i]!);
  const vals = sorted.subarray(0, n);
  for (let i = 0; i < n; i++) vals[i] = val(from + i);
  vals.sort();
  const threshold = vals[n - k]!;
  let above = 0;
  for (let i = n - k + 1; i < n; i++) if (vals[i]! > threshold) above++;
  let ties = k - above; // how many indices equal to the threshold are kept
  for (let i = from; i < to; i++) {
    const x = val(i);
    if (x > threshold || (x === threshold && ties-- > 0)) out.push(i);
  }
}

/** MoC channel selection, per token row of g [T, F]: K largest, or the a largest of each b-block. */
export function mocSelect(g: Float32Array, F: number, sel: { k: number } | { a: number; b: number }): Int32Array {
  const T = g.length / F;
  const all: number[] = [];
  const sorted = new Float64Array(F);
  for (let t = 0; t < T; t++) {
    const row = g.subarray(t * F, (t + 1) * F);
    if ('k' in sel) topK(row, 0, F, sel.k, all, sorted);
    else for (let s = 0; s < F; s += sel.b) topK(row, s, Math.min(F, s + sel.b), sel.a, all, sorted);
  }
  return Int32Array.from(all);
}

export function mocGather(g: Float32Array, F: number, idx: Int32Array, K: number): Float32Array {
  const out = newFloats(idx.length);
  for (let t = 0, j = 0; j < idx.length; t++) for (let k = 0; k < K; k++, j++) out[j] = g[t * F + idx[j]!]!;
  return out;
}

/**
 * Up projection of the kept channels only: y[t,k] = Σ_i x[t,i]·w_up[idx[t,k], i]. Four kept channels
 * of a row at a time (x[t,i] read once for four independent sums), each summed in i order; past the
 * row's last channel the last one repeats, unstored.
 */
export function mocUp(x: Float32Array, wUp: Float32Array, d: number, idx: Int32Array, K: number): Float32Array {
  const out = newFloats(idx.length);
  for (let t = 0; t < idx.length / K; t++) {
    const xo = t * d, j0 = t * K, last = j0 + K - 1;
    for (let j = j0; j <= last; j += 4) {
      const r0 = idx[j]! * d, r1 = idx[Math.min(j + 1, last)]! * d, r2 = idx[Math.min(j + 2, last)]! * d, r3 = idx[Math.min(j + 3, last)]! * d;
      let a0 = 0, a1 = 0, a2 = 0, a3 = 0;
      for (let i = 0; i < d; i++) {
        const xi = x[xo + i]!;
        a0 += xi * wUp[r0 + i]!;
        a1 += xi * wUp[r1 + i]!;
        a2 += xi * wUp[r2 + i]!;
        a3 += xi * wUp[r3 + i]!;
      }
      out[j] = a0;
      if (j + 1 <= last) out[j + 1] = a1;
      if (j + 2 <= last) out[j + 2] = a2;
      if (j + 3 <= last) out[j + 3] = a3;
    }
  }
  return out;
}

/**
 * Down projection from the kept channels: y[t,:] = Σ_k z[t,k]·w_down_t[idx[t,k], :], in channel order.
 * Four channels per pass over acc: `acc + t0 + t1 + t2 + t3` adds left to right, the same order as
 * one channel per pass (the last K mod 4 channels go one per pass).
 */
export function mocDown(z: Float32Array, wDownT: Float32Array, d: number, idx: Int32Array, K: number): Float32Array {
  const T = idx.length / K;
  const out = newFloats(T * d);
  const acc = new Float64Array(d);
  for (let t = 0; t < T; t++) {
    acc.fill(0);
    const last = t * K + K - 1;
    let k = t * K;
    for (; k + 3 <= last; k += 4) {
      const z0 = z[k]!, z1 = z[k + 1]!, z2 = z[k + 2]!, z3 = z[k + 3]!;
      const r0 = idx[k]! * d, r1 = idx[k + 1]! * d, r2 = idx[k + 2]! * d, r3 = idx[k + 3]! * d;
      for (let j = 0; j < d; j++) acc[j] = acc[j]! + z0 * wDownT[r0 + j]! + z1 * wDownT[r1 + j]! + z2 * wDownT[r2 + j]! + z3 * wDownT[r3 + j]!;
    }
    for (; k <= last; k++) {
      const zk = z[k]!, row = idx[k]! * d;
      for (let j = 0; j < d; j++) acc[j] += zk * wDownT[row + j]!;
    }
    out.set(acc, t * d);
  }
  return out;
}
