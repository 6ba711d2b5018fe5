// STOPGAP: a naive f32 SIMT attention forward and backward for the CUDA training executor
// (targets/cuda/train/), until helper-30's kernels (targets/cuda/ptx/train-attention.ts, issue 18)
// are merged; then the two entries of targets/cuda/train/ops.ts switch to those and this file goes.
// Correct, deterministic and slow: one thread a (row, head), registers for a head's hd elements,
// every key row read once per query row. The CPU PTX interpreter runs it (no shuffles, no barriers).
//
// Semantics (targets/ref/kernels.ts seqAttention, train-kernels.ts attentionGrad): GQA, query head h
// reads kv head h / (heads / kvHeads); row t attends to the rows s ≤ t of its own sequence (seq[s] =
// seq[t]; a sequence's rows are contiguous, which the ref checks); scale 1/√hd. Scores are kept in
// base 2: q is pre-multiplied by scale·log2(e) (one f32 rounding, the same in every kernel, so the
// forward, the dq kernel and the dk/dv kernel see bit-identical scores), P = 2^(score − lse₂).
//
// Layout: q, o, dq, dy [T, pad8(heads·hd)]; k, v, dk, dv [T, pad8(kvHeads·hd)]; seq i32 [T]; stats
// [T, heads] pairs of f32 (lse₂, D = Σ_s P·(dy·v_s)) written by the dq kernel, read by the dk/dv one.
import { f32Imm, KernelBuilder } from './builder.js';
import type { Kernel } from './dense.js';
import { pad8 } from './layout.js';

export interface AttentionShape {
  heads: number;
  kvHeads: number;
  hd: number;
}

/** Every kernel here: grid (1, T); block attentionStopgapThreads (one thread a head, or a kv head). */
export const attentionStopgapGrid = (T: number): [number, number, number] => [1, T, 1];
export const attentionStopgapThreads = (s: AttentionShape, kernel: 'fwd' | 'dq' | 'dkv'): number => (kernel === 'dkv' ? s.kvHeads : s.heads);
/** Bytes of the stats scratch for T rows. */
export const attentionStatsBytes = (s: AttentionShape, T: number): number => T * s.heads * 8;

const tag = (s: AttentionShape) => `h${s.heads}_kv${s.kvHeads}_hd${s.hd}`;
const qScale = (hd: number) => f32Imm(Math.LOG2E / Math.sqrt(hd));

interface Frame {
  k: KernelBuilder;
  ptr: Record<string, string>;
  T: string;
  t: string;
  h: string;
}

/** Kernel start: params (pointers, then u32 T), t = ctaid.y, h = tid (threads past `count` leave). */
function frame(name: string, ptrs: string[], count: number): Frame & { done: string } {
  const k = new KernelBuilder(name, [...ptrs.map((n) => ({ name: n, type: 'u64' as const })), { name: 'T', type: 'u32' as const }]);
  k.blockSize(count);
  const ptr = Object.fromEntries(ptrs.map((n) => [n, k.ptrParam(n)]));
  const T = k.u32Param('T');
  const h = k.special('%tid.x', 'h'), t = k.special('%ctaid.y', 't');
  const p = k.reg('pred', 'p'), done = k.label('done');
  k.emit(`setp.ge.u32 ${p}, ${h}, ${count}`, `@${p} bra ${done}`);
  return { k, ptr, T, t, h, done };
}

/** n registers loaded from row base + col0·4 (hd consecutive f32), optionally times `scale`. */
function loadVec(k: KernelBuilder, base: string, hd: number, hint: string, scale?: string): string[] {
  const v = k.regs('f32', hint, hd);
  v.forEach((r, i) => k.emit(`ld.global.f32 ${r}, [${base}+${4 * i}]`, ...(scale ? [`mul.f32 ${r}, ${r}, ${scale}`] : [])));
  return v;
}

/** Σ_i a[i]·(b at base + 4i), fma in i order, into a new register. */
function dotWith(k: KernelBuilder, a: string[], base: string, hint: string): string {
  const d = k.reg('f32', hint), x = k.reg('f32', 'x');
  k.emit(`mov.f32 ${d}, 0f00000000`);
  a.forEach((r, i) => k.emit(`ld.global.f32 ${x}, [${base}+${4 * i}]`, `fma.rn.f32 ${d}, ${r}, ${x}, ${d}`));
  return d;
}

