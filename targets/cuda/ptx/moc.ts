// MoC channel kernels: Top-K selection (radix select), grouped a:b selection, and the gathered
// down-projection from W_downᵀ [F, d] (partial sums per slice of kept channels, then a reduction
// that also adds the residual). The gathered up-projection fused with SiLU(G)·U is dense.ts's
// gemv with `gather` and the silu_gate epilogue.
import { KernelBuilder } from './builder.js';
import { CHUNK, elemBytes, pad8, type WeightDType } from './layout.js';
import { loadRaw8, rawToF32 } from './load.js';
import { emitDots, siluTimes, type Kernel } from './dense.js';

/** Threads and channels per thread for selecting over F channels (each thread owns a contiguous run). */
export function selectShape(f: number): { threads: number; perThread: number } {
  // at least 256 threads, so the 2048-bin histogram is at most 8 bins a thread
  const threads = Math.min(1024, Math.max(256, Math.ceil(Math.ceil(f / 8) / 32) * 32));
  return { threads, perThread: Math.ceil(f / threads) };
}

const RADIX_PASSES: [shift: number, bits: number][] = [[21, 11], [10, 11], [0, 10]];
const BINS = 2048;

/**
 * idx[t, 0..K) = the K channels with the largest g[t, :], ascending, ties → lower channel.
 * Keys are the floats' bits made order-preserving as u32 (NaN → 0, the smallest). Three radix passes
 * (11, 11, 10 bits) with a shared histogram find the K-th largest key τ exactly; then every thread
 * takes its keys > τ and, in channel order, as many keys = τ as are still needed, and writes their
 * channels at offsets from a block-wide scan. Grid (1, T), block selectShape(F).threads.
 */
