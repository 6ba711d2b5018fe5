// Elementwise training kernels (the gradients of src/ir/ops-train.ts), each matching its ref kernel
// (targets/ref/train-kernels.ts): silu_grad, sigmoid_grad, the fused SwiGLU backward, rope_grad.
//
// Layout: f32 rows of `width` elements at a stride of pad8(width) (layout.ts); only the first
// `width` elements of a row are written, so padding is never touched. The row count T is the grid's
// y extent: nothing in the text depends on it.
//
// σ is computed as 1 / (1 + 2^(−x·log2 e)) with ex2.approx (as the forward SiLU, dense.ts siluTimes),
// and 1 − σ(x) as σ(−x), its own exponential: no cancellation where σ → 1 (x ≫ 0), and no inf·0
// where the exponential overflows (x ≪ 0: σ = 1/inf = 0 exactly, σ(−x) = 1/(1 + 0) = 1).
import { f32Imm, KernelBuilder } from './builder.js';
import type { Kernel } from './dense.js';
import { pad8 } from './layout.js';
import { ROPE_THREADS } from './attention.js';
import { ropeColumns, ropeCosSin, ropeRotate } from './rope-pair.js';

export const ELEMENTWISE_THREADS = 256;

/** Grid of an elementwise kernel over T rows of `width`: one thread an element. Block ELEMENTWISE_THREADS. */
export const elementwiseGrid = (width: number, T: number): [number, number, number] => [Math.max(1, Math.ceil(width / ELEMENTWISE_THREADS)), T, 1];

/** [σ(x), σ(−x) = 1 − σ(x)], each 1 / (1 + 2^(∓x·log2 e)) correctly rounded from the approximate exponential. */
function sigmoidPair(k: KernelBuilder, x: string): [string, string] {
  const s = k.reg('f32', 'sig'), m = k.reg('f32', 'sigm');
  k.emit(`mul.f32 ${s}, ${x}, ${f32Imm(-Math.LOG2E)}`, `mul.f32 ${m}, ${x}, ${f32Imm(Math.LOG2E)}`);
  k.emit(`ex2.approx.f32 ${s}, ${s}`, `ex2.approx.f32 ${m}, ${m}`);
  k.emit(`add.f32 ${s}, ${s}, 0f3F800000`, `add.f32 ${m}, ${m}, 0f3F800000`, `rcp.rn.f32 ${s}, ${s}`, `rcp.rn.f32 ${m}, ${m}`);
  return [s, m];
}

/** dy · silu'(x) = dy · σ(x)·(1 + x·σ(−x)) into a new register. */
function siluGradOf(k: KernelBuilder, x: string, dy: string): string {
  const [s, m] = sigmoidPair(k, x);
  const r = k.reg('f32', 'dsilu');
  k.emit(`fma.rn.f32 ${r}, ${x}, ${m}, 0f3F800000`, `mul.f32 ${r}, ${r}, ${s}`, `mul.f32 ${r}, ${r}, ${dy}`);
  return r;
}

/**
 * The frame of a kernel over (row t, column i < width): threads past the width leave at once;
 * `body` gets the global pointers by param name, the element's byte offset in a padded row layout,
 * and the column and row registers. `scalars` are f32 params after the pointers (their registers in
 * `ptr` too). Also the frame of the forward kernels (train-forward.ts).
 */
export function elementwiseKernel(name: string, params: string[], width: number, body: (k: KernelBuilder, ptr: Record<string, string>, off: string, at: { col: string; row: string }) => void, scalars: string[] = []): Kernel {
  const k = new KernelBuilder(name, [...params.map((n) => ({ name: n, type: 'u64' as const })), ...scalars.map((n) => ({ name: n, type: 'f32' as const }))]);
  k.blockSize(ELEMENTWISE_THREADS);
  const ptr = Object.fromEntries([...params.map((n) => [n, k.ptrParam(n)]), ...scalars.map((n) => [n, k.f32Param(n)])]);
  const tid = k.special('%tid.x', 'tid'), bx = k.special('%ctaid.x', 'bx'), t = k.special('%ctaid.y', 't');
  const col = k.reg('u32', 'col'), i = k.reg('u32', 'i'), p = k.reg('pred', 'p'), done = k.label('done');
  k.emit(`mad.lo.u32 ${col}, ${bx}, ${ELEMENTWISE_THREADS}, ${tid}`, `setp.ge.u32 ${p}, ${col}, ${width}`, `@${p} bra ${done}`, `mad.lo.u32 ${i}, ${t}, ${pad8(width)}, ${col}`);
  const off = k.reg('u64', 'off');
  k.emit(`mul.wide.u32 ${off}, ${i}, 4`);
  body(k, ptr, off, { col, row: t });
  k.place(done);
  return { name, text: k.render() };
}

