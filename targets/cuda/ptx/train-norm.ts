// RMSNorm's backward (rmsnorm_grad of src/ir/ops-train.ts; the ref kernel is rmsnormGrad in
// targets/ref/train-kernels.ts) in two deterministic phases, no atomics:
//
//   1. rmsnormGradRows — one block per R consecutive rows (grid ceil(T/R)); rows one after another:
//      the block recomputes the row's r = 1/√(mean(x²) + eps) (as the forward rmsnorm, dense.ts)
//      and Σ dy·w·x with a SIMT tree reduction through shared memory (no warp shuffles, so the CPU
//      PTX interpreter runs it), writes dx = r·dy·w − (r³/d)·x·Σ(dy·w·x), and accumulates dy·x·r of
//      its rows per column in registers: thread `tid` owns columns tid + j·threads, j < cols, the
//      same columns for every row. At the end it writes its partial dweight row part[block, :].
//      Its accumulate variant (rmsnorm_grad_acc) adds dx to what dx's storage holds, as add does.
//   2. columnSum — dweight[i] = Σ_b part[b, i] in b order, one thread a column.
//
// Every sum has a fixed order (per-thread partials in j order, the tree in a fixed shape, the row
// and block sums in index order), so results are bit for bit the same run to run.
// Layout: x, dy, dx [T, pad8(d)]; weight and dweight [pad8(d)]; part [ceil(T/R), pad8(d)] scratch
// (rmsnormGradPartRows). Only columns < d are written.
import { f32Imm, KernelBuilder } from './builder.js';
import { rmsnormThreads, type Kernel } from './dense.js';
import { pad8 } from './layout.js';

export interface RmsnormGradSpec {
  d: number;
  eps: number;
  /** Rows a block handles (default RMSNORM_GRAD_ROWS): more rows, fewer partial rows to add in phase 2. */
  rowsPerBlock?: number;
}

// 32 rows a block: at T = 16384 that is 512 blocks of up to 1024 threads (about two waves on an
// H100) and a 512-row scratch (4 MiB at d = 2048) for phase 2 to add up.
export const RMSNORM_GRAD_ROWS = 32;

const rowsOf = (s: RmsnormGradSpec) => s.rowsPerBlock ?? RMSNORM_GRAD_ROWS;

/** Threads of a phase-1 block (the forward rmsnorm's: rmsnormThreads). */
export const rmsnormGradThreads = (s: RmsnormGradSpec): number => rmsnormThreads(s.d);
/** Phase 1's grid for T rows; also the rows of its scratch. */
export const rmsnormGradGrid = (s: RmsnormGradSpec, T: number): [number, number, number] => [Math.ceil(T / rowsOf(s)), 1, 1];
export const rmsnormGradPartRows = (s: RmsnormGradSpec, T: number): number => Math.ceil(T / rowsOf(s));

/**
 * Sums each of `vals` (one f32 a thread) over the block's `threads` threads, in a tree through
 * shared memory: step s adds element tid + s into tid for tid < min(s, threads − s), s from half
 * the next power of two down to 1, so any thread count works. Every thread gets the totals in
 * `vals`; ends with a barrier, so the next call may reuse the array.
 */
export function blockTreeSum(k: KernelBuilder, vals: string[], tid: string, threads: number): void {
  const sh = k.sharedArray('tree', 'f32', vals.length * threads, 4);
  const a = k.reg('u32', 'ta'), b = k.reg('f32', 'tb'), c = k.reg('f32', 'tc'), p = k.reg('pred', 'tp');
  k.emit(`mov.u32 ${a}, ${sh}`, `mad.lo.u32 ${a}, ${tid}, 4, ${a}`);
  vals.forEach((v, n) => k.emit(`st.shared.f32 [${a}+${n * threads * 4}], ${v}`));
  k.emit('bar.sync 0');
  let P = 1;
  while (P < threads) P *= 2;
  for (let s = P / 2; s >= 1; s /= 2) {
    const skip = k.label('tree');
    k.emit(`setp.ge.u32 ${p}, ${tid}, ${Math.min(s, threads - s)}`, `@${p} bra ${skip}`);
    vals.forEach((_, n) => k.emit(`ld.shared.f32 ${b}, [${a}+${n * threads * 4}]`, `ld.shared.f32 ${c}, [${a}+${(n * threads + s) * 4}]`, `add.f32 ${b}, ${b}, ${c}`, `st.shared.f32 [${a}+${n * threads * 4}], ${b}`));
    k.place(skip);
    k.emit('bar.sync 0');
  }
  vals.forEach((v, n) => k.emit(`ld.shared.f32 ${v}, [${sh}+${n * threads * 4}]`));
  k.emit('bar.sync 0');
}