export function topkSelect(f: number, kKeep: number): Kernel {
  const name = `moc_topk_f${f}_k${kKeep}`;
  const { threads: NT, perThread: E } = selectShape(f);
  const k = new KernelBuilder(name, [{ name: 'idx', type: 'u64' }, { name: 'g', type: 'u64' }]);
  k.blockSize(NT);
  const idx = k.ptrParam('idx'), g = k.ptrParam('g');
  const tid = k.special('%tid.x', 'tid'), t = k.special('%ctaid.y', 't');
  const c0 = k.reg('u32', 'c0');
  k.emit(`mul.lo.u32 ${c0}, ${tid}, ${E}`);
  const grow = k.addr(g, t, pad8(f) * 4);
  const keys = k.regs('u32', 'key', E);
  const inRange = k.regs('pred', 'in', E);
  for (let e = 0; e < E; e++) {
    const c = k.reg('u32', 'c'), bits = k.reg('u32', 'bits'), neg = k.reg('pred', 'neg'), nan = k.reg('pred', 'nan'), abs = k.reg('u32', 'abs'), flip = k.reg('u32', 'flip');
    k.emit(`add.u32 ${c}, ${c0}, ${e}`, `setp.lt.u32 ${inRange[e]}, ${c}, ${f}`, `min.u32 ${c}, ${c}, ${f - 1}`);
    k.emit(`ld.global.u32 ${bits}, [${k.addr(grow, c, 4)}]`);
    // order-preserving: negative → ~bits, non-negative → bits | 0x80000000; NaN and out-of-range → 0
    k.emit(`setp.lt.s32 ${neg}, ${bits}, 0`, `not.b32 ${flip}, ${bits}`, `or.b32 ${keys[e]}, ${bits}, -2147483648`, `@${neg} mov.u32 ${keys[e]}, ${flip}`);
    k.emit(`and.b32 ${abs}, ${bits}, 2147483647`, `setp.gt.u32 ${nan}, ${abs}, 2139095040`, `@${nan} mov.u32 ${keys[e]}, 0`, `@!${inRange[e]} mov.u32 ${keys[e]}, 0`);
  }
  const hist = k.sharedArray('hist', 'u32', BINS, 4);
  const shDigit = k.sharedArray('digit', 'u32', 2, 4);
  const prefix = k.reg('u32', 'prefix'), mask = k.reg('u32', 'mask'), krem = k.reg('u32', 'krem');
  k.emit(`mov.u32 ${prefix}, 0`, `mov.u32 ${mask}, 0`, `mov.u32 ${krem}, ${kKeep}`);
  const binsPer = Math.ceil(BINS / NT);
  for (const [shift, bits] of RADIX_PASSES) {
    const dmask = (1 << bits) - 1;
    k.comment(`radix pass: bits ${shift}..${shift + bits - 1}`);
    // zero the histogram
    for (let j = 0; j < binsPer; j++) {
      const b = k.reg('u32', 'b'), p = k.reg('pred', 'p'), a = k.reg('u32', 'ha');
      k.emit(`add.u32 ${b}, ${tid}, ${j * NT}`, `setp.lt.u32 ${p}, ${b}, ${BINS}`, `mov.u32 ${a}, ${hist}`, `mad.lo.u32 ${a}, ${b}, 4, ${a}`, `@${p} st.shared.u32 [${a}], 0`);
    }
    k.emit('bar.sync 0');
    for (let e = 0; e < E; e++) {
      const m = k.reg('u32', 'm'), p = k.reg('pred', 'p'), d = k.reg('u32', 'dg'), a = k.reg('u32', 'ha'), old = k.reg('u32', 'old');
      k.emit(`and.b32 ${m}, ${keys[e]}, ${mask}`, `setp.eq.u32 ${p}, ${m}, ${prefix}`, `and.pred ${p}, ${p}, ${inRange[e]}`);
      k.emit(`shr.u32 ${d}, ${keys[e]}, ${shift}`, `and.b32 ${d}, ${d}, ${dmask}`, `mov.u32 ${a}, ${hist}`, `mad.lo.u32 ${a}, ${d}, 4, ${a}`, `@${p} atom.shared.add.u32 ${old}, [${a}], 1`);
    }
    k.emit('bar.sync 0');
    // this thread's bins [tid·binsPer, …): their counts, and a scan to count everything above them
    const counts = k.regs('u32', 'cnt', binsPer), sum = k.reg('u32', 'sum');
    k.emit(`mov.u32 ${sum}, 0`);
    for (let j = 0; j < binsPer; j++) {
      const b = k.reg('u32', 'b'), p = k.reg('pred', 'p'), a = k.reg('u32', 'ha');
      k.emit(`mad.lo.u32 ${b}, ${tid}, ${binsPer}, ${j}`, `setp.lt.u32 ${p}, ${b}, ${BINS}`, `min.u32 ${b}, ${b}, ${BINS - 1}`, `mov.u32 ${a}, ${hist}`, `mad.lo.u32 ${a}, ${b}, 4, ${a}`);
      k.emit(`ld.shared.u32 ${counts[j]}, [${a}]`, `@!${p} mov.u32 ${counts[j]}, 0`, `add.u32 ${sum}, ${sum}, ${counts[j]}`);
    }
    const [excl, total] = k.blockScan(sum, tid, NT);
    // bin b wins when (count above b) < krem ≤ (count above b) + hist[b]
    const upto = k.reg('u32', 'upto');
    k.emit(`mov.u32 ${upto}, ${excl}`);
    for (let j = 0; j < binsPer; j++) {
      const above = k.reg('u32', 'above'), hi = k.reg('u32', 'hi'), p = k.reg('pred', 'p'), q = k.reg('pred', 'q'), b = k.reg('u32', 'b'), nk = k.reg('u32', 'nk');
      k.emit(`add.u32 ${upto}, ${upto}, ${counts[j]}`, `sub.u32 ${above}, ${total}, ${upto}`, `add.u32 ${hi}, ${above}, ${counts[j]}`);
      k.emit(`setp.lt.u32 ${p}, ${above}, ${krem}`, `setp.ge.u32 ${q}, ${hi}, ${krem}`, `and.pred ${p}, ${p}, ${q}`, `setp.ne.u32 ${q}, ${counts[j]}, 0`, `and.pred ${p}, ${p}, ${q}`);
      k.emit(`mad.lo.u32 ${b}, ${tid}, ${binsPer}, ${j}`, `sub.u32 ${nk}, ${krem}, ${above}`, `@${p} st.shared.u32 [${shDigit}], ${b}`, `@${p} st.shared.u32 [${shDigit}+4], ${nk}`);
    }
    k.emit('bar.sync 0');
    const digit = k.reg('u32', 'digit');
    k.emit(`ld.shared.u32 ${digit}, [${shDigit}]`, `ld.shared.u32 ${krem}, [${shDigit}+4]`, `shl.b32 ${digit}, ${digit}, ${shift}`, `or.b32 ${prefix}, ${prefix}, ${digit}`, `or.b32 ${mask}, ${mask}, ${dmask << shift}`);
    k.emit('bar.sync 0');
  }
  // prefix = τ, krem = how many keys equal to τ to take (the lowest channels first)
  const nEq = k.reg('u32', 'neq');
  k.emit(`mov.u32 ${nEq}, 0`);
  const isGt = k.regs('pred', 'gt', E), isEq = k.regs('pred', 'eq', E);
  for (let e = 0; e < E; e++) {
    k.emit(`setp.gt.u32 ${isGt[e]}, ${keys[e]}, ${prefix}`, `and.pred ${isGt[e]}, ${isGt[e]}, ${inRange[e]}`, `setp.eq.u32 ${isEq[e]}, ${keys[e]}, ${prefix}`, `and.pred ${isEq[e]}, ${isEq[e]}, ${inRange[e]}`, `@${isEq[e]} add.u32 ${nEq}, ${nEq}, 1`);
  }
  const [eqBefore] = k.blockScan(nEq, tid, NT);
  const taken = k.regs('pred', 'take', E), nSel = k.reg('u32', 'nsel'), seen = k.reg('u32', 'seen');
  k.emit(`mov.u32 ${nSel}, 0`, `mov.u32 ${seen}, ${eqBefore}`);
  for (let e = 0; e < E; e++) {
    const q = k.reg('pred', 'q');
    k.emit(`setp.lt.u32 ${q}, ${seen}, ${krem}`, `and.pred ${q}, ${q}, ${isEq[e]}`, `@${isEq[e]} add.u32 ${seen}, ${seen}, 1`, `or.pred ${taken[e]}, ${isGt[e]}, ${q}`, `@${taken[e]} add.u32 ${nSel}, ${nSel}, 1`);
  }
  const [outPos] = k.blockScan(nSel, tid, NT);
  const orow = k.addr(idx, t, pad8(kKeep) * 4);
  for (let e = 0; e < E; e++) {
    const c = k.reg('u32', 'c');
    k.emit(`add.u32 ${c}, ${c0}, ${e}`, `@${taken[e]} st.global.u32 [${k.addr(orow, outPos, 4)}], ${c}`, `@${taken[e]} add.u32 ${outPos}, ${outPos}, 1`);
  }
  return { name, text: k.render() };
}

