// MoC channel kernels: Top-K selection (radix select), grouped a:b selection, and the gathered
// down-projection from W_downᵀ [F, d] (partial sums per slice of kept channels, then a reduction
// that also adds the residual). The gathered up-projection fused with SiLU(G)·U is dense.ts's
// gemv with `gather` and the silu_gate epilogue.
import { KernelBuilder } from './builder.js';
import { CHUNK, elemBytes, pad8, type WeightDType } from './layout.js';
import { loadRaw8, rawToF32 } from './load.js';
import { emitDots, siluTimes, type Kernel } from './dense.js';

/**
 * Threads and channels per thread for selecting over F channels. Each thread owns a contiguous run
 * of `perThread` channels, a multiple of 4 so that it is read with 16-byte loads; as few channels a
 * thread as 1024 threads allow, and at least 256 threads to share the per-block work.
 */
export function selectShape(f: number): { threads: number; perThread: number } {
  const perThread = 4 * Math.ceil(f / (4 * 1024));
  const threads = Math.max(256, Math.ceil(Math.ceil(f / perThread) / 32) * 32);
  return { threads, perThread };
}

/**
 * The Top-K kernel's order-preserving key of a float, in TypeScript (the tests and the GPU check
 * use it to say what the kernel must do): negative → ~bits, non-negative → bits | 0x80000000, with
 * the ref's order (targets/ref/kernels.ts mocSelect, and WGSL's selKey): NaN ranks as −∞ (key
 * 0x007FFFFF) and −0 as +0, so those pairs tie and ties go to the lower channel. Key 0 is below every
 * float's: the kernel gives it to the channels past F.
 */
export function selectKey(x: number): number {
  keyF32[0] = x;
  const b = keyU32[0]!;
  if ((b & 0x7fffffff) > 0x7f800000) return NEG_INF_KEY;
  if (b === 0x80000000) return 0x80000000;
  return (b & 0x80000000 ? ~b : b | 0x80000000) >>> 0;
}
/** The key of −∞ (and of NaN). */
const NEG_INF_KEY = 0x007fffff;

/** The float a key stands for (selectKey's inverse where it is one: NaN's key gives −∞, −0's +0), as the kernel writes τ. */
export function selectKeyValue(key: number): number {
  keyU32[0] = key >= 0x80000000 ? key & 0x7fffffff : ~key >>> 0;
  return keyF32[0]!;
}
const keyF32 = new Float32Array(1), keyU32 = new Uint32Array(keyF32.buffer);

/** The radix passes over the 32-bit keys, high digit first: [shift, bits]. */
export const RADIX_PASSES: readonly (readonly [shift: number, bits: number])[] = [[21, 11], [10, 11], [0, 10]];
/** Each pass's bins are summed in 32 segments (one per lane), then the winning segment bin by bin. */
export const SEGMENTS = 32;
/** The selection counts keys > τ and keys = τ in 16-bit halves of one u32. */
export const MAX_SELECT_CHANNELS = 65535;

/**
 * idx[t, 0..K) = the K channels with the largest g[t, :], ascending, ties → lower channel.
 * Keys are the floats' bits made order-preserving as u32 (selectKey: the ref's order). Three radix passes
 * (11, 11, 10 bits) find the K-th largest key τ exactly, each with its own shared histogram (all
 * zeroed once) and two barriers: one after the histogram, one after 32 segment totals; then every
 * warp finds the winning segment and bin itself with shuffles, so none waits for a broadcast. Last,
 * one block-wide scan of (keys > τ, keys = τ) per thread gives each thread where to write its keys
 * > τ and, in channel order, as many keys = τ as are still needed. 8 barriers in all.
 * With `tau`, the last token's τ (as a float: the K-th largest value) is also written to tau[0],
 * for the next call's fused up·down kernel to warm the L2 from (UpDownSpec.warm).
 * Grid (1, T), block selectShape(F).threads.
 */
export function topkSelect(f: number, kKeep: number, opts: { tau?: boolean } = {}): Kernel {
  checkTopk(f, kKeep);
  const name = `moc_topk_f${f}_k${kKeep}${opts.tau ? '_tau' : ''}`;
  const { threads: NT } = selectShape(f);
  const k = new KernelBuilder(name, [{ name: 'idx', type: 'u64' }, { name: 'g', type: 'u64' }, ...(opts.tau ? [{ name: 'tau', type: 'u64' as const }] : [])]);
  k.blockSize(NT);
  const idx = k.ptrParam('idx'), g = k.ptrParam('g');
  const tid = k.special('%tid.x', 'tid'), t = k.special('%ctaid.y', 't');
  emitTopkSelect(k, { f, kKeep, shape: selectShape(f), tid, t, idx, g, tau: opts.tau ? () => k.ptrParam('tau') : undefined, load: 'ld.global', gridSync: true });
  return { name, text: k.render() };
}

/** Top-K's limits (topkSelect, and the gate GEMV that runs it in its last block: gate-topk.ts). */
export function checkTopk(f: number, kKeep: number): void {
  if (f > MAX_SELECT_CHANNELS) throw new Error(`Top-K over ${f} channels: the CUDA target selects over at most ${MAX_SELECT_CHANNELS} channels`);
  if (!Number.isInteger(kKeep) || kKeep < 1 || kKeep > f) throw new Error(`Top-K: K = ${kKeep} is not in 1..${f}`);
}

/** The Top-K shape for a block of `threads` threads fixed by someone else (gate-topk.ts: the GEMV's 256): as few channels a thread as they allow. */
export const selectShapeFor = (f: number, threads: number): { threads: number; perThread: number } => ({ threads, perThread: 4 * Math.ceil(f / (4 * threads)) });

/**
 * topkSelect's body for row t of g, emitted into kernel k whose blocks have shape.threads threads
 * (shape.threads × shape.perThread ≥ F): by topkSelect itself (its own selectShape(F)) and by the
 * gate GEMV's last block of a row (gate-topk.ts, 256 threads, more channels a thread). The selected
 * set is fixed by τ and krem, and each kept channel is written at the count of kept channels below
 * it, so any shape writes the same idx row (ascending) and the same τ. `load` reads g (ld.global.cg
 * where other blocks of the same launch wrote it); with `gridSync` the wait for the previous kernel
 * comes after the histograms are zeroed (topkSelect's own; the GEMV has waited already). `tau`, a
 * getter so that the parameter is loaded where topkSelect always loaded it.
 */
