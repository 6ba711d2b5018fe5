// The backward of causal GQA attention within packed sequences (the attention_grad op; oracle
// targets/ref/train-kernels.ts attentionGrad), FlashAttention-2 style on sm_80 tensor cores (runs on
// sm_90 too). Three kernels, launched in this order:
//
//   1. pre   (SIMT):  D[h, t] = Σ_d dO[t, h, d] · O[t, h, d]            (= Σ_s P[t,s]·dP[t,s])
//   2. dkdv  (mma):   dV[s, kvh] = Σ_{h in group} Σ_t P[t,s]·dO[t,h],  dK[s, kvh] = Σ Σ dS[t,s]·q[t,h]·scale
//   3. dq    (mma):   dq[t, h] = Σ_s dS[t,s]·K[s, kvh]·scale
//
// with scale = 1/√hd, P[t,s] = exp(q[t,h]·K[s]·scale − lse[h,t]) recomputed from q, K and the
// forward's saved log-sum-exp, dP = dO·Vᵀ, dS = P ∘ (dP − D). lse is what flash-attention.ts writes:
// [heads, T] f32, natural log of the sum over the scaled scores (so P uses one fma and one ex2 per
// score: ex2(S·log2(e)/√hd − lse·log2(e))). D has the same [heads, T] layout.
//
// Visibility. Row t sees key s iff s ≤ t and seq[s] = seq[t] (seq: int32 [T], one id per row). As in
// kernels.ts seqAttention, a sequence's rows are contiguous and an id is not reused by a later
// sequence, so this equals "start(t) ≤ s ≤ t" of the oracle, and a run's ends can be found by binary
// search (seqBound below): dkdv walks query tiles only up to the end of its last key's sequence, dq
// starts at the tile holding its first row's sequence start. Inside a tile the mask is applied per
// element unless the tile is wholly visible (every key ≤ every query, all queries < T, the first key
// and the last query in one sequence: contiguity makes every pair between them one sequence too).
//
// Determinism. dK, dV are owned by one CTA per (64-key tile, KV head): it loops over the query heads
// of its group, then over query tiles, accumulating in registers, so the GQA sum and the t sum have a
// fixed order and no float atomics are needed. dq is a separate kernel (one CTA per (64 query rows,
// head), looping over key tiles) instead of FA2's atomicAdd of dq from the dkdv loop: it recomputes
// S, P and dP once more (about 2/5 more tensor-core work than the atomic variant, and K, V read once
// more), in exchange for bitwise-reproducible gradients and no f32 dq scratch to zero.
//
// dkdv. 4 warps, each owning 16 keys (kw .. kw+15): its K and V rows are A fragments held in
// registers for the whole loop; its dK, dV accumulators are C fragments [16 keys × hd]. Per query tile
// of BM rows (64; 32 for hd > 64, 16 for hd > 96: registers under 255, see geometry), staged in shared memory by cp.async
// (two stages, the next tile in flight while this one is multiplied, like the forward) with the tile's
// lse, D and seq values:
//   Sᵀ = K_w·Qᵀ and dPᵀ = V_w·dOᵀ (B = Q / dO tile rows [query][dim]: ldmatrix non-trans, the forward's
//   K reads); Pᵀ, dSᵀ elementwise (lse, D are per column = query, read from shared as pairs);
//   dV += Pᵀ·dO and dK += dSᵀ·Q (Pᵀ / dSᵀ C fragments of two 8-query tiles are the A fragment of one
//   16-query k-slice, as in the forward; B = dO / Q tiles [query][dim] = [k][n]: ldmatrix.trans, the
//   forward's V reads). A warp skips a tile wholly before its keys (warp-uniform branch).
// dq. The forward's shape: 4 warps of 16 query rows, q and dO rows as A fragments in registers, K and
// V tiles of bn keys (64; 32 for hd > 64) staged by cp.async with their seq ids: S = q·Kᵀ and
// dP = dO·Vᵀ (non-trans reads), dS elementwise (lse, D per row, in registers), dq += dS·K (trans reads).
//
// Tails and padding. Rows at or past T of any staged tile are zero-filled (cp.async src-size 0) and
// masked; their lse, D, seq are zero-filled too. Columns hd .. hp-1 (hp = hd rounded up to the mma k
// of 16) of every shared row are zeroed once (a Sᵀ/S k-slice multiplies them by zero fragments: NaN
// must not be there). Shared rows are hp + 8 elements, so an ldmatrix phase's 8 rows fall in distinct
// bank groups (see flash-attention.ts). Outputs are f32 rows of pad8(width); nothing past T-1 or past
// a head's hd columns is written.
//
// Precision. q, K, V, dO are the bf16/f16 inputs as stored; S, dP and all sums accumulate in f32. Pᵀ
// and dSᵀ are rounded to the operand type for the dV / dK / dq products (like P in the forward), so
// each gradient element is within ~2^-9 (bf16) / 2^-11 (f16) of its scale Σ|term|. ex2.approx adds
// ~2^-22 relative per P.
//
// Fragments: see gemm.ts's header (g = lane / 4, qd = lane % 4).
import { f32Imm, KernelBuilder } from './builder.js';
import type { Kernel } from './dense.js';
import { pad8, type WeightDType } from './layout.js';
import { loadRaw8, rawToF32 } from './load.js';

export interface FlashAttentionBackwardSpec {
  heads: number;
  kvHeads: number;
  /** Head dimension: a multiple of 8, at most 128. */
  hd: number;
  /** Element type of q, k, v and dO (the mma operands): rows [T, pad8(width)]. */
  dtype: 'bf16' | 'f16';
}

/** The preprocess kernel's spec: dO may also be f32 here (D is a plain dot product). */
export interface FlashAttentionBackwardPreSpec {
  heads: number;
  hd: number;
  /** dO's element type. */
  dtype: WeightDType;
  /** O's element type, as the forward wrote it (FlashAttentionSpec.out). */
  o: 'f32' | 'bf16';
}

export const FAB_THREADS = 128;
/** Keys per dkdv CTA (4 warps of 16) and query rows per dq CTA (4 warps of 16). */
export const FAB_ROWS = 64;
const PRE_THREADS = 128;
const LOG2E = Math.LOG2E;

interface Geometry {
  /** hd rounded up to the mma k of 16. */
  hp: number;
  /** Shared row length in elements. */
  srow: number;
  /** Rows of the staged tile: queries (dkdv) or keys (dq). */
  tile: number;
}

/**
 * Staged tile rows, the most that stays within 255 registers a thread without spilling (ptxas -v):
 * dkdv holds dK, dV (hp/2 each) and the K, V fragments (hp/4 each) besides the tile's Sᵀ, dPᵀ
 * (tile/4 each): 64 rows up to hd 64, 32 up to 96, 16 above; dq holds less (q, dO fragments and dq):
 * 64 rows up to hd 64, 32 above.
 */
function geometry(s: FlashAttentionBackwardSpec, kernel: 'dkdv' | 'dq'): Geometry {
  const hp = Math.ceil(s.hd / 16) * 16;
  const tile = hp <= 64 ? 64 : kernel === 'dq' || hp <= 96 ? 32 : 16;
  return { hp, srow: hp + 8, tile };
}

