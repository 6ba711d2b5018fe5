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

/** Address ptr + off. */
export const at = (k: KernelBuilder, ptr: string, off: string): string => {
  const a = k.reg('u64', 'a');
  k.emit(`add.s64 ${a}, ${ptr}, ${off}`);
  return a;
};

/** silu_grad: dx = dy · σ(x)·(1 + x·(1 − σ(x))). Params dx, x, dy (dx may alias either). Grid elementwiseGrid. */
export function siluGrad(width: number): Kernel {
  return elementwiseKernel(`silu_grad_w${width}`, ['dx', 'x', 'dy'], width, (k, p, off) => {
    const x = k.reg('f32', 'x'), dy = k.reg('f32', 'dy');
    k.emit(`ld.global.f32 ${x}, [${at(k, p.x!, off)}]`, `ld.global.f32 ${dy}, [${at(k, p.dy!, off)}]`);
    k.emit(`st.global.f32 [${at(k, p.dx!, off)}], ${siluGradOf(k, x, dy)}`);
  });
}

/** sigmoid_grad: dx = dy · σ(x)·(1 − σ(x)). Params dx, x, dy (dx may alias either). Grid elementwiseGrid. */
export function sigmoidGrad(width: number): Kernel {
  return elementwiseKernel(`sigmoid_grad_w${width}`, ['dx', 'x', 'dy'], width, (k, p, off) => {
    const x = k.reg('f32', 'x'), dy = k.reg('f32', 'dy');
    k.emit(`ld.global.f32 ${x}, [${at(k, p.x!, off)}]`, `ld.global.f32 ${dy}, [${at(k, p.dy!, off)}]`);
    const [s, m] = sigmoidPair(k, x);
    k.emit(`mul.f32 ${s}, ${s}, ${m}`, `mul.f32 ${s}, ${s}, ${dy}`, `st.global.f32 [${at(k, p.dx!, off)}], ${s}`);
  });
}

/**
 * The SwiGLU backward in one pass: z = silu(g)·u, so with dz given, dg = silu_grad(g, dz·u) and
 * du = dz·silu(g) — exactly the ops grad-rules.ts emits for mul(silu(g), u) (mul's rule:
 * d_a = dy·b, d_b = dy·a; silu's: silu_grad(x, dy)), dz·u rounded to f32 before silu_grad as the
 * composition rounds it. Params dg, du, g, u, dz (dg may alias g, du may alias u or dz: each thread
 * reads its three elements before it writes). Grid elementwiseGrid.
 */
export function swigluGrad(width: number): Kernel {
  return elementwiseKernel(`swiglu_grad_w${width}`, ['dg', 'du', 'g', 'u', 'dz'], width, (k, p, off) => {
    const g = k.reg('f32', 'g'), u = k.reg('f32', 'u'), dz = k.reg('f32', 'dz');
    k.emit(`ld.global.f32 ${g}, [${at(k, p.g!, off)}]`, `ld.global.f32 ${u}, [${at(k, p.u!, off)}]`, `ld.global.f32 ${dz}, [${at(k, p.dz!, off)}]`);
    const dzu = k.reg('f32', 'dzu');
    k.emit(`mul.f32 ${dzu}, ${dz}, ${u}`);
    const [s, m] = sigmoidPair(k, g);
    const dg = k.reg('f32', 'dg'), du = k.reg('f32', 'du');
    k.emit(`fma.rn.f32 ${dg}, ${g}, ${m}, 0f3F800000`, `mul.f32 ${dg}, ${dg}, ${s}`, `mul.f32 ${dg}, ${dg}, ${dzu}`);
    k.emit(`mul.f32 ${du}, ${g}, ${s}`, `mul.f32 ${du}, ${du}, ${dz}`);
    k.emit(`st.global.f32 [${at(k, p.dg!, off)}], ${dg}`, `st.global.f32 [${at(k, p.du!, off)}], ${du}`);
  });
}

/** Grid of ropeGrad over T rows; block ROPE_THREADS (one thread a pair, as the forward rope). */
export const ropeGradGrid = (heads: number, hd: number, T: number): [number, number, number] => [Math.ceil((heads * hd) / 2 / ROPE_THREADS), T, 1];

/**
 * rope_grad: dx = dy with each pair rotated back by its angle (the forward's rotation with sin
 * negated, rope-pair.ts), row t at position pos[t] (i32 [T]: training rows carry their own
 * positions, unlike the forward's pos[0] + t). `table` is the forward's (cos, sin) table
 * (rope-table.ts), rows up to max(pos). Params dx, dy, table, pos; dx may alias dy.
 * Grid ropeGradGrid, block ROPE_THREADS.
 */
export function ropeGrad(heads: number, hd: number, style: 'half' | 'interleaved'): Kernel {
  return ropeAtPositions(`rope_grad_${style}_h${heads}_hd${hd}`, heads, hd, style, 'inverse');
}

/**
 * A rotation of every pair of [T, heads·hd] rows, row t by the angles of position pos[t]: the
 * training forward rope ('forward', train-forward.ts) and its gradient ('inverse'). Params out, in,
 * table, pos (out may alias in: each thread reads its pair before writing it). Grid ropeGradGrid,
 * block ROPE_THREADS.
 */
export function ropeAtPositions(name: string, heads: number, hd: number, style: 'half' | 'interleaved', direction: 'forward' | 'inverse'): Kernel {
  const half = hd / 2;
  const k = new KernelBuilder(name, ['dx', 'dy', 'table', 'pos'].map((n) => ({ name: n, type: 'u64' as const })));
  k.blockSize(ROPE_THREADS);
  const dx = k.ptrParam('dx'), dy = k.ptrParam('dy'), table = k.ptrParam('table'), pos = k.ptrParam('pos');
  const tid = k.special('%tid.x', 'tid'), bx = k.special('%ctaid.x', 'bx'), t = k.special('%ctaid.y', 't');
  const j = k.reg('u32', 'j'), p = k.reg('pred', 'p'), done = k.label('done');
  k.emit(`mad.lo.u32 ${j}, ${bx}, ${ROPE_THREADS}, ${tid}`, `setp.ge.u32 ${p}, ${j}, ${heads * half}`, `@${p} bra ${done}`);
  const h = k.reg('u32', 'h'), i = k.reg('u32', 'i'), position = k.reg('u32', 'position');
  k.emit(`div.u32 ${h}, ${j}, ${half}`, `rem.u32 ${i}, ${j}, ${half}`, `ld.global.u32 ${position}, [${k.addr(pos, t, 4)}]`);
  const [c, s] = ropeCosSin(k, table, position, i, hd);
  const { ia, ib } = ropeColumns(k, h, i, hd, style);
  const ld = pad8(heads * hd) * 4;
  const src = k.addr(dy, t, ld), dst = k.addr(dx, t, ld);
  const a = k.reg('f32', 'va'), b = k.reg('f32', 'vb');
  k.emit(`ld.global.f32 ${a}, [${k.addr(src, ia, 4)}]`, `ld.global.f32 ${b}, [${k.addr(src, ib, 4)}]`);
  const [ra, rb] = ropeRotate(k, a, b, c, direction === 'inverse' ? k.neg(s) : s);
  k.emit(`st.global.f32 [${k.addr(dst, ia, 4)}], ${ra}`, `st.global.f32 [${k.addr(dst, ib, 4)}], ${rb}`);
  k.place(done);
  return { name, text: k.render() };
}
