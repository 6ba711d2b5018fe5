// Training kernels that move rows and indices (ops of src/ir/ops-train.ts, each matching its ref kernel
// in targets/ref/train-kernels.ts): embedding_grad, moc_scatter, index_narrow, index_widen.
//
// embedding_grad without float atomics, deterministic, in two kernels:
//   1. embeddingGradSort — one block sorts the keys tok[t]·T + t (distinct, < V·T) with a bitonic
//      network over N = nextPow2(T) slots of a u32 scratch (pads 0xFFFFFFFF sort last): afterwards
//      the tokens of vocabulary row v sit together in t order. O(T·log²T) compare-swaps on one SM
//      (about 105 barrier-separated passes at T = 16384), in global memory (L1/L2-resident: 64 KiB).
//   2. embeddingGradRows — block (column slice, v): a binary search finds row v's run of keys, and
//      each thread adds dy[t, c] over the run in t order, then writes row v once (0 when v never
//      occurs): no zero fill, no read-modify-write. O(T·d) reads of dy plus V·d writes, V·log N
//      searches; a frequent token's block loops over its whole run (the load is uneven by token
//      frequency, bounded by T per block).
//   The alternatives: a block per column slice looping over all T tokens, adding into zero-filled
//   rows, is O(T·d) too but serial in T (each step a dependent global read-modify-write, with only
//   d/32 warps busy); a per-vocab-row scan of all tokens without sorting is O(V·T) compares.
//   Sums are in f32 in t order (the ref adds in the same order, in float64).
//
// Layout: dy [T, pad8(d)] f32, the table gradient [V, pad8(d)] f32; tokens i32 [T]; idx i32 (or u16)
// [T, pad8(K)] as the MoC kernels store it (moc.ts); only logical columns are written.
import { KernelBuilder } from './builder.js';
import type { Kernel } from './dense.js';
import { pad8 } from './layout.js';

export const EMBEDDING_SORT_THREADS = 1024;
export const EMBEDDING_ROWS_THREADS = 256;

/** Sort slots for T tokens (a power of two ≥ T); the sort scratch holds this many u32. */
export const embeddingGradSlots = (T: number): number => 2 ** Math.ceil(Math.log2(Math.max(1, T)));

/**
 * The launches' grids for V rows, T ≥ 1 tokens, width d: keys tok·T + t must stay below the pad
 * 0xFFFFFFFF, and V is a grid y extent (≤ 65535).
 */
export function embeddingGradGrids(V: number, T: number, d: number): { sort: [number, number, number]; rows: [number, number, number] } {
  if (T < 1 || V * T >= 0xffffffff) throw new Error(`embedding_grad: keys tok·T + t do not fit 32 bits (V = ${V}, T = ${T})`);
  if (V > 65535) throw new Error(`embedding_grad: ${V} rows exceed the grid's y extent`);
  return { sort: [1, 1, 1], rows: [Math.ceil(d / EMBEDDING_ROWS_THREADS), V, 1] };
}

/**
 * Kernel 1. Params keys (u32 [N] scratch), tokens, T (u32), N (u32: embeddingGradSlots(T)).
 * Grid (1, 1, 1), block `threads` (default EMBEDDING_SORT_THREADS; any count, the loops stride by it).
 */
