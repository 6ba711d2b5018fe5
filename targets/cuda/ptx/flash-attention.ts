// Causal GQA attention for many queries (prefill), FlashAttention-2 style on sm_80 tensor cores
// (runs on sm_90 too). The prefill program runs it for every attention (targets/cuda/lower.ts).
//
//   o[t, h] = softmax(q[t, h] · K[0 .. pos+t]ᵀ / √hd) · V[0 .. pos+t],  KV head h / (heads / kvHeads),
//   lse[h, t] = ln Σ_s exp(q[t, h] · K[s] / √hd)   (natural log, for a backward pass)
//
// `pos` is a device int32: tokens cached before this call. Cache rows pos .. pos+T-1 already hold this
// call's keys and values; query row t sits at absolute position pos + t.
//
// Work split. One CTA per (block of FA_ROWS = 64 query rows, head), 4 warps of 16 rows each: a warp's
// 16 rows are exactly one mma m16 tile, so its scores, softmax state and output never leave its
// registers; 4 warps share each K/V tile copied to shared memory (64 rows amortize the copy over 4
// warps, and 128 threads keep the register budget per thread at 255, which hd 128 needs). Query
// blocks are launched heaviest first (block x = the last query block): with causal masking the last
// rows walk the most tiles, so they should not start last.
//
// The loop walks K/V tiles of bn positions (64; 32 when hd > 80, where two stages of 64-row K and V
// tiles would pass the 48 KB of static shared memory) from position 0 to the CTA's last row's limit:
//   S = Q·Kᵀ (mma.m16n8k16, Q as A fragments held in registers for the whole loop, K through ldmatrix
//   as the col operand, like W in gemm.ts); mask; online softmax in the exp2 domain (log2(e)/√hd folded
//   into one fma per score; row max over the quad with two shuffles; the row sum kept per thread and
//   summed over the quad once at the end, since the rescale factor is the same in the whole quad);
//   P packed to bf16/f16 in registers: the C fragments of two adjacent 8-column score tiles are the A
//   fragment of one 16-position k-slice (c0,c1 → a0; c2,c3 → a1; the next tile's → a2, a3), so P never
//   goes through shared memory; O += P·V with V through ldmatrix.trans (stored [position][dim], the
//   transposed load gives each lane the B fragment's two consecutive positions at one dim).
//
// Copies. bf16/f16 caches: cp.async 16-byte chunks, two stages: tile j+1 is copied (issued after the
// barrier that starts tile j, so nobody still reads its stage) while tile j is multiplied. f32 cache:
// each tile is loaded with ld.global.v4 (all of a matrix's loads issued before the first conversion),
// converted to bf16 and stored to shared, no copy/compute overlap (holding the next tile's f32 values in
// registers would cost up to 64 more registers a thread): the f32 cache is the slow path.
//
// Masking. Cache rows at or past the CTA's limit pos + min(r0 + 64, T) are never read: their chunks are
// zero-filled (cp.async src-size 0 from the cache base; predicated-off loads), so neither the NaN of an
// unwritten row nor a row past the allocation can reach the sums. Scores past a row's causal limit are
// set to -inf (only in tiles that cross the warp's first row's limit; a tile wholly past a warp's last
// row's limit is skipped by that warp). Query rows past T load zeros and are never stored. Position 0
// is visible to every row, so after the first tile each row max is finite; the -inf guards
// (max = -inf → subtract 0; l = 0 → output 0) are there anyway so no NaN can come from the softmax.
//
// Precision. Q is rounded to bf16 (f16 for an f16 cache), K and V are the cache's bf16/f16 values (an
// f32 cache is rounded to bf16 when staged: 8 bits of mantissa, like the bf16 cache), scores accumulate
// in f32. P is rounded to bf16/f16 for P·V while the row sum l adds the f32 values, so each output is
// within about 2^-9 (bf16) / 2^-11 (f16) of its scale Σ p|v| / l. The lse uses the f32 max and sum.
// q is f32 and an f16 conversion overflows past 65504: an f16 model's activations stay far below.
//
// Shared memory: [stage 0, 1][K, V][bn rows][hp + 8 elements], hp = hd rounded up to 16 (the mma k);
// columns hd .. hp-1 are zeroed once before the loop (no copy writes them: K's must be 0, since
// 0·NaN would poison S), and the 8 extra columns make the 8 rows an ldmatrix phase reads fall in 8
// distinct 16-byte bank groups ((hp + 8)·2 bytes is an odd multiple of 16).
//
// Packed sequences (spec.seq, the training executor's attention under bf16, train/ops-attention-bf16.ts).
// The rows are a batch of sequences packed one after another: row t attends to rows s with
// seq[s] = seq[t] and s ≤ t (kernels.ts seqAttention), i.e. start(t) ≤ s ≤ t. kc, vc are then the
// [T, pad8(kvHeads·hd)] key and value rows themselves and pos is 0 (the `pos` param becomes `seq`);
// each lane finds the starts of its two rows by binary search over seq (sequenceStarts below, the
// search flash-attention-backward.ts uses). The tile loop begins at the tile holding the CTA's first
// row's start (earlier keys are invisible to every row of the CTA); a tile is masked when it reaches
// past the warp's first row (causal, as above) or begins before the largest start of the warp's rows,
// and then keys before each row's start are set to -inf as well. A row's first tiles may thus be
// wholly masked (its own start lies further on): the -inf guards above keep its m, l and O at
// -inf, 0, 0 until its first visible key; every row below T sees at least itself, so l > 0 at the end.
// With seq off nothing of this is emitted: the prefill kernels' PTX is unchanged (hash test in
// test/targets/cuda-train-bf16-attention.test.ts).
//
// Fragments: see gemm.ts's header (g = lane / 4, qd = lane % 4).
import { f32Imm, KernelBuilder } from './builder.js';
import type { Kernel } from './dense.js';
import { pad8 } from './layout.js';
import { binarySearch } from './flash-attention-backward.js';