export function emitTopkSelect(k: KernelBuilder, o: { f: number; kKeep: number; shape: { threads: number; perThread: number }; tid: string; t: string; idx: string; g: string; tau?: () => string; load: 'ld.global' | 'ld.global.cg'; gridSync: boolean }): void {
  const { f, kKeep, tid, t, idx, g } = o;
  const name = k.name;
  const { threads: NT, perThread: E } = o.shape;
  if (E % 4 !== 0 || NT % 32 !== 0 || NT > 1024 || NT * E < f) throw new Error(`PTX generator bug in ${name}: select shape ${NT}×${E}`);
  const W = NT / 32;
  const lane = k.reg('u32', 'lane'), warp = k.reg('u32', 'warp'), lane0 = k.reg('pred', 'lane0');
  k.emit(`and.b32 ${lane}, ${tid}, 31`, `shr.u32 ${warp}, ${tid}, 5`, `setp.eq.u32 ${lane0}, ${lane}, 0`);

  // one histogram per pass, back to back (word offsets), and one array of segment totals per pass
  const histOff = RADIX_PASSES.map((_, p) => RADIX_PASSES.slice(0, p).reduce((n, [, bits]) => n + (1 << bits), 0));
  const histWords = histOff[histOff.length - 1]! + (1 << RADIX_PASSES[RADIX_PASSES.length - 1]![1]);
  const hist = k.sharedArray('hist', 'u32', histWords, 16);
  const segTot = RADIX_PASSES.map(() => k.sharedArray('seg', 'u32', SEGMENTS, 4));
  const hb = k.reg('u32', 'hb'), zero = k.reg('u32', 'zero');
  k.emit(`mov.u32 ${hb}, ${hist}`, `mov.u32 ${zero}, 0`);
  k.comment('zero all histograms (before the grid dependency: they are this block\'s own)');
  for (let j = 0; j * NT < histWords / 4; j++) {
    const i = k.reg('u32', 'zi'), a = k.reg('u32', 'za'), p = k.reg('pred', 'p');
    k.emit(`add.u32 ${i}, ${tid}, ${j * NT}`, `setp.lt.u32 ${p}, ${i}, ${histWords / 4}`, `mad.lo.u32 ${a}, ${i}, 16, ${hb}`);
    k.emit(`@${p} st.shared.v4.u32 [${a}], {${zero}, ${zero}, ${zero}, ${zero}}`);
  }
  if (o.gridSync) k.gridSync();

  // this thread's channels c0 .. c0+E-1: 16-byte loads, all in flight before the barrier. A run
  // past F reads the row's last chunk again (inside the padded row) and its keys are masked.
  const c0 = k.reg('u32', 'c0');
  k.emit(`mul.lo.u32 ${c0}, ${tid}, ${E}`);
  const grow = k.addr(g, t, pad8(f) * 4);
  const bits = k.regs('u32', 'bits', E);
  const lastChunk = Math.floor((f - 1) / 4) * 4;
  for (let j = 0; j < E / 4; j++) {
    const c = k.reg('u32', 'c');
    k.emit(`add.u32 ${c}, ${c0}, ${4 * j}`, `min.u32 ${c}, ${c}, ${lastChunk}`);
    k.emit(`${o.load}.v4.u32 {${bits.slice(4 * j, 4 * j + 4).join(', ')}}, [${k.addr(grow, c, 4)}]`);
  }
  k.emit('bar.sync 0'); // the histograms are zero
  const keys = k.regs('u32', 'key', E);
  const inRange = k.regs('pred', 'in', E);
  for (let e = 0; e < E; e++) {
    const c = k.reg('u32', 'c'), neg = k.reg('pred', 'neg'), nan = k.reg('pred', 'nan'), abs = k.reg('u32', 'abs'), flip = k.reg('u32', 'flip');
    k.emit(`add.u32 ${c}, ${c0}, ${e}`, `setp.lt.u32 ${inRange[e]}, ${c}, ${f}`);
    // selectKey: negative → ~bits, non-negative → bits | 0x80000000; −0 → +0's key, NaN → −∞'s; past F → 0
    const mz = k.reg('pred', 'mz');
    k.emit(`setp.lt.s32 ${neg}, ${bits[e]}, 0`, `not.b32 ${flip}, ${bits[e]}`, `or.b32 ${keys[e]}, ${bits[e]}, -2147483648`, `@${neg} mov.u32 ${keys[e]}, ${flip}`);
    k.emit(`setp.eq.u32 ${mz}, ${bits[e]}, 2147483648`, `@${mz} mov.u32 ${keys[e]}, 2147483648`);
    k.emit(`and.b32 ${abs}, ${bits[e]}, 2147483647`, `setp.gt.u32 ${nan}, ${abs}, 2139095040`, `@${nan} mov.u32 ${keys[e]}, ${NEG_INF_KEY}`, `@!${inRange[e]} mov.u32 ${keys[e]}, 0`);
  }

  // prefix: τ's digits found so far; krem: how many of the keys matching them are still to take
  const prefix = k.reg('u32', 'prefix'), krem = k.reg('u32', 'krem');
  k.emit(`mov.u32 ${prefix}, 0`, `mov.u32 ${krem}, ${kKeep}`);
  RADIX_PASSES.forEach(([shift, nbits], pass) => {
    const bins = 1 << nbits, seg = bins / SEGMENTS, perLane = seg / 32, base = histOff[pass]! * 4;
    if (perLane !== 1 && perLane !== 2) throw new Error(`PTX generator bug in ${name}: ${bins} bins`);
    k.comment(`radix pass ${pass}: bits ${shift}..${shift + nbits - 1}`);
    // a key counts in this pass when its higher digits are τ's found so far
    const want = pass > 0 ? k.reg('u32', 'want') : '';
    if (pass > 0) k.emit(`shr.u32 ${want}, ${prefix}, ${shift + nbits}`);
    for (let e = 0; e < E; e++) {
      let p = inRange[e]!;
      if (pass > 0) {
        const hi = k.reg('u32', 'hi');
        p = k.reg('pred', 'p');
        k.emit(`shr.u32 ${hi}, ${keys[e]}, ${shift + nbits}`, `setp.eq.u32 ${p}, ${hi}, ${want}`, `and.pred ${p}, ${p}, ${inRange[e]}`);
      }
      const d = k.reg('u32', 'dg'), a = k.reg('u32', 'ha');
      k.emit(`bfe.u32 ${d}, ${keys[e]}, ${shift}, ${nbits}`, `mad.lo.u32 ${a}, ${d}, 4, ${hb}`, `@${p} red.shared.add.u32 [${a}+${base}], 1`);
    }
    k.emit('bar.sync 0'); // the histogram is complete
    // segment s = bins [s·seg, (s+1)·seg): warp w sums segments w, w + W, …; a lane reads perLane bins
    const laneBin = k.reg('u32', 'lb');
    k.emit(`mul.lo.u32 ${laneBin}, ${lane}, ${perLane}`);
    const readBins = (first: string): [string[], string] => {
      const a = k.reg('u32', 'ha'), h = k.regs('u32', 'h', perLane), sum = k.reg('u32', 'hsum');
      k.emit(`add.u32 ${a}, ${first}, ${laneBin}`, `mad.lo.u32 ${a}, ${a}, 4, ${hb}`);
      if (perLane === 1) k.emit(`ld.shared.u32 ${h[0]}, [${a}+${base}]`, `mov.u32 ${sum}, ${h[0]}`);
      else k.emit(`ld.shared.v2.u32 {${h.join(', ')}}, [${a}+${base}]`, `add.u32 ${sum}, ${h[0]}, ${h[1]}`);
      return [h, sum];
    };
    for (let j = 0; j * W < SEGMENTS; j++) {
      const s = k.reg('u32', 's'), first = k.reg('u32', 'first'), tot = k.reg('u32', 'tot'), a = k.reg('u32', 'sa');
      const skip = (j + 1) * W > SEGMENTS ? k.label('noseg') : undefined;
      k.emit(`add.u32 ${s}, ${warp}, ${j * W}`);
      if (skip) {
        const p = k.reg('pred', 'p');
        k.emit(`setp.ge.u32 ${p}, ${s}, ${SEGMENTS}`, `@${p} bra.uni ${skip}`); // the same in the whole warp
      }
      k.emit(`mul.lo.u32 ${first}, ${s}, ${seg}`);
      const [, sum] = readBins(first);
      k.emit(`redux.sync.add.u32 ${tot}, ${sum}, -1`, `mov.u32 ${a}, ${segTot[pass]}`, `mad.lo.u32 ${a}, ${s}, 4, ${a}`, `@${lane0} st.shared.u32 [${a}], ${tot}`);
      if (skip) k.place(skip);
    }
    k.emit('bar.sync 0'); // the segment totals are complete
    // Every warp: the segment holding the krem-th largest matching key (counting from the top
    // segment down: `above` keys lie in higher segments), then the bin in it, the same way.
    const tot = k.reg('u32', 'tot'), a = k.reg('u32', 'sa');
    k.emit(`mov.u32 ${a}, ${segTot[pass]}`, `mad.lo.u32 ${a}, ${lane}, 4, ${a}`, `ld.shared.u32 ${tot}, [${a}]`);
    const winner = (count: string, kth: string): [lane: string, above: string] => {
      const incl = k.warpScan(count, 'down'), above = k.reg('u32', 'above'), win = k.reg('pred', 'win'), q = k.reg('pred', 'q');
      k.emit(`sub.u32 ${above}, ${incl}, ${count}`, `setp.lt.u32 ${win}, ${above}, ${kth}`, `setp.le.u32 ${q}, ${kth}, ${incl}`, `and.pred ${win}, ${win}, ${q}`);
      return [k.ballotLane(win), above];
    };
    const [segLane, segAbove] = winner(tot, krem);
    const aboveSeg = k.reg('u32', 'aseg'), kseg = k.reg('u32', 'kseg'), first = k.reg('u32', 'first');
    k.emit(`shfl.sync.idx.b32 ${aboveSeg}, ${segAbove}, ${segLane}, 31, -1`, `sub.u32 ${kseg}, ${krem}, ${aboveSeg}`, `mul.lo.u32 ${first}, ${segLane}, ${seg}`);
    const [h, sum] = readBins(first);
    const [binLane, laneAbove] = winner(sum, kseg);
    // within the lane's bins, the higher bin comes first
    const digit = k.reg('u32', 'digit'), binAbove = k.reg('u32', 'babove');
    k.emit(`add.u32 ${digit}, ${first}, ${laneBin}`);
    if (perLane === 2) {
      const hiEnd = k.reg('u32', 'hiend'), inHi = k.reg('pred', 'inhi');
      k.emit(`add.u32 ${hiEnd}, ${laneAbove}, ${h[1]}`, `setp.le.u32 ${inHi}, ${kseg}, ${hiEnd}`);
      k.emit(`@${inHi} add.u32 ${digit}, ${digit}, 1`, `selp.u32 ${binAbove}, ${laneAbove}, ${hiEnd}, ${inHi}`);
    } else k.emit(`mov.u32 ${binAbove}, ${laneAbove}`);
    const above = k.reg('u32', 'above');
    k.emit(`shfl.sync.idx.b32 ${digit}, ${digit}, ${binLane}, 31, -1`, `shfl.sync.idx.b32 ${above}, ${binAbove}, ${binLane}, 31, -1`);
    k.emit(`sub.u32 ${krem}, ${kseg}, ${above}`, `shl.b32 ${digit}, ${digit}, ${shift}`, `or.b32 ${prefix}, ${prefix}, ${digit}`);
  });

  // prefix = τ, krem = how many keys equal to τ to take (the lowest channels first)
  if (o.tau) {
    // back from the key to the float's bits (NaN's key gives −∞: everything is warmed, a correct if slow hint)
    const fb = k.reg('u32', 'fb'), pos = k.reg('pred', 'pos'), last = k.reg('u32', 'last'), w0 = k.reg('pred', 'w0'), q = k.reg('pred', 'q');
    k.emit(`setp.ge.u32 ${pos}, ${prefix}, -2147483648`, `not.b32 ${fb}, ${prefix}`, `@${pos} and.b32 ${fb}, ${prefix}, 2147483647`);
    k.emit(`mov.u32 ${last}, %nctaid.y`, `sub.u32 ${last}, ${last}, 1`, `setp.eq.u32 ${w0}, ${tid}, 0`, `setp.eq.u32 ${q}, ${t}, ${last}`, `and.pred ${w0}, ${w0}, ${q}`);
    k.emit(`@${w0} st.global.u32 [${o.tau()}], ${fb}`);
  }
  const nGt = k.reg('u32', 'ngt'), nEq = k.reg('u32', 'neq');
  k.emit(`mov.u32 ${nGt}, 0`, `mov.u32 ${nEq}, 0`);
  const isGt = k.regs('pred', 'gt', E), isEq = k.regs('pred', 'eq', E);
  for (let e = 0; e < E; e++) {
    k.emit(`setp.gt.u32 ${isGt[e]}, ${keys[e]}, ${prefix}`, `and.pred ${isGt[e]}, ${isGt[e]}, ${inRange[e]}`, `@${isGt[e]} add.u32 ${nGt}, ${nGt}, 1`);
    k.emit(`setp.eq.u32 ${isEq[e]}, ${keys[e]}, ${prefix}`, `and.pred ${isEq[e]}, ${isEq[e]}, ${inRange[e]}`, `@${isEq[e]} add.u32 ${nEq}, ${nEq}, 1`);
  }
  // one scan of both counts: keys > τ in the high 16 bits, keys = τ in the low (F ≤ 65535)
  const packed = k.reg('u32', 'packed');
  k.emit(`mad.lo.u32 ${packed}, ${nGt}, 65536, ${nEq}`);
  const [before] = k.blockScanShfl(packed, tid, NT);
  const rank = k.reg('u32', 'rank'), pos = k.reg('u32', 'pos'), taken = k.reg('u32', 'taken');
  k.emit(`and.b32 ${rank}, ${before}, 65535`, `shr.u32 ${pos}, ${before}, 16`, `min.u32 ${taken}, ${rank}, ${krem}`, `add.u32 ${pos}, ${pos}, ${taken}`);
  const orow = k.addr(idx, t, pad8(kKeep) * 4);
  for (let e = 0; e < E; e++) {
    const c = k.reg('u32', 'c'), take = k.reg('pred', 'take'), q = k.reg('pred', 'q');
    k.emit(`setp.lt.u32 ${q}, ${rank}, ${krem}`, `and.pred ${q}, ${q}, ${isEq[e]}`, `@${isEq[e]} add.u32 ${rank}, ${rank}, 1`, `or.pred ${take}, ${isGt[e]}, ${q}`);
    k.emit(`add.u32 ${c}, ${c0}, ${e}`, `@${take} st.global.u32 [${k.addr(orow, pos, 4)}], ${c}`, `@${take} add.u32 ${pos}, ${pos}, 1`);
  }
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
  emitReduceColumns(k, { d, slices, tid, bx, t, y, partial, load: 'ld.global' });
  return { name, text: k.render() };
}