/**
 * Columns a thread of a map kernel (mapKernel) computes: four, each input read with one 16-byte load
 * and each output written with one 16-byte store. One column a thread (elementwiseKernel) keeps too
 * few bytes in flight per SM to cover DRAM latency: the 1B training step's elementwise kernels and
 * casts ran at about 2.2–2.5 TB/s of the H200's 4.8 (bench/NOTES.md session 16).
 */
export const MAP_LANES = 4;

/** Grid of a map kernel over T rows of `width`: one thread a group of MAP_LANES columns. Block ELEMENTWISE_THREADS. */
export const mapGrid = (width: number, T: number): [number, number, number] => [Math.max(1, Math.ceil(Math.ceil(width / MAP_LANES) / ELEMENTWISE_THREADS)), T, 1];

/**
 * A kernel computing outputs[j][t, c] = f(inputs[·][t, c], scalars) for every column c < width of row
 * t (the grid's y), MAP_LANES columns a thread: every input's group read first (16-byte loads), then f
 * for each column, then the outputs (16-byte stores), so an output may alias an input (no other
 * thread touches the group). A row's last group of width mod MAP_LANES columns, if any, goes one column
 * at a time: only the first `width` columns are read or written, padding never touched. A group
 * starts at a multiple of 4 columns of a row of pad8(width) f32, so its address is 16-byte aligned.
 * Params: `outs`, then `ins` (pointers), then `scalars` (f32). Grid mapGrid(width, T), block
 * ELEMENTWISE_THREADS. `f` gets one f32 register per input and the scalars' registers, and returns one
 * register per output.
 */
export function mapKernel(name: string, outs: string[], ins: string[], width: number, f: (k: KernelBuilder, x: string[], scalars: Record<string, string>) => string[], scalars: string[] = []): Kernel {
  const k = new KernelBuilder(name, [...[...outs, ...ins].map((n) => ({ name: n, type: 'u64' as const })), ...scalars.map((n) => ({ name: n, type: 'f32' as const }))]);
  k.blockSize(ELEMENTWISE_THREADS);
  const ptr = Object.fromEntries([...outs, ...ins].map((n) => [n, k.ptrParam(n)]));
  const sc = Object.fromEntries(scalars.map((n) => [n, k.f32Param(n)]));
  const tid = k.special('%tid.x', 'tid'), bx = k.special('%ctaid.x', 'bx'), t = k.special('%ctaid.y', 't');
  const c0 = k.reg('u32', 'c0'), i = k.reg('u32', 'i'), p = k.reg('pred', 'p'), done = k.label('done');
  k.emit(`mad.lo.u32 ${c0}, ${bx}, ${ELEMENTWISE_THREADS}, ${tid}`, `shl.b32 ${c0}, ${c0}, 2`, `setp.ge.u32 ${p}, ${c0}, ${width}`, `@${p} bra ${done}`, `mad.lo.u32 ${i}, ${t}, ${pad8(width)}, ${c0}`);
  const off = k.reg('u64', 'off');
  k.emit(`mul.wide.u32 ${off}, ${i}, 4`);
  const full = width - (width % MAP_LANES), tail = k.label('tail');
  if (full < width) k.emit(`setp.ge.u32 ${p}, ${c0}, ${full}`, `@${p} bra ${tail}`);
  // a whole group: loads, f per column, stores
  const x = ins.map((n) => {
    const r = Array.from({ length: MAP_LANES }, () => k.reg('f32', n));
    k.emit(`ld.global.v4.f32 {${r.join(', ')}}, [${at(k, ptr[n]!, off)}]`);
    return r;
  });
  const y = Array.from({ length: MAP_LANES }, (_, l) => f(k, x.map((r) => r[l]!), sc));
  outs.forEach((n, j) => k.emit(`st.global.v4.f32 [${at(k, ptr[n]!, off)}], {${y.map((o) => o[j]!).join(', ')}}`));
  if (full < width) {
    k.emit(`bra ${done}`);
    k.place(tail);
    // the row's last width mod 4 columns, one at a time (c0 = full here: the tail is static)
    for (let l = 0; l < width - full; l++) {
      const o = k.reg('u64', 'o');
      k.emit(`add.s64 ${o}, ${off}, ${4 * l}`);
      const v = ins.map((n) => {
        const r = k.reg('f32', n);
        k.emit(`ld.global.f32 ${r}, [${at(k, ptr[n]!, o)}]`);
        return r;
      });
      const w = f(k, v, sc);
      outs.forEach((n, j) => k.emit(`st.global.f32 [${at(k, ptr[n]!, o)}], ${w[j]}`));
    }
  }
  k.place(done);
  return { name, text: k.render() };
}

