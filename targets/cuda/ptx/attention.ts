// RoPE, KV-cache append and causal GQA attention over the cache. Positions come from a device
// int32 (`pos`: tokens already cached) so a captured decode step replays at any position.
import { f32Imm, KernelBuilder } from './builder.js';
import type { Kernel } from './dense.js';
import { pad8 } from './layout.js';

export const ROPE_THREADS = 128;

/**
 * In-place rotation of x [T, heads·hd] at positions pos[0] + t. `table` holds (cos, sin) float pairs
 * [maxPos, hd/2], computed on the host in float64 (llama3 scaling included), so no device sin/cos.
 * Grid (ceil(heads·hd/2 / 128), T), block 128.
 */
export function rope(heads: number, hd: number, style: 'half' | 'interleaved'): Kernel {
  const name = `rope_${style}_h${heads}_hd${hd}`;
  const half = hd / 2;
  const k = new KernelBuilder(name, [{ name: 'x', type: 'u64' }, { name: 'table', type: 'u64' }, { name: 'pos', type: 'u64' }]);
  const x = k.ptrParam('x'), table = k.ptrParam('table'), pos = k.ptrParam('pos');
  const tid = k.special('%tid.x', 'tid'), bx = k.special('%ctaid.x', 'bx'), t = k.special('%ctaid.y', 't');
  const j = k.reg('u32', 'j'), p = k.reg('pred', 'p'), done = k.label('done');
  k.emit(`mad.lo.u32 ${j}, ${bx}, ${ROPE_THREADS}, ${tid}`, `setp.ge.u32 ${p}, ${j}, ${heads * half}`, `@${p} bra ${done}`);
  const h = k.reg('u32', 'h'), i = k.reg('u32', 'i'), position = k.reg('u32', 'position');
  k.emit(`div.u32 ${h}, ${j}, ${half}`, `rem.u32 ${i}, ${j}, ${half}`, `ld.global.u32 ${position}, [${pos}]`, `add.u32 ${position}, ${position}, ${t}`);
  const ti = k.reg('u32', 'ti'), c = k.reg('f32', 'c'), s = k.reg('f32', 's');
  k.emit(`mad.lo.u32 ${ti}, ${position}, ${half}, ${i}`);
  const ta = k.addr(table, ti, 8);
  k.emit(`ld.global.nc.v2.f32 {${c}, ${s}}, [${ta}]`);
  const ia = k.reg('u32', 'ia'), ib = k.reg('u32', 'ib');
  if (style === 'half') k.emit(`mad.lo.u32 ${ia}, ${h}, ${hd}, ${i}`, `add.u32 ${ib}, ${ia}, ${half}`);
  else k.emit(`mad.lo.u32 ${ia}, ${h}, ${hd}, ${i}`, `add.u32 ${ia}, ${ia}, ${i}`, `add.u32 ${ib}, ${ia}, 1`);
  const row = k.addr(x, t, pad8(heads * hd) * 4);
  const pa = k.addr(row, ia, 4), pb = k.addr(row, ib, 4);
  const a = k.reg('f32', 'va'), b = k.reg('f32', 'vb'), ra = k.reg('f32', 'ra'), rb = k.reg('f32', 'rb');
  k.emit(`ld.global.f32 ${a}, [${pa}]`, `ld.global.f32 ${b}, [${pb}]`);
  k.emit(`mul.f32 ${ra}, ${b}, ${s}`);
  const nbs = k.neg(ra); // −b·s, emitted after the mul above
  k.emit(`fma.rn.f32 ${ra}, ${a}, ${c}, ${nbs}`);
  k.emit(`mul.f32 ${rb}, ${b}, ${c}`, `fma.rn.f32 ${rb}, ${a}, ${s}, ${rb}`);
  k.emit(`st.global.f32 [${pa}], ${ra}`, `st.global.f32 [${pb}], ${rb}`);
  k.place(done);
  return { name, text: k.render() };
}