/**
 * Grouped selection a:b: in each block of b consecutive channels keep the a largest (ties → lower
 * channel; a last, shorter block keeps min(a, its length)); output ascending. One thread per block.
 * b ≤ 64. Grid (ceil(blocks/128), T), block 128.
 */
export function patternSelect(f: number, a: number, b: number): Kernel {
  if (b > 64) throw new Error(`pattern ${a}:${b}: the CUDA target supports blocks of at most 64 channels`);
  const name = `moc_pattern_f${f}_a${a}_b${b}`;
  const blocks = Math.ceil(f / b);
  const kOut = a * Math.floor(f / b) + Math.min(a, f % b);
  const k = new KernelBuilder(name, [{ name: 'idx', type: 'u64' }, { name: 'g', type: 'u64' }]);
  const idx = k.ptrParam('idx'), g = k.ptrParam('g');
  const tid = k.special('%tid.x', 'tid'), bx = k.special('%ctaid.x', 'bx'), t = k.special('%ctaid.y', 't');
  const bi = k.reg('u32', 'bi'), p = k.reg('pred', 'p'), done = k.label('done');
  k.emit(`mad.lo.u32 ${bi}, ${bx}, 128, ${tid}`, `setp.ge.u32 ${p}, ${bi}, ${blocks}`, `@${p} bra ${done}`);
  const start = k.reg('u32', 'start'), len = k.reg('u32', 'len'), keep = k.reg('u32', 'keep');
  k.emit(`mul.lo.u32 ${start}, ${bi}, ${b}`, `sub.u32 ${len}, ${f}, ${start}`, `min.u32 ${len}, ${len}, ${b}`, `min.u32 ${keep}, ${len}, ${a}`);
  const grow = k.addr(k.addr(g, t, pad8(f) * 4), start, 4);
  const chosen = k.reg('b64', 'chosen'), r = k.reg('u32', 'r');
  k.emit(`mov.b64 ${chosen}, 0`, `mov.u32 ${r}, 0`);
  const outer = k.label('pick'), outerDone = k.label('pickdone');
  k.place(outer);
  k.emit(`setp.ge.u32 ${p}, ${r}, ${keep}`, `@${p} bra ${outerDone}`);
  const best = k.reg('f32', 'best'), bj = k.reg('u32', 'bj'), j = k.reg('u32', 'j'), v = k.reg('f32', 'v');
  k.emit(`mov.f32 ${best}, 0fFF800000`, `mov.u32 ${bj}, -1`, `mov.u32 ${j}, 0`);
  const inner = k.label('scan'), innerDone = k.label('scandone'), next = k.label('next');
  k.place(inner);
  k.emit(`setp.ge.u32 ${p}, ${j}, ${len}`, `@${p} bra ${innerDone}`);
  const bit = k.reg('b64', 'bit'), taken = k.reg('b64', 'tk'), q = k.reg('pred', 'q'), first = k.reg('pred', 'first');
  k.emit(`shl.b64 ${bit}, 1, ${j}`, `and.b64 ${taken}, ${chosen}, ${bit}`, `setp.ne.b64 ${q}, ${taken}, 0`, `@${q} bra ${next}`);
  // NaN counts as the smallest value: it is only taken once nothing else is left
  k.emit(`ld.global.f32 ${v}, [${k.addr(grow, j, 4)}]`, `testp.notanumber.f32 ${q}, ${v}`, `@${q} mov.f32 ${v}, 0fFF800000`);
  k.emit(`setp.gt.f32 ${q}, ${v}, ${best}`, `setp.eq.u32 ${first}, ${bj}, -1`, `or.pred ${q}, ${q}, ${first}`, `@${q} mov.f32 ${best}, ${v}`, `@${q} mov.u32 ${bj}, ${j}`);
  k.place(next);
  k.emit(`add.u32 ${j}, ${j}, 1`, `bra ${inner}`);
  k.place(innerDone);
  k.emit(`shl.b64 ${bit}, 1, ${bj}`, `or.b64 ${chosen}, ${chosen}, ${bit}`, `add.u32 ${r}, ${r}, 1`, `bra ${outer}`);
  k.place(outerDone);
  // write the chosen channels in channel order at bi·a
  const o = k.reg('u32', 'o');
  k.emit(`mul.lo.u32 ${o}, ${bi}, ${a}`, `mov.u32 ${j}, 0`);
  const orow = k.addr(idx, t, pad8(kOut) * 4);
  const w = k.label('write'), wDone = k.label('writedone'), wNext = k.label('wnext');
  k.place(w);
  k.emit(`setp.ge.u32 ${p}, ${j}, ${len}`, `@${p} bra ${wDone}`, `shl.b64 ${bit}, 1, ${j}`, `and.b64 ${taken}, ${chosen}, ${bit}`, `setp.eq.b64 ${q}, ${taken}, 0`, `@${q} bra ${wNext}`);
  const c = k.reg('u32', 'c');
  k.emit(`add.u32 ${c}, ${start}, ${j}`, `st.global.u32 [${k.addr(orow, o, 4)}], ${c}`, `add.u32 ${o}, ${o}, 1`);
  k.place(wNext);
  k.emit(`add.u32 ${j}, ${j}, 1`, `bra ${w}`);
  k.place(wDone);
  k.place(done);
  return { name, text: k.render() };
}