/** Address ptr + off. */
export const at = (k: KernelBuilder, ptr: string, off: string): string => {
  const a = k.reg('u64', 'a');
  k.emit(`add.s64 ${a}, ${ptr}, ${off}`);
  return a;
};

/** silu_grad: dx = dy · σ(x)·(1 + x·(1 − σ(x))). Params dx, x, dy (dx may alias either). Grid mapGrid. */
export function siluGrad(width: number): Kernel {
  return mapKernel(`silu_grad_w${width}`, ['dx'], ['x', 'dy'], width, (k, [x, dy]) => [siluGradOf(k, x!, dy!)]);
}

/** sigmoid_grad: dx = dy · σ(x)·(1 − σ(x)). Params dx, x, dy (dx may alias either). Grid mapGrid. */
export function sigmoidGrad(width: number): Kernel {
  return mapKernel(`sigmoid_grad_w${width}`, ['dx'], ['x', 'dy'], width, (k, [x, dy]) => {
    const [s, m] = sigmoidPair(k, x!);
    k.emit(`mul.f32 ${s}, ${s}, ${m}`, `mul.f32 ${s}, ${s}, ${dy}`);
    return [s];
  });
}

/**
 * The SwiGLU backward in one pass: z = silu(g)·u, so with dz given, dg = silu_grad(g, dz·u) and
 * du = dz·silu(g) — exactly the ops grad-rules.ts emits for mul(silu(g), u) (mul's rule:
 * d_a = dy·b, d_b = dy·a; silu's: silu_grad(x, dy)), dz·u rounded to f32 before silu_grad as the
 * composition rounds it. Params dg, du, g, u, dz (dg may alias g, du may alias u or dz: each thread
 * reads its elements before it writes, mapKernel). Grid mapGrid.
 */
export function swigluGrad(width: number): Kernel {
  return mapKernel(`swiglu_grad_w${width}`, ['dg', 'du'], ['g', 'u', 'dz'], width, (k, [g, u, dz]) => {
    const dzu = k.reg('f32', 'dzu');
    k.emit(`mul.f32 ${dzu}, ${dz}, ${u}`);
    const [s, m] = sigmoidPair(k, g!);
    const dg = k.reg('f32', 'dg'), du = k.reg('f32', 'du');
    k.emit(`fma.rn.f32 ${dg}, ${g}, ${m}, 0f3F800000`, `mul.f32 ${dg}, ${dg}, ${s}`, `mul.f32 ${dg}, ${dg}, ${dzu}`);
    k.emit(`mul.f32 ${du}, ${g}, ${s}`, `mul.f32 ${du}, ${du}, ${dz}`);
    return [dg, du];
  });
}

/**
 * Pairs a thread of ropeAtPositions rotates: 4 where they can be read and written with 16-byte
 * accesses (style 'half' with hd/2 a multiple of 4: pairs i..i+3 of a head are 4 consecutive floats
 * in each half, 16-byte aligned in a pad8 row, and their (cos, sin) are 32 consecutive table bytes),
 * else 1. One pair a thread kept ~8 bytes a thread in flight: the 1B step's rope + rope_grad ran at
 * ~1.7 TB/s (15.5 ms, H100, bench/NOTES.md session 17), the map kernels' reason for 4 columns a thread.
 */
export const ropePairsPerThread = (hd: number, style: 'half' | 'interleaved'): number => (style === 'half' && (hd / 2) % 4 === 0 ? 4 : 1);

/** Grid of the training rope kernels (ropeForward, ropeGrad) over T rows; block ROPE_THREADS, ropePairsPerThread pairs a thread. */
export const ropeGradGrid = (heads: number, hd: number, style: 'half' | 'interleaved', T: number, pairs = ropePairsPerThread(hd, style)): [number, number, number] =>
  [Math.ceil((heads * hd) / 2 / pairs / ROPE_THREADS), T, 1];

