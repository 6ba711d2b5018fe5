// Plain-TypeScript kernels of the training ops (src/ir/ops-train.ts): the losses and the gradients.
// Like kernels.ts, clarity first, then speed where training needs it, bit for bit the plain loop's
// results; sums accumulate in float64 and results are stored as float32.
// Every kernel here is checked against central finite differences of its forward op in float64
// (test/targets/ref-grad-check.test.ts), and the whole model against PyTorch.
import { columns, ropeAt, transpose, type RopeParams } from './kernels.js';
import { floatsFrom, newFloats } from './precision.js';

/** Rows counted by a loss: targets ≥ 0. A target ≥ V is an error naming the row. */
export function countedRows(targets: Int32Array, V: number): number {
  let n = 0;
  targets.forEach((t, r) => {
    if (t >= V) throw new RangeError(`target ${t} of row ${r} is outside the vocabulary (0..${V - 1})`);
    if (t >= 0) n++;
  });
  return n;
}

/** log Σ exp(row/τ) and the softmax of row/τ into `p` (float64). */
export function softmaxRow(logits: Float32Array, off: number, V: number, tau: number, p: Float64Array): number {
  let max = -Infinity;
  for (let v = 0; v < V; v++) max = Math.max(max, logits[off + v]! / tau);
  let sum = 0;
  for (let v = 0; v < V; v++) sum += p[v] = Math.exp(logits[off + v]! / tau - max);
  for (let v = 0; v < V; v++) p[v]! /= sum;
  return max + Math.log(sum);
}

export function crossEntropy(logits: Float32Array, targets: Int32Array): Float32Array {
  const V = logits.length / targets.length;
  const n = countedRows(targets, V);
  const p = new Float64Array(V);
  let total = 0;
  targets.forEach((t, r) => {
    if (t >= 0) total += softmaxRow(logits, r * V, V, 1, p) - logits[r * V + t]!;
  });
  return floatsFrom([n ? total / n : 0]);
}

export function crossEntropyGrad(logits: Float32Array, targets: Int32Array, dloss: Float32Array): Float32Array {
  const V = logits.length / targets.length;
  const n = countedRows(targets, V);
  const out = newFloats(logits.length);
  const p = new Float64Array(V);
  targets.forEach((t, r) => {
    if (t < 0) return;
    softmaxRow(logits, r * V, V, 1, p);
    p[t]! -= 1;
    for (let v = 0; v < V; v++) out[r * V + v] = (p[v]! * dloss[0]!) / n;
  });
  return out;
}

export function klDiv(student: Float32Array, teacher: Float32Array, targets: Int32Array, tau: number): Float32Array {
  const V = student.length / targets.length;
  const n = countedRows(targets, V);
  const ps = new Float64Array(V), pt = new Float64Array(V);
  let total = 0;
  targets.forEach((t, r) => {
    if (t < 0) return;
    const ls = softmaxRow(student, r * V, V, tau, ps);
    const lt = softmaxRow(teacher, r * V, V, tau, pt);
    // KL = Σ pt·(log pt − log ps), with log p = x/τ − logΣexp.
    let kl = 0;
    for (let v = 0; v < V; v++) if (pt[v]! > 0) kl += pt[v]! * (teacher[r * V + v]! / tau - lt - (student[r * V + v]! / tau - ls));
    total += tau * tau * kl;
  });
  return floatsFrom([n ? total / n : 0]);
}

export function klDivGrad(student: Float32Array, teacher: Float32Array, targets: Int32Array, dloss: Float32Array, tau: number): Float32Array {
  const V = student.length / targets.length;
  const n = countedRows(targets, V);
  const out = newFloats(student.length);
  const ps = new Float64Array(V), pt = new Float64Array(V);
  targets.forEach((t, r) => {
    if (t < 0) return;
    softmaxRow(student, r * V, V, tau, ps);
    softmaxRow(teacher, r * V, V, tau, pt);
    for (let v = 0; v < V; v++) out[r * V + v] = (tau * (ps[v]! - pt[v]!) * dloss[0]!) / n;
  });
  return out;
}