// 128 threads (1024 columns) a block and up to 128 slices of kept channels: enough blocks to
// keep the whole GPU reading (256 blocks at d=2048, K=1024; the first version had 64).
export const DOWN_THREADS = 128;

/** How the kept channels are split across blocks for the down projection. */
export function downSplit(kKeep: number): { slices: number; perSlice: number } {
  const slices = Math.min(128, Math.max(1, Math.ceil(kKeep / 8)));
  return { slices, perSlice: Math.ceil(kKeep / slices) };
}

/**
 * partial[t, s, :] = Σ_{k in slice s} z[t, k] · W_downᵀ[idx[t, k], :]. Each thread owns 8 output
 * columns (one 16-byte load per kept channel), 4 channels in flight.
 * Grid (ceil(d/8 / 256), slices, T), block 256.
 */
export function downPartial(dtype: WeightDType, d: number, kKeep: number): Kernel {
  const name = `moc_down_partial_${dtype}_d${d}_k${kKeep}`;
  const { slices, perSlice } = downSplit(kKeep);
  const U = 4;
  const k = new KernelBuilder(name, [{ name: 'partial', type: 'u64' }, { name: 'z', type: 'u64' }, { name: 'w', type: 'u64' }, { name: 'idx', type: 'u64' }]);
  const partial = k.ptrParam('partial'), z = k.ptrParam('z'), w = k.ptrParam('w'), idx = k.ptrParam('idx');
  const tid = k.special('%tid.x', 'tid'), bx = k.special('%ctaid.x', 'bx'), sl = k.special('%ctaid.y', 'slice'), t = k.special('%ctaid.z', 't');
  const cc = k.reg('u32', 'cc'), p = k.reg('pred', 'p'), done = k.label('done');
  const ld = pad8(d), eb = elemBytes(dtype);
  k.emit(`mad.lo.u32 ${cc}, ${bx}, ${DOWN_THREADS}, ${tid}`, `setp.ge.u32 ${p}, ${cc}, ${ld / CHUNK}`, `@${p} bra ${done}`);
  const kBegin = k.reg('u32', 'kb'), kEnd = k.reg('u32', 'ke');
  k.emit(`mul.lo.u32 ${kBegin}, ${sl}, ${perSlice}`, `add.u32 ${kEnd}, ${kBegin}, ${perSlice}`, `min.u32 ${kEnd}, ${kEnd}, ${kKeep}`);
  const zrow = k.addr(z, t, pad8(kKeep) * 4), irow = k.addr(idx, t, pad8(kKeep) * 4);
  const colOff = k.reg('u64', 'col');
  k.emit(`mul.wide.u32 ${colOff}, ${cc}, ${CHUNK * eb}`);
  const acc = k.regs('f32', 'acc', 8);
  for (const a of acc) k.emit(`mov.f32 ${a}, 0f00000000`);
  const kk = k.reg('u32', 'k');
  k.emit(`mov.u32 ${kk}, ${kBegin}`);
  const step = (n: number) => {
    const zs: string[] = [], ws: string[][] = [];
    for (let u = 0; u < n; u++) {
      const ku = k.reg('u32', 'ku'), ch = k.reg('u32', 'ch'), zv = k.reg('f32', 'z');
      k.emit(`add.u32 ${ku}, ${kk}, ${u}`);
      const ia = k.addr(irow, ku, 4), za = k.addr(zrow, ku, 4);
      k.emit(`ld.global.u32 ${ch}, [${ia}]`, `ld.global.f32 ${zv}, [${za}]`);
      const wa = k.addr(w, ch, ld * eb);
      k.emit(`add.s64 ${wa}, ${wa}, ${colOff}`);
      zs.push(zv);
      ws.push(rawToF32(k, dtype, loadRaw8(k, dtype, wa)));
    }
    for (let u = 0; u < n; u++) for (let e = 0; e < 8; e++) k.emit(`fma.rn.f32 ${acc[e]}, ${zs[u]}, ${ws[u]![e]}, ${acc[e]}`);
  };
  const left = k.reg('u32', 'left'), main = k.label('main'), rest = k.label('rest'), restDone = k.label('restdone');
  k.place(main);
  k.emit(`sub.u32 ${left}, ${kEnd}, ${kk}`, `setp.lt.u32 ${p}, ${left}, ${U}`, `@${p} bra ${rest}`);
  step(U);
  k.emit(`add.u32 ${kk}, ${kk}, ${U}`, `bra ${main}`);
  k.place(rest);
  k.emit(`setp.ge.u32 ${p}, ${kk}, ${kEnd}`, `@${p} bra ${restDone}`);
  step(1);
  k.emit(`add.u32 ${kk}, ${kk}, 1`, `bra ${rest}`);
  k.place(restDone);
  const prow = k.reg('u32', 'prow');
  k.emit(`mad.lo.u32 ${prow}, ${t}, ${slices}, ${sl}`);
  const pa = k.addr(k.addr(partial, prow, ld * 4), cc, 32);
  k.emit(`st.global.v4.f32 [${pa}], {${acc.slice(0, 4).join(', ')}}`, `st.global.v4.f32 [${pa}+16], {${acc.slice(4).join(', ')}}`);
  k.place(done);
  return { name, text: k.render() };
}