export interface FlashAttentionSpec {
  heads: number;
  kvHeads: number;
  /** Head dimension: a multiple of 8, at most 128. */
  hd: number;
  /** KV cache element type ([capacity, pad8(kvHeads·hd)] rows). */
  cache: 'f32' | 'bf16' | 'f16';
  /** Output element type ([T, pad8(heads·hd)] rows); bf16 feeds a tensor-core GEMM directly. */
  out: 'f32' | 'bf16';
  /** Also write lse [heads, T] (f32). */
  lse: boolean;
  /**
   * The mma operand type over an f32 cache (q, K, V and P are rounded to it): f16 keeps 3 more
   * mantissa bits, so an f16 model's prefill rounds no coarser than its GEMMs; default bf16. A 16-bit
   * cache is multiplied as stored (its own type).
   */
  operands?: 'bf16' | 'f16';
  /**
   * Packed sequences (training; see "Packed sequences" in the header): kc / vc are the [T, ·] key and
   * value rows of this call themselves (no cache, pos 0), and the `pos` param is replaced by `seq`
   * (int32 [T] sequence ids). Default false: the prefill kernel, whose PTX this flag leaves unchanged.
   */
  seq?: boolean;
}

/** The mma operand type of spec `s` (see FlashAttentionSpec.operands). */
export function flashAttentionOperands(s: FlashAttentionSpec): 'bf16' | 'f16' {
  return s.cache === 'f32' ? s.operands ?? 'bf16' : s.cache;
}

/** Query rows per CTA: 4 warps of 16. */
export const FA_ROWS = 64;
export const FA_THREADS = 128;
const WARPS = FA_THREADS / 32;
const SHARED_LIMIT = 48 * 1024;

interface Geometry {
  /** hd rounded up to the mma k of 16. */
  hp: number;
  /** Positions per K/V tile. */
  bn: number;
  /** Shared row length in elements. */
  srow: number;
  /** Bytes of one stage (K tile then V tile). */
  stage: number;
}

function geometry(s: FlashAttentionSpec): Geometry {
  const hp = Math.ceil(s.hd / 16) * 16, srow = hp + 8;
  const bytes = (bn: number) => 2 * 2 * bn * srow * 2;
  const bn = bytes(64) <= SHARED_LIMIT ? 64 : 32;
  return { hp, bn, srow, stage: 2 * bn * srow * 2 };
}

/** The head dimensions the kernel tiles (flash-attention-backward.ts's kernels take the same). */
export const flashAttentionHeadDimOk = (hd: number): boolean => Number.isInteger(hd) && hd % 8 === 0 && hd >= 8 && hd <= 128;

function checkSpec(s: FlashAttentionSpec): void {
  const bad = (why: string) => new Error(`PTX generator bug: flash attention ${JSON.stringify(s)}: ${why}`);
  if (!flashAttentionHeadDimOk(s.hd)) throw bad('hd must be a multiple of 8 in 8..128');
  if (!Number.isInteger(s.heads) || !Number.isInteger(s.kvHeads) || s.kvHeads < 1 || s.heads % s.kvHeads !== 0) throw bad('heads must be a multiple of kvHeads');
  if (s.operands && s.cache !== 'f32' && s.operands !== s.cache) throw bad('a 16-bit cache is multiplied as stored: operands must be its type');
}

export function flashAttentionName(s: FlashAttentionSpec): string {
  const m = s.cache === 'f32' && flashAttentionOperands(s) === 'f16' ? '_mf16' : '';
  return `flash_attention${s.seq ? '_seq' : ''}_h${s.heads}_kv${s.kvHeads}_hd${s.hd}_${s.cache}${m}_o${s.out}${s.lse ? '_lse' : ''}`;
}

/** Grid for T query rows: x over blocks of FA_ROWS rows (launched last block first), y over heads. */
export function flashAttentionGrid(s: FlashAttentionSpec, T: number): [number, number, number] {
  return [Math.ceil(T / FA_ROWS), s.heads, 1];
}

