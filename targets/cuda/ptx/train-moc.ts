// MoC kernels of training in f32 (test/helpers/ptx-sim.ts runs them all on the CPU; every sum has a
// fixed order). Oracle: targets/ref/kernels.ts mocSelect, mocGather, mocUp, mocDown and
// targets/ref/train-kernels.ts mocRowsGrad.
//
// The MoC backward needs no other MoC kernel (src/ir/grad-rules.ts): d(moc_up)/dx is moc_down(dy,
// W_up, idx) and d(moc_down)/dz is moc_up(dy, W_down, idx) — W_up and W_down are both [F, d] in the
// graph (w_down is the checkpoint's W_downᵀ, the param flagged `transposed`) — and both weight
// gradients are moc_rows_grad. moc_gather's gradient is moc_scatter (train-scatter.ts).
//
//   mocSelect    — Top-K (sel k): block t keeps the K largest of g[t, :], ascending: decoding's radix
//                  select (moc.ts emitTopkSelect: three histogram passes in shared memory, warp
//                  shuffles, 8 barriers), in selectShape(F) blocks, one a row, T on x. Its keys are
//                  the ref's order (selectKey: NaN as −∞, −0 = +0), ties → lower channel.
//                  a:b (sel a:b) — block (t, j): the kk largest of g[t, from..to) (block j of b
//                  channels, kk = a, or min(a, tail) for the last) written in ascending channel order
//                  at idx[t, j·a ..], same order and ties. Plain SIMT: each value becomes the same
//                  order-preserving u32 key; the kk-th largest key τ is built bit by bit (32 block-wide
//                  counts of keys ≥ candidate, high bit first); then the keys > τ and the first
//                  kk − #(> τ) keys = τ in channel order are kept, placed by a block scan. (This was
//                  Top-K's kernel too until session 17: 32 block reductions of 1024 threads, ~10
//                  barriers each, about 40 ms of a 1B MoC step on the H200.)
//   mocGather    — out[t, k] = g[t, idx[t, k]].
//   mocUp        — z[t, k] = Σ_i x[t, i]·W[idx[t, k], i], one thread a (t, k), i in order.
//   mocDown      — y[t, c] = Σ_k z[t, k]·W[idx[t, k], c], one thread a (t, c), k in order.
//   mocRowsGrad  — out[r, :] = Σ_{(t,k): idx[t,k] = r} a[t, k]·b[t, :], (t, k) in order: one block a
//                  weight row, scanning all T·K indices in tiles of ROWS_GRAD_TILE entries (a block scan
//                  compacts the tile's matches into shared memory; then thread c adds their a·b[t, c]).
//                  Trade-off: every block reads all T·K indices (rows·T·K index reads, L2-resident),
//                  with 2·log2(threads) barriers a tile, in exchange for no sort, no scratch and no
//                  atomics; the multiply-adds are the minimal T·K·d. The alternatives: a sort of
//                  (idx, t, k) first (like embedding_grad: one block, O(T·K·log²) passes), or the dense
//                  matmul_tn of moc_scatter(a) with b (T·F·d multiply-adds, F/K times more).
//
// Layout: g [T, pad8(F)], idx i32 [T, pad8(K)] (as moc.ts stores it), x / y / b [T, pad8(d)],
// z / a [T, pad8(K)], W and out [rows, pad8(d)]; all f32. Only logical columns are written.
// Grids put T on x (training T can pass the y extent of 65535).
import { KernelBuilder } from './builder.js';
import type { Kernel } from './dense.js';
import { pad8 } from './layout.js';
import { blockReduceTree } from './train-reduce.js';
import { checkTopk, emitTopkSelect, MAX_SELECT_CHANNELS, selectShape } from './moc.js';

const nextPow2 = (n: number) => 2 ** Math.ceil(Math.log2(Math.max(1, n)));
const ptrs = (names: string[]) => names.map((name) => ({ name, type: 'u64' as const }));