export function embeddingGradSort(threads = EMBEDDING_SORT_THREADS): Kernel {
  const name = `embedding_grad_sort_t${threads}`;
  const k = new KernelBuilder(name, [{ name: 'keys', type: 'u64' }, { name: 'tokens', type: 'u64' }, { name: 'T', type: 'u32' }, { name: 'N', type: 'u32' }]);
  k.blockSize(threads);
  const keys = k.ptrParam('keys'), tokens = k.ptrParam('tokens'), T = k.u32Param('T'), N = k.u32Param('N');
  const tid = k.special('%tid.x', 'tid');
  const i = k.reg('u32', 'i'), p = k.reg('pred', 'p'), key = k.reg('u32', 'key'), real = k.reg('pred', 'real');
  // keys[i] = tokens[i]·T + i for i < T, else the pad
  const fill = k.label('fill'), filled = k.label('filled');
  k.emit(`mov.u32 ${i}, ${tid}`);
  k.place(fill);
  k.emit(`setp.ge.u32 ${p}, ${i}, ${N}`, `@${p} bra ${filled}`, `setp.lt.u32 ${real}, ${i}, ${T}`, `mov.u32 ${key}, 4294967295`);
  const tok = k.reg('u32', 'tok');
  k.emit(`@${real} ld.global.u32 ${tok}, [${k.addr(tokens, i, 4)}]`, `@${real} mad.lo.u32 ${key}, ${tok}, ${T}, ${i}`);
  k.emit(`st.global.u32 [${k.addr(keys, i, 4)}], ${key}`, `add.u32 ${i}, ${i}, ${threads}`, `bra ${fill}`);
  k.place(filled);
  k.emit('bar.sync 0');
  // bitonic network: stage size kk = 2, 4, …, N; distance j = kk/2, …, 1; pair (i, i ^ j) with i < i ^ j,
  // ascending where (i & kk) = 0. bar.sync orders each pass's global writes before the next's reads
  // (all threads of one CTA).
  const kk = k.reg('u32', 'kk'), j = k.reg('u32', 'jd'), l = k.reg('u32', 'l'), ij = k.reg('u32', 'ij');
  const a = k.reg('u32', 'ka'), b = k.reg('u32', 'kb'), desc = k.reg('pred', 'desc'), gt = k.reg('pred', 'gt'), ne = k.reg('pred', 'ne');
  const stage = k.label('stage'), pass = k.label('pass'), pair = k.label('pair'), next = k.label('next'), passDone = k.label('passdone'), sorted = k.label('sorted');
  k.emit(`mov.u32 ${kk}, 2`);
  k.place(stage);
  k.emit(`setp.gt.u32 ${p}, ${kk}, ${N}`, `@${p} bra ${sorted}`, `shr.u32 ${j}, ${kk}, 1`);
  k.place(pass);
  k.emit(`setp.eq.u32 ${p}, ${j}, 0`, `@${p} bra ${passDone}`, `mov.u32 ${i}, ${tid}`);
  k.place(pair);
  k.emit(`setp.ge.u32 ${p}, ${i}, ${N}`, `@${p} bra ${next}`);
  const skip = k.label('skip');
  k.emit(`and.b32 ${ij}, ${i}, ${j}`, `setp.ne.u32 ${p}, ${ij}, 0`, `@${p} bra ${skip}`, `xor.b32 ${l}, ${i}, ${j}`);
  const ai = k.addr(keys, i, 4), al = k.addr(keys, l, 4);
  k.emit(`ld.global.u32 ${a}, [${ai}]`, `ld.global.u32 ${b}, [${al}]`);
  // swap where the pair is out of order: a > b ascending, a < b descending (never when equal: pads)
  k.emit(`and.b32 ${ij}, ${i}, ${kk}`, `setp.ne.u32 ${desc}, ${ij}, 0`, `setp.gt.u32 ${gt}, ${a}, ${b}`, `xor.pred ${gt}, ${gt}, ${desc}`, `setp.ne.u32 ${ne}, ${a}, ${b}`, `and.pred ${gt}, ${gt}, ${ne}`);
  k.emit(`@${gt} st.global.u32 [${ai}], ${b}`, `@${gt} st.global.u32 [${al}], ${a}`);
  k.place(skip);
  k.emit(`add.u32 ${i}, ${i}, ${threads}`, `bra ${pair}`);
  k.place(next);
  k.emit('bar.sync 0', `shr.u32 ${j}, ${j}, 1`, `bra ${pass}`);
  k.place(passDone);
  k.emit(`shl.b32 ${kk}, ${kk}, 1`, `bra ${stage}`);
  k.place(sorted);
  return { name, text: k.render() };
}

/**
 * Kernel 2. Params out ([V, pad8(d)]), keys (sorted by kernel 1), dy, T (u32), N (u32).
 * Grid embeddingGradGrids(V, T, d).rows, block EMBEDDING_ROWS_THREADS.
 */