export const ropeStoreGrid = (heads: number, kvHeads: number, hd: number): number => Math.ceil(((heads + kvHeads) * hd) / 2 / ROPE_THREADS);

/**
 * RoPE and the KV-cache append in one launch: threads [0, heads·hd/2) rotate a pair of q in place;
 * the next kvHeads·hd/2 rotate a pair of k and write it, with the same two elements of v, into the
 * caches at row pos[0] + t (k itself is left as it was: only the cache is read later).
 * Params: q, k, v, ck, cv, table, pos. Grid (ropeStoreGrid, T), block 128.
 */
export function ropeStore(heads: number, kvHeads: number, hd: number, style: 'half' | 'interleaved'): Kernel {
  const name = `rope_store_${style}_h${heads}_kv${kvHeads}_hd${hd}`;
  const half = hd / 2;
  const k = new KernelBuilder(name, ['q', 'k', 'v', 'ck', 'cv', 'table', 'pos'].map((n) => ({ name: n, type: 'u64' as const })));
  const q = k.ptrParam('q'), kk = k.ptrParam('k'), vv = k.ptrParam('v'), ck = k.ptrParam('ck'), cv = k.ptrParam('cv'), table = k.ptrParam('table'), pos = k.ptrParam('pos');
  const tid = k.special('%tid.x', 'tid'), bx = k.special('%ctaid.x', 'bx'), t = k.special('%ctaid.y', 't');
  k.gridSync();
  const j = k.reg('u32', 'j'), p = k.reg('pred', 'p'), isK = k.reg('pred', 'isk'), done = k.label('done');
  k.emit(`mad.lo.u32 ${j}, ${bx}, ${ROPE_THREADS}, ${tid}`, `setp.ge.u32 ${p}, ${j}, ${(heads + kvHeads) * half}`, `@${p} bra ${done}`);
  // pair jl of head h within q (isK false) or k (isK true)
  const jl = k.reg('u32', 'jl');
  k.emit(`setp.ge.u32 ${isK}, ${j}, ${heads * half}`, `mov.u32 ${jl}, ${j}`, `@${isK} sub.u32 ${jl}, ${j}, ${heads * half}`);
  const h = k.reg('u32', 'h'), i = k.reg('u32', 'i'), position = k.reg('u32', 'position');
  k.emit(`div.u32 ${h}, ${jl}, ${half}`, `rem.u32 ${i}, ${jl}, ${half}`, `ld.global.u32 ${position}, [${pos}]`, `add.u32 ${position}, ${position}, ${t}`);
  const ti = k.reg('u32', 'ti'), c = k.reg('f32', 'c'), sn = k.reg('f32', 's');
  k.emit(`mad.lo.u32 ${ti}, ${position}, ${half}, ${i}`);
  k.emit(`ld.global.nc.v2.f32 {${c}, ${sn}}, [${k.addr(table, ti, 8)}]`);
  const ia = k.reg('u32', 'ia'), ib = k.reg('u32', 'ib');
  if (style === 'half') k.emit(`mad.lo.u32 ${ia}, ${h}, ${hd}, ${i}`, `add.u32 ${ib}, ${ia}, ${half}`);
  else k.emit(`mad.lo.u32 ${ia}, ${h}, ${hd}, ${i}`, `add.u32 ${ia}, ${ia}, ${i}`, `add.u32 ${ib}, ${ia}, 1`);
  // source row: q[t] or k[t]
  const qw = pad8(heads * hd), kvw = pad8(kvHeads * hd);
  const qrow = k.addr(q, t, qw * 4), krow = k.addr(kk, t, kvw * 4);
  const row = k.reg('u64', 'row');
  k.emit(`mov.u64 ${row}, ${qrow}`, `@${isK} mov.u64 ${row}, ${krow}`);
  const pa = k.addr(row, ia, 4), pb = k.addr(row, ib, 4);
  const a = k.reg('f32', 'va'), bv = k.reg('f32', 'vb'), ra = k.reg('f32', 'ra'), rb = k.reg('f32', 'rb');
  k.emit(`ld.global.f32 ${a}, [${pa}]`, `ld.global.f32 ${bv}, [${pb}]`);
  k.emit(`mul.f32 ${ra}, ${bv}, ${sn}`);
  const nbs = k.neg(ra);
  k.emit(`fma.rn.f32 ${ra}, ${a}, ${c}, ${nbs}`);
  k.emit(`mul.f32 ${rb}, ${bv}, ${c}`, `fma.rn.f32 ${rb}, ${a}, ${sn}, ${rb}`);
  const toCache = k.label('kv');
  k.emit(`@${isK} bra ${toCache}`, `st.global.f32 [${pa}], ${ra}`, `st.global.f32 [${pb}], ${rb}`, `bra ${done}`);
  k.place(toCache);
  const crow = k.addr(ck, position, kvw * 4), vcrow = k.addr(cv, position, kvw * 4), vrow = k.addr(vv, t, kvw * 4);
  const va = k.reg('f32', 'v0'), vb2 = k.reg('f32', 'v1');
  k.emit(`ld.global.f32 ${va}, [${k.addr(vrow, ia, 4)}]`, `ld.global.f32 ${vb2}, [${k.addr(vrow, ib, 4)}]`);
  k.emit(`st.global.f32 [${k.addr(crow, ia, 4)}], ${ra}`, `st.global.f32 [${k.addr(crow, ib, 4)}], ${rb}`);
  k.emit(`st.global.f32 [${k.addr(vcrow, ia, 4)}], ${va}`, `st.global.f32 [${k.addr(vcrow, ib, 4)}], ${vb2}`);
  k.place(done);
  return { name, text: k.render() };
}