/**
 * Block-wide inclusive → exclusive prefix sum of the u32 `v` over `threads` threads (a power of
 * two), SIMT: Hillis–Steele steps through shared memory, two barriers a step. Returns [exclusive,
 * total]; every thread must run it; ends with a barrier (the array may be reused at once).
 */
export function blockScanSimt(k: KernelBuilder, v: string, tid: string, threads: number): [string, string] {
  const sh = k.sharedArray('scan', 'u32', threads, 4);
  const my = k.reg('u32', 'sa'), inc = k.reg('u32', 'inc'), x = k.reg('u32', 'x'), p = k.reg('pred', 'p');
  k.emit(`mov.u32 ${my}, ${sh}`, `mad.lo.u32 ${my}, ${tid}, 4, ${my}`, `mov.u32 ${inc}, ${v}`, `st.shared.u32 [${my}], ${inc}`, 'bar.sync 0');
  for (let off = 1; off < threads; off *= 2) {
    k.emit(`mov.u32 ${x}, 0`, `setp.ge.u32 ${p}, ${tid}, ${off}`, `@${p} ld.shared.u32 ${x}, [${my}+${-4 * off}]`, 'bar.sync 0');
    k.emit(`add.u32 ${inc}, ${inc}, ${x}`, `st.shared.u32 [${my}], ${inc}`, 'bar.sync 0');
  }
  const excl = k.reg('u32', 'excl'), total = k.reg('u32', 'total');
  k.emit(`sub.u32 ${excl}, ${inc}, ${v}`, `ld.shared.u32 ${total}, [${sh}+${4 * (threads - 1)}]`, 'bar.sync 0');
  return [excl, total];
}

// ---------------------------------------------------------------------------------------------
// moc_select

export type MocSelection = { k: number } | { a: number; b: number };

export interface MocSelectSpec {
  F: number;
  sel: MocSelection;
}

/** The most channels a selection block scans (its counts are packed in 16-bit halves, as moc.ts's Top-K packs them). */
export const MAX_SELECT_WIDTH = MAX_SELECT_CHANNELS;

/** Channels one block scans: F for Top-K, b for a:b. */
const selectWidth = (s: MocSelectSpec) => ('k' in s.sel ? s.F : Math.min(s.sel.b, s.F));
/** Threads of a mocSelect block: Top-K, the radix select's selectShape(F); a:b, a power of two in 32..1024, each owning ⌈b / threads⌉ channels. */
export const mocSelectThreads = (s: MocSelectSpec): number => ('k' in s.sel ? selectShape(s.F).threads : Math.min(1024, Math.max(32, nextPow2(selectWidth(s)))));
/** Grid of mocSelect over T rows: (T, blocks of the pattern). */
export const mocSelectGrid = (s: MocSelectSpec, T: number): [number, number, number] => [T, 'k' in s.sel ? 1 : Math.ceil(s.F / s.sel.b), 1];
/** Channels kept a row (ops.ts selectedCount's rule). */
export const mocSelectedCount = (s: MocSelectSpec): number => ('k' in s.sel ? s.sel.k : s.sel.a * Math.floor(s.F / s.sel.b) + Math.min(s.sel.a, s.F % s.sel.b));

/**
 * moc_select. Params idx (i32 [T, pad8(K)], K = mocSelectedCount), g (f32 [T, pad8(F)]).
 * Grid mocSelectGrid(spec, T), block mocSelectThreads(spec).
 */