/** Per row of b [rows, width]: 1 if every entry is finite. */
function finiteRows(b: Float32Array, rows: number, width: number): Uint8Array {
  const ok = new Uint8Array(rows);
  for (let r = 0; r < rows; r++) {
    let all = 1;
    for (let n = r * width; n < (r + 1) * width; n++) if (!Number.isFinite(b[n]!)) all = 0;
    ok[r] = all;
  }
  return ok;
}

// How the two products below stay bit for bit the plain loops' (a zero of `a` skipped, every other
// term added in k order): they take four rows (matmul) or four k (matmul_tn) per pass and add a zero
// term a·b = ±0 instead of skipping it. That changes no sum: a sum starts at +0 and is never −0
// (x + y rounds to −0 only when both are −0), and s + (±0) = s for every other s. It holds for finite
// b only (0·∞ is NaN), so a pass that meets a non-finite row of b skips zeros one term at a time.

/** a [M,K] · b [K,N]; a zero a[m,k] contributes nothing (a sparse gradient skips its zeros). */
export function matmul(a: Float32Array, b: Float32Array, M: number, K: number): Float32Array {
  const N = b.length / K;
  const out = newFloats(M * N);
  const finite = finiteRows(b, K, N);
  const acc = [new Float64Array(N), new Float64Array(N), new Float64Array(N), new Float64Array(N)] as const;
  const [acc0, acc1, acc2, acc3] = acc;
  for (let m = 0; m < M; m += 4) {
    const rows = Math.min(4, M - m); // rows past M have a = 0 and are not stored
    for (const r of acc) r.fill(0);
    for (let k = 0; k < K; k++) {
      const a0 = a[m * K + k]!, a1 = rows > 1 ? a[(m + 1) * K + k]! : 0, a2 = rows > 2 ? a[(m + 2) * K + k]! : 0, a3 = rows > 3 ? a[(m + 3) * K + k]! : 0;
      if (a0 === 0 && a1 === 0 && a2 === 0 && a3 === 0) continue;
      const bo = k * N;
      if (finite[k]) {
        for (let n = 0; n < N; n++) {
          const bv = b[bo + n]!;
          acc0[n] += a0 * bv;
          acc1[n] += a1 * bv;
          acc2[n] += a2 * bv;
          acc3[n] += a3 * bv;
        }
      } else {
        [a0, a1, a2, a3].forEach((ar, r) => {
          if (ar !== 0) for (let n = 0; n < N; n++) acc[r]![n] += ar * b[bo + n]!;
        });
      }
    }
    for (let r = 0; r < rows; r++) out.set(acc[r]!, (m + r) * N);
  }
  return out;
}

/** aᵀ · b for a [K,M], b [K,N]: summed over the K rows; a zero a[k,m] contributes nothing. */
export function matmulTn(a: Float32Array, b: Float32Array, K: number): Float32Array {
  const M = a.length / K, N = b.length / K;
  const acc = new Float64Array(M * N);
  const finite = finiteRows(b, K, N);
  for (let k = 0; k < K; k += 4) {
    const ks = [k, k + 1, k + 2, k + 3].filter((kr) => kr < K); // a row past K: a = 0, b's last row
    const [k0, k1, k2, k3] = [0, 1, 2, 3].map((r) => ks[Math.min(r, ks.length - 1)]!) as [number, number, number, number];
    const b0 = k0 * N, b1 = k1 * N, b2 = k2 * N, b3 = k3 * N;
    const allFinite = ks.every((kr) => finite[kr]);
    for (let m = 0; m < M; m++) {
      const a0 = a[k0 * M + m]!, a1 = k1 > k0 ? a[k1 * M + m]! : 0, a2 = k2 > k1 ? a[k2 * M + m]! : 0, a3 = k3 > k2 ? a[k3 * M + m]! : 0;
      if (a0 === 0 && a1 === 0 && a2 === 0 && a3 === 0) continue;
      const o = m * N;
      if (allFinite) {
        for (let n = 0; n < N; n++) acc[o + n] = acc[o + n]! + a0 * b[b0 + n]! + a1 * b[b1 + n]! + a2 * b[b2 + n]! + a3 * b[b3 + n]!;
      } else {
        ks.forEach((kr) => {
          const ar = a[kr * M + m]!;
          if (ar !== 0) for (let n = 0; n < N; n++) acc[o + n] += ar * b[kr * N + n]!;
        });
      }
    }
  }
  return floatsFrom(acc);
}

