// Kernels for the dense parts of a LLaMA step: embedding, RMSNorm, GEMV/GEMM, elementwise, argmax.
import { f32Imm, KernelBuilder } from './builder.js';
import { CHUNK, elemBytes, kvTag, pad8, type WeightDType } from './layout.js';
import { loadRaw8, loadScalar, rawToF32, storeAs } from './load.js';
import type { KvDType } from '../program.js';

export interface Kernel {
  name: string;
  text: string;
}

const LOG2E = Math.LOG2E;

/** y[t, :] = table[tokens[t], :] in f32. Grid (1, T), block 256. */
export function embedding(dtype: WeightDType, d: number): Kernel {
  const name = `embedding_${dtype}_d${d}`;
  const k = new KernelBuilder(name, [{ name: 'y', type: 'u64' }, { name: 'table', type: 'u64' }, { name: 'tokens', type: 'u64' }]);
  const y = k.ptrParam('y'), table = k.ptrParam('table'), tokens = k.ptrParam('tokens');
  const tid = k.special('%tid.x', 'tid'), t = k.special('%ctaid.y', 't');
  const tok = k.reg('u32', 'tok');
  k.emit(`ld.global.u32 ${tok}, [${k.addr(tokens, t, 4)}]`);
  const row = k.addr(table, tok, pad8(d) * elemBytes(dtype));
  const yrow = k.addr(y, t, pad8(d) * 4);
  const i = k.reg('u32', 'i'), p = k.reg('pred', 'p'), v = k.reg('f32', 'v');
  const loop = k.label('loop'), done = k.label('done');
  k.emit(`mov.u32 ${i}, ${tid}`);
  k.place(loop);
  k.emit(`setp.ge.u32 ${p}, ${i}, ${d}`, `@${p} bra ${done}`);
  loadScalar(k, dtype, k.addr(row, i, elemBytes(dtype)), v);
  k.emit(`st.global.f32 [${k.addr(yrow, i, 4)}], ${v}`, `add.u32 ${i}, ${i}, 256`, `bra ${loop}`);
  k.place(done);
  return { name, text: k.render() };
}

// Up to 1024 threads, two elements each: one block per row is latency-bound, so fewer serial
// rounds matter more than occupancy (256 threads measured 6.9 µs per row at d = 2048 under ncu).
export const rmsnormThreads = (d: number): number => Math.min(1024, Math.ceil(d / 2 / 32) * 32);

/** y = x · rsqrt(mean(x²) + eps) · w per row. Grid (1, T), block rmsnormThreads(d). */
export function rmsnorm(dtype: WeightDType, d: number, eps: number, out: 'f32' | 'bf16' | 'f16' = 'f32'): Kernel {
  const name = `rmsnorm_${dtype}_d${d}_e${f32Imm(eps).slice(2)}${out === 'f32' ? '' : `_o${out}`}`;
  const nt = rmsnormThreads(d);
  const k = new KernelBuilder(name, [{ name: 'y', type: 'u64' }, { name: 'x', type: 'u64' }, { name: 'w', type: 'u64' }]);
  const y = k.ptrParam('y'), x = k.ptrParam('x'), w = k.ptrParam('w');
  const tid = k.special('%tid.x', 'tid'), t = k.special('%ctaid.y', 't');
  const xrow = k.addr(x, t, pad8(d) * 4), yrow = k.addr(y, t, pad8(d) * elemBytes(out));
  const ss = k.reg('f32', 'ss'), v = k.reg('f32', 'v'), i = k.reg('u32', 'i'), p = k.reg('pred', 'p');
  k.emit(`mov.f32 ${ss}, 0f00000000`, `mov.u32 ${i}, ${tid}`);
  const l1 = k.label('sq'), d1 = k.label('sqdone');
  k.place(l1);
  k.emit(`setp.ge.u32 ${p}, ${i}, ${d}`, `@${p} bra ${d1}`, `ld.global.f32 ${v}, [${k.addr(xrow, i, 4)}]`, `fma.rn.f32 ${ss}, ${v}, ${v}, ${ss}`, `add.u32 ${i}, ${i}, ${nt}`, `bra ${l1}`);
  k.place(d1);
  k.blockSum(ss, tid, nt);
  const inv = k.reg('f32', 'inv'), wv = k.reg('f32', 'wv');
  k.emit(`mul.f32 ${ss}, ${ss}, ${f32Imm(1 / d)}`, `add.f32 ${ss}, ${ss}, ${f32Imm(eps)}`, `sqrt.rn.f32 ${inv}, ${ss}`, `rcp.rn.f32 ${inv}, ${inv}`, `mov.u32 ${i}, ${tid}`);
  const l2 = k.label('norm'), d2 = k.label('normdone');
  k.place(l2);
  k.emit(`setp.ge.u32 ${p}, ${i}, ${d}`, `@${p} bra ${d2}`, `ld.global.f32 ${v}, [${k.addr(xrow, i, 4)}]`);
  loadScalar(k, dtype, k.addr(w, i, elemBytes(dtype)), wv);
  if (out === 'f32') {
    k.emit(`mul.f32 ${v}, ${v}, ${inv}`, `mul.f32 ${v}, ${v}, ${wv}`, `st.global.f32 [${k.addr(yrow, i, 4)}], ${v}`, `add.u32 ${i}, ${i}, ${nt}`, `bra ${l2}`);
  } else {
    // the 16-bit copy a prefill GEMM reads (rows of pad8(d) elements)
    k.emit(`mul.f32 ${v}, ${v}, ${inv}`, `mul.f32 ${v}, ${v}, ${wv}`);
    storeAs(k, out, k.addr(yrow, i, 2), v);
    k.emit(`add.u32 ${i}, ${i}, ${nt}`, `bra ${l2}`);
  }
  k.place(d2);
  return { name, text: k.render() };
}