/** cacheK[pos + t, :] = k[t, :], same for v; one element a thread (a single looping block measured 10 µs). */
export const kvStoreGrid = (kvw: number): number => Math.ceil(kvw / 128);

/** Rows of width kvw (padded). Grid (kvStoreGrid(kvw), T), block 128. */
export function kvStore(kvw: number): Kernel {
  const name = `kv_store_w${kvw}`;
  const k = new KernelBuilder(name, [{ name: 'ck', type: 'u64' }, { name: 'cv', type: 'u64' }, { name: 'k', type: 'u64' }, { name: 'v', type: 'u64' }, { name: 'pos', type: 'u64' }]);
  const ck = k.ptrParam('ck'), cv = k.ptrParam('cv'), kk = k.ptrParam('k'), vv = k.ptrParam('v'), pos = k.ptrParam('pos');
  const tid = k.special('%tid.x', 'tid'), bx = k.special('%ctaid.x', 'bx'), t = k.special('%ctaid.y', 't');
  const i = k.reg('u32', 'i'), p = k.reg('pred', 'p'), done = k.label('done');
  k.emit(`mad.lo.u32 ${i}, ${bx}, 128, ${tid}`, `setp.ge.u32 ${p}, ${i}, ${kvw}`, `@${p} bra ${done}`);
  const position = k.reg('u32', 'position');
  k.emit(`ld.global.u32 ${position}, [${pos}]`, `add.u32 ${position}, ${position}, ${t}`);
  const ld = pad8(kvw);
  const srcK = k.addr(k.addr(kk, t, ld * 4), i, 4), srcV = k.addr(k.addr(vv, t, ld * 4), i, 4);
  const dstK = k.addr(k.addr(ck, position, ld * 4), i, 4), dstV = k.addr(k.addr(cv, position, ld * 4), i, 4);
  const a = k.reg('f32', 'a'), b = k.reg('f32', 'b');
  k.emit(`ld.global.f32 ${a}, [${srcK}]`, `ld.global.f32 ${b}, [${srcV}]`, `st.global.f32 [${dstK}], ${a}`, `st.global.f32 [${dstV}], ${b}`);
  k.place(done);
  return { name, text: k.render() };
}

