// The decode attention mocc used through session 10, over an f32 cache: one block per (head, token).
// It ran on the H100 (measured in bench/results, e.g. 865 tok/s for the 1B preset at 16 tokens of
// context). Sessions now use the split attention (decode-attention.ts); this one stays as the
// baseline that benchmarks compare with (createCudaSession's `baseline`).
// Restored unchanged from commit 52b866c^ (targets/cuda/ptx/attention.ts).
import { f32Imm, KernelBuilder } from './builder.js';
import type { Kernel } from './dense.js';
import { pad8 } from './layout.js';


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
