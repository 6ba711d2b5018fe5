// Float64 references and error scales for the flash attention kernels' GPU tests over packed
// sequences (cuda-flash-attention-backward.test.ts, cuda-train-bf16-attention.test.ts); the oracle
// values themselves come from targets/ref (seqAttention, attentionGrad).

/** seq ids for T rows: runs of the given lengths (the last one takes the rest), ids 7, 8, 9, ... */
export function seqOf(T: number, lengths: number[]): Int32Array {
  const seq = new Int32Array(T);
  let t = 0, id = 7;
  for (const n of lengths) {
    for (let i = 0; i < n && t < T; i++) seq[t++] = id;
    id++;
  }
  while (t < T) seq[t++] = id;
  return seq;
}

/** One (row, head) of packed-sequence attention in float64, as forEachSoftmaxRow hands it out. */
interface SoftmaxRow {
  t: number;
  h: number;
  /** Offsets of the row's query (in q, dO, o: rows of heads·hd) and of its KV head (in a key row: kvHeads·hd). */
  qo: number;
  ko: number;
  /** The row's first visible key (its sequence's first row); keys start .. t are visible. */
  start: number;
  /** p[s] = softmax(q·k_s/√hd) over start .. t (normalized; entries outside are stale). */
  p: Float64Array;
  /** ln Σ_s exp(q·k_s/√hd): what the forward saves. */
  lse: number;
}

/**
 * Calls visit for every (row t, head h) of packed-sequence attention (row t sees rows start(t) .. t,
 * GQA head h / (heads / kvHeads)) with its softmax in float64: the one walk the references below share.
 */
function forEachSoftmaxRow(q: Float32Array, k: Float32Array, seq: Int32Array, heads: number, kvHeads: number, hd: number, visit: (r: SoftmaxRow) => void): void {
  const T = seq.length, qw = heads * hd, kvw = kvHeads * hd, group = heads / kvHeads, scale = 1 / Math.sqrt(hd);
  const p = new Float64Array(T);
  let start = 0;
  for (let t = 0; t < T; t++) {
    if (t > 0 && seq[t] !== seq[t - 1]) start = t;
    for (let h = 0; h < heads; h++) {
      const qo = t * qw + h * hd, ko = Math.floor(h / group) * hd;
      let max = -Infinity;
      for (let s = start; s <= t; s++) {
        let d = 0;
        for (let i = 0; i < hd; i++) d += q[qo + i]! * k[s * kvw + ko + i]!;
        max = Math.max(max, (p[s] = d * scale));
      }
      let l = 0;
      for (let s = start; s <= t; s++) l += p[s] = Math.exp(p[s]! - max);
      for (let s = start; s <= t; s++) p[s]! /= l;
      visit({ t, h, qo, ko, start, p, lse: max + Math.log(l) });
    }
  }
}

/** float64 lse[h, t] = ln Σ_s exp(q·k_s/√hd) over row t's visible keys (what the forward saves). */
export function logSumExp(q: Float32Array, k: Float32Array, seq: Int32Array, heads: number, kvHeads: number, hd: number): Float32Array {
  const T = seq.length, out = new Float32Array(heads * T);
  forEachSoftmaxRow(q, k, seq, heads, kvHeads, hd, ({ t, h, lse }) => (out[h * T + t] = lse));
  return out;
}

/**
 * The two scales every gradient element's rounding error is relative to, in float64 from the same
 * inputs. term: Σ|term| (dv Σ P·|dO|, dk Σ |dS|·|q|/√hd, dq Σ |dS|·|k|/√hd), for the dtype rounding of
 * P and dS before their products. f32: the same with |dS| = P·|dP − D| replaced by P·(Σ_i|dO_i·v_si| +
 * Dmag), the scales of the f32 sums dP and D before they cancel (their terms', not their values': an
 * H100 run found f16 rows whose dP itself cancels): a row whose only key is itself has dS = 0 exactly
 * (P = 1, dP = D), so its term scale is 0 while the kernel's f32 dP − D leaves ~1e-8.
 * dRound (dq, dk): for a D computed from an O whose P was rounded to bf16/f16 (the forward recomputed
 * on tensor cores, ops-attention-bf16.ts): D is then off by up to 2^-9 of Dmag = Σ_i |dO_i|·Σ_s P|v_si|,
 * which every dS = P·(dP − D) of the row carries: Σ P·Dmag·|k| / √hd (dq), Σ P·Dmag·|q| / √hd (dk).
 */