export const ATTN_WARPS = 4;
/** Cached positions a warp reads per round (see attention). */
export const ATTN_UNROLL = 8;

/**
 * out[t, h] = softmax(q[t,h]·K[0..pos+t]ᵀ / √hd) · V, for KV head h / (heads/kvHeads). Each of the 4
 * warps walks every 4th cached position with an online softmax (exp2 domain); lanes split the head
 * dimension; the warps' partial results are merged through shared memory.
 * Grid (heads, T), block 128.
 */
export function attention(heads: number, kvHeads: number, hd: number): Kernel {
  const name = `attention_h${heads}_kv${kvHeads}_hd${hd}`;
  const E = Math.ceil(hd / 32);
  const group = heads / kvHeads;
  const k = new KernelBuilder(name, [{ name: 'out', type: 'u64' }, { name: 'q', type: 'u64' }, { name: 'ck', type: 'u64' }, { name: 'cv', type: 'u64' }, { name: 'pos', type: 'u64' }]);
  k.blockSize(32 * ATTN_WARPS);
  const out = k.ptrParam('out'), q = k.ptrParam('q'), ck = k.ptrParam('ck'), cv = k.ptrParam('cv'), pos = k.ptrParam('pos');
  const tid = k.special('%tid.x', 'tid'), h = k.special('%ctaid.x', 'h'), t = k.special('%ctaid.y', 't');
  const lane = k.reg('u32', 'lane'), warp = k.reg('u32', 'warp'), n = k.reg('u32', 'n'), kvh = k.reg('u32', 'kvh');
  k.emit(`and.b32 ${lane}, ${tid}, 31`, `shr.u32 ${warp}, ${tid}, 5`, `ld.global.u32 ${n}, [${pos}]`, `add.u32 ${n}, ${n}, ${t}`, `add.u32 ${n}, ${n}, 1`, `div.u32 ${kvh}, ${h}, ${group}`);
  const qw = pad8(heads * hd), kvw = pad8(kvHeads * hd);
  // This lane's head dimensions d_e = lane + 32e (valid while < hd), q pre-scaled by log2(e)/√hd.
  const valid: string[] = [], qv: string[] = [], dOff: string[] = [];
  const qrow = k.addr(q, t, qw * 4);
  const qhead = k.reg('u32', 'qh');
  k.emit(`mul.lo.u32 ${qhead}, ${h}, ${hd}`);
  const kvOff = k.reg('u32', 'kvo');
  k.emit(`mul.lo.u32 ${kvOff}, ${kvh}, ${hd}`);
  for (let e = 0; e < E; e++) {
    const d = k.reg('u32', 'd'), pv = k.reg('pred', 'pv'), v = k.reg('f32', 'q');
    k.emit(`add.u32 ${d}, ${lane}, ${32 * e}`, `setp.lt.u32 ${pv}, ${d}, ${hd}`, `min.u32 ${d}, ${d}, ${hd - 1}`);
    const qi = k.reg('u32', 'qi');
    k.emit(`add.u32 ${qi}, ${qhead}, ${d}`);
    const qa = k.addr(qrow, qi, 4);
    k.emit(`ld.global.f32 ${v}, [${qa}]`, `mul.f32 ${v}, ${v}, ${f32Imm(Math.LOG2E / Math.sqrt(hd))}`, `selp.f32 ${v}, ${v}, 0f00000000, ${pv}`);
    const off = k.reg('u32', 'do');
    k.emit(`add.u32 ${off}, ${kvOff}, ${d}`);
    valid.push(pv); qv.push(v); dOff.push(off);
  }
  const m = k.reg('f32', 'm'), l = k.reg('f32', 'l'), acc = k.regs('f32', 'acc', E);
  k.emit(`mov.f32 ${m}, 0fFF800000`, `mov.f32 ${l}, 0f00000000`);
  for (const a of acc) k.emit(`mov.f32 ${a}, 0f00000000`);
  // Each warp takes ATTN_UNROLL positions a round (s, s+4, …): all their K and V loads are issued
  // before the first dot product needs them, so a round costs about one memory latency, not one a
  // position (the first version walked one position at a time).
  const s = k.reg('u32', 's'), p = k.reg('pred', 'p'), loop = k.label('pos'), done = k.label('posdone');
  const last = k.reg('u32', 'last');
  k.emit(`mov.u32 ${s}, ${warp}`, `sub.u32 ${last}, ${n}, 1`);
  k.place(loop);
  k.emit(`setp.ge.u32 ${p}, ${s}, ${n}`, `@${p} bra ${done}`);
  const okP: string[] = [], kv: string[][] = [], vv: string[][] = [];
  for (let u = 0; u < ATTN_UNROLL; u++) {
    const sp = k.reg('u32', 'sp'), ok = k.reg('pred', 'ok');
    k.emit(`add.u32 ${sp}, ${s}, ${u * ATTN_WARPS}`, `setp.lt.u32 ${ok}, ${sp}, ${n}`, `min.u32 ${sp}, ${sp}, ${last}`);
    const krow = k.addr(ck, sp, kvw * 4), vrow = k.addr(cv, sp, kvw * 4);
    const ks: string[] = [], vs: string[] = [];
    for (let e = 0; e < E; e++) {
      const a = k.reg('f32', 'kv'), b = k.reg('f32', 'vv');
      k.emit(`ld.global.f32 ${a}, [${k.addr(krow, dOff[e]!, 4)}]`, `ld.global.f32 ${b}, [${k.addr(vrow, dOff[e]!, 4)}]`);
      ks.push(a); vs.push(b);
    }
    okP.push(ok); kv.push(ks); vv.push(vs);
  }
  const dots = k.regs('f32', 'dot', ATTN_UNROLL);
  for (let u = 0; u < ATTN_UNROLL; u++) {
    k.emit(`mov.f32 ${dots[u]}, 0f00000000`);
    for (let e = 0; e < E; e++) k.emit(`fma.rn.f32 ${dots[u]}, ${qv[e]}, ${kv[u]![e]}, ${dots[u]}`);
  }
  for (const d of dots) k.warpSum(d);
  // positions past the end weigh nothing: score −inf; position s itself is valid, so mNew is finite
  const mNew = k.reg('f32', 'mn'), corr = k.reg('f32', 'corr');
  for (let u = 0; u < ATTN_UNROLL; u++) k.emit(`@!${okP[u]} mov.f32 ${dots[u]}, 0fFF800000`);
  k.emit(`max.f32 ${mNew}, ${m}, ${dots[0]}`);
  for (let u = 1; u < ATTN_UNROLL; u++) k.emit(`max.f32 ${mNew}, ${mNew}, ${dots[u]}`);
  k.emit(`sub.f32 ${corr}, ${m}, ${mNew}`, `ex2.approx.f32 ${corr}, ${corr}`, `mul.f32 ${l}, ${l}, ${corr}`, `mov.f32 ${m}, ${mNew}`);
  for (let e = 0; e < E; e++) k.emit(`mul.f32 ${acc[e]}, ${acc[e]}, ${corr}`);
  for (let u = 0; u < ATTN_UNROLL; u++) {
    const pe = k.reg('f32', 'pe');
    k.emit(`sub.f32 ${pe}, ${dots[u]}, ${mNew}`, `ex2.approx.f32 ${pe}, ${pe}`, `add.f32 ${l}, ${l}, ${pe}`);
    for (let e = 0; e < E; e++) k.emit(`fma.rn.f32 ${acc[e]}, ${pe}, ${vv[u]![e]}, ${acc[e]}`);
  }
  k.emit(`add.u32 ${s}, ${s}, ${ATTN_WARPS * ATTN_UNROLL}`, `bra ${loop}`);
  k.place(done);
  // Merge the warps: shared m[4], l[4], acc[4][hd].
  const shM = k.sharedArray('m', 'f32', ATTN_WARPS, 4), shL = k.sharedArray('l', 'f32', ATTN_WARPS, 4), shA = k.sharedArray('acc', 'f32', ATTN_WARPS * hd, 4);
  const a32 = k.reg('u32', 'sa'), p0 = k.reg('pred', 'p');
  k.emit(`setp.eq.u32 ${p0}, ${lane}, 0`, `mov.u32 ${a32}, ${shM}`, `mad.lo.u32 ${a32}, ${warp}, 4, ${a32}`, `@${p0} st.shared.f32 [${a32}], ${m}`);
  k.emit(`mov.u32 ${a32}, ${shL}`, `mad.lo.u32 ${a32}, ${warp}, 4, ${a32}`, `@${p0} st.shared.f32 [${a32}], ${l}`);
  for (let e = 0; e < E; e++) {
    const sa = k.reg('u32', 'sa');
    k.emit(`mov.u32 ${sa}, ${shA}`, `mad.lo.u32 ${sa}, ${warp}, ${hd * 4}, ${sa}`, `mad.lo.u32 ${sa}, ${lane}, 4, ${sa}`, `add.u32 ${sa}, ${sa}, ${e * 128}`, `@${valid[e]} st.shared.f32 [${sa}], ${acc[e]}`);
  }
  k.emit('bar.sync 0');
  const fin = k.label('fin');
  k.emit(`setp.ne.u32 ${p}, ${warp}, 0`, `@${p} bra ${fin}`);
  const M = k.reg('f32', 'M'), L = k.reg('f32', 'L'), mw = k.regs('f32', 'mw', ATTN_WARPS), sc = k.regs('f32', 'sc', ATTN_WARPS), lw = k.reg('f32', 'lw');
  k.emit(`ld.shared.f32 ${mw[0]}, [${shM}]`, `mov.f32 ${M}, ${mw[0]}`);
  for (let w = 1; w < ATTN_WARPS; w++) k.emit(`ld.shared.f32 ${mw[w]}, [${shM}+${w * 4}]`, `max.f32 ${M}, ${M}, ${mw[w]}`);
  k.emit(`mov.f32 ${L}, 0f00000000`);
  for (let w = 0; w < ATTN_WARPS; w++) {
    // A warp that saw no position has m = −inf and l = 0: its scale is 2^(−inf) = 0.
    k.emit(`sub.f32 ${sc[w]}, ${mw[w]}, ${M}`, `ex2.approx.f32 ${sc[w]}, ${sc[w]}`, `ld.shared.f32 ${lw}, [${shL}+${w * 4}]`, `fma.rn.f32 ${L}, ${lw}, ${sc[w]}, ${L}`);
  }
  const orow = k.addr(out, t, qw * 4);
  for (let e = 0; e < E; e++) {
    const o = k.reg('f32', 'o'), av = k.reg('f32', 'av'), sa = k.reg('u32', 'sa'), skip = k.label('skip');
    k.emit(`@!${valid[e]} bra ${skip}`, `mov.f32 ${o}, 0f00000000`);
    for (let w = 0; w < ATTN_WARPS; w++) {
      k.emit(`mov.u32 ${sa}, ${shA}`, `mad.lo.u32 ${sa}, ${lane}, 4, ${sa}`, `add.u32 ${sa}, ${sa}, ${w * hd * 4 + e * 128}`, `ld.shared.f32 ${av}, [${sa}]`, `fma.rn.f32 ${o}, ${av}, ${sc[w]}, ${o}`);
    }
    const oi = k.reg('u32', 'oi');
    k.emit(`div.rn.f32 ${o}, ${o}, ${L}`, `add.u32 ${oi}, ${qhead}, ${lane}`, `add.u32 ${oi}, ${oi}, ${e * 32}`);
    const oa = k.addr(orow, oi, 4);
    k.emit(`st.global.f32 [${oa}], ${o}`);
    k.place(skip);
  }
  k.place(fin);
  return { name, text: k.render() };
}