export type GemvEpilogue = 'store' | 'accumulate' | 'silu_gate' | 'silu_pair';

export interface GemvSpec {
  dtype: WeightDType;
  /** Input width (row length of W). */
  inDim: number;
  /** Rows computed per token: W's rows, or with gather the number of indices per token. */
  outDim: number;
  /** Rows of W are picked by idx[t, j] (MoC's gathered up-projection). */
  gather?: { wRows: number; gateWidth: number };
  epilogue: GemvEpilogue;
  /**
   * x is the un-normalized residual stream: RMSNorm (weight `nw` of this dtype) is applied on the
   * fly, so no separate RMSNorm launch. y = rsqrt(mean(x²) + eps) · Σ_i (x_i·nw_i)·W[j, i]; each warp
   * reads all of x anyway, so mean(x²) costs a few FMAs on registers it already holds.
   */
  norm?: { dtype: WeightDType; eps: number };
  rowsPerWarp?: number;
  unroll?: number;
  /**
   * Warps that share each row (1, 2, 4 or 8; default 1), their sums added through shared memory.
   * For few, long rows: 2048 outputs at one row a warp are only 256 warps, two per SM.
   */
  split?: number;
  /**
   * Rotary embedding applied to the outputs: a warp's two rows are a RoPE pair of one head
   * ((h·hd + i, h·hd + i + hd/2) for 'half', (h·hd + 2i, +1) for 'interleaved'), rotated by the
   * angle of position pos[0] + t before the store (Q and K straight out of their projections).
   * Needs rowsPerWarp 2, split 1 and the store epilogue. Params add `table` and `pos`.
   */
  rope?: { hd: number; style: 'half' | 'interleaved' };
  /** Store into row pos[0] + t of y (a KV cache) rather than row t. Params add `pos`. */
  toCache?: boolean;
  /** The cache's element type with toCache (default f32): the outputs are rounded to it when stored. */
  cacheDtype?: KvDType;
  /**
   * Bytes of each weight matrix (from its first row) that warps ask the L2 for before waiting on
   * the previous kernel; default PREFETCH_BYTES. A few MB keep the memory busy while the previous
   * kernel ends; the whole matrix would flood the L2 and evict what is still to be read.
   */
  prefetchBytes?: number;
}

export const PREFETCH_BYTES = 4 << 20;

export const GEMV_WARPS = 8;

const normTag = (n: GemvSpec['norm']) => (n ? `_n${n.dtype}e${f32Imm(n.eps).slice(2)}` : '');

export function gemvName(s: GemvSpec): string {
  const pf = s.prefetchBytes === undefined || s.gather ? '' : `_p${s.prefetchBytes}`;
  return `gemv_${s.dtype}_i${s.inDim}_o${s.outDim}${s.gather ? `_g${s.gather.wRows}` : ''}${normTag(s.norm)}_${s.epilogue}${ropeTag(s)}_r${s.rowsPerWarp ?? 2}_u${s.unroll ?? 4}${splitTag(s)}${pf}${cacheTag([s])}`;
}

const splitTag = (s: GemvSpec) => ((s.split ?? 1) > 1 ? `_s${s.split}` : '');
/** The cache dtypes the specs store to, in the name (none for f32: the names from before 16-bit caches). */
const cacheTag = (specs: GemvSpec[]) => [...new Set(specs.filter((s) => s.toCache).map((s) => kvTag(s.cacheDtype ?? 'f32')))].join('');
const ropeTag = (s: GemvSpec) => `${s.rope ? `_rope${s.rope.style[0]}${s.rope.hd}` : ''}${s.toCache ? '_cache' : ''}`;

/** Rows a block computes. */
const rowsPerBlock = (s: GemvSpec) => (GEMV_WARPS / (s.split ?? 1)) * (s.rowsPerWarp ?? 2);

/**
 * Row layout for a plain GEMV as the lowering picks it (measured by ffn-decode on the H100):
 *  - long rows (≥ 512 chunks, inDim ≥ 4096): each row split over 4 warps, 4 chunks in flight.
 *    Down projection 2048×5464: 9.9 µs (two rows a warp unsplit: 16.4; 128 blocks, one an SM);
 *    4096×14336: 42.6 µs (was 48.3).
 *  - many short rows (≥ 4096): two rows a warp, 4 chunks in flight (gate GEMV 5464×2048: 10.2 µs,
 *    74% of the byte floor; no variant of rows × chunks × split moved it by more than 5%).
 *  - fewer short rows: split over up to 8 warps until there are 8192 warp-rows, each warp loading
 *    its whole share of the row in one round.
 */