function checkSpec(s: { heads: number; kvHeads?: number; hd: number }): void {
  const bad = (why: string) => new Error(`PTX generator bug: flash attention backward ${JSON.stringify(s)}: ${why}`);
  if (!Number.isInteger(s.hd) || s.hd % 8 !== 0 || s.hd < 8 || s.hd > 128) throw bad('hd must be a multiple of 8 in 8..128');
  const kvHeads = s.kvHeads ?? s.heads;
  if (!Number.isInteger(s.heads) || !Number.isInteger(kvHeads) || kvHeads < 1 || s.heads % kvHeads !== 0) throw bad('heads must be a multiple of kvHeads');
}

const tag = (s: FlashAttentionBackwardSpec) => `h${s.heads}_kv${s.kvHeads}_hd${s.hd}_${s.dtype}`;
export const flashAttentionBackwardPreName = (s: FlashAttentionBackwardPreSpec) => `flash_attention_bwd_pre_h${s.heads}_hd${s.hd}_${s.dtype}_o${s.o}`;
export const flashAttentionBackwardDkdvName = (s: FlashAttentionBackwardSpec) => `flash_attention_bwd_dkdv_${tag(s)}`;
export const flashAttentionBackwardDqName = (s: FlashAttentionBackwardSpec) => `flash_attention_bwd_dq_${tag(s)}`;

/** pre: one thread per (row, head). Block FAB_PRE_THREADS. */
export const FAB_PRE_THREADS = PRE_THREADS;
export function flashAttentionBackwardPreGrid(s: FlashAttentionBackwardPreSpec, T: number): [number, number, number] {
  return [Math.max(1, Math.ceil((T * s.heads) / PRE_THREADS)), 1, 1];
}
/** dkdv: x over 64-key tiles, y over KV heads. Block FAB_THREADS. */
export function flashAttentionBackwardDkdvGrid(s: FlashAttentionBackwardSpec, T: number): [number, number, number] {
  return [Math.ceil(T / FAB_ROWS), s.kvHeads, 1];
}
/** dq: x over 64-row query blocks (launched last block first), y over heads. Block FAB_THREADS. */
export function flashAttentionBackwardDqGrid(s: FlashAttentionBackwardSpec, T: number): [number, number, number] {
  return [Math.ceil(T / FAB_ROWS), s.heads, 1];
}

/** Static shared bytes of the dkdv kernel: two stages of [Q, dO tiles][lse, D, seq]. */
export function flashAttentionBackwardDkdvSharedBytes(s: FlashAttentionBackwardSpec): number {
  const { srow, tile } = geometry(s, 'dkdv');
  return 2 * (2 * tile * srow * 2 + 3 * tile * 4);
}
/** Static shared bytes of the dq kernel: two stages of [K, V tiles][seq]. */
export function flashAttentionBackwardDqSharedBytes(s: FlashAttentionBackwardSpec): number {
  const { srow, tile } = geometry(s, 'dq');
  return 2 * (2 * tile * srow * 2 + tile * 4);
}

/**
 * Kernel 1. Params: d (f32 [heads, T]), dO, o, then u32 T. D[h, t] = Σ_d dO[t, h·hd + d]·O[t, h·hd + d],
 * summed in d order with fma.rn.f32. Grid flashAttentionBackwardPreGrid, block FAB_PRE_THREADS.
 */
export function flashAttentionBackwardPre(s: FlashAttentionBackwardPreSpec): Kernel {
  checkSpec(s);
  const name = flashAttentionBackwardPreName(s);
  const k = new KernelBuilder(name, [{ name: 'd', type: 'u64' }, { name: 'dO', type: 'u64' }, { name: 'o', type: 'u64' }, { name: 'T', type: 'u32' }]);
  k.blockSize(PRE_THREADS);
  const d = k.ptrParam('d'), dO = k.ptrParam('dO'), o = k.ptrParam('o');
  const T = k.u32Param('T');
  const tid = k.special('%tid.x', 'tid'), bx = k.special('%ctaid.x', 'bx');
  const idx = k.reg('u32', 'idx'), n = k.reg('u32', 'n'), t = k.reg('u32', 't'), h = k.reg('u32', 'h'), out = k.reg('pred', 'out');
  const done = k.label('done');
  k.emit(`mad.lo.u32 ${idx}, ${bx}, ${PRE_THREADS}, ${tid}`, `mul.lo.u32 ${n}, ${T}, ${s.heads}`, `setp.ge.u32 ${out}, ${idx}, ${n}`, `@${out} bra ${done}`);
  // consecutive threads take consecutive heads of one row: their dO, O reads are contiguous
  k.emit(`div.u32 ${t}, ${idx}, ${s.heads}`, `rem.u32 ${h}, ${idx}, ${s.heads}`);
  const col = k.reg('u32', 'col'), row = k.reg('u32', 'row');
  k.emit(`mul.lo.u32 ${col}, ${h}, ${s.hd}`, `mul.lo.u32 ${row}, ${t}, ${pad8(s.heads * s.hd)}`, `add.u32 ${col}, ${col}, ${row}`);
  const da = k.addr(dO, col, s.dtype === 'f32' ? 4 : 2), oa = k.addr(o, col, s.o === 'f32' ? 4 : 2);
  const acc = k.reg('f32', 'acc');
  k.emit(`mov.f32 ${acc}, 0f00000000`);
  for (let c = 0; c < s.hd / 8; c++) {
    const x = rawToF32(k, s.dtype, loadRaw8(k, s.dtype, k.addr(da, c * 8, s.dtype === 'f32' ? 4 : 2), 'activation'));
    const y = rawToF32(k, s.o, loadRaw8(k, s.o, k.addr(oa, c * 8, s.o === 'f32' ? 4 : 2), 'activation'));
    for (let e = 0; e < 8; e++) k.emit(`fma.rn.f32 ${acc}, ${x[e]}, ${y[e]}, ${acc}`);
  }
  const di = k.reg('u32', 'di');
  k.emit(`mad.lo.u32 ${di}, ${h}, ${T}, ${t}`);
  k.emit(`st.global.f32 [${k.addr(d, di, 4)}], ${acc}`);
  k.place(done);
  return { name, text: k.render() };
}

// ---- emitters shared by the two tensor-core kernels ----

/** lane, warp, g = lane/4, qd = lane%4. */
function lanes(k: KernelBuilder, tid: string) {
  const lane = k.reg('u32', 'lane'), warp = k.reg('u32', 'warp'), g = k.reg('u32', 'g'), qd = k.reg('u32', 'qd');
  k.emit(`and.b32 ${lane}, ${tid}, 31`, `shr.u32 ${warp}, ${tid}, 5`, `shr.u32 ${g}, ${lane}, 2`, `and.b32 ${qd}, ${lane}, 3`);
  return { lane, warp, g, qd };
}

/**
 * Per-lane ldmatrix.x4 byte offsets within a shared tile of rows of `srow` elements (gemm.ts header):
 * `col` reads B fragments of rows stored [n][k] (non-trans: lane l at row (l%8) + 8·(l/16), element
 * 8·((l/8)%2)); `trans` reads B fragments of rows stored [k][n] (.trans: lane l at row (l%8) +
 * 8·((l/8)%2), element 8·(l/16)). Either gives b0, b1 of n-tile 0 then of n-tile 1 of a 16×16 block.
 */