export function embeddingGradRows(d: number): Kernel {
  const name = `embedding_grad_rows_d${d}`;
  const k = new KernelBuilder(name, [{ name: 'out', type: 'u64' }, { name: 'keys', type: 'u64' }, { name: 'dy', type: 'u64' }, { name: 'T', type: 'u32' }, { name: 'N', type: 'u32' }]);
  k.blockSize(EMBEDDING_ROWS_THREADS);
  const out = k.ptrParam('out'), keys = k.ptrParam('keys'), dy = k.ptrParam('dy'), T = k.u32Param('T'), N = k.u32Param('N');
  const tid = k.special('%tid.x', 'tid'), bx = k.special('%ctaid.x', 'bx'), v = k.special('%ctaid.y', 'v');
  const c = k.reg('u32', 'c'), p = k.reg('pred', 'p'), done = k.label('done');
  k.emit(`mad.lo.u32 ${c}, ${bx}, ${EMBEDDING_ROWS_THREADS}, ${tid}`, `setp.ge.u32 ${p}, ${c}, ${d}`, `@${p} bra ${done}`);
  /** The first slot whose key is ≥ target (N if none). */
  const lowerBound = (target: string): string => {
    const lo = k.reg('u32', 'lo'), hi = k.reg('u32', 'hi'), mid = k.reg('u32', 'mid'), km = k.reg('u32', 'km'), q = k.reg('pred', 'q');
    const loop = k.label('search'), found = k.label('found');
    k.emit(`mov.u32 ${lo}, 0`, `mov.u32 ${hi}, ${N}`);
    k.place(loop);
    k.emit(`setp.ge.u32 ${q}, ${lo}, ${hi}`, `@${q} bra ${found}`, `add.u32 ${mid}, ${lo}, ${hi}`, `shr.u32 ${mid}, ${mid}, 1`);
    k.emit(`ld.global.u32 ${km}, [${k.addr(keys, mid, 4)}]`, `setp.lt.u32 ${q}, ${km}, ${target}`);
    k.emit(`@${q} add.u32 ${lo}, ${mid}, 1`, `@!${q} mov.u32 ${hi}, ${mid}`, `bra ${loop}`);
    k.place(found);
    return lo;
  };
  const first = k.reg('u32', 'first'), last = k.reg('u32', 'last');
  k.emit(`mul.lo.u32 ${first}, ${v}, ${T}`, `add.u32 ${last}, ${first}, ${T}`);
  const s = lowerBound(first), e = lowerBound(last);
  const acc = k.reg('f32', 'acc'), key = k.reg('u32', 'key'), x = k.reg('f32', 'x');
  const dyc = k.addr(dy, c, 4);
  k.emit(`mov.f32 ${acc}, 0f00000000`);
  const loop = k.label('run'), end = k.label('rundone');
  k.place(loop);
  k.emit(`setp.ge.u32 ${p}, ${s}, ${e}`, `@${p} bra ${end}`, `ld.global.u32 ${key}, [${k.addr(keys, s, 4)}]`, `sub.u32 ${key}, ${key}, ${first}`);
  k.emit(`ld.global.f32 ${x}, [${k.addr(dyc, key, pad8(d) * 4)}]`, `add.f32 ${acc}, ${acc}, ${x}`, `add.u32 ${s}, ${s}, 1`, `bra ${loop}`);
  k.place(end);
  k.emit(`st.global.f32 [${k.addr(k.addr(out, v, pad8(d) * 4), c, 4)}], ${acc}`);
  k.place(done);
  return { name, text: k.render() };
}

export const SCATTER_THREADS = 256;
/** Grid of mocScatter over T rows: one block a row. */
export const mocScatterGrid = (T: number): [number, number, number] => [1, T, 1];

/** Bytes of static shared memory a block may declare without an opt-in (CUDA's 48 KiB). */
const STATIC_SHARED_BYTES = 48 * 1024;
/** Channels a thread of mocScatter loads a round: idx and dy each in one 16-byte load. */
const SCATTER_LANES = 4;

/**
 * moc_scatter: out [T, pad8(F)] = 0 except out[t, idx[t, k]] = dy[t, k] (k < K). The indices of a
 * row are distinct (moc_select's top-k), so no two threads write one element. Params out, dy, idx.
 * Grid mocScatterGrid(T) = (1, T, 1), block SCATTER_THREADS. `out`:
 *   'f32'   f32 rows; the padding columns F..pad8(F) are left as they are;
 *   'bf16'  bf16 rows (name suffix _bf16), each value rounded to nearest even, the padding zeroed too:
 *           bit for bit castRows' bf16 copy of the f32 scatter with its padding zeroed (0 casts to 0;
 *           each value gets the same cvt.rn), without that f32 [T, F] matrix and its cast: what the
 *           dense MoC GEMMs multiply (ops-moc-bf16.ts; its scratch holds stale bits, and gemm.ts
 *           multiplies a K-contiguous x's padding).
 * The row is built in shared memory (mocScatterStaged) when it fits the static 48 KiB, else written
 * in global memory directly (mocScatterDirect); both store the same bits.
 */