export function gemvLayout(inDim: number, outDim: number): Required<Pick<GemvSpec, 'rowsPerWarp' | 'unroll' | 'split'>> {
  const nch = pad8(inDim) / CHUNK;
  if (nch >= 512) return { rowsPerWarp: 1, unroll: 4, split: 4 };
  if (outDim >= 4096) return { rowsPerWarp: 2, unroll: 4, split: 1 };
  let split = 1;
  while (split < 8 && outDim * split < 8192 && nch >= 64 * split) split *= 2;
  return { rowsPerWarp: 1, unroll: Math.min(8, Math.ceil(nch / (32 * split))), split };
}

export function gemvGrid(s: GemvSpec, tokens: number): [number, number, number] {
  if (![1, 2, 4, 8].includes(s.split ?? 1)) throw new Error(`PTX generator bug: GEMV split ${s.split} (1, 2, 4 or 8 warps a row)`);
  return [Math.ceil(s.outDim / rowsPerBlock(s)), tokens, 1];
}

/**
 * One warp computes rowsPerWarp outputs: lanes stride over 16-byte chunks of the weight rows and of
 * x, several chunks in flight, then a warp reduction. Params: y, x, w, then w2 (silu_pair), idx and
 * g (gather), nw (norm).
 *   store:      y[t, j] = Σ_i x[t, i]·W[r_j, i]
 *   accumulate: y[t, j] += …               (residual add fused)
 *   silu_gate:  y[t, j] = silu(g[t, r_j]) · …   (MoC: z = SiLU(G_k)·U_k with r_j = idx[t, j])
 *   silu_pair:  y[t, j] = silu(W·x)_j · (W2·x)_j  (a dense FFN's gate and up in one pass)
 * Without gather, each warp first asks the L2 for its weight rows (they do not depend on earlier
 * kernels), then waits for the previous kernel: with programmatic launch the weights stream in
 * while that kernel finishes. Grid gemvGrid(spec, T), block 256.
 */
export function gemv(s: GemvSpec): Kernel {
  const name = gemvName(s);
  const params = [{ name: 'y', type: 'u64' as const }, { name: 'x', type: 'u64' as const }, { name: 'w', type: 'u64' as const }];
  if (s.epilogue === 'silu_pair') params.push({ name: 'w2', type: 'u64' });
  if (s.gather) params.push({ name: 'idx', type: 'u64' }, { name: 'g', type: 'u64' });
  if (s.norm) params.push({ name: 'nw', type: 'u64' });
  if (s.rope) params.push({ name: 'table', type: 'u64' });
  if (s.rope || s.toCache) params.push({ name: 'pos', type: 'u64' });
  const k = new KernelBuilder(name, params);
  k.blockSize(256);
  const y = k.ptrParam('y'), x = k.ptrParam('x'), w = k.ptrParam('w');
  const w2 = s.epilogue === 'silu_pair' ? k.ptrParam('w2') : undefined;
  const idx = s.gather ? k.ptrParam('idx') : '', g = s.gather ? k.ptrParam('g') : '';
  const nw = s.norm ? k.ptrParam('nw') : undefined;
  const table = s.rope ? k.ptrParam('table') : undefined, pos = s.rope || s.toCache ? k.ptrParam('pos') : undefined;
  const tid = k.special('%tid.x', 'tid'), bx = k.special('%ctaid.x', 'bx'), t = k.special('%ctaid.y', 't');
  emitGemv(k, s, { y, x, w, w2, idx, g, nw, table, pos }, bx, tid, t);
  return { name, text: k.render() };
}

/**
 * One launch for several store-epilogue GEMVs that read the same x (Q/K/V; a dense FFN's gate and
 * up): blocks are split among the matrices by compile-time ranges. Params: x, [nw,] then y_i, w_i,
 * then [table] if a part has rope, [pos] if a part has rope or toCache (Q and K rotated, K and V
 * written straight into the KV cache: no separate RoPE / cache-append launch).
 * Grid (Σ blocks_i, T), block 256.
 */
export function gemvMulti(specs: GemvSpec[]): Kernel {
  const s0 = specs[0]!;
  const pf = s0.prefetchBytes === undefined ? '' : `_p${s0.prefetchBytes}`;
  const name = `gemv_multi_${s0.dtype}_i${s0.inDim}_o${specs.map((s) => `${s.outDim}${ropeTag(s)}`).join('_')}${normTag(s0.norm)}_r${s0.rowsPerWarp ?? 2}_u${s0.unroll ?? 4}${splitTag(s0)}${pf}${cacheTag(specs)}`;
  const params: { name: string; type: 'u64' }[] = [{ name: 'x', type: 'u64' }];
  if (s0.norm) params.push({ name: 'nw', type: 'u64' });
  specs.forEach((_, i) => params.push({ name: `y${i}`, type: 'u64' }, { name: `w${i}`, type: 'u64' }));
  const anyRope = specs.some((s) => s.rope), anyPos = specs.some((s) => s.rope || s.toCache);
  if (anyRope) params.push({ name: 'table', type: 'u64' });
  if (anyPos) params.push({ name: 'pos', type: 'u64' });
  const k = new KernelBuilder(name, params);
  k.blockSize(256);
  const x = k.ptrParam('x');
  const nw = s0.norm ? k.ptrParam('nw') : undefined;
  const table = anyRope ? k.ptrParam('table') : undefined, pos = anyPos ? k.ptrParam('pos') : undefined;
  const tid = k.special('%tid.x', 'tid'), bx = k.special('%ctaid.x', 'bx'), t = k.special('%ctaid.y', 't');
  const done = k.label('done');
  let start = 0;
  specs.forEach((s, i) => {
    const blocks = gemvGrid(s, 1)[0];
    const next = k.label('seg'), p = k.reg('pred', 'p'), local = k.reg('u32', 'bxl');
    k.emit(`setp.ge.u32 ${p}, ${bx}, ${start + blocks}`, `@${p} bra ${next}`, `sub.u32 ${local}, ${bx}, ${start}`);
    const y = k.ptrParam(`y${i}`), w = k.ptrParam(`w${i}`);
    emitGemv(k, { ...s, norm: s0.norm }, { y, x, w, idx: '', g: '', nw, table, pos }, local, tid, t);
    k.emit(`bra ${done}`);
    k.place(next);
    start += blocks;
  });
  k.place(done);
  return { name, text: k.render() };
}