export function mocSelect(s: MocSelectSpec): Kernel {
  const { F } = s;
  const byK = 'k' in s.sel;
  const a = byK ? (s.sel as { k: number }).k : (s.sel as { a: number }).a, b = byK ? F : (s.sel as { b: number }).b;
  if (!(Number.isInteger(F) && F >= 1)) throw new Error(`moc_select: F = ${F}`);
  if (byK && !(Number.isInteger(a) && a >= 1 && a <= F)) throw new Error(`moc_select: k = ${a} is not in 1..${F}`);
  if (!byK && !(Number.isInteger(a) && Number.isInteger(b) && a >= 1 && b >= a)) throw new Error(`moc_select: pattern ${a}:${b} needs 1 ≤ a ≤ b`);
  const width = selectWidth(s);
  if (width > MAX_SELECT_WIDTH) throw new Error(`moc_select: ${width} channels a block exceed ${MAX_SELECT_WIDTH}`);
  const name = `train_moc_select_f${F}_${byK ? `k${a}` : `a${a}b${b}`}`;
  if (byK) return topkRows(name, F, a);
  const K = mocSelectedCount(s), NT = mocSelectThreads(s), E = Math.ceil(width / NT);
  const k = new KernelBuilder(name, ptrs(['idx', 'g']));
  k.blockSize(NT);
  const idx = k.ptrParam('idx'), g = k.ptrParam('g');
  const tid = k.special('%tid.x', 'tid'), t = k.special('%ctaid.x', 't'), j = k.special('%ctaid.y', 'j');
  // this block's channels [from, to), how many it keeps (kk) and where they go (out0)
  const from = k.reg('u32', 'from'), to = k.reg('u32', 'to'), kk = k.reg('u32', 'kk'), out0 = k.reg('u32', 'out0');
  k.emit(`mul.lo.u32 ${from}, ${j}, ${b}`, `add.u32 ${to}, ${from}, ${b}`, `min.u32 ${to}, ${to}, ${F}`, `mul.lo.u32 ${out0}, ${j}, ${a}`);
  k.emit(`sub.u32 ${kk}, ${to}, ${from}`, `min.u32 ${kk}, ${kk}, ${a}`);
  const grow = k.addr(g, t, pad8(F) * 4), irow = k.addr(idx, t, pad8(K) * 4);
  // keys of this thread's channels c0 + e: NaN → −∞ and −0 → +0 first (the ref's comparisons), then
  // negative → ~bits, non-negative → bits | 0x80000000. Channels past `to` get key 0, below every
  // real key (−∞'s key is 0x007FFFFF), so they are never counted.
  const c0 = k.reg('u32', 'c0');
  k.emit(`mad.lo.u32 ${c0}, ${tid}, ${E}, ${from}`);
  const keys = k.regs('u32', 'key', E);
  for (let e = 0; e < E; e++) {
    const c = k.reg('u32', 'c'), ok = k.reg('pred', 'ok'), bits = k.reg('u32', 'bits'), abs = k.reg('u32', 'abs'), p = k.reg('pred', 'p'), flip = k.reg('u32', 'flip');
    k.emit(`add.u32 ${c}, ${c0}, ${e}`, `setp.lt.u32 ${ok}, ${c}, ${to}`, `mov.u32 ${bits}, 0`);
    k.emit(`@${ok} ld.global.u32 ${bits}, [${k.addr(grow, c, 4)}]`); // (own emit: addr() emits as the argument is built)
    k.emit(`and.b32 ${abs}, ${bits}, 2147483647`, `setp.gt.u32 ${p}, ${abs}, 2139095040`, `@${p} mov.u32 ${bits}, 4286578688`); // NaN → −∞ (0xFF800000)
    k.emit(`setp.eq.u32 ${p}, ${bits}, 2147483648`, `@${p} mov.u32 ${bits}, 0`); // −0 → +0
    k.emit(`setp.lt.s32 ${p}, ${bits}, 0`, `xor.b32 ${flip}, ${bits}, -1`, `or.b32 ${keys[e]}, ${bits}, 2147483648`, `@${p} mov.u32 ${keys[e]}, ${flip}`, `@!${ok} mov.u32 ${keys[e]}, 0`);
  }
  /** Σ over the block of this thread's keys for which cmp(key) holds. */
  const count = (cmp: (key: string, p: string) => void): string => {
    const n = k.reg('u32', 'n'), p = k.reg('pred', 'p'), one = k.reg('u32', 'one');
    k.emit(`mov.u32 ${n}, 0`);
    for (const key of keys) {
      cmp(key, p);
      k.emit(`selp.u32 ${one}, 1, 0, ${p}`, `add.u32 ${n}, ${n}, ${one}`);
    }
    return n;
  };
  // τ: the largest u32 with at least kk keys ≥ τ, i.e. the kk-th largest key, one bit at a time
  const tau = k.reg('u32', 'tau'), cand = k.reg('u32', 'cand'), bit = k.reg('u32', 'bit'), take = k.reg('pred', 'take');
  const top = k.label('bit');
  k.emit(`mov.u32 ${tau}, 0`, `mov.u32 ${bit}, 2147483648`);
  k.place(top);
  k.emit(`or.b32 ${cand}, ${tau}, ${bit}`);
  const ge = count((key, p) => k.emit(`setp.ge.u32 ${p}, ${key}, ${cand}`));
  blockReduceTree(k, ge, tid, NT, 'add', 'u32');
  k.emit(`setp.ge.u32 ${take}, ${ge}, ${kk}`, `@${take} mov.u32 ${tau}, ${cand}`, `shr.u32 ${bit}, ${bit}, 1`, `setp.ne.u32 ${take}, ${bit}, 0`, `@${take} bra ${top}`);
  // keys > τ and = τ of this thread, packed (> in the low half), scanned over the block
  const gt = count((key, p) => k.emit(`setp.gt.u32 ${p}, ${key}, ${tau}`));
  const eq = count((key, p) => k.emit(`setp.eq.u32 ${p}, ${key}, ${tau}`));
  const packed = k.reg('u32', 'packed');
  k.emit(`shl.b32 ${packed}, ${eq}, 16`, `or.b32 ${packed}, ${packed}, ${gt}`);
  const [excl, total] = blockScanSimt(k, packed, tid, NT);
  // need = kk − (keys > τ in the block): how many keys = τ are kept, the first ones in channel order
  const need = k.reg('u32', 'need'), eqBefore = k.reg('u32', 'eqb'), pos = k.reg('u32', 'pos'), x = k.reg('u32', 'x');
  k.emit(`and.b32 ${x}, ${total}, 65535`, `sub.u32 ${need}, ${kk}, ${x}`);
  k.emit(`shr.u32 ${eqBefore}, ${excl}, 16`, `and.b32 ${pos}, ${excl}, 65535`, `min.u32 ${x}, ${eqBefore}, ${need}`, `add.u32 ${pos}, ${pos}, ${x}`, `add.u32 ${pos}, ${pos}, ${out0}`);
  for (let e = 0; e < E; e++) {
    const c = k.reg('u32', 'c'), isGt = k.reg('pred', 'gt'), isEq = k.reg('pred', 'eq'), keep = k.reg('pred', 'keep'), p = k.reg('pred', 'p');
    k.emit(`add.u32 ${c}, ${c0}, ${e}`, `setp.gt.u32 ${isGt}, ${keys[e]}, ${tau}`, `setp.eq.u32 ${isEq}, ${keys[e]}, ${tau}`);
    k.emit(`setp.lt.u32 ${p}, ${eqBefore}, ${need}`, `and.pred ${p}, ${p}, ${isEq}`, `or.pred ${keep}, ${isGt}, ${p}`);
    k.emit(`@${keep} st.global.u32 [${k.addr(irow, pos, 4)}], ${c}`);
    k.emit(`@${keep} add.u32 ${pos}, ${pos}, 1`, `@${isEq} add.u32 ${eqBefore}, ${eqBefore}, 1`);
  }
  return { name, text: k.render() };
}