/**
 * Phase 1. Params dx, part, x, w, dy, then T (u32). Grid rmsnormGradGrid, block rmsnormGradThreads.
 * dx may alias dy (each thread reads its elements of a row before writing them; the reduction's
 * barrier separates every read of the row from every write).
 * `accumulate` (rmsnorm_grad_acc, passes/matmul-accumulate.ts): dx holds acc on entry and gets
 * acc + dx: each thread reads its elements of acc with x and dy (before the row's reduction, so every
 * load of a row is issued before its stores; it alone writes them) and adds with one f32
 * add rounded to nearest, the add kernel's arithmetic (train-forward.ts binary: add.f32; the .rn
 * here only rules out a contraction, of which there is none to make: dx comes out of an fma.rn).
 */
export function rmsnormGradRows(s: RmsnormGradSpec, accumulate = false): Kernel {
  const { d, eps } = s, R = rowsOf(s), nt = rmsnormGradThreads(s), cols = Math.ceil(d / nt);
  const name = `rmsnorm_grad_rows_d${d}_e${f32Imm(eps).slice(2)}_r${R}${accumulate ? '_acc' : ''}`;
  const k = new KernelBuilder(name, [...['dx', 'part', 'x', 'w', 'dy'].map((n) => ({ name: n, type: 'u64' as const })), { name: 'T', type: 'u32' as const }]);
  k.blockSize(nt);
  const dx = k.ptrParam('dx'), part = k.ptrParam('part'), x = k.ptrParam('x'), w = k.ptrParam('w'), dy = k.ptrParam('dy'), T = k.u32Param('T');
  const tid = k.special('%tid.x', 'tid'), blk = k.special('%ctaid.x', 'blk');
  const ld = pad8(d) * 4;
  // this thread's columns tid + j·nt: in range (guard), byte offset, weight; dweight partials
  const guard: string[] = [], off: string[] = [], wv: string[] = [], dw: string[] = [];
  for (let j = 0; j < cols; j++) {
    const i = k.reg('u32', 'col'), g = k.reg('pred', 'in'), o = k.reg('u64', 'coff'), v = k.reg('f32', 'w'), acc = k.reg('f32', 'dw');
    k.emit(`add.u32 ${i}, ${tid}, ${j * nt}`, `setp.lt.u32 ${g}, ${i}, ${d}`, `mul.wide.u32 ${o}, ${i}, 4`, `mov.f32 ${v}, 0f00000000`, `mov.f32 ${acc}, 0f00000000`);
    guard.push(g), off.push(o), wv.push(v), dw.push(acc);
  }
  const at = (base: string, j: number) => {
    const a = k.reg('u64', 'a');
    k.emit(`add.s64 ${a}, ${base}, ${off[j]}`);
    return a;
  };
  for (let j = 0; j < cols; j++) k.emit(`@${guard[j]} ld.global.nc.f32 ${wv[j]}, [${at(w, j)}]`);
  // rows [blk·R, min(T, blk·R + R)): the bound is the block's, so every thread meets every barrier
  const r = k.reg('u32', 'r'), end = k.reg('u32', 'end'), p = k.reg('pred', 'p');
  k.emit(`mul.lo.u32 ${r}, ${blk}, ${R}`, `add.u32 ${end}, ${r}, ${R}`, `min.u32 ${end}, ${end}, ${T}`);
  const loop = k.label('row'), done = k.label('rowsdone');
  k.place(loop);
  k.emit(`setp.ge.u32 ${p}, ${r}, ${end}`, `@${p} bra ${done}`);
  const xrow = k.addr(x, r, ld), dyrow = k.addr(dy, r, ld), dxrow = k.addr(dx, r, ld);
  const xv = k.regs('f32', 'x', cols), dv = k.regs('f32', 'dy', cols);
  for (let j = 0; j < cols; j++) k.emit(`mov.f32 ${xv[j]}, 0f00000000`, `mov.f32 ${dv[j]}, 0f00000000`);
  for (let j = 0; j < cols; j++) k.emit(`@${guard[j]} ld.global.f32 ${xv[j]}, [${at(xrow, j)}]`, `@${guard[j]} ld.global.f32 ${dv[j]}, [${at(dyrow, j)}]`);
  // accumulate: acc is loaded with x and dy, so its latency hides behind the reduction instead of
  // following it (each element is the thread's own: no other thread writes it in between)
  const dst = Array.from({ length: accumulate ? cols : 0 }, (_, j) => at(dxrow, j)), old = k.regs('f32', 'old', dst.length);
  dst.forEach((a, j) => k.emit(`@${guard[j]} ld.global.f32 ${old[j]}, [${a}]`));
  const ss = k.reg('f32', 'ss'), dot = k.reg('f32', 'dot'), dwx = k.reg('f32', 'dwx');
  k.emit(`mov.f32 ${ss}, 0f00000000`, `mov.f32 ${dot}, 0f00000000`);
  for (let j = 0; j < cols; j++) k.emit(`fma.rn.f32 ${ss}, ${xv[j]}, ${xv[j]}, ${ss}`, `mul.f32 ${dwx}, ${dv[j]}, ${wv[j]}`, `fma.rn.f32 ${dot}, ${dwx}, ${xv[j]}, ${dot}`);
  blockTreeSum(k, [ss, dot], tid, nt);
  // r = 1/sqrt(mean + eps) as the forward rmsnorm; coef = r³/d · Σ(dy·w·x)
  const inv = k.reg('f32', 'inv'), coef = k.reg('f32', 'coef');
  k.emit(`mul.f32 ${ss}, ${ss}, ${f32Imm(1 / d)}`, `add.f32 ${ss}, ${ss}, ${f32Imm(eps)}`, `sqrt.rn.f32 ${inv}, ${ss}`, `rcp.rn.f32 ${inv}, ${inv}`);
  k.emit(`mul.f32 ${coef}, ${inv}, ${inv}`, `mul.f32 ${coef}, ${coef}, ${inv}`, `mul.f32 ${coef}, ${coef}, ${dot}`, `mul.f32 ${coef}, ${coef}, ${f32Imm(1 / d)}`, `neg.f32 ${coef}, ${coef}`);
  const g = k.reg('f32', 'g'), dxy = k.reg('f32', 'dxy');
  for (let j = 0; j < cols; j++) {
    // dx = r·dy·w − coef·x; dweight partial += dy·x·r
    k.emit(`mul.f32 ${g}, ${dv[j]}, ${wv[j]}`, `mul.f32 ${g}, ${g}, ${inv}`, `fma.rn.f32 ${g}, ${coef}, ${xv[j]}, ${g}`);
    if (accumulate) k.emit(`@${guard[j]} add.rn.f32 ${g}, ${old[j]}, ${g}`);
    k.emit(`@${guard[j]} st.global.f32 [${accumulate ? dst[j] : at(dxrow, j)}], ${g}`);
    k.emit(`mul.f32 ${dxy}, ${dv[j]}, ${xv[j]}`, `fma.rn.f32 ${dw[j]}, ${dxy}, ${inv}, ${dw[j]}`);
  }
  k.emit(`add.u32 ${r}, ${r}, 1`, `bra ${loop}`);
  k.place(done);
  const prow = k.addr(part, blk, ld);
  for (let j = 0; j < cols; j++) k.emit(`@${guard[j]} st.global.f32 [${at(prow, j)}], ${dw[j]}`);
  return { name, text: k.render() };
}