export function mocScatter(K: number, F: number, out: 'f32' | 'bf16' = 'f32'): Kernel {
  return pad8(F) * (out === 'bf16' ? 2 : 4) <= STATIC_SHARED_BYTES ? mocScatterStaged(K, F, out) : mocScatterDirect(K, F, out);
}

const scatterName = (K: number, F: number, out: 'f32' | 'bf16') => `moc_scatter_k${K}_f${F}${out === 'bf16' ? '_bf16' : ''}`;

/**
 * The row in shared memory. Each thread loads its first SCATTER_LANES channels' idx and dy (16-byte
 * loads, issued first, so their latency overlaps the zeroing), the block zeroes the shared row, then
 * writes each kept value at its channel (2- or 4-byte shared stores: the random columns never reach
 * global memory one sector at a time), then copies the row out with 16-byte stores. A round covers
 * SCATTER_THREADS · SCATTER_LANES channels; with K past one round, round r + 1's loads are issued before
 * round r's shared stores. Why: one channel a thread with its loads right before a dependent 2-byte global
 * store kept about 8 bytes a thread in flight and sent each value to L2 as its own partial-sector write
 * (bench/NOTES.md session 17: 0.13 ms a launch at 1B, ~1.4 TB/s of row writes).
 * Channel groups start at multiples of 4 of a row of pad8(K) 4-byte values (16-byte aligned); a row's
 * last K mod 4 channels are loaded one at a time, so the padding of dy and idx is never read.
 */