/** Top-K of every row of g by decoding's radix select (moc.ts), block t = row t (T on x: no 65535 limit). */
function topkRows(name: string, F: number, K: number): Kernel {
  checkTopk(F, K);
  const k = new KernelBuilder(name, ptrs(['idx', 'g']));
  const shape = selectShape(F);
  k.blockSize(shape.threads);
  const idx = k.ptrParam('idx'), g = k.ptrParam('g');
  const tid = k.special('%tid.x', 'tid'), t = k.special('%ctaid.x', 't');
  emitTopkSelect(k, { f: F, kKeep: K, shape, tid, t, idx, g, load: 'ld.global', gridSync: false });
  return { name, text: k.render() };
}

// ---------------------------------------------------------------------------------------------
// moc_gather, moc_up, moc_down

/** Threads of the per-row MoC kernels (mocGather, mocUp, mocDown): the row's outputs, in warps, at most 128. */
export const mocRowThreads = (n: number): number => Math.min(128, Math.max(32, Math.ceil(n / 32) * 32));
/** Grid of a per-row kernel over T rows of n outputs (K for gather and up, d for down). */
export const mocRowGrid = (n: number, T: number): [number, number, number] => [T, Math.ceil(n / mocRowThreads(n)), 1];

/** The thread's output column o = ctaid.y·NT + tid of row ctaid.x, and a branch to `done` past n. */
function rowThread(k: KernelBuilder, n: number): { t: string; o: string; done: string } {
  const NT = mocRowThreads(n);
  k.blockSize(NT);
  const tid = k.special('%tid.x', 'tid'), t = k.special('%ctaid.x', 't'), by = k.special('%ctaid.y', 'by');
  const o = k.reg('u32', 'o'), p = k.reg('pred', 'p'), done = k.label('done');
  k.emit(`mad.lo.u32 ${o}, ${by}, ${NT}, ${tid}`, `setp.ge.u32 ${p}, ${o}, ${n}`, `@${p} bra ${done}`);
  return { t, o, done };
}