/**
 * rope_grad: dx = dy with each pair rotated back by its angle (the forward's rotation with sin
 * negated, rope-pair.ts), row t at position pos[t] (i32 [T]: training rows carry their own
 * positions, unlike the forward's pos[0] + t). `table` is the forward's (cos, sin) table
 * (rope-table.ts), rows up to max(pos). Params dx, dy, table, pos; dx may alias dy (f32 dx).
 * `out` 'bf16' (name suffix _bf16): dx in bf16 rows (ropeAtPositions). Grid ropeGradGrid, block ROPE_THREADS.
 */
export function ropeGrad(heads: number, hd: number, style: 'half' | 'interleaved', out: 'f32' | 'bf16' = 'f32'): Kernel {
  return ropeAtPositions(`rope_grad_${style}_h${heads}_hd${hd}${out === 'bf16' ? '_bf16' : ''}`, heads, hd, style, 'inverse', out);
}

/**
 * A rotation of every pair of [T, heads·hd] rows, row t by the angles of position pos[t]: the
 * training forward rope ('forward', train-forward.ts) and its gradient ('inverse'). Params out, in,
 * table, pos (f32 out may alias in: each thread reads its pair before writing it). Grid ropeGradGrid,
 * block ROPE_THREADS. `out` 'bf16': out is rows of pad8(heads·hd) bf16 (a bf16 GEMM operand, read
 * whole by gemm.ts: its padding matters), each value the f32 result rounded to nearest even (as
 * castRows rounds it) and the padding zeroed by the first threads of each row, so the rows are bit
 * for bit castRows' copy of the f32 result with zero padding; out cannot alias in.
 */