/** Static shared memory of the kernel, bytes. */
export function flashAttentionSharedBytes(s: FlashAttentionSpec): number {
  return 2 * geometry(s).stage;
}

/**
 * The kernel. Params: o, q, kc, vc, pos (u64 pointer to the device int32; with spec.seq: seq, the
 * int32 [T] sequence ids), lse (u64, only if spec.lse), then u32 T. Grid flashAttentionGrid(spec, T),
 * block FA_THREADS.
 */
export function flashAttention(s: FlashAttentionSpec): Kernel {
  checkSpec(s);
  const { hp, bn, srow, stage } = geometry(s);
  const name = flashAttentionName(s);
  const group = s.heads / s.kvHeads;
  const mt = flashAttentionOperands(s);
  const cacheBytes = s.cache === 'f32' ? 4 : 2, outBytes = s.out === 'f32' ? 4 : 2;
  const qld = pad8(s.heads * s.hd) * 4, kvld = pad8(s.kvHeads * s.hd) * cacheBytes, old = pad8(s.heads * s.hd) * outBytes;
  const k = new KernelBuilder(name, [
    ...['o', 'q', 'kc', 'vc', s.seq ? 'seq' : 'pos'].map((n) => ({ name: n, type: 'u64' as const })),
    ...(s.lse ? [{ name: 'lse', type: 'u64' as const }] : []),
    { name: 'T', type: 'u32' },
  ]);
  k.blockSize(FA_THREADS, 1); // registers up to 255: hd 128 holds Q, O and S fragments (about 200)
  const o = k.ptrParam('o'), q = k.ptrParam('q'), kc = k.ptrParam('kc'), vc = k.ptrParam('vc'), posP = k.ptrParam(s.seq ? 'seq' : 'pos');
  const lseP = s.lse ? k.ptrParam('lse') : '';
  const T = k.u32Param('T');
  const tid = k.special('%tid.x', 'tid'), bx = k.special('%ctaid.x', 'bx'), h = k.special('%ctaid.y', 'h');
  const lane = k.reg('u32', 'lane'), warp = k.reg('u32', 'warp'), g = k.reg('u32', 'g'), qd = k.reg('u32', 'qd');
  k.emit(`and.b32 ${lane}, ${tid}, 31`, `shr.u32 ${warp}, ${tid}, 5`, `shr.u32 ${g}, ${lane}, 2`, `and.b32 ${qd}, ${lane}, 3`);
  // query block: the last one first
  const r0 = k.reg('u32', 'r0'), pos = k.reg('u32', 'pos'), kvh = k.reg('u32', 'kvh');
  k.emit(`add.u32 ${r0}, ${T}, ${FA_ROWS - 1}`, `shr.u32 ${r0}, ${r0}, ${Math.log2(FA_ROWS)}`, `sub.u32 ${r0}, ${r0}, 1`, `sub.u32 ${r0}, ${r0}, ${bx}`, `shl.b32 ${r0}, ${r0}, ${Math.log2(FA_ROWS)}`);
  k.emit(s.seq ? `mov.u32 ${pos}, 0` : `ld.global.u32 ${pos}, [${posP}]`, `div.u32 ${kvh}, ${h}, ${group}`);
  // CTA limit: cache rows < kvLim are read (the last row's causal limit + 1)
  const kvLim = k.reg('u32', 'kvlim'), t1 = k.reg('u32', 't'), t2 = k.reg('u32', 't');
  k.emit(`add.u32 ${t1}, ${r0}, ${FA_ROWS}`, `min.u32 ${t1}, ${t1}, ${T}`, `add.u32 ${kvLim}, ${pos}, ${t1}`);
  // warp rows [ws, we): the warp needs the tiles starting below wlim (0 when it has no row below T)
  const ws = k.reg('u32', 'ws'), we = k.reg('u32', 'we'), wlim = k.reg('u32', 'wlim'), any = k.reg('pred', 'any');
  k.emit(`mad.lo.u32 ${ws}, ${warp}, 16, ${r0}`, `add.u32 ${we}, ${ws}, 16`, `min.u32 ${we}, ${we}, ${T}`, `setp.gt.u32 ${any}, ${we}, ${ws}`);
  k.emit(`add.u32 ${wlim}, ${pos}, ${we}`, `selp.u32 ${wlim}, ${wlim}, 0, ${any}`);
  // first row's limit pos + ws: a tile reaching past it needs the mask
  const posWs = k.reg('u32', 'posws');
  k.emit(`add.u32 ${posWs}, ${pos}, ${ws}`);

  // ---- Q fragments for the whole loop: rows ws+g, ws+g+8; k-slices of 16 dims ----
  const rowG = k.reg('u32', 'rowg'), rowG8 = k.reg('u32', 'rowg8'), okG = k.reg('pred', 'okg'), okG8 = k.reg('pred', 'okg8');
  k.emit(`add.u32 ${rowG}, ${ws}, ${g}`, `add.u32 ${rowG8}, ${rowG}, 8`, `setp.lt.u32 ${okG}, ${rowG}, ${T}`, `setp.lt.u32 ${okG8}, ${rowG8}, ${T}`);
  const qcol = k.reg('u32', 'qcol'); // h·hd + 2qd: this lane's first column
  k.emit(`mul.lo.u32 ${qcol}, ${h}, ${s.hd}`, `shl.b32 ${t1}, ${qd}, 1`, `add.u32 ${qcol}, ${qcol}, ${t1}`);
  const qaG = k.addr(k.addr(q, rowG, qld), qcol, 4), qaG8 = k.addr(k.addr(q, rowG8, qld), qcol, 4);
  const qf = Array.from({ length: hp / 16 }, () => k.regs('b32', 'qf', 4));
  const f0 = k.reg('f32', 'f'), f1 = k.reg('f32', 'f');
  for (let ks = 0; ks < hp / 16; ks++) {
    for (let i = 0; i < 4; i++) {
      const col = ks * 16 + (i >= 2 ? 8 : 0), [addr, ok] = i & 1 ? [qaG8, okG8] : [qaG, okG];
      if (col >= s.hd) { k.emit(`mov.b32 ${qf[ks]![i]}, 0`); continue; } // hd padded to 16 with zeros
      k.emit(`mov.f32 ${f0}, 0f00000000`, `mov.f32 ${f1}, 0f00000000`, `@${ok} ld.global.v2.f32 {${f0}, ${f1}}, [${addr}+${col * 4}]`);
      k.emit(`cvt.rn.${mt}x2.f32 ${qf[ks]![i]}, ${f1}, ${f0}`); // the lower half holds the lower column
    }
  }

  const starts = s.seq ? sequenceStarts(k, posP, T, r0, rowG, rowG8, bn) : undefined;

  // ---- shared memory and the zeroed padding columns ----
  const sh = k.sharedArray('kv', 'b8', 2 * stage, 128);
  const shBase = k.reg('u32', 'shbase');
  k.emit(`mov.u32 ${shBase}, ${sh}`);
  if (hp > s.hd) {
    // one 16-byte chunk a row (hp - hd = 8) in each of the 4·bn rows of both stages
    k.comment('zero the padding columns hd .. hp-1 of every K and V row of both stages');
    const za = k.reg('u32', 'za'), z = k.reg('b32', 'z');
    k.emit(`mov.b32 ${z}, 0`);
    for (let r = 0; r < (4 * bn) / FA_THREADS; r++) {
      k.emit(`add.u32 ${t1}, ${tid}, ${r * FA_THREADS}`, `mad.lo.u32 ${za}, ${t1}, ${srow * 2}, ${shBase}`, `st.shared.v4.b32 [${za}+${s.hd * 2}], {${z}, ${z}, ${z}, ${z}}`);
    }
  }

  // ---- the copy plan: chunk i = tid + 128·r of a tile's bn·hd/8 chunks (8 elements each) ----
  const chunksPerRow = s.hd / 8, chunks = bn * chunksPerRow, rounds = Math.ceil(chunks / FA_THREADS);
  interface Chunk { row: string; dst: string; col: string; inRange?: string }
  const plan: Chunk[] = [];
  const kvCol = k.reg('u32', 'kvcol'); // the KV head's first byte within a cache row
  k.emit(`mul.lo.u32 ${kvCol}, ${kvh}, ${s.hd * cacheBytes}`);
  for (let r = 0; r < rounds; r++) {
    const i = k.reg('u32', 'ci'), row = k.reg('u32', 'crow'), cc = k.reg('u32', 'cc'), dst = k.reg('u32', 'cdst'), col = k.reg('u32', 'ccol');
    k.emit(`add.u32 ${i}, ${tid}, ${r * FA_THREADS}`, `div.u32 ${row}, ${i}, ${chunksPerRow}`, `rem.u32 ${cc}, ${i}, ${chunksPerRow}`);
    k.emit(`mad.lo.u32 ${dst}, ${row}, ${srow * 2}, ${shBase}`, `mad.lo.u32 ${dst}, ${cc}, 16, ${dst}`);
    k.emit(`mad.lo.u32 ${col}, ${cc}, ${8 * cacheBytes}, ${kvCol}`);
    const c: Chunk = { row, dst, col };
    if ((r + 1) * FA_THREADS > chunks) {
      c.inRange = k.reg('pred', 'inr');
      k.emit(`setp.lt.u32 ${c.inRange}, ${i}, ${chunks}`);
    }
    plan.push(c);
  }
  const p = k.reg('u32', 'p'), ok = k.reg('pred', 'ok'), ga = k.reg('u64', 'ga'), goff = k.reg('u64', 'goff'), sd = k.reg('u32', 'sd'), sz = k.reg('u32', 'sz');
  /** Global address of chunk c of cache `base` at tile start j0 (into ga), and whether that row is below kvLim (ok). */
  const chunkSource = (c: Chunk, base: string, j0: string) => {
    k.emit(`add.u32 ${p}, ${j0}, ${c.row}`, `setp.lt.u32 ${ok}, ${p}, ${kvLim}`);
    if (c.inRange) k.emit(`and.pred ${ok}, ${ok}, ${c.inRange}`);
    k.emit(`mul.wide.u32 ${goff}, ${p}, ${kvld}`, `add.s64 ${ga}, ${base}, ${goff}`, `cvt.u64.u32 ${goff}, ${c.col}`, `add.s64 ${ga}, ${ga}, ${goff}`);
  };
  /** bf16/f16 cache: cp.async the K and V tile at j0 into the stage at byte offset stageOff, one commit group. */
  const issueTile = (j0: string, stageOff: string) => {
    for (const [base, matOff] of [[kc, 0], [vc, bn * srow * 2]] as const) {
      for (const c of plan) {
        chunkSource(c, base, j0);
        // rows past the limit: zero-fill from the cache base (src-size 0 reads nothing)
        k.emit(`selp.u32 ${sz}, 16, 0, ${ok}`, `@!${ok} mov.u64 ${ga}, ${base}`, `add.u32 ${sd}, ${c.dst}, ${stageOff}`);
        k.emit(`${c.inRange ? `@${c.inRange} ` : ''}cp.async.cg.shared.global [${sd}+${matOff}], [${ga}], 16, ${sz}`);
      }
    }
    k.emit('cp.async.commit_group');
  };
  /** f32 cache: load, round to bf16 and store the K and V tile at j0 into the stage at stageOff. */
  const loadTileF32 = (j0: string, stageOff: string) => {
    for (const [base, matOff] of [[kc, 0], [vc, bn * srow * 2]] as const) {
      const vals = plan.map(() => k.regs('f32', 'kv', 8));
      plan.forEach((c, r) => {
        chunkSource(c, base, j0);
        for (const v of vals[r]!) k.emit(`mov.f32 ${v}, 0f00000000`);
        k.emit(`@${ok} ld.global.v4.f32 {${vals[r]!.slice(0, 4).join(', ')}}, [${ga}]`, `@${ok} ld.global.v4.f32 {${vals[r]!.slice(4).join(', ')}}, [${ga}+16]`);
      });
      plan.forEach((c, r) => {
        const v = vals[r]!, packed = k.regs('b32', 'pk', 4);
        for (let e = 0; e < 4; e++) k.emit(`cvt.rn.${mt}x2.f32 ${packed[e]}, ${v[2 * e + 1]}, ${v[2 * e]}`);
        k.emit(`add.u32 ${sd}, ${c.dst}, ${stageOff}`, `${c.inRange ? `@${c.inRange} ` : ''}st.shared.v4.b32 [${sd}+${matOff}], {${packed.join(', ')}}`);
      });
    }
  };

  // ---- per-lane ldmatrix offsets (bytes within a stage) ----
  // K as B (col): lane l reads position row (l%8) + 8·(l/16), dim offset 8·((l/8)%2)
  const kOff = k.reg('u32', 'koff'), vOff = k.reg('u32', 'voff');
  k.emit(`and.b32 ${t1}, ${lane}, 7`, `shr.u32 ${t2}, ${lane}, 4`, `mad.lo.u32 ${t1}, ${t2}, 8, ${t1}`, `shr.u32 ${t2}, ${lane}, 3`, `and.b32 ${t2}, ${t2}, 1`);
  k.emit(`mul.lo.u32 ${kOff}, ${t1}, ${srow * 2}`, `mad.lo.u32 ${kOff}, ${t2}, 16, ${kOff}`);
  // V, transposed: lane l reads position row (l%8) + 8·((l/8)%2), dim offset 8·(l/16)
  k.emit(`and.b32 ${t1}, ${lane}, 7`, `mad.lo.u32 ${t1}, ${t2}, 8, ${t1}`, `shr.u32 ${t2}, ${lane}, 4`);
  k.emit(`mul.lo.u32 ${vOff}, ${t1}, ${srow * 2}`, `mad.lo.u32 ${vOff}, ${t2}, 16, ${vOff}`, `add.u32 ${vOff}, ${vOff}, ${bn * srow * 2}`);
  // causal limit of this lane's first score column, relative to the tile: valid iff column ≤ lim0 - j0
  // (row g), ≤ lim0 - j0 + 8 (row g+8); lim0 = pos + ws + g - 2qd, signed
  const lim0 = k.reg('s32', 'lim0'), lim = k.reg('s32', 'lim');
  k.emit(`add.u32 ${t1}, ${posWs}, ${g}`, `shl.b32 ${t2}, ${qd}, 1`, `sub.s32 ${lim0}, ${t1}, ${t2}`);

  // ---- softmax state and the output accumulators (rows g, g+8) ----
  const m = [k.reg('f32', 'm'), k.reg('f32', 'm')], l = [k.reg('f32', 'l'), k.reg('f32', 'l')];
  for (const r of [0, 1]) k.emit(`mov.f32 ${m[r]}, 0fFF800000`, `mov.f32 ${l[r]}, 0f00000000`);
  const acc = Array.from({ length: hp / 8 }, () => k.regs('f32', 'acc', 4));
  for (const a of acc) for (const r of a) k.emit(`mov.f32 ${r}, 0f00000000`);
  const sc = Array.from({ length: bn / 8 }, () => k.regs('f32', 's', 4));
  const scale = f32Imm(Math.LOG2E / Math.sqrt(s.hd));
  const mma = `mma.sync.aligned.m16n8k16.row.col.f32.${mt}.${mt}.f32`;

  // ---- the tile loop ----
  const j0 = k.reg('u32', 'j0'), cur = k.reg('u32', 'cur'), nxt = k.reg('u32', 'nxt'), jn = k.reg('u32', 'jn'), pr = k.reg('pred', 'pr');
  k.emit(starts ? `mov.u32 ${j0}, ${starts.first}` : `mov.u32 ${j0}, 0`, `mov.u32 ${cur}, 0`);
  if (s.cache !== 'f32') issueTile(j0, cur);
  const loop = k.label('tile'), done = k.label('tiles_done'), noCopy = k.label('nocopy'), skip = k.label('skip_tile'), noMask = k.label('nomask');
  k.place(loop);
  k.emit(`setp.ge.u32 ${pr}, ${j0}, ${kvLim}`, `@${pr} bra ${done}`);
  if (s.cache === 'f32') {
    // stage cur was last read two tiles ago; the previous tile's barrier has passed since
    loadTileF32(j0, cur);
    k.emit('bar.sync 0');
  } else {
    k.emit('cp.async.wait_group 0', 'bar.sync 0');
    // every warp has passed this barrier, so it is done with the other stage (the previous tile)
    k.emit(`add.u32 ${jn}, ${j0}, ${bn}`, `xor.b32 ${nxt}, ${cur}, ${stage}`, `setp.ge.u32 ${pr}, ${jn}, ${kvLim}`, `@${pr} bra ${noCopy}`);
    issueTile(jn, nxt);
    k.place(noCopy);
  }
  // a tile wholly past this warp's last row is skipped (warp-uniform branch)
  k.emit(`setp.ge.u32 ${pr}, ${j0}, ${wlim}`, `@${pr} bra ${skip}`);
  // S = Q·Kᵀ
  const kb = k.reg('u32', 'kb'), vb = k.reg('u32', 'vb');
  k.emit(`add.u32 ${kb}, ${shBase}, ${cur}`, `add.u32 ${vb}, ${kb}, ${vOff}`, `add.u32 ${kb}, ${kb}, ${kOff}`);
  for (const a of sc) for (const r of a) k.emit(`mov.f32 ${r}, 0f00000000`);
  const bfr = k.regs('b32', 'bf', 4);
  for (let ks = 0; ks < hp / 16; ks++) {
    for (let np = 0; np < bn / 16; np++) {
      k.emit(`ldmatrix.sync.aligned.m8n8.x4.shared.b16 {${bfr.join(', ')}}, [${kb}+${(np * 16 * srow + ks * 16) * 2}]`);
      for (const half of [0, 1]) {
        const d = sc[2 * np + half]!.join(', ');
        k.emit(`${mma} {${d}}, {${qf[ks]!.join(', ')}}, {${bfr[2 * half]}, ${bfr[2 * half + 1]}}, {${d}}`);
      }
    }
  }
  // causal mask, only where the tile reaches past the warp's first row's limit (packed sequences:
  // or starts before the warp's last row's sequence start)
  k.emit(`add.u32 ${t1}, ${j0}, ${bn - 1}`, `setp.le.u32 ${pr}, ${t1}, ${posWs}`);
  if (starts) k.emit(`setp.ge.and.u32 ${pr}, ${j0}, ${starts.warpMax}, ${pr}`);
  k.emit(`@${pr} bra ${noMask}`);
  k.emit(`sub.s32 ${lim}, ${lim0}, ${j0}`);
  const pm = k.reg('pred', 'pm');
  for (let nt = 0; nt < bn / 8; nt++) {
    for (let e = 0; e < 4; e++) {
      // element e: row g (e < 2) or g+8, column nt·8 + 2qd + (e & 1)
      const c = nt * 8 + (e & 1) - (e >= 2 ? 8 : 0);
      k.emit(`setp.lt.s32 ${pm}, ${lim}, ${c}`, `@${pm} mov.f32 ${sc[nt]![e]}, 0fFF800000`);
    }
  }
  if (starts) {
    // keys before the row's sequence start: column nt·8 + 2qd + (e & 1) < start − j0, i.e.
    // nt·8 + (e & 1) < lo = start − j0 − 2qd (signed), per row g / g+8
    const lo = [k.reg('s32', 'slo'), k.reg('s32', 'slo')], qd2 = k.reg('u32', 'qd2');
    k.emit(`shl.b32 ${qd2}, ${qd}, 1`);
    for (const r of [0, 1]) k.emit(`sub.s32 ${lo[r]}, ${r ? starts.rowG8 : starts.rowG}, ${j0}`, `sub.s32 ${lo[r]}, ${lo[r]}, ${qd2}`);
    for (let nt = 0; nt < bn / 8; nt++) {
      for (let e = 0; e < 4; e++) k.emit(`setp.gt.s32 ${pm}, ${lo[e >> 1]}, ${nt * 8 + (e & 1)}`, `@${pm} mov.f32 ${sc[nt]![e]}, 0fFF800000`);
    }
  }
  k.place(noMask);
  // online softmax, rows g (elements 0, 1) and g+8 (elements 2, 3)
  const mx = k.reg('f32', 'mx'), sh1 = k.reg('f32', 'sh'), mc = k.reg('f32', 'mc'), corr = k.reg('f32', 'corr'), inf = k.reg('pred', 'inf');
  for (const r of [0, 1]) {
    const e0 = 2 * r, e1 = 2 * r + 1;
    k.emit(`max.f32 ${mx}, ${sc[0]![e0]}, ${sc[0]![e1]}`);
    for (let nt = 1; nt < bn / 8; nt++) k.emit(`max.f32 ${mx}, ${mx}, ${sc[nt]![e0]}`, `max.f32 ${mx}, ${mx}, ${sc[nt]![e1]}`);
    for (const off of [1, 2]) k.emit(`shfl.sync.bfly.b32 ${sh1}, ${mx}, ${off}, 31, -1`, `max.f32 ${mx}, ${mx}, ${sh1}`);
    k.emit(`max.f32 ${mx}, ${m[r]}, ${mx}`);
    // mc = the new max in exp2 units (0 while it is -inf, so that -inf - mc is -inf, not NaN)
    k.emit(`mul.f32 ${mc}, ${mx}, ${scale}`, `setp.eq.f32 ${inf}, ${mx}, 0fFF800000`, `selp.f32 ${mc}, 0f00000000, ${mc}, ${inf}`);
    k.emit(`mul.f32 ${corr}, ${m[r]}, ${scale}`, `sub.f32 ${corr}, ${corr}, ${mc}`, `ex2.approx.ftz.f32 ${corr}, ${corr}`, `mov.f32 ${m[r]}, ${mx}`);
    k.emit(`mul.f32 ${l[r]}, ${l[r]}, ${corr}`);
    for (const a of acc) k.emit(`mul.f32 ${a[e0]}, ${a[e0]}, ${corr}`, `mul.f32 ${a[e1]}, ${a[e1]}, ${corr}`);
    k.emit(`neg.f32 ${mc}, ${mc}`);
    for (const a of sc) {
      for (const e of [e0, e1]) k.emit(`fma.rn.f32 ${a[e]}, ${a[e]}, ${scale}, ${mc}`, `ex2.approx.ftz.f32 ${a[e]}, ${a[e]}`, `add.f32 ${l[r]}, ${l[r]}, ${a[e]}`);
    }
  }
  // O += P·V: P's C fragments of score tiles 2kk, 2kk+1 are the A fragment of k-slice kk
  const pa = k.regs('b32', 'pa', 4);
  for (let kk = 0; kk < bn / 16; kk++) {
    const [c0, c1] = [sc[2 * kk]!, sc[2 * kk + 1]!];
    k.emit(`cvt.rn.${mt}x2.f32 ${pa[0]}, ${c0[1]}, ${c0[0]}`, `cvt.rn.${mt}x2.f32 ${pa[1]}, ${c0[3]}, ${c0[2]}`);
    k.emit(`cvt.rn.${mt}x2.f32 ${pa[2]}, ${c1[1]}, ${c1[0]}`, `cvt.rn.${mt}x2.f32 ${pa[3]}, ${c1[3]}, ${c1[2]}`);
    for (let np = 0; np < hp / 16; np++) {
      k.emit(`ldmatrix.sync.aligned.m8n8.x4.trans.shared.b16 {${bfr.join(', ')}}, [${vb}+${(kk * 16 * srow + np * 16) * 2}]`);
      for (const half of [0, 1]) {
        const d = acc[2 * np + half]!.join(', ');
        k.emit(`${mma} {${d}}, {${pa.join(', ')}}, {${bfr[2 * half]}, ${bfr[2 * half + 1]}}, {${d}}`);
      }
    }
  }
  k.place(skip);
  k.emit(`xor.b32 ${cur}, ${cur}, ${stage}`, `add.u32 ${j0}, ${j0}, ${bn}`, `bra ${loop}`);
  k.place(done);

  // ---- epilogue: row sums over the quad, o = acc / l, lse = m/√hd + ln l; guarded stores ----
  const inv = k.reg('f32', 'inv'), pos0 = k.reg('pred', 'lpos');
  const oCol = k.reg('u32', 'ocol');
  k.emit(`mul.lo.u32 ${oCol}, ${h}, ${s.hd}`, `shl.b32 ${t1}, ${qd}, 1`, `add.u32 ${oCol}, ${oCol}, ${t1}`);
  const lead = k.reg('pred', 'lead');
  k.emit(`setp.eq.u32 ${lead}, ${qd}, 0`);
  for (const r of [0, 1]) {
    const [row, rowOk] = r ? [rowG8, okG8] : [rowG, okG];
    for (const off of [1, 2]) k.emit(`shfl.sync.bfly.b32 ${sh1}, ${l[r]}, ${off}, 31, -1`, `add.f32 ${l[r]}, ${l[r]}, ${sh1}`);
    k.emit(`setp.gt.f32 ${pos0}, ${l[r]}, 0f00000000`, `rcp.rn.f32 ${inv}, ${l[r]}`, `selp.f32 ${inv}, ${inv}, 0f00000000, ${pos0}`);
    const oa = k.addr(k.addr(o, row, old), oCol, outBytes);
    for (let nt = 0; nt < s.hd / 8; nt++) {
      const [v0, v1] = [k.reg('f32', 'ov'), k.reg('f32', 'ov')];
      k.emit(`mul.f32 ${v0}, ${acc[nt]![2 * r]}, ${inv}`, `mul.f32 ${v1}, ${acc[nt]![2 * r + 1]}, ${inv}`);
      if (s.out === 'f32') {
        k.emit(`@${rowOk} st.global.v2.f32 [${oa}+${nt * 8 * 4}], {${v0}, ${v1}}`);
      } else {
        const pk = k.reg('b32', 'opk');
        k.emit(`cvt.rn.bf16x2.f32 ${pk}, ${v1}, ${v0}`, `@${rowOk} st.global.b32 [${oa}+${nt * 8 * 2}], ${pk}`);
      }
    }
    if (s.lse) {
      const lv = k.reg('f32', 'lse'), lg = k.reg('f32', 'lg'), st = k.reg('pred', 'st');
      k.emit(`lg2.approx.f32 ${lg}, ${l[r]}`, `mul.f32 ${lv}, ${m[r]}, ${f32Imm(1 / Math.sqrt(s.hd))}`, `fma.rn.f32 ${lv}, ${lg}, ${f32Imm(Math.LN2)}, ${lv}`);
      k.emit(`and.pred ${st}, ${rowOk}, ${lead}`, `mad.lo.u32 ${t1}, ${h}, ${T}, ${row}`);
      k.emit(`@${st} st.global.f32 [${k.addr(lseP, t1, 4)}], ${lv}`);
    }
  }
  return { name, text: k.render() };
}