/** moc_gather. Params out ([T, pad8(K)]), g, idx. Grid mocRowGrid(K, T), block mocRowThreads(K). */
export function mocGather(F: number, K: number): Kernel {
  const name = `train_moc_gather_f${F}_k${K}`;
  const k = new KernelBuilder(name, ptrs(['out', 'g', 'idx']));
  const out = k.ptrParam('out'), g = k.ptrParam('g'), idx = k.ptrParam('idx');
  const { t, o, done } = rowThread(k, K);
  const ch = k.reg('u32', 'ch'), v = k.reg('f32', 'v'), e = k.reg('u32', 'e');
  k.emit(`mad.lo.u32 ${e}, ${t}, ${pad8(K)}, ${o}`);
  k.emit(`ld.global.u32 ${ch}, [${k.addr(idx, e, 4)}]`);
  k.emit(`ld.global.f32 ${v}, [${k.addr(k.addr(g, t, pad8(F) * 4), ch, 4)}]`, `st.global.f32 [${k.addr(out, e, 4)}], ${v}`);
  k.place(done);
  return { name, text: k.render() };
}

/**
 * moc_up (also d(moc_down)/dz with x = dy, W = W_down). Params z ([T, pad8(K)]), x ([T, pad8(d)]),
 * w ([F, pad8(d)]), idx. Grid mocRowGrid(K, T), block mocRowThreads(K). Thread (t, k) sums
 * x[t, i]·W[idx[t, k], i] in i order, four columns a step (16-byte loads) and d mod 4 one at a time.
 */