export function gemvMultiGrid(specs: GemvSpec[]): number {
  return specs.reduce((n, s) => n + gemvGrid(s, 1)[0], 0);
}

export interface GemvPtrs { y: string; x: string; w: string; w2?: string; idx: string; g: string; nw?: string; table?: string; pos?: string }

export function emitGemv(k: KernelBuilder, s: GemvSpec, ptr: GemvPtrs, bx: string, tid: string, t: string): void {
  const R = s.rowsPerWarp ?? 2, S = s.split ?? 1;
  const { y, x, idx, g } = ptr;
  const mats = ptr.w2 ? [ptr.w, ptr.w2] : [ptr.w];
  const lane = k.reg('u32', 'lane'), warp = k.reg('u32', 'warp'), row0 = k.reg('u32', 'row0');
  // warp = group·S + part: the S warps of a group share its R rows
  const group = S > 1 ? k.reg('u32', 'group') : warp, part = S > 1 ? k.reg('u32', 'part') : undefined;
  k.emit(`and.b32 ${lane}, ${tid}, 31`, `shr.u32 ${warp}, ${tid}, 5`);
  if (part) k.emit(`shr.u32 ${group}, ${warp}, ${Math.log2(S)}`, `and.b32 ${part}, ${warp}, ${S - 1}`);
  k.emit(`mad.lo.u32 ${row0}, ${bx}, ${GEMV_WARPS / S}, ${group}`, `mul.lo.u32 ${row0}, ${row0}, ${R}`);
  const ld = pad8(s.inDim);
  const eb = elemBytes(s.dtype);
  // This warp's output rows: row0 + r, or with rope the two rows of RoPE pair row0 / 2.
  const rows: string[] = [];
  let pairI: string | undefined;
  if (s.rope) {
    if (R !== 2 || S !== 1 || s.gather || s.epilogue !== 'store') throw new Error(`PTX generator bug in ${k.name}: rope needs 2 rows a warp, no split, a plain store`);
    const hd = s.rope.hd, half = hd / 2;
    const pair = k.reg('u32', 'pair'), h = k.reg('u32', 'h'), a = k.reg('u32', 'ra'), b = k.reg('u32', 'rb');
    pairI = k.reg('u32', 'pi');
    k.emit(`shr.u32 ${pair}, ${row0}, 1`, `div.u32 ${h}, ${pair}, ${half}`, `rem.u32 ${pairI}, ${pair}, ${half}`);
    if (s.rope.style === 'half') k.emit(`mad.lo.u32 ${a}, ${h}, ${hd}, ${pairI}`, `add.u32 ${b}, ${a}, ${half}`);
    else k.emit(`mad.lo.u32 ${a}, ${h}, ${hd}, ${pairI}`, `add.u32 ${a}, ${a}, ${pairI}`, `add.u32 ${b}, ${a}, 1`);
    rows.push(a, b);
  } else {
    for (let r = 0; r < R; r++) {
      const j = k.reg('u32', 'j');
      k.emit(`add.u32 ${j}, ${row0}, ${r}`);
      rows.push(j);
    }
  }
  const pfRows = Math.min(s.outDim, Math.ceil((s.prefetchBytes ?? PREFETCH_BYTES) / (ld * eb)));
  if (!s.gather && pfRows > 0) {
    // lane 0 asks the L2 for this warp's rows if they are among the first pfRows: consecutive
    // rows as one range per matrix, a RoPE pair as two
    const pf = k.reg('pred', 'pf'), lead = k.reg('pred', 'lead');
    k.emit(`setp.eq.u32 ${lead}, ${lane}, 0`);
    if (part) k.emit(`setp.eq.u32 ${pf}, ${part}, 0`, `and.pred ${lead}, ${lead}, ${pf}`); // one warp of the group
    if (s.rope) {
      for (const row of rows) {
        k.emit(`setp.lt.u32 ${pf}, ${row}, ${pfRows}`, `and.pred ${pf}, ${pf}, ${lead}`);
        for (const m of mats) k.prefetchL2(k.addr(m, row, ld * eb), ld * eb, pf);
      }
    } else {
      const nrows = k.reg('u32', 'nrows'), bytes = k.reg('u32', 'bytes');
      k.emit(`setp.lt.u32 ${pf}, ${row0}, ${pfRows}`, `and.pred ${pf}, ${pf}, ${lead}`);
      k.emit(`sub.u32 ${nrows}, ${pfRows}, ${row0}`, `min.u32 ${nrows}, ${nrows}, ${R}`, `mul.lo.u32 ${bytes}, ${nrows}, ${ld * eb}`);
      for (const m of mats) k.prefetchL2(k.addr(m, row0, ld * eb), bytes, pf);
    }
  }
  k.gridSync();
  // position pos[0] + t and the pair's (cos, sin), loaded now so they arrive with the weights
  let position: string | undefined, cs: [string, string] | undefined;
  if (s.rope || s.toCache) {
    position = k.reg('u32', 'position');
    k.emit(`ld.global.u32 ${position}, [${ptr.pos}]`, `add.u32 ${position}, ${position}, ${t}`);
  }
  if (s.rope) {
    const ti = k.reg('u32', 'ti');
    cs = [k.reg('f32', 'cos'), k.reg('f32', 'sin')];
    k.emit(`mad.lo.u32 ${ti}, ${position}, ${s.rope.hd / 2}, ${pairI}`);
    k.emit(`ld.global.nc.v2.f32 {${cs[0]}, ${cs[1]}}, [${k.addr(ptr.table!, ti, 8)}]`);
  }
  const xrow = k.addr(x, t, ld * 4);
  // Row pointers (clamped to a valid row so loads stay in bounds; out-of-range rows are not stored).
  const wrow: string[][] = mats.map(() => []);
  for (const row of rows) {
    const j = k.reg('u32', 'j');
    k.emit(`min.u32 ${j}, ${row}, ${s.outDim - 1}`);
    let wr = j;
    if (s.gather) {
      wr = k.reg('u32', 'wr');
      k.emit(`ld.global.u32 ${wr}, [${k.addr(k.addr(idx, t, pad8(s.outDim) * 4), j, 4)}]`);
    }
    mats.forEach((m, mi) => wrow[mi]!.push(k.addr(m, wr, ld * eb)));
  }
  const acc = emitDots(k, s, wrow, xrow, ptr.nw, lane, part ? { part, parts: S, warp } : undefined);
  // lane 0 of the group's first warp writes
  const p0 = k.reg('pred', 'p'), skip = k.label('skip');
  k.emit(`setp.ne.u32 ${p0}, ${lane}, 0`, `@${p0} bra ${skip}`);
  if (part) k.emit(`setp.ne.u32 ${p0}, ${part}, 0`, `@${p0} bra ${skip}`);
  if (cs) {
    // (a, b) ← (a·cos − b·sin, b·cos + a·sin), as the RoPE kernel
    const [a, b] = [acc[0]![0]!, acc[0]![1]!];
    const ra = k.reg('f32', 'ra'), rb = k.reg('f32', 'rb');
    k.emit(`mul.f32 ${ra}, ${b}, ${cs[1]}`);
    const nbs = k.neg(ra);
    k.emit(`fma.rn.f32 ${ra}, ${a}, ${cs[0]}, ${nbs}`, `mul.f32 ${rb}, ${b}, ${cs[0]}`, `fma.rn.f32 ${rb}, ${a}, ${cs[1]}, ${rb}`, `mov.f32 ${a}, ${ra}`, `mov.f32 ${b}, ${rb}`);
  }
  const yb = s.toCache ? elemBytes(s.cacheDtype ?? 'f32') : 4;
  const yrow = k.addr(y, s.toCache ? position! : t, pad8(s.outDim) * yb);
  for (let r = 0; r < R; r++) {
    const j = rows[r]!, pr = k.reg('pred', 'p'), nx = k.label('next');
    k.emit(`setp.ge.u32 ${pr}, ${j}, ${s.outDim}`, `@${pr} bra ${nx}`);
    const ya = k.addr(yrow, j, yb);
    const out = acc[0]![r]!;
    if (s.epilogue === 'accumulate') {
      const old = k.reg('f32', 'old');
      k.emit(`ld.global.f32 ${old}, [${ya}]`, `add.f32 ${out}, ${out}, ${old}`);
    } else if (s.epilogue === 'silu_gate') {
      const gv = k.reg('f32', 'gv'), ch = k.reg('u32', 'ch');
      k.emit(`ld.global.u32 ${ch}, [${k.addr(k.addr(idx, t, pad8(s.outDim) * 4), j, 4)}]`);
      k.emit(`ld.global.f32 ${gv}, [${k.addr(k.addr(g, t, pad8(s.gather!.gateWidth) * 4), ch, 4)}]`);
      siluTimes(k, gv, out);
    } else if (s.epilogue === 'silu_pair') {
      const gv = k.reg('f32', 'gv');
      k.emit(`mov.f32 ${gv}, ${out}`, `mov.f32 ${out}, ${acc[1]![r]}`);
      siluTimes(k, gv, out);
    }
    storeAs(k, s.toCache ? s.cacheDtype ?? 'f32' : 'f32', ya, out);
    k.place(nx);
  }
  k.place(skip);
}