export const COLUMN_SUM_THREADS = 256;
export const columnSumGrid = (width: number): [number, number, number] => [Math.max(1, Math.ceil(width / COLUMN_SUM_THREADS)), 1, 1];

/**
 * Phase 2 (and any column sum of a [rows, pad8(width)] f32 matrix): out[i] = Σ_b m[b, i] in b order.
 * Params out, m, rows (u32). Grid columnSumGrid(width), block COLUMN_SUM_THREADS.
 */
export function columnSum(width: number): Kernel {
  const name = `column_sum_w${width}`;
  const k = new KernelBuilder(name, [{ name: 'out', type: 'u64' }, { name: 'm', type: 'u64' }, { name: 'rows', type: 'u32' }]);
  k.blockSize(COLUMN_SUM_THREADS);
  const out = k.ptrParam('out'), m = k.ptrParam('m'), rows = k.u32Param('rows');
  const tid = k.special('%tid.x', 'tid'), bx = k.special('%ctaid.x', 'bx');
  const i = k.reg('u32', 'i'), p = k.reg('pred', 'p'), done = k.label('done');
  k.emit(`mad.lo.u32 ${i}, ${bx}, ${COLUMN_SUM_THREADS}, ${tid}`, `setp.ge.u32 ${p}, ${i}, ${width}`, `@${p} bra ${done}`);
  const a = k.addr(m, i, 4), b = k.reg('u32', 'b'), acc = k.reg('f32', 'acc'), v = k.reg('f32', 'v');
  k.emit(`mov.u32 ${b}, 0`, `mov.f32 ${acc}, 0f00000000`);
  const loop = k.label('sum'), end = k.label('sumdone');
  k.place(loop);
  k.emit(`setp.ge.u32 ${p}, ${b}, ${rows}`, `@${p} bra ${end}`, `ld.global.f32 ${v}, [${a}]`, `add.f32 ${acc}, ${acc}, ${v}`, `add.s64 ${a}, ${a}, ${pad8(width) * 4}`, `add.u32 ${b}, ${b}, 1`, `bra ${loop}`);
  k.place(end);
  k.emit(`st.global.f32 [${k.addr(out, i, 4)}], ${acc}`);
  k.place(done);
  return { name, text: k.render() };
}