function ldmatrixOffsets(k: KernelBuilder, lane: string, srow: number): { col: string; trans: string } {
  const r = k.reg('u32', 't'), hi = k.reg('u32', 't'), mid = k.reg('u32', 't'), col = k.reg('u32', 'offc'), trans = k.reg('u32', 'offt');
  k.emit(`and.b32 ${r}, ${lane}, 7`, `shr.u32 ${hi}, ${lane}, 4`, `shr.u32 ${mid}, ${lane}, 3`, `and.b32 ${mid}, ${mid}, 1`);
  const row = k.reg('u32', 't');
  k.emit(`mad.lo.u32 ${row}, ${hi}, 8, ${r}`, `mul.lo.u32 ${col}, ${row}, ${srow * 2}`, `mad.lo.u32 ${col}, ${mid}, 16, ${col}`);
  k.emit(`mad.lo.u32 ${row}, ${mid}, 8, ${r}`, `mul.lo.u32 ${trans}, ${row}, ${srow * 2}`, `mad.lo.u32 ${trans}, ${hi}, 16, ${trans}`);
  return { col, trans };
}

/**
 * A fragments of 16 rows × hp dims of a 16-bit matrix, straight from global memory into registers:
 * a0 (row g, dims 2qd..+1), a1 (row g+8), a2 (row g, dims 2qd+8..), a3 (row g+8, +8) per k-slice of 16.
 * `row0`/`row8` address dim 0 + 2qd of rows g / g+8 (u64), loaded only where ok0 / ok8; dims ≥ hd are 0.
 */
function loadAFragments(k: KernelBuilder, hd: number, hp: number, row0: string, row8: string, ok0: string, ok8: string): string[][] {
  const frags = Array.from({ length: hp / 16 }, () => k.regs('b32', 'af', 4));
  for (let ks = 0; ks < hp / 16; ks++) {
    for (let i = 0; i < 4; i++) {
      const col = ks * 16 + (i >= 2 ? 8 : 0), [a, ok] = i & 1 ? [row8, ok8] : [row0, ok0];
      k.emit(`mov.b32 ${frags[ks]![i]}, 0`);
      if (col < hd) k.emit(`@${ok} ld.global.b32 ${frags[ks]![i]}, [${a}+${col * 2}]`);
    }
  }
  return frags;
}

/** The A fragment of a 16-wide k-slice from the C fragments of its two 8-column tiles (rounded to mt). */
function packA(k: KernelBuilder, mt: string, c0: string[], c1: string[], pa: string[]): void {
  k.emit(`cvt.rn.${mt}x2.f32 ${pa[0]}, ${c0[1]}, ${c0[0]}`, `cvt.rn.${mt}x2.f32 ${pa[1]}, ${c0[3]}, ${c0[2]}`);
  k.emit(`cvt.rn.${mt}x2.f32 ${pa[2]}, ${c1[1]}, ${c1[0]}`, `cvt.rn.${mt}x2.f32 ${pa[3]}, ${c1[3]}, ${c1[2]}`);
}

/**
 * Binary search for the first x in [lo, hi) where `pred(x)` holds (hi if none), pred false then true
 * along the range. `pred` emits code setting the given predicate register for the u32 register x.
 * Leaves the result in `lo`. Every thread runs it (uniform loads).
 */
export function binarySearch(k: KernelBuilder, lo: string, hi: string, pred: (x: string, p: string) => void): void {
  const mid = k.reg('u32', 'mid'), p = k.reg('pred', 'bs'), loop = k.label('bsearch'), done = k.label('bsearch_done');
  k.place(loop);
  k.emit(`setp.ge.u32 ${p}, ${lo}, ${hi}`, `@${p} bra ${done}`, `add.u32 ${mid}, ${lo}, ${hi}`, `shr.u32 ${mid}, ${mid}, 1`);
  pred(mid, p);
  k.emit(`@${p} mov.u32 ${hi}, ${mid}`, `@!${p} add.u32 ${lo}, ${mid}, 1`, `bra ${loop}`);
  k.place(done);
}

interface TileCopy {
  /** Issues the cp.async copies of the tile starting at row r0 into the stage at shared byte address `dst`, one commit group. */
  issue(r0: string, dst: string, mats: { base: string; col: string; at: number }[], scalars: { base: string; index: (p: string, out: string) => void; at: number }[]): void;
}

/**
 * The copy plan of a `rows`-row tile of hd 16-bit elements a row (matrices with rows of `ld` bytes)
 * into shared rows of `srow` elements, plus per-row 4-byte scalars: chunk i = tid + 128·r of the
 * rows·hd/8 16-byte chunks. Rows at or past T are zero-filled (src-size 0, source the matrix base).
 */
function tileCopy(k: KernelBuilder, tid: string, T: string, rows: number, hd: number, srow: number, ld: number): TileCopy {
  const cpr = hd / 8, chunks = rows * cpr, rounds = Math.ceil(chunks / FAB_THREADS);
  const plan = Array.from({ length: rounds }, (_, r) => {
    const i = k.reg('u32', 'ci'), row = k.reg('u32', 'crow'), cc = k.reg('u32', 'cc'), dst = k.reg('u32', 'cdst'), col = k.reg('u32', 'ccol');
    k.emit(`add.u32 ${i}, ${tid}, ${r * FAB_THREADS}`, `div.u32 ${row}, ${i}, ${cpr}`, `rem.u32 ${cc}, ${i}, ${cpr}`);
    k.emit(`mul.lo.u32 ${dst}, ${row}, ${srow * 2}`, `mad.lo.u32 ${dst}, ${cc}, 16, ${dst}`, `shl.b32 ${col}, ${cc}, 4`);
    let inRange: string | undefined;
    if ((r + 1) * FAB_THREADS > chunks) {
      inRange = k.reg('pred', 'inr');
      k.emit(`setp.lt.u32 ${inRange}, ${i}, ${chunks}`);
    }
    return { row, dst, col, inRange };
  });
  const scalarOk = k.reg('pred', 'sok'), p = k.reg('u32', 'p'), ok = k.reg('pred', 'ok'), ga = k.reg('u64', 'ga'), off = k.reg('u64', 'goff'), sd = k.reg('u32', 'sd'), sz = k.reg('u32', 'sz'), ix = k.reg('u32', 'ix');
  k.emit(`setp.lt.u32 ${scalarOk}, ${tid}, ${rows}`);
  return {
    issue(r0, dst, mats, scalars) {
      for (const m of mats) {
        for (const c of plan) {
          k.emit(`add.u32 ${p}, ${r0}, ${c.row}`, `setp.lt.u32 ${ok}, ${p}, ${T}`);
          if (c.inRange) k.emit(`and.pred ${ok}, ${ok}, ${c.inRange}`);
          k.emit(`mul.wide.u32 ${off}, ${p}, ${ld}`, `add.s64 ${ga}, ${m.base}, ${off}`, `add.u32 ${ix}, ${c.col}, ${m.col}`, `cvt.u64.u32 ${off}, ${ix}`, `add.s64 ${ga}, ${ga}, ${off}`);
          k.emit(`selp.u32 ${sz}, 16, 0, ${ok}`, `@!${ok} mov.u64 ${ga}, ${m.base}`, `add.u32 ${sd}, ${c.dst}, ${dst}`);
          k.emit(`${c.inRange ? `@${c.inRange} ` : ''}cp.async.cg.shared.global [${sd}+${m.at}], [${ga}], 16, ${sz}`);
        }
      }
      if (scalars.length) {
        const skip = k.label('noscalar');
        k.emit(`@!${scalarOk} bra ${skip}`, `add.u32 ${p}, ${r0}, ${tid}`, `setp.lt.u32 ${ok}, ${p}, ${T}`, `selp.u32 ${sz}, 4, 0, ${ok}`, `mad.lo.u32 ${sd}, ${tid}, 4, ${dst}`);
        for (const s of scalars) {
          s.index(p, ix);
          k.emit(`mul.wide.u32 ${off}, ${ix}, 4`, `add.s64 ${ga}, ${s.base}, ${off}`, `@!${ok} mov.u64 ${ga}, ${s.base}`);
          k.emit(`cp.async.ca.shared.global [${sd}+${s.at}], [${ga}], 4, ${sz}`);
        }
        k.place(skip);
      }
      k.emit('cp.async.commit_group');
    },
  };
}