/**
 * How a row's dot product is split across the warps of a block: `parts` warps (consecutive, the
 * first with part 0) each take every parts-th stripe of 32 chunks, and the partial sums are added
 * through shared memory in a fixed order (deterministic). More warps per row means more loads in
 * flight for GEMVs with few, long rows (the down projection: 2048 rows of 5464).
 */
export interface DotSplit {
  part: string;
  parts: number;
  /** This thread's warp index in the block (for the shared-memory combine). */
  warp: string;
}

/**
 * The dot products of a warp: wrow[m][r] · x for every matrix m and row r (each a global row
 * pointer, padded row length pad8(inDim)); lanes stride over 16-byte chunks, `unroll` chunks in
 * flight; the last, partial round is one guarded round (not a chunk at a time). With s.norm, x is
 * RMS-normalized on the fly (nw: the norm weight). With `split`, the warps of a row group combine
 * their sums (a block barrier: every warp of the block must call this). Every lane gets the sums.
 * Returns acc[m][r].
 */
export function emitDots(k: KernelBuilder, s: Pick<GemvSpec, 'dtype' | 'inDim' | 'norm' | 'unroll'>, wrow: string[][], xrow: string, nw: string | undefined, lane: string, split?: DotSplit): string[][] {
  const U = s.unroll ?? 4;
  const nch = pad8(s.inDim) / CHUNK;
  const eb = elemBytes(s.dtype);
  const S = split?.parts ?? 1;
  const stride = 32 * S; // chunks between a lane's consecutive chunks
  const acc = wrow.map((rows) => k.regs('f32', 'acc', rows.length));
  for (const a of acc.flat()) k.emit(`mov.f32 ${a}, 0f00000000`);
  const ss = s.norm ? k.reg('f32', 'ss') : undefined;
  if (ss) k.emit(`mov.f32 ${ss}, 0f00000000`);
  const c = k.reg('u32', 'c');
  if (split && S > 1) k.emit(`mad.lo.u32 ${c}, ${split.part}, 32, ${lane}`);
  else k.emit(`mov.u32 ${c}, ${lane}`);
  /** n chunks per lane (c, c+stride, …): every load first (all in flight), then the norm, then the FMAs. Chunks u ≥ guardFrom are loaded only if < nch. */
  const body = (n: number, guardFrom: number) => {
    const xs: string[][] = [], nws: string[][] = [];
    const ws: string[][][][] = [];
    for (let u = 0; u < n; u++) {
      const cu = k.reg('u32', 'cu');
      k.emit(`add.u32 ${cu}, ${c}, ${u * stride}`);
      let guard: string | undefined;
      if (u >= guardFrom) {
        guard = k.reg('pred', 'in');
        k.emit(`setp.lt.u32 ${guard}, ${cu}, ${nch}`);
      }
      xs.push(loadRaw8(k, 'f32', k.addr(xrow, cu, 32), 'activation', guard));
      if (s.norm) nws.push(loadRaw8(k, s.norm.dtype, k.addr(nw!, cu, CHUNK * elemBytes(s.norm.dtype)), 'weight', guard));
      ws.push(wrow.map((rows) => rows.map((wr) => loadRaw8(k, s.dtype, k.addr(wr, cu, CHUNK * eb), 'weight', guard))));
    }
    if (s.norm) {
      for (let u = 0; u < n; u++) {
        const nv = rawToF32(k, s.norm.dtype, nws[u]!);
        for (let e = 0; e < 8; e++) k.emit(`fma.rn.f32 ${ss}, ${xs[u]![e]}, ${xs[u]![e]}, ${ss}`, `mul.f32 ${xs[u]![e]}, ${xs[u]![e]}, ${nv[e]}`);
      }
    }
    for (let u = 0; u < n; u++) for (let mi = 0; mi < wrow.length; mi++) for (let r = 0; r < wrow[mi]!.length; r++) {
      const wv = rawToF32(k, s.dtype, ws[u]![mi]![r]!);
      for (let e = 0; e < 8; e++) k.emit(`fma.rn.f32 ${acc[mi]![r]}, ${xs[u]![e]}, ${wv[e]}, ${acc[mi]![r]}`);
    }
  };
  // Full rounds: every lane has U chunks; then one round over what is left, its loads guarded
  // where a lane's chunk may be past the end (a chunk at a time would cost a memory latency each).
  const full = Math.floor(nch / (stride * U));
  if (full > 0) {
    const it = k.reg('u32', 'it'), p = k.reg('pred', 'p');
    const loop = k.label('main');
    k.emit(`mov.u32 ${it}, 0`);
    k.place(loop);
    body(U, U);
    k.emit(`add.u32 ${c}, ${c}, ${stride * U}`, `add.u32 ${it}, ${it}, 1`, `setp.lt.u32 ${p}, ${it}, ${full}`, `@${p} bra ${loop}`);
  }
  const rest = nch - full * stride * U;
  if (rest > 0) body(Math.ceil(rest / stride), Math.floor(rest / stride));
  for (const a of acc.flat()) k.warpSum(a);
  if (ss) k.warpSum(ss);
  if (split && S > 1) combineParts(k, [...acc.flat(), ...(ss ? [ss] : [])], split);
  if (ss) {
    // the same rsqrt as the RMSNorm kernel: 1 / sqrt(mean + eps), both correctly rounded
    const inv = k.reg('f32', 'inv');
    k.emit(`mul.f32 ${ss}, ${ss}, ${f32Imm(1 / s.inDim)}`, `add.f32 ${ss}, ${ss}, ${f32Imm(s.norm!.eps)}`, `sqrt.rn.f32 ${inv}, ${ss}`, `rcp.rn.f32 ${inv}, ${inv}`);
    for (const a of acc.flat()) k.emit(`mul.f32 ${a}, ${a}, ${inv}`);
  }
  return acc;
}