const REDUCE_GROUPS = 4;
const REDUCE_COLS = 64;
export const REDUCE_THREADS = REDUCE_GROUPS * REDUCE_COLS;
export const reduceGrid = (d: number): number => Math.ceil(d / REDUCE_COLS);

/**
 * y[t, j] += Σ_s partial[t, s, j] (the residual add fused). A block sums 64 columns: 4 groups of
 * threads take every 4th slice (all their loads in flight), then one group adds the 4 group sums
 * in a fixed order, so the result is deterministic. Grid (reduceGrid(d), T), block 256.
 */
export function downReduce(d: number, slices: number): Kernel {
  const name = `moc_reduce_d${d}_s${slices}`;
  const k = new KernelBuilder(name, [{ name: 'y', type: 'u64' }, { name: 'partial', type: 'u64' }]);
  k.blockSize(REDUCE_THREADS);
  const y = k.ptrParam('y'), partial = k.ptrParam('partial');
  const tid = k.special('%tid.x', 'tid'), bx = k.special('%ctaid.x', 'bx'), t = k.special('%ctaid.y', 't');
  k.gridSync();
  const j = k.reg('u32', 'j'), grp = k.reg('u32', 'grp'), col = k.reg('u32', 'col'), p = k.reg('pred', 'p');
  k.emit(`and.b32 ${col}, ${tid}, ${REDUCE_COLS - 1}`, `shr.u32 ${grp}, ${tid}, 6`, `mad.lo.u32 ${j}, ${bx}, ${REDUCE_COLS}, ${col}`, `min.u32 ${j}, ${j}, ${d - 1}`);
  const ld = pad8(d);
  const base = k.addr(k.addr(k.addr(partial, t, slices * ld * 4), grp, ld * 4), j, 4);
  const vals: string[] = [];
  for (let s = 0; s * REDUCE_GROUPS < slices; s++) {
    const v = k.reg('f32', 'v'), q = k.reg('pred', 'q');
    // slice grp + 4s exists for every group only while 4s + 3 < slices
    k.emit(`mov.f32 ${v}, 0f00000000`);
    if (s * REDUCE_GROUPS + REDUCE_GROUPS - 1 < slices) k.emit(`ld.global.f32 ${v}, [${base}+${s * REDUCE_GROUPS * ld * 4}]`);
    else k.emit(`setp.lt.u32 ${q}, ${grp}, ${slices - s * REDUCE_GROUPS}`, `@${q} ld.global.f32 ${v}, [${base}+${s * REDUCE_GROUPS * ld * 4}]`);
    vals.push(v);
  }
  const sum = k.reg('f32', 'sum');
  k.emit(`mov.f32 ${sum}, 0f00000000`);
  for (const v of vals) k.emit(`add.f32 ${sum}, ${sum}, ${v}`);
  const sh = k.sharedArray('red', 'f32', REDUCE_THREADS, 4);
  const sa = k.reg('u32', 'sa');
  k.emit(`mov.u32 ${sa}, ${sh}`, `mad.lo.u32 ${sa}, ${tid}, 4, ${sa}`, `st.shared.f32 [${sa}], ${sum}`, 'bar.sync 0');
  const done = k.label('done'), jj = k.reg('u32', 'jj');
  k.emit(`setp.ne.u32 ${p}, ${grp}, 0`, `@${p} bra ${done}`, `mad.lo.u32 ${jj}, ${bx}, ${REDUCE_COLS}, ${col}`, `setp.ge.u32 ${p}, ${jj}, ${d}`, `@${p} bra ${done}`);
  const total = k.reg('f32', 'total'), v = k.reg('f32', 'gv');
  k.emit(`mov.f32 ${total}, 0f00000000`);
  for (let g = 0; g < REDUCE_GROUPS; g++) k.emit(`ld.shared.f32 ${v}, [${sa}+${g * REDUCE_COLS * 4}]`, `add.f32 ${total}, ${total}, ${v}`);
  const ya = k.addr(k.addr(y, t, ld * 4), jj, 4);
  k.emit(`ld.global.f32 ${v}, [${ya}]`, `add.f32 ${total}, ${total}, ${v}`, `st.global.f32 [${ya}], ${total}`);
  k.place(done);
  return { name, text: k.render() };
}