function mocScatterStaged(K: number, F: number, out: 'f32' | 'bf16'): Kernel {
  const bf16 = out === 'bf16', eb = bf16 ? 2 : 4, nt = SCATTER_THREADS, L = SCATTER_LANES;
  const k = new KernelBuilder(scatterName(K, F, out), ['out', 'dy', 'idx'].map((n) => ({ name: n, type: 'u64' as const })));
  k.blockSize(nt);
  const o = k.ptrParam('out'), dy = k.ptrParam('dy'), idx = k.ptrParam('idx');
  const tid = k.special('%tid.x', 'tid'), t = k.special('%ctaid.y', 't');
  const rowBytes = pad8(F) * eb, row = k.sharedArray('row', 'b32', rowBytes / 4, 16);
  const sh = k.reg('u32', 'sh'), s16 = k.reg('u32', 's16'), g16 = k.reg('u64', 'g16');
  // this thread's 16-byte slot: in shared memory, and in a row of dy / idx / out
  k.emit(`mov.u32 ${sh}, ${row}`, `shl.b32 ${s16}, ${tid}, 4`, `add.u32 ${s16}, ${sh}, ${s16}`, `mul.wide.u32 ${g16}, ${tid}, 16`);
  const dyrow = k.addr(dy, t, pad8(K) * 4), irow = k.addr(idx, t, pad8(K) * 4);
  const dyg = k.reg('u64', 'dyg'), ig = k.reg('u64', 'ig');
  k.emit(`add.s64 ${dyg}, ${dyrow}, ${g16}`, `add.s64 ${ig}, ${irow}, ${g16}`);
  /** A predicate true for tid < lim (null: for every thread; undefined: for none). */
  const below = (lim: number): string | null | undefined => {
    if (lim >= nt) return null;
    if (lim <= 0) return undefined;
    const p = k.reg('pred', 'lt');
    k.emit(`setp.lt.u32 ${p}, ${tid}, ${lim}`);
    return p;
  };
  const on = (p: string | null) => (p === null ? '' : `@${p} `);
  const full = Math.floor(K / L), groups = Math.ceil(K / L), rounds = Math.ceil(groups / nt), tail = K % L;
  interface Round { ch: string[]; v: string[]; whole: string | null | undefined; any: string | null | undefined }
  const load = (r: number): Round => {
    const ch = k.regs('u32', 'ch', L), v = k.regs('f32', 'v', L);
    const whole = below(full - r * nt), any = tail ? below(groups - r * nt) : whole;
    if (whole !== undefined) k.emit(`${on(whole)}ld.global.v4.u32 {${ch.join(', ')}}, [${ig}+${r * nt * 16}]`, `${on(whole)}ld.global.v4.f32 {${v.join(', ')}}, [${dyg}+${r * nt * 16}]`);
    if (tail && full - r * nt < nt && any !== undefined) {
      // the row's last group (thread full − r·nt of this round, if it is in the round): its K mod 4 channels
      const last = k.reg('pred', 'last');
      k.emit(`setp.eq.u32 ${last}, ${tid}, ${full - r * nt}`);
      for (let l = 0; l < tail; l++) k.emit(`@${last} ld.global.u32 ${ch[l]}, [${ig}+${r * nt * 16 + 4 * l}]`, `@${last} ld.global.f32 ${v[l]}, [${dyg}+${r * nt * 16 + 4 * l}]`);
    }
    return { ch, v, whole, any };
  };
  let cur = load(0);
  // zero the shared row, every 16 bytes of it (the padding too: bf16 copies it out)
  const z = k.reg('b32', 'z');
  k.emit(`mov.b32 ${z}, 0`);
  for (let c = 0; c * nt < rowBytes / 16; c++) {
    const p = below(rowBytes / 16 - c * nt);
    k.emit(`${on(p!)}st.shared.v4.u32 [${s16}+${c * nt * 16}], {${z}, ${z}, ${z}, ${z}}`);
  }
  k.emit('bar.sync 0');
  const a = k.reg('u32', 'a'), h = bf16 ? k.reg('b16', 'h') : '';
  for (let r = 0; r < rounds; r++) {
    const next = r + 1 < rounds ? load(r + 1) : undefined;
    for (let l = 0; l < L; l++) {
      const p = l < tail ? cur.any : cur.whole;
      if (p === undefined) continue;
      k.emit(`${on(p)}mad.lo.u32 ${a}, ${cur.ch[l]}, ${eb}, ${sh}`);
      if (bf16) k.emit(`${on(p)}cvt.rn.bf16.f32 ${h}, ${cur.v[l]}`, `${on(p)}st.shared.b16 [${a}], ${h}`);
      else k.emit(`${on(p)}st.shared.f32 [${a}], ${cur.v[l]}`);
    }
    if (next) cur = next;
  }
  // the row out, 16 bytes a thread a round: bf16 all pad8(F) columns; f32 the F columns, the last F mod 4 one at a time
  k.emit('bar.sync 0');
  const orow = k.reg('u64', 'orow');
  k.emit(`add.s64 ${orow}, ${k.addr(o, t, rowBytes)}, ${g16}`);
  const perChunk = 16 / eb, chunks = bf16 ? rowBytes / 16 : Math.floor(F / perChunk), rest = bf16 ? 0 : F % perChunk;
  const w = k.regs('b32', 'w', 4);
  for (let c = 0; c * nt < chunks + (rest ? 1 : 0); c++) {
    const p = below(chunks - c * nt);
    if (p !== undefined) k.emit(`${on(p)}ld.shared.v4.u32 {${w.join(', ')}}, [${s16}+${c * nt * 16}]`, `${on(p)}st.global.v4.b32 [${orow}+${c * nt * 16}], {${w.join(', ')}}`);
    if (rest && chunks - c * nt >= 0 && chunks - c * nt < nt) {
      const last = k.reg('pred', 'last');
      k.emit(`setp.eq.u32 ${last}, ${tid}, ${chunks - c * nt}`);
      for (let l = 0; l < rest; l++) k.emit(`@${last} ld.shared.u32 ${w[l]}, [${s16}+${c * nt * 16 + 4 * l}]`, `@${last} st.global.u32 [${orow}+${c * nt * 16 + 4 * l}], ${w[l]}`);
    }
  }
  return { name: k.name, text: k.render() };
}

/**
 * The row in global memory (rows past the static shared memory): the row's zeros (f32: one a thread
 * per round over the F columns; bf16: eight, 16 bytes, over all pad8(F)), a barrier (it orders the
 * block's global writes), then each kept channel's value, one a thread per round.
 */