/** Adds each value over the `parts` warps of this warp's group, part 0 first; every lane of every warp gets the totals. */
function combineParts(k: KernelBuilder, vals: string[], split: DotSplit): void {
  const nv = vals.length;
  const sh = k.sharedArray('part', 'f32', GEMV_WARPS * nv, 4);
  const mine = k.reg('u32', 'mine'), first = k.reg('u32', 'first'), lead = k.reg('pred', 'lead'), lane = k.reg('u32', 'lane');
  k.emit(`mov.u32 ${lane}, %laneid`, `setp.eq.u32 ${lead}, ${lane}, 0`, `mov.u32 ${mine}, ${sh}`, `mad.lo.u32 ${mine}, ${split.warp}, ${nv * 4}, ${mine}`);
  vals.forEach((v, i) => k.emit(`@${lead} st.shared.f32 [${mine}+${i * 4}], ${v}`));
  k.emit('bar.sync 0');
  // the group's first warp is warp − part
  k.emit(`sub.u32 ${first}, ${split.warp}, ${split.part}`, `mov.u32 ${mine}, ${sh}`, `mad.lo.u32 ${first}, ${first}, ${nv * 4}, ${mine}`);
  const t = k.reg('f32', 'pv');
  vals.forEach((v, i) => {
    k.emit(`ld.shared.f32 ${v}, [${first}+${i * 4}]`);
    for (let j = 1; j < split.parts; j++) k.emit(`ld.shared.f32 ${t}, [${first}+${(j * nv + i) * 4}]`, `add.f32 ${v}, ${v}, ${t}`);
  });
}

