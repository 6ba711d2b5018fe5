// Plain-TypeScript kernels of the training ops (src/ir/ops-train.ts): the losses and the gradients.
// Like kernels.ts, clarity over speed; sums accumulate in float64 and results are stored as float32.
// Every kernel here is checked against central finite differences of its forward op in float64
// (test/targets/ref-grad-kernels.test.ts), and the whole model against PyTorch.
import { ropeInvFreq, type RopeParams } from './kernels.js';
import { floatsFrom, newFloats } from './precision.js';

/** Rows counted by a loss: targets ≥ 0. A target ≥ V is an error naming the row. */
function countedRows(targets: Int32Array, V: number): number {
  let n = 0;
  targets.forEach((t, r) => {
    if (t >= V) throw new RangeError(`target ${t} of row ${r} is outside the vocabulary (0..${V - 1})`);
    if (t >= 0) n++;
  });
  return n;
}

/** log Σ exp(row/τ) and the softmax of row/τ into `p` (float64). */
function softmaxRow(logits: Float32Array, off: number, V: number, tau: number, p: Float64Array): number {
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

/** a [M,K] · b [K,N]. */
export function matmul(a: Float32Array, b: Float32Array, M: number, K: number): Float32Array {
  const N = b.length / K;
  const out = newFloats(M * N);
  const acc = new Float64Array(N);
  for (let m = 0; m < M; m++) {
    acc.fill(0);
    for (let k = 0; k < K; k++) {
      const av = a[m * K + k]!;
      if (av === 0) continue;
      for (let n = 0; n < N; n++) acc[n] += av * b[k * N + n]!;
    }
    out.set(acc, m * N);
  }
  return out;
}

/** aᵀ · b for a [K,M], b [K,N]: summed over the K rows. */
export function matmulTn(a: Float32Array, b: Float32Array, K: number): Float32Array {
  const M = a.length / K, N = b.length / K;
  const acc = new Float64Array(M * N);
  for (let k = 0; k < K; k++) {
    for (let m = 0; m < M; m++) {
      const av = a[k * M + m]!;
      if (av === 0) continue;
      for (let n = 0; n < N; n++) acc[m * N + n] += av * b[k * N + n]!;
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

/** The transpose of rope: each pair rotated by −angle. */
export function ropeGrad(dy: Float32Array, p: RopeParams, pos: ArrayLike<number>): Float32Array {
  const { heads, headDim: hd } = p;
  const half = hd / 2;
  const inv = ropeInvFreq(p);
  const out = newFloats(dy.length);
  const T = dy.length / (heads * hd);
  for (let t = 0; t < T; t++) {
    for (let i = 0; i < half; i++) {
      const ang = pos[t]! * inv[i]!;
      const c = Math.cos(ang), s = Math.sin(ang);
      for (let h = 0; h < heads; h++) {
        const base = t * heads * hd + h * hd;
        const [ia, ib] = p.style === 'half' ? [base + i, base + i + half] : [base + 2 * i, base + 2 * i + 1];
        const a = dy[ia]!, b = dy[ib]!;
        out[ia] = a * c + b * s;
        out[ib] = -a * s + b * c;
      }
    }
  }
  return out;
}

/**
 * Gradients of causal attention within each sequence (kernels.ts seqAttention). Per row t and head:
 * P = softmax(q·kᵀ·scale) over its span (recomputed), o = P·v; dv += Pᵀ·do; dP = do·vᵀ;
 * dS = P ⊙ (dP − do·o); dq = dS·k·scale; dk += dSᵀ·q·scale. GQA: a kv head sums its query heads.
 */
export function attentionGrad(q: Float32Array, k: Float32Array, v: Float32Array, seq: Int32Array, dy: Float32Array, heads: number, kvHeads: number, hd: number): [Float32Array, Float32Array, Float32Array] {
  const kvw = kvHeads * hd, qw = heads * hd;
  const T = seq.length;
  const group = heads / kvHeads;
  const scale = 1 / Math.sqrt(hd);
  const dq = newFloats(q.length);
  const dk = new Float64Array(k.length), dv = new Float64Array(v.length);
  let start = 0;
  for (let t = 0; t < T; t++) {
    if (t > 0 && seq[t] !== seq[t - 1]) start = t;
    const n = t + 1 - start;
    const p = new Float64Array(n), dp = new Float64Array(n);
    for (let h = 0; h < heads; h++) {
      const kh = Math.floor(h / group);
      const qo = t * qw + h * hd;
      let max = -Infinity;
      for (let s = 0; s < n; s++) {
        let dot = 0;
        for (let i = 0; i < hd; i++) dot += q[qo + i]! * k[(start + s) * kvw + kh * hd + i]!;
        p[s] = dot * scale;
        max = Math.max(max, p[s]!);
      }
      let sum = 0;
      for (let s = 0; s < n; s++) sum += p[s] = Math.exp(p[s]! - max);
      let doO = 0; // do · o = Σ_s P_s (do · v_s)
      for (let s = 0; s < n; s++) {
        p[s]! /= sum;
        let dot = 0;
        for (let i = 0; i < hd; i++) dot += dy[qo + i]! * v[(start + s) * kvw + kh * hd + i]!;
        dp[s] = dot;
        doO += p[s]! * dot;
      }
      const dqAcc = new Float64Array(hd);
      for (let s = 0; s < n; s++) {
        const kvo = (start + s) * kvw + kh * hd;
        const ds = p[s]! * (dp[s]! - doO) * scale;
        for (let i = 0; i < hd; i++) {
          dv[kvo + i] += p[s]! * dy[qo + i]!;
          dqAcc[i] += ds * k[kvo + i]!;
          dk[kvo + i] += ds * q[qo + i]!;
        }
      }
      dq.set(dqAcc, qo);
    }
  }
  return [dq, floatsFrom(dk), floatsFrom(dv)];
}

const sig = (x: number) => 1 / (1 + Math.exp(-x));
export const siluGrad = (x: Float32Array, dy: Float32Array) => x.map((v, i) => { const s = sig(v); return dy[i]! * s * (1 + v * (1 - s)); });
export const sigmoidGrad = (x: Float32Array, dy: Float32Array) => x.map((v, i) => { const s = sig(v); return dy[i]! * s * (1 - s); });

export function mocScatter(dy: Float32Array, idx: Int32Array, K: number, F: number): Float32Array {
  const out = newFloats((idx.length / K) * F);
  for (let j = 0; j < idx.length; j++) out[Math.floor(j / K) * F + idx[j]!] = dy[j]!;
  return out;
}

/** [rows, d] with row idx[t,k] += a[t,k]·b[t,:]. */
export function mocRowsGrad(a: Float32Array, b: Float32Array, idx: Int32Array, K: number, rows: number): Float32Array {
  const T = idx.length / K, d = b.length / T;
  const acc = new Float64Array(rows * d);
  for (let j = 0; j < idx.length; j++) {
    const t = Math.floor(j / K), row = idx[j]! * d, av = a[j]!;
    for (let i = 0; i < d; i++) acc[row + i] += av * b[t * d + i]!;
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