/** The first row of row t's sequence: walks back while seq[s − 1] = seq[t]. */
function sequenceStart(k: KernelBuilder, seq: string, t: string): string {
  const s = k.reg('u32', 's0'), me = k.reg('u32', 'me'), prev = k.reg('u32', 'prev'), j = k.reg('u32', 'j'), p = k.reg('pred', 'p');
  const loop = k.label('back'), found = k.label('start');
  k.emit(`ld.global.u32 ${me}, [${k.addr(seq, t, 4)}]`, `mov.u32 ${s}, ${t}`);
  k.place(loop);
  k.emit(`setp.eq.u32 ${p}, ${s}, 0`, `@${p} bra ${found}`, `sub.u32 ${j}, ${s}, 1`);
  k.emit(`ld.global.u32 ${prev}, [${k.addr(seq, j, 4)}]`, `setp.ne.u32 ${p}, ${prev}, ${me}`, `@${p} bra ${found}`, `mov.u32 ${s}, ${j}`, `bra ${loop}`);
  k.place(found);
  return s;
}

/** for s = from .. to (inclusive, registers): body(s); s is a fresh register the body must not change. */
function rowLoop(k: KernelBuilder, from: string, to: string, body: (s: string) => void): void {
  const s = k.reg('u32', 's'), p = k.reg('pred', 'p'), loop = k.label('rows'), end = k.label('rowsdone');
  k.emit(`mov.u32 ${s}, ${from}`);
  k.place(loop);
  k.emit(`setp.gt.u32 ${p}, ${s}, ${to}`, `@${p} bra ${end}`);
  body(s);
  k.emit(`add.u32 ${s}, ${s}, 1`, `bra ${loop}`);
  k.place(end);
}

/** Row s, kv head g's hd elements of a [T, pad8(kvHeads·hd)] matrix. */
function kvAddr(k: KernelBuilder, base: string, s: string, g: string, sh: AttentionShape): string {
  return k.addr(k.addr(base, s, pad8(sh.kvHeads * sh.hd) * 4), g, sh.hd * 4);
}

/** Common to the forward and dq kernels: q (scaled), kv head g, the sequence start, and the score max. */
function queryRow(f: Frame, sh: AttentionShape, q: string, kk: string, seq: string) {
  const { k, t, h } = f;
  const qs = loadVec(k, k.addr(k.addr(q, t, pad8(sh.heads * sh.hd) * 4), h, sh.hd * 4), sh.hd, 'q', qScale(sh.hd));
  const g = k.reg('u32', 'g');
  k.emit(`div.u32 ${g}, ${h}, ${sh.heads / sh.kvHeads}`);
  const s0 = sequenceStart(k, seq, t);
  const mx = k.reg('f32', 'mx');
  k.emit(`mov.f32 ${mx}, 0fFF800000`);
  rowLoop(k, s0, t, (s) => k.emit(`max.f32 ${mx}, ${mx}, ${dotWith(k, qs, kvAddr(k, kk, s, g, sh), 'sc')}`));
  return { qs, g, s0, mx };
}

/** 2^(x − m) into a new register. */
function exp2Minus(k: KernelBuilder, x: string, m: string): string {
  const e = k.reg('f32', 'e');
  k.emit(`sub.f32 ${e}, ${x}, ${m}`, `ex2.approx.f32 ${e}, ${e}`);
  return e;
}

/** attention forward: o = softmax(q·kᵀ·scale) · v per (row, head). Params o, q, k, v, seq, T. */
export function attentionStopgapForward(sh: AttentionShape): Kernel {
  const name = `attn_stopgap_fwd_${tag(sh)}`;
  const f = frame(name, ['o', 'q', 'k', 'v', 'seq'], sh.heads);
  const { k, ptr, t, h } = f;
  const { qs, g, s0, mx } = queryRow(f, sh, ptr.q!, ptr.k!, ptr.seq!);
  const l = k.reg('f32', 'l'), acc = k.regs('f32', 'acc', sh.hd), x = k.reg('f32', 'x');
  k.emit(`mov.f32 ${l}, 0f00000000`, ...acc.map((r) => `mov.f32 ${r}, 0f00000000`));
  rowLoop(k, s0, t, (s) => {
    const e = exp2Minus(k, dotWith(k, qs, kvAddr(k, ptr.k!, s, g, sh), 'sc'), mx);
    const va = kvAddr(k, ptr.v!, s, g, sh);
    k.emit(`add.f32 ${l}, ${l}, ${e}`, ...acc.flatMap((r, i) => [`ld.global.f32 ${x}, [${va}+${4 * i}]`, `fma.rn.f32 ${r}, ${e}, ${x}, ${r}`]));
  });
  const oa = k.addr(k.addr(ptr.o!, t, pad8(sh.heads * sh.hd) * 4), h, sh.hd * 4);
  acc.forEach((r, i) => k.emit(`div.rn.f32 ${r}, ${r}, ${l}`, `st.global.f32 [${oa}+${4 * i}], ${r}`));
  k.place(f.done);
  return { name, text: k.render() };
}