function mocScatterDirect(K: number, F: number, out: 'f32' | 'bf16'): Kernel {
  const bf16 = out === 'bf16';
  const k = new KernelBuilder(scatterName(K, F, out), ['out', 'dy', 'idx'].map((n) => ({ name: n, type: 'u64' as const })));
  k.blockSize(SCATTER_THREADS);
  const o = k.ptrParam('out'), dy = k.ptrParam('dy'), idx = k.ptrParam('idx');
  const tid = k.special('%tid.x', 'tid'), t = k.special('%ctaid.y', 't');
  const orow = k.addr(o, t, pad8(F) * (bf16 ? 2 : 4)), dyrow = k.addr(dy, t, pad8(K) * 4), irow = k.addr(idx, t, pad8(K) * 4);
  const i = k.reg('u32', 'i'), p = k.reg('pred', 'p'), z = bf16 ? k.reg('b32', 'z') : '';
  const zero = k.label('zero'), zeroed = k.label('zeroed');
  k.emit(...(bf16 ? [`mov.b32 ${z}, 0`] : []), `mov.u32 ${i}, ${tid}`);
  k.place(zero);
  const store = bf16 ? `st.global.v4.b32 [${k.addr(orow, i, 16)}], {${z}, ${z}, ${z}, ${z}}` : `st.global.f32 [${k.addr(orow, i, 4)}], 0f00000000`;
  k.emit(`setp.ge.u32 ${p}, ${i}, ${bf16 ? pad8(F) / 8 : F}`, `@${p} bra ${zeroed}`, store, `add.u32 ${i}, ${i}, ${SCATTER_THREADS}`, `bra ${zero}`);
  k.place(zeroed);
  k.emit('bar.sync 0', `mov.u32 ${i}, ${tid}`);
  const ch = k.reg('u32', 'ch'), x = k.reg('f32', 'x'), h = bf16 ? k.reg('b16', 'h') : '';
  const put = k.label('put'), done = k.label('done');
  k.place(put);
  k.emit(`setp.ge.u32 ${p}, ${i}, ${K}`, `@${p} bra ${done}`, `ld.global.u32 ${ch}, [${k.addr(irow, i, 4)}]`, `ld.global.f32 ${x}, [${k.addr(dyrow, i, 4)}]`);
  if (bf16) k.emit(`cvt.rn.bf16.f32 ${h}, ${x}`, `st.global.b16 [${k.addr(orow, ch, 2)}], ${h}`);
  else k.emit(`st.global.f32 [${k.addr(orow, ch, 4)}], ${x}`);
  k.emit(`add.u32 ${i}, ${i}, ${SCATTER_THREADS}`, `bra ${put}`);
  k.place(done);
  return { name: k.name, text: k.render() };
}

/** Grid of index_narrow / index_widen over T rows of K indices; block SCATTER_THREADS. */
export const indexCastGrid = (K: number, T: number): [number, number, number] => [Math.max(1, Math.ceil(K / SCATTER_THREADS)), T, 1];

/**
 * index_narrow (i32 → u16, 'narrow') or index_widen (u16 → i32, 'widen') of [T, pad8(K)] indices.
 * Narrowing keeps the low 16 bits (st.u16 of a 32-bit register): indices are < 65536 by the op's
 * contract (ops-train.ts; the ref kernel throws otherwise), which the caller checks where it matters.
 * Params out, idx. Grid indexCastGrid, block SCATTER_THREADS.
 */
export function indexCast(dir: 'narrow' | 'widen', K: number): Kernel {
  const name = `index_${dir}_k${K}`;
  const k = new KernelBuilder(name, ['out', 'idx'].map((n) => ({ name: n, type: 'u64' as const })));
  k.blockSize(SCATTER_THREADS);
  const out = k.ptrParam('out'), idx = k.ptrParam('idx');
  const tid = k.special('%tid.x', 'tid'), bx = k.special('%ctaid.x', 'bx'), t = k.special('%ctaid.y', 't');
  const i = k.reg('u32', 'i'), p = k.reg('pred', 'p'), v = k.reg('u32', 'v'), done = k.label('done');
  k.emit(`mad.lo.u32 ${i}, ${bx}, ${SCATTER_THREADS}, ${tid}`, `setp.ge.u32 ${p}, ${i}, ${K}`, `@${p} bra ${done}`, `mad.lo.u32 ${i}, ${t}, ${pad8(K)}, ${i}`);
  if (dir === 'narrow') k.emit(`ld.global.u32 ${v}, [${k.addr(idx, i, 4)}]`, `st.global.u16 [${k.addr(out, i, 2)}], ${v}`);
  else k.emit(`ld.global.u16 ${v}, [${k.addr(idx, i, 2)}]`, `st.global.u32 [${k.addr(out, i, 4)}], ${v}`);
  k.place(done);
  return { name, text: k.render() };
}