/** How the fused up+down kernel splits K kept channels: rowsPerWarp channels a warp, 8 warps a block, ≤ ~128 blocks. */
export function upDownSplit(kKeep: number): { rowsPerWarp: number; perBlock: number; blocks: number } {
  const rowsPerWarp = Math.max(1, Math.ceil(kKeep / (8 * 128)));
  const perBlock = 8 * rowsPerWarp;
  return { rowsPerWarp, perBlock, blocks: Math.ceil(kKeep / perBlock) };
}

export interface UpDownSpec {
  dtype: WeightDType;
  d: number;
  f: number;
  kKeep: number;
  /** x is the residual stream: RMSNorm is applied on the fly (see GemvSpec.norm). */
  norm?: { dtype: WeightDType; eps: number };
}

/**
 * The MoC FFN after selection, in one launch: block b takes kept channels [b·P, (b+1)·P); its
 * warps compute z_k = SiLU(G[idx_k]) · (W_up[idx_k] · x) (gathered rows, one warp per channel),
 * put them in shared memory, then every thread multiplies its 8-column slices of the gathered
 * W_downᵀ rows by z and writes this block's partial sums: partial[t, b, :]. The first 8 channels'
 * W_down rows are requested before the up projection starts, so both weight streams are in flight
 * at once. downReduce(d, blocks) finishes (and adds the residual).
 * Params: partial, x, wu [F, d], wd (W_downᵀ [F, d]), idx, g, [nw]. Grid (blocks, T), block 256.
 */