/** Zeroes the 16-byte chunk at element hd of `rows` consecutive shared rows from byte address base (hd < hp only). */
function zeroPadding(k: KernelBuilder, tid: string, base: string, rows: number, hd: number, srow: number): void {
  k.comment('zero the padding columns hd .. hp-1 of every staged row');
  const za = k.reg('u32', 'za'), z = k.reg('b32', 'z'), r = k.reg('u32', 'zr'), p = k.reg('pred', 'zp');
  k.emit(`mov.b32 ${z}, 0`);
  for (let i = 0; i < Math.ceil(rows / FAB_THREADS); i++) {
    k.emit(`add.u32 ${r}, ${tid}, ${i * FAB_THREADS}`, `setp.lt.u32 ${p}, ${r}, ${rows}`, `mad.lo.u32 ${za}, ${r}, ${srow * 2}, ${base}`);
    k.emit(`@${p} st.shared.v4.b32 [${za}+${hd * 2}], {${z}, ${z}, ${z}, ${z}}`);
  }
}

/**
 * Kernel 2: dK, dV. Params: dk, dv (f32 [T, pad8(kvHeads·hd)]), q, k, v, dO (spec.dtype), lse, d
 * (f32 [heads, T]), seq (int32 [T]), then u32 T. Grid flashAttentionBackwardDkdvGrid, block FAB_THREADS.
 */