export function magnitudes(q: Float32Array, k: Float32Array, v: Float32Array, seq: Int32Array, dO: Float32Array, heads: number, kvHeads: number, hd: number) {
  const T = seq.length, qw = heads * hd, kvw = kvHeads * hd, scale = 1 / Math.sqrt(hd);
  const dq = new Float64Array(T * qw), dk = new Float64Array(T * kvw), dv = new Float64Array(T * kvw);
  const dqF32 = new Float64Array(T * qw), dkF32 = new Float64Array(T * kvw);
  const dqD = new Float64Array(T * qw), dkD = new Float64Array(T * kvw);
  const dp = new Float64Array(T), dpAbs = new Float64Array(T);
  forEachSoftmaxRow(q, k, seq, heads, kvHeads, hd, ({ t, qo, ko, start, p }) => {
    // dP_s = dO·v_s and its terms' scale; D = Σ P·dP; Dmag = Σ_i |dO_i|·Σ_s P|v_si|
    let dot = 0, dmag = 0;
    for (let s = start; s <= t; s++) {
      let b = 0, bAbs = 0;
      for (let i = 0; i < hd; i++) b += dO[qo + i]! * v[s * kvw + ko + i]!, bAbs += Math.abs(dO[qo + i]! * v[s * kvw + ko + i]!);
      dp[s] = b;
      dpAbs[s] = bAbs;
      dot += p[s]! * b;
    }
    for (let i = 0; i < hd; i++) {
      let pv = 0;
      for (let s = start; s <= t; s++) pv += p[s]! * Math.abs(v[s * kvw + ko + i]!);
      dmag += Math.abs(dO[qo + i]!) * pv;
    }
    for (let s = start; s <= t; s++) {
      const ds = Math.abs(p[s]! * (dp[s]! - dot)) * scale, dsF32 = p[s]! * (dpAbs[s]! + dmag) * scale;
      for (let i = 0; i < hd; i++) {
        dv[s * kvw + ko + i] += p[s]! * Math.abs(dO[qo + i]!);
        dk[s * kvw + ko + i] += ds * Math.abs(q[qo + i]!);
        dq[qo + i] += ds * Math.abs(k[s * kvw + ko + i]!);
        dkF32[s * kvw + ko + i] += dsF32 * Math.abs(q[qo + i]!);
        dqF32[qo + i] += dsF32 * Math.abs(k[s * kvw + ko + i]!);
        dkD[s * kvw + ko + i] += p[s]! * dmag * scale * Math.abs(q[qo + i]!);
        dqD[qo + i] += p[s]! * dmag * scale * Math.abs(k[s * kvw + ko + i]!);
      }
    }
  });
  return { term: { dq, dk, dv }, f32: { dq: dqF32, dk: dkF32, dv }, dRound: { dq: dqD, dk: dkD, dv: new Float64Array(T * kvw) } };
}

/**
 * Packed-sequence attention in float64 (row t sees rows start(t) .. t): o [T, heads·hd], the scale
 * Σ p|v| / Σ p of each output element (its bf16 P rounding is relative to it), lse [heads, T].
 */
export function packedReference(q: Float32Array, k: Float32Array, v: Float32Array, seq: Int32Array, heads: number, kvHeads: number, hd: number) {
  const T = seq.length, qw = heads * hd, kvw = kvHeads * hd;
  const o = new Float64Array(T * qw), mag = new Float64Array(T * qw), lse = new Float64Array(heads * T);
  forEachSoftmaxRow(q, k, seq, heads, kvHeads, hd, ({ t, h, qo, ko, start, p, lse: rowLse }) => {
    lse[h * T + t] = rowLse;
    for (let i = 0; i < hd; i++) {
      let acc = 0, a = 0;
      for (let s = start; s <= t; s++) acc += p[s]! * v[s * kvw + ko + i]!, a += p[s]! * Math.abs(v[s * kvw + ko + i]!);
      o[qo + i] = acc;
      mag[qo + i] = a;
    }
  });
  return { o, mag, lse };
}