/**
 * Backward, kernel 1: dq and the row statistics. Per (t, h): lse₂ = max + log2 Σ 2^(sc − max),
 * D = Σ_s P_s·(dy·v_s), then dq = Σ_s dS_s·k_s with dS = P·(dy·v_s − D)·scale. Writes stats[t, h] =
 * (lse₂, D). Params dq, stats, q, k, v, seq, dy, T.
 */
export function attentionStopgapDq(sh: AttentionShape): Kernel {
  const name = `attn_stopgap_dq_${tag(sh)}`;
  const f = frame(name, ['dq', 'stats', 'q', 'k', 'v', 'seq', 'dy'], sh.heads);
  const { k, ptr, t, h } = f;
  const { qs, g, s0, mx } = queryRow(f, sh, ptr.q!, ptr.k!, ptr.seq!);
  const qw = pad8(sh.heads * sh.hd) * 4;
  const dys = loadVec(k, k.addr(k.addr(ptr.dy!, t, qw), h, sh.hd * 4), sh.hd, 'dy');
  const l = k.reg('f32', 'l'), dd = k.reg('f32', 'dd');
  k.emit(`mov.f32 ${l}, 0f00000000`, `mov.f32 ${dd}, 0f00000000`);
  rowLoop(k, s0, t, (s) => {
    const e = exp2Minus(k, dotWith(k, qs, kvAddr(k, ptr.k!, s, g, sh), 'sc'), mx);
    const dp = dotWith(k, dys, kvAddr(k, ptr.v!, s, g, sh), 'dp');
    k.emit(`add.f32 ${l}, ${l}, ${e}`, `fma.rn.f32 ${dd}, ${e}, ${dp}, ${dd}`);
  });
  const lse = k.reg('f32', 'lse');
  k.emit(`div.rn.f32 ${dd}, ${dd}, ${l}`, `lg2.approx.f32 ${lse}, ${l}`, `add.f32 ${lse}, ${lse}, ${mx}`);
  const acc = k.regs('f32', 'acc', sh.hd), x = k.reg('f32', 'x');
  k.emit(...acc.map((r) => `mov.f32 ${r}, 0f00000000`));
  rowLoop(k, s0, t, (s) => {
    const ka = kvAddr(k, ptr.k!, s, g, sh);
    const P = exp2Minus(k, dotWith(k, qs, ka, 'sc'), lse);
    const ds = dotWith(k, dys, kvAddr(k, ptr.v!, s, g, sh), 'dp');
    k.emit(`sub.f32 ${ds}, ${ds}, ${dd}`, `mul.f32 ${ds}, ${ds}, ${P}`, `mul.f32 ${ds}, ${ds}, ${f32Imm(1 / Math.sqrt(sh.hd))}`);
    k.emit(...acc.flatMap((r, i) => [`ld.global.f32 ${x}, [${ka}+${4 * i}]`, `fma.rn.f32 ${r}, ${ds}, ${x}, ${r}`]));
  });
  const da = k.addr(k.addr(ptr.dq!, t, qw), h, sh.hd * 4);
  acc.forEach((r, i) => k.emit(`st.global.f32 [${da}+${4 * i}], ${r}`));
  const sa = k.addr(k.addr(ptr.stats!, t, sh.heads * 8), h, 8);
  k.emit(`st.global.f32 [${sa}], ${lse}`, `st.global.f32 [${sa}+4], ${dd}`);
  k.place(f.done);
  return { name, text: k.render() };
}

/**
 * Backward, kernel 2: dk and dv of key row s (= ctaid.y) and kv head g (= tid), summed over the
 * query rows t ≥ s of its sequence (in t order) and the group's query heads (in h order):
 * dv += P·dy_t, dk += dS·q_t, P and dS from kernel 1's stats. Params dk, dv, stats, q, k, v, seq, dy, T.
 */