export function flashAttentionBackwardDkdv(s: FlashAttentionBackwardSpec): Kernel {
  checkSpec(s);
  const { hp, srow, tile: BM } = geometry(s, 'dkdv');
  const name = flashAttentionBackwardDkdvName(s);
  const group = s.heads / s.kvHeads, mt = s.dtype;
  const qld = pad8(s.heads * s.hd) * 2, kvld = pad8(s.kvHeads * s.hd) * 2, gld = pad8(s.kvHeads * s.hd) * 4;
  const k = new KernelBuilder(name, [...['dk', 'dv', 'q', 'k', 'v', 'dO', 'lse', 'd', 'seq'].map((n) => ({ name: n, type: 'u64' as const })), { name: 'T', type: 'u32' }]);
  k.blockSize(FAB_THREADS, 1); // up to 255 registers: dK, dV and the K, V fragments stay in registers
  const [dk, dv, q, kk, v, dO, lse, dd, seq] = ['dk', 'dv', 'q', 'k', 'v', 'dO', 'lse', 'd', 'seq'].map((n) => k.ptrParam(n)) as [string, string, string, string, string, string, string, string, string];
  const T = k.u32Param('T');
  const tid = k.special('%tid.x', 'tid'), bx = k.special('%ctaid.x', 'bx'), kvh = k.special('%ctaid.y', 'kvh');
  const { lane, warp, g, qd } = lanes(k, tid);
  const t1 = k.reg('u32', 't'), t2 = k.reg('u32', 't'), pr = k.reg('pred', 'pr');
  const j0 = k.reg('u32', 'j0'), kw = k.reg('u32', 'kw');
  k.emit(`shl.b32 ${j0}, ${bx}, ${Math.log2(FAB_ROWS)}`, `mad.lo.u32 ${kw}, ${warp}, 16, ${j0}`);

  // ---- the warp's K and V rows kw+g, kw+g+8 as A fragments; their seq ids ----
  const sG = k.reg('u32', 'sg'), sG8 = k.reg('u32', 'sg8'), okG = k.reg('pred', 'okg'), okG8 = k.reg('pred', 'okg8');
  k.emit(`add.u32 ${sG}, ${kw}, ${g}`, `add.u32 ${sG8}, ${sG}, 8`, `setp.lt.u32 ${okG}, ${sG}, ${T}`, `setp.lt.u32 ${okG8}, ${sG8}, ${T}`);
  const kvCol = k.reg('u32', 'kvcol'); // kvh·hd + 2qd elements
  k.emit(`mul.lo.u32 ${kvCol}, ${kvh}, ${s.hd}`, `mad.lo.u32 ${kvCol}, ${qd}, 2, ${kvCol}`);
  const frags = (base: string) => loadAFragments(k, s.hd, hp, k.addr(k.addr(base, sG, kvld), kvCol, 2), k.addr(k.addr(base, sG8, kvld), kvCol, 2), okG, okG8);
  const kf = frags(kk), vf = frags(v);
  const seqG = k.reg('u32', 'seqg'), seqG8 = k.reg('u32', 'seqg8'), seqKw = k.reg('u32', 'seqkw');
  k.emit(`mov.u32 ${seqG}, 0`, `mov.u32 ${seqG8}, 0`, `@${okG} ld.global.u32 ${seqG}, [${k.addr(seq, sG, 4)}]`, `@${okG8} ld.global.u32 ${seqG8}, [${k.addr(seq, sG8, 4)}]`);
  k.emit(`mov.u32 ${seqKw}, 0`, `setp.lt.u32 ${pr}, ${kw}, ${T}`, `@${pr} ld.global.u32 ${seqKw}, [${k.addr(seq, kw, 4)}]`);

  // ---- query rows this CTA needs: j0 .. qEnd-1, qEnd = the end of its last key's sequence ----
  const kLast = k.reg('u32', 'klast'), seqLast = k.reg('u32', 'seqlast'), qEnd = k.reg('u32', 'qend'), hi = k.reg('u32', 'hi');
  k.emit(`add.u32 ${kLast}, ${j0}, ${FAB_ROWS}`, `min.u32 ${kLast}, ${kLast}, ${T}`, `sub.u32 ${kLast}, ${kLast}, 1`);
  k.emit(`ld.global.u32 ${seqLast}, [${k.addr(seq, kLast, 4)}]`, `add.u32 ${qEnd}, ${kLast}, 1`, `mov.u32 ${hi}, ${T}`);
  const sv = k.reg('u32', 'sv');
  binarySearch(k, qEnd, hi, (x, p) => k.emit(`ld.global.u32 ${sv}, [${k.addr(seq, x, 4)}]`, `setp.ne.u32 ${p}, ${sv}, ${seqLast}`));

  // ---- shared stages: [Q tile][dO tile][lse][D][seq], BM rows each ----
  const matBytes = BM * srow * 2, lseAt = 2 * matBytes, dAt = lseAt + BM * 4, seqAt = dAt + BM * 4, stage = seqAt + BM * 4;
  const sh = k.sharedArray('bwd', 'b8', 2 * stage, 128);
  const shBase = k.reg('u32', 'shbase');
  k.emit(`mov.u32 ${shBase}, ${sh}`);
  if (hp > s.hd) {
    zeroPadding(k, tid, shBase, 2 * BM, s.hd, srow);
    k.emit(`add.u32 ${t1}, ${shBase}, ${stage}`);
    zeroPadding(k, tid, t1, 2 * BM, s.hd, srow);
  }
  const copy = tileCopy(k, tid, T, BM, s.hd, srow, qld);
  const qCol = k.reg('u32', 'qcol'), hT = k.reg('u32', 'ht');
  const issue = (h: string, i0: string, dst: string) => {
    k.emit(`mul.lo.u32 ${qCol}, ${h}, ${s.hd * 2}`, `mul.lo.u32 ${hT}, ${h}, ${T}`);
    const hIndex = (p: string, out: string) => k.emit(`add.u32 ${out}, ${hT}, ${p}`);
    copy.issue(i0, dst, [{ base: q, col: qCol, at: 0 }, { base: dO, col: qCol, at: matBytes }], [
      { base: lse, index: hIndex, at: lseAt },
      { base: dd, index: hIndex, at: dAt },
      { base: seq, index: (p, out) => k.emit(`mov.u32 ${out}, ${p}`), at: seqAt },
    ]);
  };

  const { col: offC, trans: offT } = ldmatrixOffsets(k, lane, srow);
  const qdOff = k.reg('u32', 'qdoff'); // this lane's first column pair (queries 2qd, 2qd+1) in a scalar row, bytes
  k.emit(`shl.b32 ${qdOff}, ${qd}, 3`);

  const dkAcc = Array.from({ length: hp / 8 }, () => k.regs('f32', 'dk', 4)), dvAcc = Array.from({ length: hp / 8 }, () => k.regs('f32', 'dv', 4));
  for (const a of [...dkAcc, ...dvAcc]) for (const r of a) k.emit(`mov.f32 ${r}, 0f00000000`);
  const sc = Array.from({ length: BM / 8 }, () => k.regs('f32', 's', 4)), dp = Array.from({ length: BM / 8 }, () => k.regs('f32', 'dp', 4));
  const mma = `mma.sync.aligned.m16n8k16.row.col.f32.${mt}.${mt}.f32`;
  const bfr = k.regs('b32', 'bf', 4), pa = k.regs('b32', 'pa', 4);

  // ---- the loop over (query head h of the group, query tile i), flattened for the double buffer ----
  const h = k.reg('u32', 'h'), hEnd = k.reg('u32', 'hend'), i = k.reg('u32', 'i'), hn = k.reg('u32', 'hn'), inx = k.reg('u32', 'in'), cur = k.reg('u32', 'cur'), nxt = k.reg('u32', 'nxt'), last = k.reg('pred', 'last'), more = k.reg('pred', 'more');
  k.emit(`mul.lo.u32 ${h}, ${kvh}, ${group}`, `add.u32 ${hEnd}, ${h}, ${group}`, `mov.u32 ${i}, ${j0}`, `mov.u32 ${cur}, 0`);
  k.emit(`mov.u32 ${t1}, ${shBase}`);
  issue(h, i, t1);
  const loop = k.label('tile'), skip = k.label('skip_tile'), noMask = k.label('nomask'), noCopy = k.label('nocopy');
  k.place(loop);
  // the next (head, tile): the next tile of this head while below qEnd, else the first of the next head
  k.emit(`add.u32 ${inx}, ${i}, ${BM}`, `setp.lt.u32 ${more}, ${inx}, ${qEnd}`, `mov.u32 ${hn}, ${h}`, `@!${more} add.u32 ${hn}, ${h}, 1`, `@!${more} mov.u32 ${inx}, ${j0}`);
  k.emit(`setp.ge.u32 ${last}, ${hn}, ${hEnd}`);
  k.emit('cp.async.wait_group 0', 'bar.sync 0');
  // every warp has passed this barrier, so it is done with the other stage (the previous tile)
  k.emit(`xor.b32 ${nxt}, ${cur}, ${stage}`, `@${last} bra ${noCopy}`, `add.u32 ${t1}, ${shBase}, ${nxt}`);
  issue(hn, inx, t1);
  k.place(noCopy);
  // a tile wholly before the warp's keys (or a warp with no key below T) is skipped (warp-uniform)
  k.emit(`add.u32 ${t1}, ${i}, ${BM}`, `min.u32 ${t1}, ${t1}, ${T}`, `setp.ge.u32 ${pr}, ${kw}, ${t1}`, `@${pr} bra ${skip}`);
  const base = k.reg('u32', 'base'), bQ = k.reg('u32', 'bq'), bO = k.reg('u32', 'bo'), tQ = k.reg('u32', 'tq'), tO = k.reg('u32', 'to');
  k.emit(`add.u32 ${base}, ${shBase}, ${cur}`, `add.u32 ${bQ}, ${base}, ${offC}`, `add.u32 ${bO}, ${bQ}, ${matBytes}`, `add.u32 ${tQ}, ${base}, ${offT}`, `add.u32 ${tO}, ${tQ}, ${matBytes}`);
  // Sᵀ = K_w·Qᵀ, dPᵀ = V_w·dOᵀ
  for (const a of [...sc, ...dp]) for (const r of a) k.emit(`mov.f32 ${r}, 0f00000000`);
  for (let ks = 0; ks < hp / 16; ks++) {
    for (const [A, B, acc] of [[kf, bQ, sc], [vf, bO, dp]] as const) {
      for (let np = 0; np < BM / 16; np++) {
        k.emit(`ldmatrix.sync.aligned.m8n8.x4.shared.b16 {${bfr.join(', ')}}, [${B}+${(np * 16 * srow + ks * 16) * 2}]`);
        for (const half of [0, 1]) {
          const d = acc[2 * np + half]!.join(', ');
          k.emit(`${mma} {${d}}, {${A[ks]!.join(', ')}}, {${bfr[2 * half]}, ${bfr[2 * half + 1]}}, {${d}}`);
        }
      }
    }
  }
  // mask unless the tile is wholly visible: kw+15 ≤ i, i+BM ≤ T, seq[kw] = seq[i+BM-1]
  const sA = k.reg('u32', 'sa'), full = k.reg('pred', 'full');
  k.emit(`add.u32 ${t1}, ${kw}, 15`, `setp.le.u32 ${full}, ${t1}, ${i}`, `add.u32 ${t2}, ${i}, ${BM}`, `setp.le.and.u32 ${full}, ${t2}, ${T}, ${full}`);
  k.emit(`ld.shared.u32 ${t1}, [${base}+${seqAt + (BM - 1) * 4}]`, `setp.eq.and.u32 ${full}, ${t1}, ${seqKw}, ${full}`, `@${full} bra ${noMask}`);
  {
    const tb = k.reg('u32', 'tb'), tc = k.reg('u32', 'tc'), pT = k.reg('pred', 'pt'), pv = k.reg('pred', 'pv'), st = k.regs('u32', 'st', 2);
    k.emit(`mad.lo.u32 ${tb}, ${qd}, 2, ${i}`, `add.u32 ${sA}, ${base}, ${qdOff}`);
    for (let nt = 0; nt < BM / 8; nt++) {
      k.emit(`ld.shared.v2.u32 {${st.join(', ')}}, [${sA}+${seqAt + nt * 32}]`);
      for (const c of [0, 1]) {
        k.emit(`add.u32 ${tc}, ${tb}, ${nt * 8 + c}`, `setp.lt.u32 ${pT}, ${tc}, ${T}`);
        for (const [e, sRow, seqRow] of [[c, sG, seqG], [c + 2, sG8, seqG8]] as const) {
          // element e: key row g (e < 2) or g+8, query column nt·8 + 2qd + c
          k.emit(`setp.le.and.u32 ${pv}, ${sRow}, ${tc}, ${pT}`, `setp.eq.and.u32 ${pv}, ${seqRow}, ${st[c]}, ${pv}`, `@!${pv} mov.f32 ${sc[nt]![e]}, 0fFF800000`);
        }
      }
    }
  }
  k.place(noMask);
  // Pᵀ = ex2(Sᵀ·log2e/√hd − lse·log2e); dSᵀ = Pᵀ ∘ (dPᵀ − D) (per query column)
  {
    const lv = k.regs('f32', 'lv', 2), dv2 = k.regs('f32', 'dd', 2), scale = f32Imm(LOG2E / Math.sqrt(s.hd));
    k.emit(`add.u32 ${sA}, ${base}, ${qdOff}`);
    for (let nt = 0; nt < BM / 8; nt++) {
      k.emit(`ld.shared.v2.f32 {${lv.join(', ')}}, [${sA}+${lseAt + nt * 32}]`, `ld.shared.v2.f32 {${dv2.join(', ')}}, [${sA}+${dAt + nt * 32}]`);
      for (const c of [0, 1]) k.emit(`mul.f32 ${lv[c]}, ${lv[c]}, ${f32Imm(-LOG2E)}`);
      for (let e = 0; e < 4; e++) {
        const x = sc[nt]![e]!, y = dp[nt]![e]!;
        k.emit(`fma.rn.f32 ${x}, ${x}, ${scale}, ${lv[e & 1]}`, `ex2.approx.ftz.f32 ${x}, ${x}`, `sub.f32 ${y}, ${y}, ${dv2[e & 1]}`, `mul.f32 ${y}, ${y}, ${x}`);
      }
    }
  }
  // dV += Pᵀ·dO, dK += dSᵀ·Q: k-slice kk = queries 16kk .. 16kk+15
  for (let kk = 0; kk < BM / 16; kk++) {
    for (const [C, B, acc] of [[sc, tO, dvAcc], [dp, tQ, dkAcc]] as const) {
      packA(k, mt, C[2 * kk]!, C[2 * kk + 1]!, pa);
      for (let np = 0; np < hp / 16; np++) {
        k.emit(`ldmatrix.sync.aligned.m8n8.x4.trans.shared.b16 {${bfr.join(', ')}}, [${B}+${(kk * 16 * srow + np * 16) * 2}]`);
        for (const half of [0, 1]) {
          const d = acc[2 * np + half]!.join(', ');
          k.emit(`${mma} {${d}}, {${pa.join(', ')}}, {${bfr[2 * half]}, ${bfr[2 * half + 1]}}, {${d}}`);
        }
      }
    }
  }
  k.place(skip);
  k.emit(`mov.u32 ${cur}, ${nxt}`, `mov.u32 ${h}, ${hn}`, `mov.u32 ${i}, ${inx}`, `@!${last} bra ${loop}`);

  // ---- epilogue: rows kw+g, kw+g+8 below T; dK gets the 1/√hd of dS ----
  const oCol = k.reg('u32', 'ocol');
  k.emit(`mul.lo.u32 ${oCol}, ${kvh}, ${s.hd}`, `mad.lo.u32 ${oCol}, ${qd}, 2, ${oCol}`);
  const inv = f32Imm(1 / Math.sqrt(s.hd));
  for (const [r, row, ok] of [[0, sG, okG], [1, sG8, okG8]] as const) {
    const ka = k.addr(k.addr(dk, row, gld), oCol, 4), va = k.addr(k.addr(dv, row, gld), oCol, 4);
    for (let nt = 0; nt < s.hd / 8; nt++) {
      const x0 = k.reg('f32', 'o'), x1 = k.reg('f32', 'o');
      k.emit(`mul.f32 ${x0}, ${dkAcc[nt]![2 * r]}, ${inv}`, `mul.f32 ${x1}, ${dkAcc[nt]![2 * r + 1]}, ${inv}`);
      k.emit(`@${ok} st.global.v2.f32 [${ka}+${nt * 32}], {${x0}, ${x1}}`, `@${ok} st.global.v2.f32 [${va}+${nt * 32}], {${dvAcc[nt]![2 * r]}, ${dvAcc[nt]![2 * r + 1]}}`);
    }
  }
  return { name, text: k.render() };
}

