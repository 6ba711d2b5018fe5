// RoPE and the KV-cache append (the attention over the cache is decode-attention.ts). Positions come
// from a device int32 (`pos`: tokens already cached) so a captured decode step replays at any position.
// The caches hold `KvDType` elements: f32 values are rounded to it when stored.
import { KernelBuilder } from './builder.js';
import type { Kernel } from './dense.js';
import { elemBytes, kvTag, pad8 } from './layout.js';
import { storeAs } from './load.js';
import { ropeColumns, ropeCosSin, ropeRotate } from './rope-pair.js';
import type { KvDType } from '../program.js';

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
  const [c, s] = ropeCosSin(k, table, position, i, hd);
  const { ia, ib } = ropeColumns(k, h, i, hd, style);
  const row = k.addr(x, t, pad8(heads * hd) * 4);
  const pa = k.addr(row, ia, 4), pb = k.addr(row, ib, 4);
  const a = k.reg('f32', 'va'), b = k.reg('f32', 'vb');
  k.emit(`ld.global.f32 ${a}, [${pa}]`, `ld.global.f32 ${b}, [${pb}]`);
  const [ra, rb] = ropeRotate(k, a, b, c, s);
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
export function ropeStore(heads: number, kvHeads: number, hd: number, style: 'half' | 'interleaved', cache: KvDType = 'f32'): Kernel {
  const name = `rope_store_${style}_h${heads}_kv${kvHeads}_hd${hd}${kvTag(cache)}`;
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
  const [c, sn] = ropeCosSin(k, table, position, i, hd);
  const { ia, ib } = ropeColumns(k, h, i, hd, style);
  // source row: q[t] or k[t]
  const qw = pad8(heads * hd), kvw = pad8(kvHeads * hd);
  const qrow = k.addr(q, t, qw * 4), krow = k.addr(kk, t, kvw * 4);
  const row = k.reg('u64', 'row');
  k.emit(`mov.u64 ${row}, ${qrow}`, `@${isK} mov.u64 ${row}, ${krow}`);
  const pa = k.addr(row, ia, 4), pb = k.addr(row, ib, 4);
  const a = k.reg('f32', 'va'), bv = k.reg('f32', 'vb');
  k.emit(`ld.global.f32 ${a}, [${pa}]`, `ld.global.f32 ${bv}, [${pb}]`);
  const [ra, rb] = ropeRotate(k, a, bv, c, sn);
  const toCache = k.label('kv');
  k.emit(`@${isK} bra ${toCache}`, `st.global.f32 [${pa}], ${ra}`, `st.global.f32 [${pb}], ${rb}`, `bra ${done}`);
  k.place(toCache);
  const eb = elemBytes(cache);
  const crow = k.addr(ck, position, kvw * eb), vcrow = k.addr(cv, position, kvw * eb), vrow = k.addr(vv, t, kvw * 4);
  const va = k.reg('f32', 'v0'), vb2 = k.reg('f32', 'v1');
  k.emit(`ld.global.f32 ${va}, [${k.addr(vrow, ia, 4)}]`, `ld.global.f32 ${vb2}, [${k.addr(vrow, ib, 4)}]`);
  storeAs(k, cache, k.addr(crow, ia, eb), ra);
  storeAs(k, cache, k.addr(crow, ib, eb), rb);
  storeAs(k, cache, k.addr(vcrow, ia, eb), va);
  storeAs(k, cache, k.addr(vcrow, ib, eb), vb2);
  k.place(done);
  return { name, text: k.render() };
}

/** cacheK[pos + t, :] = k[t, :], same for v; one element a thread (a single looping block measured 10 µs). */
export const kvStoreGrid = (kvw: number): number => Math.ceil(kvw / 128);

/** Rows of width kvw (padded), the caches' elements of `cache` type. Grid (kvStoreGrid(kvw), T), block 128. */
export function kvStore(kvw: number, cache: KvDType = 'f32'): Kernel {
  const name = `kv_store_w${kvw}${kvTag(cache)}`;
  const k = new KernelBuilder(name, [{ name: 'ck', type: 'u64' }, { name: 'cv', type: 'u64' }, { name: 'k', type: 'u64' }, { name: 'v', type: 'u64' }, { name: 'pos', type: 'u64' }]);
  const ck = k.ptrParam('ck'), cv = k.ptrParam('cv'), kk = k.ptrParam('k'), vv = k.ptrParam('v'), pos = k.ptrParam('pos');
  const tid = k.special('%tid.x', 'tid'), bx = k.special('%ctaid.x', 'bx'), t = k.special('%ctaid.y', 't');
  const i = k.reg('u32', 'i'), p = k.reg('pred', 'p'), done = k.label('done');
  k.emit(`mad.lo.u32 ${i}, ${bx}, 128, ${tid}`, `setp.ge.u32 ${p}, ${i}, ${kvw}`, `@${p} bra ${done}`);
  const position = k.reg('u32', 'position');
  k.emit(`ld.global.u32 ${position}, [${pos}]`, `add.u32 ${position}, ${position}, ${t}`);
  const ld = pad8(kvw);
  const srcK = k.addr(k.addr(kk, t, ld * 4), i, 4), srcV = k.addr(k.addr(vv, t, ld * 4), i, 4);
  const eb = elemBytes(cache);
  const dstK = k.addr(k.addr(ck, position, ld * eb), i, eb), dstV = k.addr(k.addr(cv, position, ld * eb), i, eb);
  const a = k.reg('f32', 'a'), b = k.reg('f32', 'b');
  k.emit(`ld.global.f32 ${a}, [${srcK}]`, `ld.global.f32 ${b}, [${srcV}]`);
  storeAs(k, cache, dstK, a);
  storeAs(k, cache, dstV, b);
  k.place(done);
  return { name, text: k.render() };
}