export function mocUp(d: number, K: number): Kernel {
  const name = `train_moc_up_d${d}_k${K}`;
  const k = new KernelBuilder(name, ptrs(['z', 'x', 'w', 'idx']));
  const z = k.ptrParam('z'), x = k.ptrParam('x'), w = k.ptrParam('w'), idx = k.ptrParam('idx');
  const { t, o, done } = rowThread(k, K);
  const e = k.reg('u32', 'e'), ch = k.reg('u32', 'ch');
  k.emit(`mad.lo.u32 ${e}, ${t}, ${pad8(K)}, ${o}`);
  k.emit(`ld.global.u32 ${ch}, [${k.addr(idx, e, 4)}]`);
  const xr = k.addr(x, t, pad8(d) * 4), wr = k.addr(w, ch, pad8(d) * 4);
  const acc = k.reg('f32', 'acc'), i = k.reg('u32', 'i'), p = k.reg('pred', 'p');
  k.emit(`mov.f32 ${acc}, 0f00000000`);
  const d4 = Math.floor(d / 4) * 4;
  if (d4 > 0) {
    const top = k.label('dot');
    k.emit(`mov.u32 ${i}, 0`);
    k.place(top);
    const xv = k.regs('f32', 'xv', 4), wv = k.regs('f32', 'wv', 4);
    k.emit(`ld.global.v4.f32 {${xv.join(', ')}}, [${k.addr(xr, i, 4)}]`, `ld.global.v4.f32 {${wv.join(', ')}}, [${k.addr(wr, i, 4)}]`);
    for (let q = 0; q < 4; q++) k.emit(`fma.rn.f32 ${acc}, ${xv[q]}, ${wv[q]}, ${acc}`);
    k.emit(`add.u32 ${i}, ${i}, 4`, `setp.lt.u32 ${p}, ${i}, ${d4}`, `@${p} bra ${top}`);
  }
  for (let c = d4; c < d; c++) {
    const xv = k.reg('f32', 'xv'), wv = k.reg('f32', 'wv');
    k.emit(`ld.global.f32 ${xv}, [${xr}+${4 * c}]`, `ld.global.f32 ${wv}, [${wr}+${4 * c}]`, `fma.rn.f32 ${acc}, ${xv}, ${wv}, ${acc}`);
  }
  k.emit(`st.global.f32 [${k.addr(z, e, 4)}], ${acc}`);
  k.place(done);
  return { name, text: k.render() };
}

/**
 * moc_down (also d(moc_up)/dx with z = dy, W = W_up). Params y ([T, pad8(d)]), z ([T, pad8(K)]),
 * w ([F, pad8(d)]), idx. Grid mocRowGrid(d, T), block mocRowThreads(d). Thread (t, c) sums
 * z[t, k]·W[idx[t, k], c] in k order (the row's z and idx are the same loads in every thread).
 */
export function mocDown(d: number, K: number): Kernel {
  const name = `train_moc_down_d${d}_k${K}`;
  const k = new KernelBuilder(name, ptrs(['y', 'z', 'w', 'idx']));
  const y = k.ptrParam('y'), z = k.ptrParam('z'), w = k.ptrParam('w'), idx = k.ptrParam('idx');
  const { t, o, done } = rowThread(k, d);
  const zr = k.addr(z, t, pad8(K) * 4), ir = k.addr(idx, t, pad8(K) * 4), wc = k.addr(w, o, 4);
  const acc = k.reg('f32', 'acc'), kk = k.reg('u32', 'kk'), p = k.reg('pred', 'p'), ch = k.reg('u32', 'ch'), zv = k.reg('f32', 'zv'), wv = k.reg('f32', 'wv');
  const top = k.label('k');
  k.emit(`mov.f32 ${acc}, 0f00000000`, `mov.u32 ${kk}, 0`);
  k.place(top);
  k.emit(`ld.global.u32 ${ch}, [${k.addr(ir, kk, 4)}]`, `ld.global.f32 ${zv}, [${k.addr(zr, kk, 4)}]`);
  k.emit(`ld.global.f32 ${wv}, [${k.addr(wc, ch, pad8(d) * 4)}]`, `fma.rn.f32 ${acc}, ${zv}, ${wv}, ${acc}`);
  k.emit(`add.u32 ${kk}, ${kk}, 1`, `setp.lt.u32 ${p}, ${kk}, ${K}`, `@${p} bra ${top}`);
  k.emit(`st.global.f32 [${k.addr(k.addr(y, t, pad8(d) * 4), o, 4)}], ${acc}`);
  k.place(done);
  return { name, text: k.render() };
}