export function embeddingGrad(dy: Float32Array, tokens: Int32Array, rows: number): Float32Array {
  const d = dy.length / tokens.length;
  const acc = new Float64Array(rows * d);
  tokens.forEach((tok, t) => {
    for (let i = 0; i < d; i++) acc[tok * d + i] += dy[t * d + i]!;
  });
  return floatsFrom(acc);
}

/** y = x·r·w with r = 1/√(mean(x²)+eps): dx = r·(dy⊙w) − r³/d · x · Σ(dy⊙w⊙x), dw = Σ_rows dy⊙x·r. */
export function rmsnormGrad(x: Float32Array, w: Float32Array, dy: Float32Array, eps: number): [Float32Array, Float32Array] {
  const d = w.length;
  const dx = newFloats(x.length);
  const dw = new Float64Array(d);
  for (let r = 0; r < x.length / d; r++) {
    const o = r * d;
    let ss = 0, dot = 0;
    for (let i = 0; i < d; i++) {
      ss += x[o + i]! * x[o + i]!;
      dot += dy[o + i]! * w[i]! * x[o + i]!;
    }
    const inv = 1 / Math.sqrt(ss / d + eps);
    for (let i = 0; i < d; i++) {
      dx[o + i] = inv * dy[o + i]! * w[i]! - ((inv ** 3) / d) * x[o + i]! * dot;
      dw[i] += dy[o + i]! * x[o + i]! * inv;
    }
  }
  return [dx, floatsFrom(dw)];
}

/** The transpose of rope: each pair rotated by −angle, i.e. rope at the negated positions. */
export function ropeGrad(dy: Float32Array, p: RopeParams, pos: ArrayLike<number>): Float32Array {
  return ropeAt(dy, p, Array.from(pos, (x) => -x));
}

/**
 * Gradients of causal attention within each sequence (kernels.ts seqAttention). Per row t and head:
 * P = softmax(q·kᵀ·scale) over its span (recomputed), o = P·v; dv += Pᵀ·do; dP = do·vᵀ;
 * dS = P ⊙ (dP − do·o); dq = dS·k·scale; dk += dSᵀ·q·scale. GQA: a kv head sums its query heads.
 * As in seqAttention, k, v and the dk, dv sums are held as columns (inner loops along the span); each
 * dot is still summed in i or s order and each dk, dv entry gets its terms in (t, head) order.
 */