export function mocUpDown(s: UpDownSpec): Kernel {
  const { dtype, d, f, kKeep } = s;
  const { rowsPerWarp: RW, perBlock: P } = upDownSplit(kKeep);
  const name = `moc_updown_${dtype}_d${d}_f${f}_k${kKeep}${s.norm ? `_n${s.norm.dtype}` : ''}`;
  const params = ['partial', 'x', 'wu', 'wd', 'idx', 'g', ...(s.norm ? ['nw'] : [])].map((n) => ({ name: n, type: 'u64' as const }));
  const k = new KernelBuilder(name, params);
  k.blockSize(256);
  const partial = k.ptrParam('partial'), x = k.ptrParam('x'), wu = k.ptrParam('wu'), wd = k.ptrParam('wd'), idx = k.ptrParam('idx'), g = k.ptrParam('g');
  const nw = s.norm ? k.ptrParam('nw') : undefined;
  const tid = k.special('%tid.x', 'tid'), b = k.special('%ctaid.x', 'b'), t = k.special('%ctaid.y', 't');
  k.gridSync();
  const lane = k.reg('u32', 'lane'), warp = k.reg('u32', 'warp'), k0 = k.reg('u32', 'k0');
  k.emit(`and.b32 ${lane}, ${tid}, 31`, `shr.u32 ${warp}, ${tid}, 5`, `mul.lo.u32 ${k0}, ${b}, ${P}`);
  const ld = pad8(d), eb = elemBytes(dtype);
  const irow = k.addr(idx, t, pad8(kKeep) * 4);
  const colChunks = ld / CHUNK;
  const perThread = Math.ceil(colChunks / 256);
  // this thread's column chunks (clamped; the store is guarded)
  const cols: string[] = [], colOk: string[] = [];
  for (let q = 0; q < perThread; q++) {
    const cc = k.reg('u32', 'cc'), ok = k.reg('pred', 'colok');
    k.emit(`add.u32 ${cc}, ${tid}, ${q * 256}`, `setp.lt.u32 ${ok}, ${cc}, ${colChunks}`, `min.u32 ${cc}, ${cc}, ${colChunks - 1}`);
    cols.push(cc); colOk.push(ok);
  }
  /** Issues the loads of W_downᵀ rows idx[k0 + c0 .. c0+8) at this thread's columns: raw[c][q]. */
  const loadDown = (c0: number): string[][][] => {
    const raw: string[][][] = [];
    for (let c = 0; c < 8; c++) {
      const kc = k.reg('u32', 'kc'), ch = k.reg('u32', 'ch');
      k.emit(`add.u32 ${kc}, ${k0}, ${c0 + c}`, `min.u32 ${kc}, ${kc}, ${kKeep - 1}`);
      k.emit(`ld.global.u32 ${ch}, [${k.addr(irow, kc, 4)}]`);
      const row = k.addr(wd, ch, ld * eb);
      raw.push(cols.map((cc) => loadRaw8(k, dtype, k.addr(row, cc, CHUNK * eb))));
    }
    return raw;
  };
  const first = loadDown(0);

  // up projection: warp w takes channels k0 + w·RW + r
  const upRows: string[] = [], upOk: string[] = [], upCh: string[] = [];
  for (let r = 0; r < RW; r++) {
    const kk = k.reg('u32', 'kk'), ok = k.reg('pred', 'upok'), ch = k.reg('u32', 'uch');
    k.emit(`mad.lo.u32 ${kk}, ${warp}, ${RW}, ${k0}`, `add.u32 ${kk}, ${kk}, ${r}`, `setp.lt.u32 ${ok}, ${kk}, ${kKeep}`, `min.u32 ${kk}, ${kk}, ${kKeep - 1}`);
    k.emit(`ld.global.u32 ${ch}, [${k.addr(irow, kk, 4)}]`);
    upRows.push(k.addr(wu, ch, ld * eb)); upOk.push(ok); upCh.push(ch);
  }
  const xrow = k.addr(x, t, ld * 4);
  const [dots] = emitDots(k, { dtype, inDim: d, norm: s.norm, unroll: 8 }, [upRows], xrow, nw, lane);
  const zs = k.sharedArray('z', 'f32', P, 4);
  const grow = k.addr(g, t, pad8(f) * 4);
  const lead = k.reg('pred', 'lead'), za = k.reg('u32', 'za');
  k.emit(`setp.eq.u32 ${lead}, ${lane}, 0`);
  for (let r = 0; r < RW; r++) {
    const gv = k.reg('f32', 'gv'), z = dots![r]!;
    k.emit(`ld.global.f32 ${gv}, [${k.addr(grow, upCh[r]!, 4)}]`);
    siluTimes(k, gv, z);
    k.emit(`selp.f32 ${z}, ${z}, 0f00000000, ${upOk[r]}`); // channels past K contribute nothing
    k.emit(`mov.u32 ${za}, ${zs}`, `mad.lo.u32 ${za}, ${warp}, ${RW * 4}, ${za}`, `@${lead} st.shared.f32 [${za}+${r * 4}], ${z}`);
  }
  k.emit('bar.sync 0');

  // down projection: acc[q][e] = Σ_c z_c · W_downᵀ[idx_c, 8·cols[q] + e]
  const acc = cols.map(() => k.regs('f32', 'acc', 8));
  for (const a of acc.flat()) k.emit(`mov.f32 ${a}, 0f00000000`);
  for (let c0 = 0; c0 < P; c0 += 8) {
    const raw = c0 === 0 ? first : loadDown(c0);
    for (let c = 0; c < 8; c++) {
      const zc = k.reg('f32', 'zc');
      k.emit(`ld.shared.f32 ${zc}, [${zs}+${(c0 + c) * 4}]`);
      cols.forEach((_, q) => {
        const wv = rawToF32(k, dtype, raw[c]![q]!);
        for (let e = 0; e < 8; e++) k.emit(`fma.rn.f32 ${acc[q]![e]}, ${zc}, ${wv[e]}, ${acc[q]![e]}`);
      });
    }
  }
  const prow = k.reg('u32', 'prow');
  k.emit(`mad.lo.u32 ${prow}, ${t}, ${upDownSplit(kKeep).blocks}, ${b}`);
  const pbase = k.addr(partial, prow, ld * 4);
  cols.forEach((cc, q) => {
    const pa = k.addr(pbase, cc, 32);
    k.emit(`@${colOk[q]} st.global.v4.f32 [${pa}], {${acc[q]!.slice(0, 4).join(', ')}}`, `@${colOk[q]} st.global.v4.f32 [${pa}+16], {${acc[q]!.slice(4).join(', ')}}`);
  });
  return { name, text: k.render() };
}