// ---------------------------------------------------------------------------------------------
// moc_rows_grad

export const ROWS_GRAD_THREADS = 256;
/** Index entries a thread checks per tile (a tile is ROWS_GRAD_THREADS × this). */
export const ROWS_GRAD_PER_THREAD = 8;
/** Grid of mocRowsGrad: one block a weight row. */
export const mocRowsGradGrid = (rows: number): [number, number, number] => [rows, 1, 1];

/**
 * moc_rows_grad. Params out ([rows, pad8(d)]), a ([T, pad8(K)]), b ([T, pad8(d)]), idx (u64), T (u32).
 * Grid mocRowsGradGrid(rows), block `threads` (a power of two ≥ 32, default ROWS_GRAD_THREADS).
 * Rows never selected are written 0.
 */
export function mocRowsGrad(d: number, K: number, threads = ROWS_GRAD_THREADS): Kernel {
  if (!(threads >= 32 && threads <= 1024 && (threads & (threads - 1)) === 0)) throw new Error(`moc_rows_grad: ${threads} threads is not a power of two in 32..1024`);
  const NT = threads, E = ROWS_GRAD_PER_THREAD, tile = NT * E, CP = Math.ceil(d / NT);
  const name = `train_moc_rows_grad_d${d}_k${K}${threads === ROWS_GRAD_THREADS ? '' : `_t${threads}`}`;
  const k = new KernelBuilder(name, [...ptrs(['out', 'a', 'b', 'idx']), { name: 'T', type: 'u32' }]);
  k.blockSize(NT);
  const out = k.ptrParam('out'), a = k.ptrParam('a'), b = k.ptrParam('b'), idx = k.ptrParam('idx'), T = k.u32Param('T');
  const tid = k.special('%tid.x', 'tid'), r = k.special('%ctaid.x', 'r');
  const n = k.reg('u32', 'n');
  k.emit(`mul.lo.u32 ${n}, ${T}, ${K}`);
  const listT = k.sharedArray('lt', 'u32', tile, 4), listA = k.sharedArray('la', 'f32', tile, 4);
  const acc = Array.from({ length: CP }, () => k.reg('f32', 'acc'));
  const cols = acc.map((_, m) => {
    const c = k.reg('u32', 'col');
    k.emit(`mov.f32 ${acc[m]}, 0f00000000`, `add.u32 ${c}, ${tid}, ${m * NT}`);
    return c;
  });
  const base = k.reg('u32', 'base'), p = k.reg('pred', 'p');
  const top = k.label('tile'), end = k.label('tile_end');
  k.emit(`mov.u32 ${base}, 0`);
  k.place(top);
  k.emit(`setp.ge.u32 ${p}, ${base}, ${n}`, `@${p} bra ${end}`);
  // this thread's entries e = base + tid·E + i: (t, kk) = (e / K, e mod K); match where idx = r
  const e0 = k.reg('u32', 'e0'), cnt = k.reg('u32', 'cnt');
  k.emit(`mad.lo.u32 ${e0}, ${tid}, ${E}, ${base}`, `mov.u32 ${cnt}, 0`);
  const hit = k.regs('pred', 'hit', E), tt = k.regs('u32', 'tt', E), ii = k.regs('u32', 'ii', E);
  for (let i = 0; i < E; i++) {
    const e = k.reg('u32', 'e'), kk = k.reg('u32', 'kk'), ok = k.reg('pred', 'ok'), ch = k.reg('u32', 'ch'), one = k.reg('u32', 'one');
    k.emit(`add.u32 ${e}, ${e0}, ${i}`, `setp.lt.u32 ${ok}, ${e}, ${n}`, `div.u32 ${tt[i]}, ${e}, ${K}`, `rem.u32 ${kk}, ${e}, ${K}`, `mad.lo.u32 ${ii[i]}, ${tt[i]}, ${pad8(K)}, ${kk}`);
    k.emit(`mov.u32 ${ch}, 4294967295`, `@${ok} ld.global.u32 ${ch}, [${k.addr(idx, ii[i]!, 4)}]`, `setp.eq.u32 ${hit[i]}, ${ch}, ${r}`);
    k.emit(`selp.u32 ${one}, 1, 0, ${hit[i]}`, `add.u32 ${cnt}, ${cnt}, ${one}`);
  }
  const [excl, total] = blockScanSimt(k, cnt, tid, NT);
  // the matches, in entry order, into the shared list
  const slot = k.reg('u32', 'slot'), sa = k.reg('u32', 'sla');
  k.emit(`mov.u32 ${slot}, ${excl}`);
  for (let i = 0; i < E; i++) {
    const av = k.reg('f32', 'av');
    k.emit(`@${hit[i]} ld.global.f32 ${av}, [${k.addr(a, ii[i]!, 4)}]`);
    k.emit(`mov.u32 ${sa}, ${listT}`, `mad.lo.u32 ${sa}, ${slot}, 4, ${sa}`, `@${hit[i]} st.shared.u32 [${sa}], ${tt[i]}`);
    k.emit(`mov.u32 ${sa}, ${listA}`, `mad.lo.u32 ${sa}, ${slot}, 4, ${sa}`, `@${hit[i]} st.shared.f32 [${sa}], ${av}`, `@${hit[i]} add.u32 ${slot}, ${slot}, 1`);
  }
  k.emit('bar.sync 0');
  // thread c: acc += a·b[t, c] over the tile's matches in order
  const m = k.reg('u32', 'm'), mt = k.reg('u32', 'mt'), mv = k.reg('f32', 'mv'), la = k.reg('u32', 'lla');
  const mtop = k.label('match'), mend = k.label('match_end');
  k.emit(`mov.u32 ${m}, 0`);
  k.place(mtop);
  k.emit(`setp.ge.u32 ${p}, ${m}, ${total}`, `@${p} bra ${mend}`);
  k.emit(`mov.u32 ${la}, ${listT}`, `mad.lo.u32 ${la}, ${m}, 4, ${la}`, `ld.shared.u32 ${mt}, [${la}]`);
  k.emit(`mov.u32 ${la}, ${listA}`, `mad.lo.u32 ${la}, ${m}, 4, ${la}`, `ld.shared.f32 ${mv}, [${la}]`);
  const brow = k.addr(b, mt, pad8(d) * 4);
  cols.forEach((c, q) => {
    const ok = k.reg('pred', 'cok'), bv = k.reg('f32', 'bv');
    k.emit(`setp.lt.u32 ${ok}, ${c}, ${d}`, `@${ok} ld.global.f32 ${bv}, [${k.addr(brow, c, 4)}]`, `@${ok} fma.rn.f32 ${acc[q]}, ${mv}, ${bv}, ${acc[q]}`);
  });
  k.emit(`add.u32 ${m}, ${m}, 1`, `bra ${mtop}`);
  k.place(mend);
  k.emit('bar.sync 0', `add.u32 ${base}, ${base}, ${tile}`, `bra ${top}`);
  k.place(end);
  const orow = k.addr(out, r, pad8(d) * 4);
  cols.forEach((c, q) => {
    const ok = k.reg('pred', 'cok');
    k.emit(`setp.lt.u32 ${ok}, ${c}, ${d}`, `@${ok} st.global.f32 [${k.addr(orow, c, 4)}], ${acc[q]}`);
  });
  return { name, text: k.render() };
}