/**
 * Kernel 3: dq. Params: dq (f32 [T, pad8(heads·hd)]), q, k, v, dO (spec.dtype), lse, d (f32 [heads, T]),
 * seq (int32 [T]), then u32 T. Grid flashAttentionBackwardDqGrid, block FAB_THREADS.
 */
export function flashAttentionBackwardDq(s: FlashAttentionBackwardSpec): Kernel {
  checkSpec(s);
  const { hp, srow, tile: bn } = geometry(s, 'dq');
  const name = flashAttentionBackwardDqName(s);
  const group = s.heads / s.kvHeads, mt = s.dtype;
  const qld = pad8(s.heads * s.hd) * 2, kvld = pad8(s.kvHeads * s.hd) * 2, gld = pad8(s.heads * s.hd) * 4;
  const k = new KernelBuilder(name, [...['dq', 'q', 'k', 'v', 'dO', 'lse', 'd', 'seq'].map((n) => ({ name: n, type: 'u64' as const })), { name: 'T', type: 'u32' }]);
  k.blockSize(FAB_THREADS, 1); // up to 255 registers: q, dO fragments and the dq accumulators stay in registers
  const [dq, q, kk, v, dO, lse, dd, seq] = ['dq', 'q', 'k', 'v', 'dO', 'lse', 'd', 'seq'].map((n) => k.ptrParam(n)) as [string, string, string, string, string, string, string, string];
  const T = k.u32Param('T');
  const tid = k.special('%tid.x', 'tid'), bx = k.special('%ctaid.x', 'bx'), h = k.special('%ctaid.y', 'h');
  const { lane, warp, g, qd } = lanes(k, tid);
  const t1 = k.reg('u32', 't'), t2 = k.reg('u32', 't'), pr = k.reg('pred', 'pr');
  // query block: the last one first (causal: the last rows walk the most key tiles)
  const r0 = k.reg('u32', 'r0'), kvh = k.reg('u32', 'kvh');
  k.emit(`add.u32 ${r0}, ${T}, ${FAB_ROWS - 1}`, `shr.u32 ${r0}, ${r0}, ${Math.log2(FAB_ROWS)}`, `sub.u32 ${r0}, ${r0}, 1`, `sub.u32 ${r0}, ${r0}, ${bx}`, `shl.b32 ${r0}, ${r0}, ${Math.log2(FAB_ROWS)}`);
  k.emit(`div.u32 ${kvh}, ${h}, ${group}`);
  // keys below kvLim = min(r0 + 64, T) (the CTA's last row + 1); warp rows [ws, we), wlim 0 without any
  const kvLim = k.reg('u32', 'kvlim'), ws = k.reg('u32', 'ws'), we = k.reg('u32', 'we'), wlim = k.reg('u32', 'wlim'), any = k.reg('pred', 'any');
  k.emit(`add.u32 ${kvLim}, ${r0}, ${FAB_ROWS}`, `min.u32 ${kvLim}, ${kvLim}, ${T}`);
  k.emit(`mad.lo.u32 ${ws}, ${warp}, 16, ${r0}`, `add.u32 ${we}, ${ws}, 16`, `min.u32 ${we}, ${we}, ${T}`, `setp.gt.u32 ${any}, ${we}, ${ws}`, `selp.u32 ${wlim}, ${we}, 0, ${any}`);

  // ---- the warp's q and dO rows ws+g, ws+g+8 as A fragments; their lse, D, seq ----
  const rG = k.reg('u32', 'rg'), rG8 = k.reg('u32', 'rg8'), okG = k.reg('pred', 'okg'), okG8 = k.reg('pred', 'okg8');
  k.emit(`add.u32 ${rG}, ${ws}, ${g}`, `add.u32 ${rG8}, ${rG}, 8`, `setp.lt.u32 ${okG}, ${rG}, ${T}`, `setp.lt.u32 ${okG8}, ${rG8}, ${T}`);
  const qCol = k.reg('u32', 'qcol'); // h·hd + 2qd elements
  k.emit(`mul.lo.u32 ${qCol}, ${h}, ${s.hd}`, `mad.lo.u32 ${qCol}, ${qd}, 2, ${qCol}`);
  const frags = (base: string) => loadAFragments(k, s.hd, hp, k.addr(k.addr(base, rG, qld), qCol, 2), k.addr(k.addr(base, rG8, qld), qCol, 2), okG, okG8);
  const qf = frags(q), of = frags(dO);
  const nl = k.regs('f32', 'nl', 2), dr = k.regs('f32', 'dr', 2), seqR = k.regs('u32', 'seqr', 2);
  for (const [r, row, ok] of [[0, rG, okG], [1, rG8, okG8]] as const) {
    k.emit(`mov.f32 ${nl[r]}, 0f00000000`, `mov.f32 ${dr[r]}, 0f00000000`, `mov.u32 ${seqR[r]}, 0`, `mad.lo.u32 ${t1}, ${h}, ${T}, ${row}`);
    k.emit(`@${ok} ld.global.f32 ${nl[r]}, [${k.addr(lse, t1, 4)}]`, `@${ok} ld.global.f32 ${dr[r]}, [${k.addr(dd, t1, 4)}]`, `@${ok} ld.global.u32 ${seqR[r]}, [${k.addr(seq, row, 4)}]`);
    k.emit(`mul.f32 ${nl[r]}, ${nl[r]}, ${f32Imm(-LOG2E)}`);
  }
  // seq of the warp's last row (ws + 15) for the wholly-visible test, when that row is below T
  const seqWe = k.reg('u32', 'seqwe');
  k.emit(`add.u32 ${t1}, ${ws}, 15`, `mov.u32 ${seqWe}, 0`, `setp.lt.u32 ${pr}, ${t1}, ${T}`);
  k.emit(`@${pr} ld.global.u32 ${seqWe}, [${k.addr(seq, t1, 4)}]`);

  // ---- the first key: the start of row r0's sequence (binary search), rounded down to a tile ----
  const seq0 = k.reg('u32', 'seq0'), j0 = k.reg('u32', 'j0'), hi = k.reg('u32', 'hi'), sv = k.reg('u32', 'sv');
  k.emit(`ld.global.u32 ${seq0}, [${k.addr(seq, r0, 4)}]`, `mov.u32 ${j0}, 0`, `mov.u32 ${hi}, ${r0}`);
  binarySearch(k, j0, hi, (x, p) => k.emit(`ld.global.u32 ${sv}, [${k.addr(seq, x, 4)}]`, `setp.eq.u32 ${p}, ${sv}, ${seq0}`));
  k.emit(`div.u32 ${j0}, ${j0}, ${bn}`, `mul.lo.u32 ${j0}, ${j0}, ${bn}`);

  // ---- shared stages: [K tile][V tile][seq], bn rows each ----
  const matBytes = bn * srow * 2, seqAt = 2 * matBytes, stage = seqAt + bn * 4;
  const sh = k.sharedArray('bwd', 'b8', 2 * stage, 128);
  const shBase = k.reg('u32', 'shbase');
  k.emit(`mov.u32 ${shBase}, ${sh}`);
  if (hp > s.hd) {
    zeroPadding(k, tid, shBase, 2 * bn, s.hd, srow);
    k.emit(`add.u32 ${t1}, ${shBase}, ${stage}`);
    zeroPadding(k, tid, t1, 2 * bn, s.hd, srow);
  }
  const copy = tileCopy(k, tid, T, bn, s.hd, srow, kvld);
  const kvCol = k.reg('u32', 'kvcol');
  k.emit(`mul.lo.u32 ${kvCol}, ${kvh}, ${s.hd * 2}`);
  const issue = (j: string, dst: string) => copy.issue(j, dst, [{ base: kk, col: kvCol, at: 0 }, { base: v, col: kvCol, at: matBytes }], [{ base: seq, index: (p, out) => k.emit(`mov.u32 ${out}, ${p}`), at: seqAt }]);

  const { col: offC, trans: offT } = ldmatrixOffsets(k, lane, srow);
  const qdOff = k.reg('u32', 'qdoff');
  k.emit(`shl.b32 ${qdOff}, ${qd}, 3`);
  const acc = Array.from({ length: hp / 8 }, () => k.regs('f32', 'acc', 4));
  for (const a of acc) for (const r of a) k.emit(`mov.f32 ${r}, 0f00000000`);
  const sc = Array.from({ length: bn / 8 }, () => k.regs('f32', 's', 4)), dp = Array.from({ length: bn / 8 }, () => k.regs('f32', 'dp', 4));
  const mma = `mma.sync.aligned.m16n8k16.row.col.f32.${mt}.${mt}.f32`;
  const bfr = k.regs('b32', 'bf', 4), pa = k.regs('b32', 'pa', 4);

  // ---- the key tile loop, j0 .. kvLim-1 ----
  const j = k.reg('u32', 'j'), jn = k.reg('u32', 'jn'), cur = k.reg('u32', 'cur'), nxt = k.reg('u32', 'nxt');
  k.emit(`mov.u32 ${j}, ${j0}`, `mov.u32 ${cur}, 0`, `mov.u32 ${t1}, ${shBase}`);
  issue(j, t1);
  const loop = k.label('tile'), done = k.label('tiles_done'), skip = k.label('skip_tile'), noMask = k.label('nomask'), noCopy = k.label('nocopy');
  k.place(loop);
  k.emit(`setp.ge.u32 ${pr}, ${j}, ${kvLim}`, `@${pr} bra ${done}`);
  k.emit('cp.async.wait_group 0', 'bar.sync 0');
  // every warp has passed this barrier, so it is done with the other stage (the previous tile)
  k.emit(`add.u32 ${jn}, ${j}, ${bn}`, `xor.b32 ${nxt}, ${cur}, ${stage}`, `setp.ge.u32 ${pr}, ${jn}, ${kvLim}`, `@${pr} bra ${noCopy}`, `add.u32 ${t1}, ${shBase}, ${nxt}`);
  issue(jn, t1);
  k.place(noCopy);
  // a tile wholly past this warp's last row is skipped (warp-uniform branch)
  k.emit(`setp.ge.u32 ${pr}, ${j}, ${wlim}`, `@${pr} bra ${skip}`);
  const base = k.reg('u32', 'base'), bK = k.reg('u32', 'bk'), bV = k.reg('u32', 'bv'), tK = k.reg('u32', 'tk');
  k.emit(`add.u32 ${base}, ${shBase}, ${cur}`, `add.u32 ${bK}, ${base}, ${offC}`, `add.u32 ${bV}, ${bK}, ${matBytes}`, `add.u32 ${tK}, ${base}, ${offT}`);
  // S = q·Kᵀ, dP = dO·Vᵀ
  for (const a of [...sc, ...dp]) for (const r of a) k.emit(`mov.f32 ${r}, 0f00000000`);
  for (let ks = 0; ks < hp / 16; ks++) {
    for (const [A, B, out] of [[qf, bK, sc], [of, bV, dp]] as const) {
      for (let np = 0; np < bn / 16; np++) {
        k.emit(`ldmatrix.sync.aligned.m8n8.x4.shared.b16 {${bfr.join(', ')}}, [${B}+${(np * 16 * srow + ks * 16) * 2}]`);
        for (const half of [0, 1]) {
          const d = out[2 * np + half]!.join(', ');
          k.emit(`${mma} {${d}}, {${A[ks]!.join(', ')}}, {${bfr[2 * half]}, ${bfr[2 * half + 1]}}, {${d}}`);
        }
      }
    }
  }
  // mask unless the tile is wholly visible: j+bn-1 ≤ ws, ws+16 ≤ T, seq[j] = seq[ws+15]
  const full = k.reg('pred', 'full');
  k.emit(`add.u32 ${t1}, ${j}, ${bn - 1}`, `setp.le.u32 ${full}, ${t1}, ${ws}`, `add.u32 ${t2}, ${ws}, 16`, `setp.le.and.u32 ${full}, ${t2}, ${T}, ${full}`);
  k.emit(`ld.shared.u32 ${t1}, [${base}+${seqAt}]`, `setp.eq.and.u32 ${full}, ${t1}, ${seqWe}, ${full}`, `@${full} bra ${noMask}`);
  {
    const sA = k.reg('u32', 'sa'), sb = k.reg('u32', 'sb'), sCol = k.reg('u32', 'scol'), pv = k.reg('pred', 'pv'), st = k.regs('u32', 'st', 2);
    k.emit(`mad.lo.u32 ${sb}, ${qd}, 2, ${j}`, `add.u32 ${sA}, ${base}, ${qdOff}`);
    for (let nt = 0; nt < bn / 8; nt++) {
      k.emit(`ld.shared.v2.u32 {${st.join(', ')}}, [${sA}+${seqAt + nt * 32}]`);
      for (const c of [0, 1]) {
        k.emit(`add.u32 ${sCol}, ${sb}, ${nt * 8 + c}`);
        for (const [e, row, ok, sr] of [[c, rG, okG, seqR[0]!], [c + 2, rG8, okG8, seqR[1]!]] as const) {
          // element e: query row g (e < 2) or g+8 (below T), key column nt·8 + 2qd + c
          k.emit(`setp.le.and.u32 ${pv}, ${sCol}, ${row}, ${ok}`, `setp.eq.and.u32 ${pv}, ${sr}, ${st[c]}, ${pv}`, `@!${pv} mov.f32 ${sc[nt]![e]}, 0fFF800000`);
        }
      }
    }
  }
  k.place(noMask);
  // P = ex2(S·log2e/√hd − lse·log2e); dS = P ∘ (dP − D) (per row)
  const scale = f32Imm(LOG2E / Math.sqrt(s.hd));
  for (let nt = 0; nt < bn / 8; nt++) {
    for (let e = 0; e < 4; e++) {
      const x = sc[nt]![e]!, y = dp[nt]![e]!, r = e >> 1;
      k.emit(`fma.rn.f32 ${x}, ${x}, ${scale}, ${nl[r]}`, `ex2.approx.ftz.f32 ${x}, ${x}`, `sub.f32 ${y}, ${y}, ${dr[r]}`, `mul.f32 ${y}, ${y}, ${x}`);
    }
  }
  // dq += dS·K: k-slice kk = keys 16kk .. 16kk+15, K tile [key][dim] = [k][n] read transposed
  for (let kk2 = 0; kk2 < bn / 16; kk2++) {
    packA(k, mt, dp[2 * kk2]!, dp[2 * kk2 + 1]!, pa);
    for (let np = 0; np < hp / 16; np++) {
      k.emit(`ldmatrix.sync.aligned.m8n8.x4.trans.shared.b16 {${bfr.join(', ')}}, [${tK}+${(kk2 * 16 * srow + np * 16) * 2}]`);
      for (const half of [0, 1]) {
        const d = acc[2 * np + half]!.join(', ');
        k.emit(`${mma} {${d}}, {${pa.join(', ')}}, {${bfr[2 * half]}, ${bfr[2 * half + 1]}}, {${d}}`);
      }
    }
  }
  k.place(skip);
  k.emit(`mov.u32 ${cur}, ${nxt}`, `mov.u32 ${j}, ${jn}`, `bra ${loop}`);
  k.place(done);

  // ---- epilogue: dq = acc/√hd at rows ws+g, ws+g+8 below T ----
  const inv = f32Imm(1 / Math.sqrt(s.hd));
  for (const [r, row, ok] of [[0, rG, okG], [1, rG8, okG8]] as const) {
    const a = k.addr(k.addr(dq, row, gld), qCol, 4);
    for (let nt = 0; nt < s.hd / 8; nt++) {
      const x0 = k.reg('f32', 'o'), x1 = k.reg('f32', 'o');
      k.emit(`mul.f32 ${x0}, ${acc[nt]![2 * r]}, ${inv}`, `mul.f32 ${x1}, ${acc[nt]![2 * r + 1]}, ${inv}`, `@${ok} st.global.v2.f32 [${a}+${nt * 32}], {${x0}, ${x1}}`);
    }
  }
  return { name, text: k.render() };
}