/**
 * Packed sequences (spec.seq): the sequence starts this lane's masks and the tile loop need. A row's
 * start is the first x ≤ row with seq[x] = seq[row] (binary search: rows of a sequence are contiguous
 * and an id is not reused, kernels.ts seqAttention), so starts never decrease along the rows.
 * - rowG, rowG8: the starts of rows g and g+8 (a row past T takes row T-1's: its scores are never
 *   stored, and it keeps warpMax below right);
 * - warpMax: the largest start of the warp's rows, lane 31's row g+8 (= min(ws+15, T-1));
 * - first: the start of the CTA's first row r0, rounded down to a tile of bn: every row of the CTA
 *   starts at or after it, so tiles before it are never read.
 * Every thread of the warp reaches the shfl (the searches' loops reconverge before it).
 */
function sequenceStarts(k: KernelBuilder, seqP: string, T: string, r0: string, rowG: string, rowG8: string, bn: number) {
  const startOf = (row: string) => {
    const rc = k.reg('u32', 'rc'), id = k.reg('u32', 'sid'), sv = k.reg('u32', 'sv'), lo = k.reg('u32', 'start');
    k.emit(`sub.u32 ${rc}, ${T}, 1`, `min.u32 ${rc}, ${row}, ${rc}`);
    k.emit(`ld.global.u32 ${id}, [${k.addr(seqP, rc, 4)}]`, `mov.u32 ${lo}, 0`);
    binarySearch(k, lo, rc, (x, p) => k.emit(`ld.global.u32 ${sv}, [${k.addr(seqP, x, 4)}]`, `setp.eq.u32 ${p}, ${sv}, ${id}`));
    return lo;
  };
  k.comment('packed sequences: the starts of rows g, g+8, of the warp\'s last row, and the first tile');
  const first = startOf(r0), g0 = startOf(rowG), g8 = startOf(rowG8), warpMax = k.reg('u32', 'wmax');
  k.emit(`shfl.sync.idx.b32 ${warpMax}, ${g8}, 31, 31, -1`);
  k.emit(`div.u32 ${first}, ${first}, ${bn}`, `mul.lo.u32 ${first}, ${first}, ${bn}`);
  return { first, rowG: g0, rowG8: g8, warpMax };
}