/** v ← silu(g) · v, with silu(g) = g / (1 + 2^(−g·log2 e)); g is overwritten. */
export function siluTimes(k: KernelBuilder, g: string, v: string): void {
  const e = k.reg('f32', 'e');
  k.emit(`mul.f32 ${e}, ${g}, ${f32Imm(-LOG2E)}`, `ex2.approx.f32 ${e}, ${e}`, `add.f32 ${e}, ${e}, 0f3F800000`, `div.rn.f32 ${g}, ${g}, ${e}`, `mul.f32 ${v}, ${v}, ${g}`);
}

/**
 * Elementwise over rows of `width` floats (the padded row width): 'silu_mul' z = silu(a)·b,
 * 'add' z = a + b (z may alias a). Zero padding stays zero. Grid (ceil(width/256), T), block 256.
 * `out`: z's element type ('silu_mul' only; a 16-bit z is the input of a prefill GEMM).
 */
export function elementwise(op: 'silu_mul' | 'add', width: number, out: 'f32' | 'bf16' | 'f16' = 'f32'): Kernel {
  if (op === 'add' && out !== 'f32') throw new Error(`PTX generator bug: add with a ${out} output`);
  const name = `${op}_w${width}${out === 'f32' ? '' : `_o${out}`}`;
  const k = new KernelBuilder(name, [{ name: 'z', type: 'u64' }, { name: 'a', type: 'u64' }, { name: 'b', type: 'u64' }]);
  const z = k.ptrParam('z'), a = k.ptrParam('a'), b = k.ptrParam('b');
  const tid = k.special('%tid.x', 'tid'), bx = k.special('%ctaid.x', 'bx'), t = k.special('%ctaid.y', 't');
  const i = k.reg('u32', 'i'), p = k.reg('pred', 'p'), va = k.reg('f32', 'va'), vb = k.reg('f32', 'vb'), done = k.label('done');
  k.emit(`mad.lo.u32 ${i}, ${bx}, 256, ${tid}`, `setp.ge.u32 ${p}, ${i}, ${width}`, `@${p} bra ${done}`, `mad.lo.u32 ${i}, ${t}, ${width}, ${i}`);
  k.emit(`ld.global.f32 ${va}, [${k.addr(a, i, 4)}]`, `ld.global.f32 ${vb}, [${k.addr(b, i, 4)}]`);
  if (op === 'add') k.emit(`add.f32 ${va}, ${va}, ${vb}`);
  else siluTimes(k, va, vb); // vb ← silu(va)·vb
  if (out === 'f32') k.emit(`st.global.f32 [${k.addr(z, i, 4)}], ${op === 'add' ? va : vb}`);
  else storeAs(k, out, k.addr(z, i, 2), vb);
  k.place(done);
  return { name, text: k.render() };
}