/**
 * downReduce's work for its block `bx` (64 columns of row t), emitted into kernel k of 256
 * threads: by downReduce itself, and by mocUpDown's tail blocks (merge 'tail'), so both sum in one
 * order (emitColumnTotal) and give the same bits. Uses one barrier and a 256-float shared array;
 * `load` reads the partials (ld.global.cg where other blocks of the same launch wrote them).
 */
function emitReduceColumns(k: KernelBuilder, o: { d: number; slices: number; tid: string; bx: string; t: string; y: string; partial: string; load: 'ld.global' | 'ld.global.cg' }): void {
  const { d, slices, tid, bx, t, y, partial, load } = o;
  const j = k.reg('u32', 'j'), grp = k.reg('u32', 'grp'), col = k.reg('u32', 'col'), p = k.reg('pred', 'p');
  k.emit(`and.b32 ${col}, ${tid}, ${REDUCE_COLS - 1}`, `shr.u32 ${grp}, ${tid}, 6`, `mad.lo.u32 ${j}, ${bx}, ${REDUCE_COLS}, ${col}`, `min.u32 ${j}, ${j}, ${d - 1}`);
  const ld = pad8(d);
  const base = k.addr(k.addr(k.addr(partial, t, slices * ld * 4), grp, ld * 4), j, 4);
  const vals: string[] = [];
  for (let s = 0; s * REDUCE_GROUPS < slices; s++) {
    const v = k.reg('f32', 'v'), q = k.reg('pred', 'q');
    // slice grp + 4s exists for every group only while 4s + 3 < slices
    k.emit(`mov.f32 ${v}, 0f00000000`);
    if (s * REDUCE_GROUPS + REDUCE_GROUPS - 1 < slices) k.emit(`${load}.f32 ${v}, [${base}+${s * REDUCE_GROUPS * ld * 4}]`);
    else k.emit(`setp.lt.u32 ${q}, ${grp}, ${slices - s * REDUCE_GROUPS}`, `@${q} ${load}.f32 ${v}, [${base}+${s * REDUCE_GROUPS * ld * 4}]`);
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
  let ya = '';
  emitColumnTotal(k, total, (g) => (k.emit(`ld.shared.f32 ${v}, [${sa}+${g * REDUCE_COLS * 4}]`), v), () => {
    ya = k.addr(k.addr(y, t, ld * 4), jj, 4);
    k.emit(`ld.global.f32 ${v}, [${ya}]`);
    return v;
  });
  k.emit(`st.global.f32 [${ya}], ${total}`);
  k.place(done);
}

/**
 * The fixed order in which downReduce sums a column's slices: slice s goes to group s mod REDUCE_GROUPS,
 * each group sum G_g = (((0 + p_g) + p_{g+4}) + p_{g+8}) + … in increasing s (a missing slice of
 * the last round adds +0, which changes nothing: no such sum is −0), and then the column's total is
 * ((((0 + G_0) + G_1) + G_2) + G_3) + y, emitted here. `group(g)` emits what gives G_g and returns
 * its register, `residual()` the same for y; `total` is left holding the sum (the caller stores it).
 */
function emitColumnTotal(k: KernelBuilder, total: string, group: (g: number) => string, residual: () => string): void {
  k.emit(`mov.f32 ${total}, 0f00000000`);
  for (let g = 0; g < REDUCE_GROUPS; g++) {
    const v = group(g);
    k.emit(`add.f32 ${total}, ${total}, ${v}`);
  }
  const v = residual();
  k.emit(`add.f32 ${total}, ${total}, ${v}`);
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
  /**
   * Warm the L2 while Top-K still runs: before waiting on it (programmatic launch), the blocks
   * split the F channels among them, read G, and ask the L2 for the W_up and W_downᵀ rows of every
   * channel with G ≥ tau[0], the threshold Top-K left in the previous call (topkSelect's `tau`;
   * +inf before the first). The memory would otherwise idle during Top-K; the rows of the channels
   * then kept come from the L2. A hint only: no result depends on it (a stale or fresh τ, a wrong
   * guess, all give the same output). Token 0 only. Params add `tau` (last).
   */
  warm?: boolean;
  /**
   * Who adds the partials into y: 'reduce-kernel' (default), downReduce as a second launch; 'tail',
   * the last mocTailBlocks(d, K) blocks of row t to finish, each downReduce's work for some of its
   * column blocks (see mocUpDown). Params then y first and counters last (mocTailCounters(T) u32).
   */
  merge?: 'reduce-kernel' | 'tail';
}

/** How many of a row's up·down blocks reduce its partials with merge 'tail': one per downReduce block, at most all of them. */
export const mocTailBlocks = (d: number, kKeep: number): number => Math.min(upDownSplit(kKeep).blocks, reduceGrid(d));
/** The u32 counters mocUpDown with merge 'tail' needs for up to `rows` token rows: a ticket, then (arrived, departed) a row. */
export const mocTailCounters = (rows: number): number => 1 + 2 * rows;

/**
 * Registers of raw W_downᵀ data that a thread of mocUpDown holds through the up projection. With
 * all of a thread's columns loaded early, ptxas -v showed spills at d = 16384 (bf16: ~10 KB a
 * thread on sm_90, ~70 KB on sm_80) and f32 weights at d = 8192; with 64, none up to d = 16384
 * (the rest requested after the SiLUs: requested before them, d = 16384 spilled again).
 */
const DOWN_EARLY_WORDS = 64;

/**
 * The MoC FFN after selection, in one launch: block b takes kept channels [b·P, (b+1)·P) in
 * groups of 8 (P = 8·rowsPerWarp; one group unless K > 1024) and writes their share of the down
 * projection, partial[t, b, :]; downReduce(d, blocks) finishes (and adds the residual).
 * Per group of 8 channels c (idx of all 8 read by every thread: two 16-byte loads, the same
 * addresses in the whole block):
 *  - each thread first issues its loads of the 8 gathered W_downᵀ rows at its 8-column chunks
 *    (tid, tid + 256, …; at most DOWN_EARLY_WORDS registers of them, the rest once z is known)
 *    and of G at the 8 channels, so both weight streams and the gate are in flight together
 *    with the up projection's loads;
 *  - the up projection is split over the block's 8 warps, not one warp a channel: warp w, lane l
 *    take chunks w·32 + l (+ 256 j) of x and of all 8 W_up rows (emitDots with parts = 8; the 8
 *    warps' sums are added through shared memory, one barrier). So x is read once per block
 *    rather than once per warp: at d = 2048, 8 KB of x per group instead of 64 KB, against 32 KB
 *    of W_up rows; with on-the-fly RMSNorm the sum of squares is combined the same way;
 *  - every thread then has all 8 dots and computes z_c = SiLU(G[idx_c]) · dot_c itself (z_c = 0
 *    for channels past K), so z needs no shared array and no second barrier, and multiplies its
 *    column chunks of the 8 W_downᵀ rows by z.
 * The next group's idx are requested before this group's up projection.
 * Params: partial, x, wu [F, d], wd (W_downᵀ [F, d]), idx, g, [nw], [tau]. Grid (blocks, T), block 256.
 *
 * merge 'tail': params y, partial, …, counters, and no reduce launch follows: the last R =
 * mocTailBlocks(d, K) of row t's blocks to store their partial add the row's partials into y
 * themselves, tail block j doing downReduce's blocks j, j + R, … (emitReduceColumns: the same
 * order, so the same bits as the two kernels). Unlike a single merging block (measured 13–19%
 * slower than the two kernels, bench/NOTES.md session 13: it read 1 MiB of partials alone), the
 * 1 MiB is shared by R blocks (32 at d = 2048: 32 KiB each, as downReduce's blocks read).
 * Counters (u32, zero before the first launch, left at zero by every launch): c[0] a ticket,
 * c[1 + 2t] row t's arrivals, c[2 + 2t] its tail blocks' departures.
 *  - Ticket: before its wait, a block takes its work item (b, t) = (n mod blocks, n div blocks)
 *    from n = atom.inc(c[0]) (bound T·blocks − 1: back at 0 after the launch), not from %ctaid,
 *    so items are handed out in the order blocks start. Touching c before the wait is safe: only
 *    this kernel uses them, and its previous launch is complete here (programmatic launch lets a
 *    kernel start only once its predecessor has passed its own wait, and Top-K and the gate GEMV
 *    lie between two up·down launches; with Top-K in the gate GEMV's last block, gate-topk.ts,
 *    that one kernel does, and it waits as the first thing it does after its weight prefetch).
 *  - Arrival: after its partial's stores, bar.sync, then thread 0's atom.acq_rel.gpu.add c[1 + 2t]
 *    returns the arrival rank a; blocks with a < blocks − R are done. A tail block spins (thread 0,
 *    ld.acquire.gpu) until c[1 + 2t] = blocks, then bar.sync, and reads the partials with
 *    ld.global.cg. Memory order as in attentionSplit's merge (decode-attention.ts): each block's
 *    stores precede its release RMW in causality order (program order, CTA barrier); the acquire
 *    load that reads `blocks` observes the chain of RMWs; the barrier orders it before every
 *    thread's reads. y (with the norm folded, the residual x every block reads) is written only by
 *    tail blocks, after every block of row t has arrived, i.e. has read x[t].
 *  - Forward progress: a tail block waits only for blocks of its own row. Tickets go out in
 *    order, so only one row at a time has blocks not yet started; its ≤ R spinning blocks leave
 *    the GPU's other slots to run, finish, and start the missing ones. (Blocks of the next kernel
 *    take no slot first: programmatic launch starts them only after every block of this one ran
 *    its launch_dependents.)
 *  - Departure: each tail block, when done, adds 1 to c[2 + 2t]; the one that reads R − 1 (all
 *    spinning is over) sets c[1 + 2t] and c[2 + 2t] back to 0.
 */
export function mocUpDown(s: UpDownSpec): Kernel {
  const { dtype, d, f, kKeep } = s;
  const { rowsPerWarp: RW, perBlock: P, blocks } = upDownSplit(kKeep);
  const tail = s.merge === 'tail';
  const name = `moc_updown_${dtype}_d${d}_f${f}_k${kKeep}${s.norm ? `_n${s.norm.dtype}` : ''}${s.warm ? '_warm' : ''}${tail ? '_tail' : ''}`;
  const params = [...(tail ? ['y'] : []), 'partial', 'x', 'wu', 'wd', 'idx', 'g', ...(s.norm ? ['nw'] : []), ...(s.warm ? ['tau'] : []), ...(tail ? ['counters'] : [])].map((n) => ({ name: n, type: 'u64' as const }));
  const k = new KernelBuilder(name, params);
  k.blockSize(256);
  const partial = k.ptrParam('partial'), x = k.ptrParam('x'), wu = k.ptrParam('wu'), wd = k.ptrParam('wd'), idx = k.ptrParam('idx'), g = k.ptrParam('g');
  const nw = s.norm ? k.ptrParam('nw') : undefined;
  const tid = k.special('%tid.x', 'tid');
  const counters = tail ? k.ptrParam('counters') : '';
  const slot = tail ? k.sharedArray('ticket', 'u32', 1, 4) : '';
  const { b, t } = tail ? takeTicket(k, { blocks, tid, counters, slot }) : { b: k.special('%ctaid.x', 'b'), t: k.special('%ctaid.y', 't') };
  if (s.warm) warmKeptRows(k, { f, rowBytes: pad8(d) * elemBytes(dtype), blocks, wu, wd, g, tau: k.ptrParam('tau'), b, tid, t });
  k.gridSync();
  const lane = k.reg('u32', 'lane'), warp = k.reg('u32', 'warp'), k0 = k.reg('u32', 'k0');
  k.emit(`and.b32 ${lane}, ${tid}, 31`, `shr.u32 ${warp}, ${tid}, 5`, `mul.lo.u32 ${k0}, ${b}, ${P}`);
  const ld = pad8(d), eb = elemBytes(dtype), ldk = pad8(kKeep);
  const irow = k.addr(idx, t, ldk * 4), grow = k.addr(g, t, pad8(f) * 4), xrow = k.addr(x, t, ld * 4);
  const colChunks = ld / CHUNK;
  const perThread = Math.ceil(colChunks / 256);
  // the up projection: a thread's whole share of the row (chunks tid + 256 j) in one round
  const unroll = Math.min(8, Math.ceil(colChunks / 256));
  // W_downᵀ chunks a thread loads before the up projection: at most DOWN_EARLY_WORDS registers'
  // worth (all of them up to d = 4096 in 16-bit weights, 2048 in f32); the rest after it
  const early = Math.max(1, Math.min(perThread, Math.floor(DOWN_EARLY_WORDS / (8 * (dtype === 'f32' ? 8 : 4)))));
  // this thread's column chunks (clamped; the store is guarded)
  const cols: string[] = [], colOk: string[] = [];
  for (let q = 0; q < perThread; q++) {
    const cc = k.reg('u32', 'cc'), ok = k.reg('pred', 'colok');
    k.emit(`add.u32 ${cc}, ${tid}, ${q * 256}`, `setp.lt.u32 ${ok}, ${cc}, ${colChunks}`, `min.u32 ${cc}, ${cc}, ${colChunks - 1}`);
    cols.push(cc); colOk.push(ok);
  }
  /** Group r's first slot k0 + 8r (in the last block possibly ≥ K) and its 8 channels idx[t, slot…]. */
  const loadIdx = (r: number): { s0: string; ch: string[] } => {
    const s0 = k.reg('u32', 's0'), at = k.reg('u32', 'at'), ch = k.regs('u32', 'ch', 8);
    k.emit(`add.u32 ${s0}, ${k0}, ${8 * r}`, `mov.u32 ${at}, ${s0}`);
    // a group wholly past the padded row (only when K ≤ blocks·P − 8) reads the row's last 8 instead
    if ((blocks - 1) * P + 8 * r + 8 > ldk) k.emit(`min.u32 ${at}, ${at}, ${ldk - 8}`);
    const a = k.addr(irow, at, 4);
    k.emit(`ld.global.v4.u32 {${ch.slice(0, 4).join(', ')}}, [${a}]`, `ld.global.v4.u32 {${ch.slice(4).join(', ')}}, [${a}+16]`);
    return { s0, ch };
  };
  const acc = cols.map(() => k.regs('f32', 'acc', 8));
  for (const a of acc.flat()) k.emit(`mov.f32 ${a}, 0f00000000`);
  let next = loadIdx(0);
  for (let r = 0; r < RW; r++) {
    const { s0, ch } = next;
    k.comment(`channels k0+${8 * r} .. k0+${8 * r + 7}`);
    // slot c may lie past K only in the last block; there its channel is the row's zero padding
    // (or another group's), clamped anyway so that no load can leave W or G, and z_c is 0
    const mayBePast = ch.map((_, c) => (blocks - 1) * P + 8 * r + c >= kKeep);
    ch.forEach((cr, c) => mayBePast[c] && k.emit(`min.u32 ${cr}, ${cr}, ${f - 1}`));
    // W_downᵀ rows at this thread's first `early` column chunks and G, requested before the up
    // projection
    const downRows: string[] = [];
    const loadDown = (q0: number, q1: number) => ch.map((cr, c) => {
      const row = (downRows[c] ??= k.addr(wd, cr, ld * eb));
      return cols.slice(q0, q1).map((cc) => loadRaw8(k, dtype, k.addr(row, cc, CHUNK * eb)));
    });
    const downEarly = loadDown(0, early);
    const gvs = ch.map((cr) => {
      const gv = k.reg('f32', 'gv');
      k.emit(`ld.global.f32 ${gv}, [${k.addr(grow, cr, 4)}]`);
      return gv;
    });
    if (r + 1 < RW) next = loadIdx(r + 1);
    const upRows = ch.map((cr) => k.addr(wu, cr, ld * eb));
    const [dots] = emitDots(k, { dtype, inDim: d, norm: s.norm, unroll }, [upRows], xrow, nw, lane, { part: warp, parts: 8, warp });
    const zs = dots!;
    zs.forEach((z, c) => {
      siluTimes(k, gvs[c]!, z);
      if (mayBePast[c]) {
        const sc = k.reg('u32', 'sc'), ok = k.reg('pred', 'ok');
        k.emit(`add.u32 ${sc}, ${s0}, ${c}`, `setp.lt.u32 ${ok}, ${sc}, ${kKeep}`, `selp.f32 ${z}, ${z}, 0f00000000, ${ok}`); // channels past K contribute nothing
      }
    });
    const downLate = loadDown(early, cols.length);
    const down = downEarly.map((raw, c) => [...raw, ...downLate[c]!]);
    // down projection: acc[q][e] += Σ_c z_c · W_downᵀ[idx_c, 8·cols[q] + e]
    zs.forEach((z, c) => cols.forEach((_, q) => {
      const wv = rawToF32(k, dtype, down[c]![q]!);
      for (let e = 0; e < 8; e++) k.emit(`fma.rn.f32 ${acc[q]![e]}, ${z}, ${wv[e]}, ${acc[q]![e]}`);
    }));
  }
  const prow = k.reg('u32', 'prow');
  k.emit(`mad.lo.u32 ${prow}, ${t}, ${blocks}, ${b}`);
  const pbase = k.addr(partial, prow, ld * 4);
  cols.forEach((cc, q) => {
    const pa = k.addr(pbase, cc, 32);
    k.emit(`@${colOk[q]} st.global.v4.f32 [${pa}], {${acc[q]!.slice(0, 4).join(', ')}}`, `@${colOk[q]} st.global.v4.f32 [${pa}+16], {${acc[q]!.slice(4).join(', ')}}`);
  });
  if (tail) emitTailReduce(k, { d, blocks, R: mocTailBlocks(d, kKeep), tid, t, y: k.ptrParam('y'), partial, counters, slot });
  return { name, text: k.render() };
}

/** mocUpDown's ticket (merge 'tail', before its wait): thread 0 takes n from counters[0], the block reads it from `slot`; returns (n mod blocks, n div blocks). */
function takeTicket(k: KernelBuilder, o: { blocks: number; tid: string; counters: string; slot: string }): { b: string; t: string } {
  const t0 = k.reg('pred', 'tk0'), rows = k.reg('u32', 'rows'), bound = k.reg('u32', 'bound'), n = k.reg('u32', 'ticket'), sa = k.reg('u32', 'tsa');
  k.comment('ticket: this block\'s (b, t), in the order blocks start (see mocUpDown, merge tail)');
  k.emit(`setp.eq.u32 ${t0}, ${o.tid}, 0`, `mov.u32 ${rows}, %nctaid.y`, `mul.lo.u32 ${bound}, ${rows}, ${o.blocks}`, `sub.u32 ${bound}, ${bound}, 1`, `mov.u32 ${sa}, ${o.slot}`);
  k.emit(`mov.u32 ${n}, 0`, `@${t0} atom.relaxed.gpu.global.inc.u32 ${n}, [${o.counters}], ${bound}`, `@${t0} st.shared.u32 [${sa}], ${n}`, 'bar.sync 0', `ld.shared.u32 ${n}, [${sa}]`);
  const b = k.reg('u32', 'b'), t = k.reg('u32', 't');
  k.emit(`div.u32 ${t}, ${n}, ${o.blocks}`, `mul.lo.u32 ${b}, ${t}, ${o.blocks}`, `sub.u32 ${b}, ${n}, ${b}`);
  return { b, t };
}

/**
 * mocUpDown's tail (merge 'tail'), after the block's partial is stored: count the arrival; the last
 * R blocks of row t wait for the others, reduce downReduce's blocks j, j + R, … into y, and the
 * last to leave resets the row's counters (see mocUpDown for the protocol and its memory order).
 */
function emitTailReduce(k: KernelBuilder, o: { d: number; blocks: number; R: number; tid: string; t: string; y: string; partial: string; counters: string; slot: string }): void {
  const { d, blocks, R, tid, t, counters } = o;
  const t0 = k.reg('pred', 'tt0'), sa = k.reg('u32', 'asa'), rank = k.reg('u32', 'rank'), p = k.reg('pred', 'p'), done = k.label('taildone');
  const ia = k.reg('u32', 'ia');
  k.emit(`mad.lo.u32 ${ia}, ${t}, 2, 1`);
  const arrived = k.addr(counters, ia, 4);
  const departed = k.reg('u64', 'departed');
  k.emit(`add.s64 ${departed}, ${arrived}, 4`);
  k.comment('arrival: rank among row t\'s blocks; the last R reduce');
  k.emit(`setp.eq.u32 ${t0}, ${tid}, 0`, `mov.u32 ${sa}, ${o.slot}`, 'bar.sync 0');
  k.emit(`mov.u32 ${rank}, 0`, `@${t0} atom.acq_rel.gpu.global.add.u32 ${rank}, [${arrived}], 1`, `@${t0} st.shared.u32 [${sa}], ${rank}`, 'bar.sync 0', `ld.shared.u32 ${rank}, [${sa}]`);
  k.emit(`setp.lt.u32 ${p}, ${rank}, ${blocks - R}`, `@${p} bra ${done}`);
  const spin = k.label('spin'), spun = k.label('spun'), seen = k.reg('u32', 'seen'), q = k.reg('pred', 'q');
  k.emit(`@!${t0} bra ${spun}`);
  k.place(spin);
  k.emit(`ld.acquire.gpu.global.u32 ${seen}, [${arrived}]`, `setp.lt.u32 ${q}, ${seen}, ${blocks}`, `@${q} bra ${spin}`);
  k.place(spun);
  k.emit('bar.sync 0');
  const bx = k.reg('u32', 'rbx'), loop = k.label('rloop');
  k.emit(`sub.u32 ${bx}, ${rank}, ${blocks - R}`);
  k.place(loop);
  emitReduceColumns(k, { d, slices: blocks, tid, bx, t, y: o.y, partial: o.partial, load: 'ld.global.cg' });
  // the next column block's stores into the shared array wait for this one's reads
  k.emit('bar.sync 0', `add.u32 ${bx}, ${bx}, ${R}`, `setp.lt.u32 ${q}, ${bx}, ${reduceGrid(d)}`, `@${q} bra ${loop}`);
  k.comment('departure: the last tail block to leave resets the row\'s counters');
  const left = k.reg('u32', 'left');
  k.emit(`mov.u32 ${left}, 0`, `@${t0} atom.acq_rel.gpu.global.add.u32 ${left}, [${departed}], 1`, `setp.eq.and.u32 ${q}, ${left}, ${R - 1}, ${t0}`);
  k.emit(`@${q} st.relaxed.gpu.global.u32 [${arrived}], 0`, `@${q} st.relaxed.gpu.global.u32 [${departed}], 0`);
  k.place(done);
}

/**
 * mocUpDown's L2 warming, before its wait: block b takes channels [b·P, (b+1)·P) of the F (P =
 * ceil(F / blocks), a channel a thread), and asks the L2 for the W_up and W_downᵀ rows of those
 * with G ≥ τ. G is complete here (Top-K, which this kernel follows, waited for the gate GEMV
 * before letting this kernel start); τ is the previous call's or, if Top-K already wrote it, this
 * call's: either way only a guess.
 */
function warmKeptRows(k: KernelBuilder, a: { f: number; rowBytes: number; blocks: number; wu: string; wd: string; g: string; tau: string; b: string; tid: string; t: string }): void {
  const per = Math.ceil(a.f / a.blocks);
  const tau = k.reg('f32', 'tau'), tok0 = k.reg('pred', 'tok0'), c0 = k.reg('u32', 'wc0');
  k.comment('warm the L2 with the rows of the channels with G >= the last tau (a hint, before the wait)');
  k.emit(`ld.global.f32 ${tau}, [${a.tau}]`, `setp.eq.u32 ${tok0}, ${a.t}, 0`, `mul.lo.u32 ${c0}, ${a.b}, ${per}`);
  const grow = k.addr(a.g, a.t, pad8(a.f) * 4);
  for (let j = 0; j * 256 < per; j++) {
    const i = k.reg('u32', 'wi'), c = k.reg('u32', 'wc'), p = k.reg('pred', 'wp'), q = k.reg('pred', 'wq'), gv = k.reg('f32', 'wg');
    k.emit(`add.u32 ${i}, ${a.tid}, ${j * 256}`, `add.u32 ${c}, ${c0}, ${i}`);
    k.emit(`setp.lt.u32 ${p}, ${i}, ${per}`, `setp.lt.u32 ${q}, ${c}, ${a.f}`, `and.pred ${p}, ${p}, ${q}`, `and.pred ${p}, ${p}, ${tok0}`);
    k.emit(`mov.f32 ${gv}, 0fFF800000`, `@${p} ld.global.f32 ${gv}, [${k.addr(grow, c, 4)}]`, `setp.ge.f32 ${q}, ${gv}, ${tau}`, `and.pred ${p}, ${p}, ${q}`);
    for (const m of [a.wu, a.wd]) k.prefetchL2(k.addr(m, c, a.rowBytes), a.rowBytes, p);
  }
}

export const SCATTER_THREADS = 128;

/**
 * The MoC FFN of a prefill as dense products (targets/cuda/lower.ts): z[t, c] = SiLU(G[t, c])·U[t, c]
 * for the kept channels c = idx[t, 0..K), written as bf16/f16 into a z the caller zeroed, so the
 * down projection is a tensor-core GEMM over z (the zeros of the dropped channels add nothing: the
 * same sum as MoC's gathered down projection). g, u: f32 [T, pad8(F)]; idx: i32 [T, pad8(K)];
 * z: 16-bit [T, pad8(F)]. Params z, g, u, idx. Grid (ceil(K / SCATTER_THREADS), T), block SCATTER_THREADS.
 */
export function mocScatterSilu(out: 'bf16' | 'f16', f: number, kKeep: number): Kernel {
  const name = `moc_scatter_silu_${out}_f${f}_k${kKeep}`;
  const k = new KernelBuilder(name, ['z', 'g', 'u', 'idx'].map((n) => ({ name: n, type: 'u64' as const })));
  k.blockSize(SCATTER_THREADS);
  const z = k.ptrParam('z'), g = k.ptrParam('g'), u = k.ptrParam('u'), idx = k.ptrParam('idx');
  const tid = k.special('%tid.x', 'tid'), bx = k.special('%ctaid.x', 'bx'), t = k.special('%ctaid.y', 't');
  const j = k.reg('u32', 'j'), p = k.reg('pred', 'p'), done = k.label('done');
  k.emit(`mad.lo.u32 ${j}, ${bx}, ${SCATTER_THREADS}, ${tid}`, `setp.ge.u32 ${p}, ${j}, ${kKeep}`, `@${p} bra ${done}`);
  const c = k.reg('u32', 'c');
  k.emit(`ld.global.u32 ${c}, [${k.addr(k.addr(idx, t, pad8(kKeep) * 4), j, 4)}]`);
  const e = k.reg('u32', 'e'); // element index of (t, c) in the [T, pad8(F)] matrices
  k.emit(`mad.lo.u32 ${e}, ${t}, ${pad8(f)}, ${c}`);
  const gv = k.reg('f32', 'gv'), uv = k.reg('f32', 'uv'), h = k.reg('b16', 'h');
  k.emit(`ld.global.f32 ${gv}, [${k.addr(g, e, 4)}]`, `ld.global.f32 ${uv}, [${k.addr(u, e, 4)}]`);
  siluTimes(k, gv, uv); // uv ← SiLU(gv)·uv
  k.emit(`cvt.rn.${out}.f32 ${h}, ${uv}`, `st.global.b16 [${k.addr(z, e, 2)}], ${h}`);
  k.place(done);
  return { name, text: k.render() };
}