export function attentionStopgapDkv(sh: AttentionShape): Kernel {
  const name = `attn_stopgap_dkv_${tag(sh)}`;
  const f = frame(name, ['dk', 'dv', 'stats', 'q', 'k', 'v', 'seq', 'dy'], sh.kvHeads);
  const { k, ptr, T, t: s, h: g } = f;
  const ks = loadVec(k, kvAddr(k, ptr.k!, s, g, sh), sh.hd, 'k'), vs = loadVec(k, kvAddr(k, ptr.v!, s, g, sh), sh.hd, 'v');
  const dk = k.regs('f32', 'dk', sh.hd), dv = k.regs('f32', 'dv', sh.hd);
  k.emit(...[...dk, ...dv].map((r) => `mov.f32 ${r}, 0f00000000`));
  const me = k.reg('u32', 'me'), other = k.reg('u32', 'other'), t = k.reg('u32', 't'), p = k.reg('pred', 'p');
  const loop = k.label('queries'), end = k.label('queriesdone');
  k.emit(`ld.global.u32 ${me}, [${k.addr(ptr.seq!, s, 4)}]`, `mov.u32 ${t}, ${s}`);
  k.place(loop);
  k.emit(`setp.ge.u32 ${p}, ${t}, ${T}`, `@${p} bra ${end}`, `ld.global.u32 ${other}, [${k.addr(ptr.seq!, t, 4)}]`, `setp.ne.u32 ${p}, ${other}, ${me}`, `@${p} bra ${end}`);
  const group = sh.heads / sh.kvHeads, qw = pad8(sh.heads * sh.hd) * 4;
  const h = k.reg('u32', 'h'), x = k.reg('f32', 'x'), sc = k.reg('f32', 'sc'), lse = k.reg('f32', 'lse'), dd = k.reg('f32', 'dd');
  for (let j = 0; j < group; j++) {
    k.emit(`mad.lo.u32 ${h}, ${g}, ${group}, ${j}`);
    const qa = k.addr(k.addr(ptr.q!, t, qw), h, sh.hd * 4), dya = k.addr(k.addr(ptr.dy!, t, qw), h, sh.hd * 4);
    // the score as the other kernels compute it: Σ_i (q_i·c)·k_i in i order
    k.emit(`mov.f32 ${sc}, 0f00000000`);
    ks.forEach((r, i) => k.emit(`ld.global.f32 ${x}, [${qa}+${4 * i}]`, `mul.f32 ${x}, ${x}, ${qScale(sh.hd)}`, `fma.rn.f32 ${sc}, ${x}, ${r}, ${sc}`));
    const sa = k.addr(k.addr(ptr.stats!, t, sh.heads * 8), h, 8);
    k.emit(`ld.global.f32 ${lse}, [${sa}]`, `ld.global.f32 ${dd}, [${sa}+4]`);
    const P = exp2Minus(k, sc, lse);
    const dys = loadVec(k, dya, sh.hd, 'dy');
    const ds = k.reg('f32', 'ds');
    k.emit(`mov.f32 ${ds}, 0f00000000`);
    dys.forEach((r, i) => k.emit(`fma.rn.f32 ${ds}, ${r}, ${vs[i]}, ${ds}`, `fma.rn.f32 ${dv[i]}, ${P}, ${r}, ${dv[i]}`));
    k.emit(`sub.f32 ${ds}, ${ds}, ${dd}`, `mul.f32 ${ds}, ${ds}, ${P}`, `mul.f32 ${ds}, ${ds}, ${f32Imm(1 / Math.sqrt(sh.hd))}`);
    dk.forEach((r, i) => k.emit(`ld.global.f32 ${x}, [${qa}+${4 * i}]`, `fma.rn.f32 ${r}, ${ds}, ${x}, ${r}`));
  }
  k.emit(`add.u32 ${t}, ${t}, 1`, `bra ${loop}`);
  k.place(end);
  const dka = kvAddr(k, ptr.dk!, s, g, sh), dva = kvAddr(k, ptr.dv!, s, g, sh);
  dk.forEach((r, i) => k.emit(`st.global.f32 [${dka}+${4 * i}], ${r}`));
  dv.forEach((r, i) => k.emit(`st.global.f32 [${dva}+${4 * i}], ${r}`));
  k.place(f.done);
  return { name, text: k.render() };
}