export function attentionGrad(q: Float32Array, k: Float32Array, v: Float32Array, seq: Int32Array, dy: Float32Array, heads: number, kvHeads: number, hd: number): [Float32Array, Float32Array, Float32Array] {
  const kvw = kvHeads * hd, qw = heads * hd;
  const T = seq.length;
  const group = heads / kvHeads;
  const scale = 1 / Math.sqrt(hd);
  const dq = newFloats(q.length);
  const kT = columns(k, T, kvw), vT = columns(v, T, kvw);
  const dkT = new Float64Array(k.length), dvT = new Float64Array(v.length);
  const p = new Float64Array(T), dp = new Float64Array(T); // one (row, head)'s P and dP, then dS
  let start = 0;
  for (let t = 0; t < T; t++) {
    if (t > 0 && seq[t] !== seq[t - 1]) start = t;
    const n = t + 1 - start;
    for (let h = 0; h < heads; h++) {
      const c0 = Math.floor(h / group) * hd; // the kv head's first column
      const qo = t * qw + h * hd;
      p.fill(0, 0, n);
      dp.fill(0, 0, n);
      for (let i = 0; i < hd; i++) {
        const qi = q[qo + i]!, di = dy[qo + i]!, co = (c0 + i) * T + start;
        for (let s = 0; s < n; s++) {
          p[s] += qi * kT[co + s]!;
          dp[s] += di * vT[co + s]!;
        }
      }
      let max = -Infinity;
      for (let s = 0; s < n; s++) max = Math.max(max, (p[s] *= scale));
      let sum = 0;
      for (let s = 0; s < n; s++) sum += p[s] = Math.exp(p[s]! - max);
      let doO = 0; // do · o = Σ_s P_s (do · v_s)
      for (let s = 0; s < n; s++) {
        p[s]! /= sum;
        doO += p[s]! * dp[s]!;
      }
      for (let s = 0; s < n; s++) dp[s] = p[s]! * (dp[s]! - doO) * scale; // dS
      for (let i = 0; i < hd; i++) {
        const qi = q[qo + i]!, di = dy[qo + i]!, co = (c0 + i) * T + start;
        let acc = 0;
        for (let s = 0; s < n; s++) {
          dvT[co + s] += p[s]! * di;
          acc += dp[s]! * kT[co + s]!;
          dkT[co + s] += dp[s]! * qi;
        }
        dq[qo + i] = acc;
      }
    }
  }
  return [dq, transpose(dkT, kvw, T), transpose(dvT, kvw, T)];
}

const sig = (x: number) => 1 / (1 + Math.exp(-x));

/** out[i] = f(x[i], dy[i]) (a plain loop: TypedArray.map with a closure is several times slower). */
function each2(x: Float32Array, dy: Float32Array, f: (x: number, dy: number) => number): Float32Array {
  const out = newFloats(x.length);
  for (let i = 0; i < x.length; i++) out[i] = f(x[i]!, dy[i]!);
  return out;
}

export const siluGrad = (x: Float32Array, dy: Float32Array) => each2(x, dy, (v, d) => { const s = sig(v); return d * s * (1 + v * (1 - s)); });
export const sigmoidGrad = (x: Float32Array, dy: Float32Array) => each2(x, dy, (v, d) => { const s = sig(v); return d * s * (1 - s); });

export function mocScatter(dy: Float32Array, idx: Int32Array, K: number, F: number): Float32Array {
  const out = newFloats((idx.length / K) * F);
  for (let t = 0, j = 0; j < idx.length; t++) for (let k = 0; k < K; k++, j++) out[t * F + idx[j]!] = dy[j]!;
  return out;
}

/** [rows, d] with row idx[t,k] += a[t,k]·b[t,:]. */
export function mocRowsGrad(a: Float32Array, b: Float32Array, idx: Int32Array, K: number, rows: number): Float32Array {
  const T = idx.length / K, d = b.length / T;
  const acc = new Float64Array(rows * d);
  for (let t = 0, j = 0; j < idx.length; t++) {
    const bo = t * d;
    for (let k = 0; k < K; k++, j++) {
      const row = idx[j]! * d, av = a[j]!;
      for (let i = 0; i < d; i++) acc[row + i] += av * b[bo + i]!;
    }
  }
  return floatsFrom(acc);
}

export function concat(parts: Float32Array[], widths: number[]): Float32Array {
  const W = widths.reduce((s, w) => s + w, 0), R = parts[0]!.length / widths[0]!;
  const out = newFloats(R * W);
  for (let r = 0; r < R; r++) {
    let o = r * W;
    parts.forEach((p, i) => {
      out.set(p.subarray(r * widths[i]!, (r + 1) * widths[i]!), o);
      o += widths[i]!;
    });
  }
  return out;
}

export function indexNarrow(idx: Int32Array): Uint16Array {
  const out = new Uint16Array(idx.length);
  idx.forEach((v, i) => {
    if (v < 0 || v > 0xffff) throw new RangeError(`index ${v} does not fit in 16 bits`);
    out[i] = v;
  });
  return out;
}
export const indexWiden = (idx: Uint16Array) => Int32Array.from(idx);