export function ropeAtPositions(name: string, heads: number, hd: number, style: 'half' | 'interleaved', direction: 'forward' | 'inverse', out: 'f32' | 'bf16' = 'f32', pairs = ropePairsPerThread(hd, style)): Kernel {
  const half = hd / 2, bf16 = out === 'bf16', width = heads * hd;
  if (pairs !== 1 && (style !== 'half' || pairs !== 4 || half % 4 !== 0)) throw new Error(`PTX generator bug in ${name}: ${pairs} pairs a thread need style 'half' and hd/2 a multiple of 4`);
  const k = new KernelBuilder(name, ['dx', 'dy', 'table', 'pos'].map((n) => ({ name: n, type: 'u64' as const })));
  k.blockSize(ROPE_THREADS);
  const dx = k.ptrParam('dx'), dy = k.ptrParam('dy'), table = k.ptrParam('table'), pos = k.ptrParam('pos');
  const tid = k.special('%tid.x', 'tid'), bx = k.special('%ctaid.x', 'bx'), t = k.special('%ctaid.y', 't');
  // g: this thread's index in the row, which rotates pairs g·pairs .. g·pairs + pairs − 1
  const g = k.reg('u32', pairs === 1 ? 'j' : 'g'), p = k.reg('pred', 'p'), done = k.label('done');
  k.emit(`mad.lo.u32 ${g}, ${bx}, ${ROPE_THREADS}, ${tid}`);
  const dst16 = bf16 ? k.addr(dx, t, pad8(width) * 2) : '';
  if (bf16 && pad8(width) > width) {
    // the row's padding columns width .. pad8(width) − 1: zeros, one a thread (g < 7, all in block x 0)
    const at = k.addr(k.addr(dst16, width, 2), g, 2);
    k.emit(`setp.lt.u32 ${p}, ${g}, ${pad8(width) - width}`, `@${p} st.global.b16 [${at}], 0`);
  }
  k.emit(`setp.ge.u32 ${p}, ${g}, ${(heads * half) / pairs}`, `@${p} bra ${done}`);
  // the first pair j = g·pairs: head h = j / half, i = j mod half (a multiple of pairs)
  let j = g;
  if (pairs !== 1) (j = k.reg('u32', 'j')), k.emit(`shl.b32 ${j}, ${g}, ${Math.log2(pairs)}`);
  const h = k.reg('u32', 'h'), i = k.reg('u32', 'i'), position = k.reg('u32', 'position');
  k.emit(`div.u32 ${h}, ${j}, ${half}`, `rem.u32 ${i}, ${j}, ${half}`, `ld.global.u32 ${position}, [${k.addr(pos, t, 4)}]`);
  const ld = pad8(width) * 4;
  const sinOf = (s: string) => (direction === 'inverse' ? k.neg(s) : s);
  if (pairs === 1) {
    const [c, s] = ropeCosSin(k, table, position, i, hd);
    const { ia, ib } = ropeColumns(k, h, i, hd, style);
    const src = k.addr(dy, t, ld), dst = bf16 ? dst16 : k.addr(dx, t, ld);
    const a = k.reg('f32', 'va'), b = k.reg('f32', 'vb');
    k.emit(`ld.global.f32 ${a}, [${k.addr(src, ia, 4)}]`, `ld.global.f32 ${b}, [${k.addr(src, ib, 4)}]`);
    const [ra, rb] = ropeRotate(k, a, b, c, sinOf(s));
    if (bf16) {
      const ha = k.reg('b16', 'ha'), hb = k.reg('b16', 'hb');
      k.emit(`cvt.rn.bf16.f32 ${ha}, ${ra}`, `cvt.rn.bf16.f32 ${hb}, ${rb}`);
      k.emit(`st.global.b16 [${k.addr(dst, ia, 2)}], ${ha}`, `st.global.b16 [${k.addr(dst, ib, 2)}], ${hb}`);
    } else {
      k.emit(`st.global.f32 [${k.addr(dst, ia, 4)}], ${ra}`, `st.global.f32 [${k.addr(dst, ib, 4)}], ${rb}`);
    }
  } else {
    // 4 pairs (ropePairsPerThread): one 16-byte load of each half (columns h·hd + i .. +3 and those
    // + hd/2), two of the table's (cos, sin) pairs, then per pair exactly ropeRotate's operations (bit
    // for bit the one-pair kernel), then 16-byte stores (bf16: pairs of results packed by cvt.rn.bf16x2)
    const ti = k.reg('u32', 'ti');
    k.emit(`mad.lo.u32 ${ti}, ${position}, ${half}, ${i}`);
    const cs = k.regs('f32', 'cs', 8); // c0, s0, c1, s1, …
    const tab = k.addr(table, ti, 8);
    k.emit(`ld.global.nc.v4.f32 {${cs.slice(0, 4).join(', ')}}, [${tab}]`, `ld.global.nc.v4.f32 {${cs.slice(4).join(', ')}}, [${tab}+16]`);
    const { ia, ib } = ropeColumns(k, h, i, hd, style);
    const src = k.addr(dy, t, ld), dst = bf16 ? dst16 : k.addr(dx, t, ld);
    const a = k.regs('f32', 'va', 4), b = k.regs('f32', 'vb', 4);
    k.emit(`ld.global.v4.f32 {${a.join(', ')}}, [${k.addr(src, ia, 4)}]`, `ld.global.v4.f32 {${b.join(', ')}}, [${k.addr(src, ib, 4)}]`);
    const ra: string[] = [], rb: string[] = [];
    for (let e = 0; e < 4; e++) {
      const [x, y] = ropeRotate(k, a[e]!, b[e]!, cs[2 * e]!, sinOf(cs[2 * e + 1]!));
      ra.push(x), rb.push(y);
    }
    if (bf16) {
      // cvt.rn.bf16x2.f32 d, hi, lo: the lower column in the low half (little-endian memory order)
      const pa = k.regs('b32', 'pa', 2), pb = k.regs('b32', 'pb', 2);
      for (let q = 0; q < 2; q++) k.emit(`cvt.rn.bf16x2.f32 ${pa[q]}, ${ra[2 * q + 1]}, ${ra[2 * q]}`, `cvt.rn.bf16x2.f32 ${pb[q]}, ${rb[2 * q + 1]}, ${rb[2 * q]}`);
      k.emit(`st.global.v2.b32 [${k.addr(dst, ia, 2)}], {${pa.join(', ')}}`, `st.global.v2.b32 [${k.addr(dst, ib, 2)}], {${pb.join(', ')}}`);
    } else {
      k.emit(`st.global.v4.f32 [${k.addr(dst, ia, 4)}], {${ra.join(', ')}}`, `st.global.v4.f32 [${k.addr(dst, ib, 4)}], {${rb.join(', ')}}`);
    }
  }
  k.place(done);
  return { name, text: k.render() };
}