/** pos[0] += T: the last launch of a step, so a captured step replays at the next position. Grid 1, block 1. */
export function posAdvance(): Kernel {
  const name = 'pos_advance';
  const k = new KernelBuilder(name, [{ name: 'pos', type: 'u64' }, { name: 'count', type: 'u32' }]);
  const pos = k.ptrParam('pos'), n = k.u32Param('count'), v = k.reg('u32', 'v');
  k.emit(`ld.global.u32 ${v}, [${pos}]`, `add.u32 ${v}, ${v}, ${n}`, `st.global.u32 [${pos}], ${v}`);
  return { name, text: k.render() };
}

/**
 * out[0] = history[pos[0]] = index of the largest of x[0..n) (ties → lower index): the next token
 * goes straight into the token buffer of the next step, and into a history the host reads once.
 * Grid 1, block 1024.
 */
export function argmax(n: number): Kernel {
  const name = `argmax_n${n}`;
  const k = new KernelBuilder(name, [{ name: 'out', type: 'u64' }, { name: 'x', type: 'u64' }, { name: 'history', type: 'u64' }, { name: 'pos', type: 'u64' }]);
  const out = k.ptrParam('out'), x = k.ptrParam('x'), history = k.ptrParam('history'), pos = k.ptrParam('pos');
  const tid = k.special('%tid.x', 'tid');
  // An empty slot is (−inf, 0xFFFFFFFF): it loses to any element, −inf ones included, by index.
  const best = k.reg('f32', 'best'), bi = k.reg('u32', 'bi');
  const ov = k.reg('f32', 'ov'), oi = k.reg('u32', 'oi');
  const take = (value: string, index: string) => {
    const gt = k.reg('pred', 'gt'), eq = k.reg('pred', 'eq'), lo = k.reg('pred', 'lo');
    k.emit(`setp.gt.f32 ${gt}, ${value}, ${best}`, `setp.eq.f32 ${eq}, ${value}, ${best}`, `setp.lt.u32 ${lo}, ${index}, ${bi}`, `and.pred ${eq}, ${eq}, ${lo}`, `or.pred ${gt}, ${gt}, ${eq}`);
    k.emit(`@${gt} mov.f32 ${best}, ${value}`, `@${gt} mov.u32 ${bi}, ${index}`);
  };
  const warpReduce = () => {
    for (const off of [16, 8, 4, 2, 1]) {
      k.emit(`shfl.sync.bfly.b32 ${ov}, ${best}, ${off}, 31, -1`, `shfl.sync.bfly.b32 ${oi}, ${bi}, ${off}, 31, -1`);
      take(ov, oi);
    }
  };
  const i = k.reg('u32', 'i'), v = k.reg('f32', 'v'), p = k.reg('pred', 'p');
  k.emit(`mov.f32 ${best}, 0fFF800000`, `mov.u32 ${bi}, -1`, `mov.u32 ${i}, ${tid}`);
  const loop = k.label('scan'), done = k.label('scandone');
  k.place(loop);
  k.emit(`setp.ge.u32 ${p}, ${i}, ${n}`, `@${p} bra ${done}`, `ld.global.f32 ${v}, [${k.addr(x, i, 4)}]`);
  take(v, i);
  k.emit(`add.u32 ${i}, ${i}, 1024`, `bra ${loop}`);
  k.place(done);
  warpReduce();
  const shv = k.sharedArray('v', 'f32', 32, 4), shi = k.sharedArray('i', 'u32', 32, 4);
  const lane = k.reg('u32', 'lane'), warp = k.reg('u32', 'warp');
  const av = k.reg('u32', 'av'), ai = k.reg('u32', 'ai');
  k.emit(`and.b32 ${lane}, ${tid}, 31`, `shr.u32 ${warp}, ${tid}, 5`, `setp.eq.u32 ${p}, ${lane}, 0`);
  k.emit(`mov.u32 ${av}, ${shv}`, `mad.lo.u32 ${av}, ${warp}, 4, ${av}`, `mov.u32 ${ai}, ${shi}`, `mad.lo.u32 ${ai}, ${warp}, 4, ${ai}`);
  k.emit(`@${p} st.shared.f32 [${av}], ${best}`, `@${p} st.shared.u32 [${ai}], ${bi}`, 'bar.sync 0');
  // Warp 0: lane l takes warp l's winner, then one more warp reduction.
  const fin = k.label('fin');
  k.emit(`setp.ne.u32 ${p}, ${warp}, 0`, `@${p} bra ${fin}`);
  k.emit(`mov.u32 ${av}, ${shv}`, `mad.lo.u32 ${av}, ${lane}, 4, ${av}`, `mov.u32 ${ai}, ${shi}`, `mad.lo.u32 ${ai}, ${lane}, 4, ${ai}`);
  k.emit(`ld.shared.f32 ${best}, [${av}]`, `ld.shared.u32 ${bi}, [${ai}]`);
  warpReduce();
  const at = k.reg('u32', 'at');
  k.emit(`ld.global.u32 ${at}, [${pos}]`, `setp.eq.u32 ${p}, ${lane}, 0`);
  const slot = k.addr(history, at, 4);
  k.emit(`@${p} st.global.u32 [${out}], ${bi}`, `@${p} st.global.u32 [${slot}], ${bi}`);
  k.place(fin);
  return { name, text: k.render() };
}
