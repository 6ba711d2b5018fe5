// The forward ops of a training graph in plain f32 SIMT (no warp shuffles, no tensor cores), for the
// CUDA training executor (targets/cuda/train/): embedding, rmsnorm, rope at per-row positions, add,
// silu, mul, fill_like. Each matches its ref kernel (targets/ref/kernels.ts, eval-node.ts) and runs on
// the CPU PTX interpreter (test/helpers/ptx-sim.ts). The inference kernels (dense.ts, attention.ts)
// differ where training needs otherwise: rows carry their own positions (pos[t], not pos0 + t), and
// the reductions here are SIMT trees, not warp shuffles, so the interpreter can run them.
//
// Layout: f32 rows of `width` elements at a stride of pad8(width) (layout.ts); token ids i32 [T].
// Only the first `width` elements of a row are written. The row count T is a grid extent (y) for
// every kernel here, so nothing in the text depends on it.
import { f32Imm, KernelBuilder } from './builder.js';
import { rmsnormThreads, type Kernel } from './dense.js';
import { pad8 } from './layout.js';
import { at, elementwiseKernel, mapKernel, ropeAtPositions } from './train-elementwise.js';
import { blockTreeSum } from './train-norm.js';

export { elementwiseGrid, ELEMENTWISE_THREADS, mapGrid, ropeGradGrid as ropeGrid } from './train-elementwise.js';

/**
 * embedding: out[t, c] = table[tokens[t], c]. Tokens must lie in 0 .. V-1 (the executor checks on
 * the host, as the ref kernel throws). Params out, table, tokens. Grid elementwiseGrid(d, T).
 */
export function embeddingRows(d: number): Kernel {
  return elementwiseKernel(`embedding_rows_d${d}`, ['out', 'table', 'tokens'], d, (k, p, off, { col, row }) => {
    const tok = k.reg('u32', 'tok'), x = k.reg('f32', 'x');
    k.emit(`ld.global.u32 ${tok}, [${k.addr(p.tokens!, row, 4)}]`);
    k.emit(`ld.global.f32 ${x}, [${k.addr(k.addr(p.table!, tok, pad8(d) * 4), col, 4)}]`, `st.global.f32 [${at(k, p.out!, off)}], ${x}`);
  });
}

/** add / mul: out = a ∘ b elementwise. Params out, a, b (out may alias either). Grid mapGrid. */
export function binary(op: 'add' | 'mul', width: number): Kernel {
  return mapKernel(`${op}_f32_w${width}`, ['out'], ['a', 'b'], width, (k, [a, b]) => {
    const r = k.reg('f32', op);
    k.emit(`${op}.f32 ${r}, ${a}, ${b}`);
    return [r];
  });
}

/**
 * silu: out = x / (1 + 2^(−x·log2 e)), the exponential ex2.approx (relative error about 2^-22) and
 * the division correctly rounded. For x ≪ 0 the exponential is inf and x / inf = −0, the limit.
 * Params out, x (may alias). Grid mapGrid.
 */
export function silu(width: number): Kernel {
  return mapKernel(`silu_f32_w${width}`, ['out'], ['x'], width, (k, [x]) => {
    const e = k.reg('f32', 'e');
    k.emit(`mul.f32 ${e}, ${x}, ${f32Imm(-Math.LOG2E)}`, `ex2.approx.f32 ${e}, ${e}`, `add.f32 ${e}, ${e}, 0f3F800000`, `div.rn.f32 ${e}, ${x}, ${e}`);
    return [e];
  });
}

/** fill_like: out = value everywhere (the value a run-time f32 param). Params out, value. Grid mapGrid. */
export function fill(width: number): Kernel {
  return mapKernel(`fill_f32_w${width}`, ['out'], [], width, (_k, _x, sc) => [sc.value!], ['value']);
}

/** rope: each pair of row t rotated by position pos[t]'s angles. Params out, x, table, pos. Grid ropeGrid, block ROPE_THREADS. */
export function ropeForward(heads: number, hd: number, style: 'half' | 'interleaved'): Kernel {
  return ropeAtPositions(`rope_rows_${style}_h${heads}_hd${hd}`, heads, hd, style, 'forward');
}

/** Threads of an rmsnormRows block (the inference rmsnorm's count). */
export const rmsnormRowsThreads = (d: number): number => rmsnormThreads(d);

/**
 * rmsnorm: y = x · (1/√(mean(x²) + eps)) · w per row, one block a row (grid (1, T)), block
 * rmsnormRowsThreads(d). Thread tid holds columns tid + j·threads; Σx² is a SIMT tree
 * (train-norm.ts blockTreeSum), the same r = 1/√(·) as rmsnorm_grad recomputes. Params y, x, w
 * (y may alias x: every read of the row is before the tree's barriers, every write after).
 * `out` 'bf16' (name suffix _bf16): y is rows of pad8(d) bf16 (a bf16 GEMM operand, read whole by
 * gemm.ts: its padding matters), each value the f32 result rounded to nearest even (as castRows
 * rounds it), the padding zeroed by threads 0 .. pad8(d) − d − 1: bit for bit castRows' copy of the
 * f32 rows with zero padding; y cannot alias x.
 */
export function rmsnormRows(d: number, eps: number, out: 'f32' | 'bf16' = 'f32'): Kernel {
  const nt = rmsnormRowsThreads(d), cols = Math.ceil(d / nt), bf16 = out === 'bf16';
  const name = `rmsnorm_rows_d${d}_e${f32Imm(eps).slice(2)}${bf16 ? '_bf16' : ''}`;
  const k = new KernelBuilder(name, ['y', 'x', 'w'].map((n) => ({ name: n, type: 'u64' as const })));
  k.blockSize(nt);
  const y = k.ptrParam('y'), x = k.ptrParam('x'), w = k.ptrParam('w');
  const tid = k.special('%tid.x', 'tid'), t = k.special('%ctaid.y', 't');
  const ld = pad8(d) * 4;
  const xrow = k.addr(x, t, ld), yrow = k.addr(y, t, bf16 ? pad8(d) * 2 : ld);
  const guard: string[] = [], col: string[] = [], xv = k.regs('f32', 'x', cols);
  const ss = k.reg('f32', 'ss');
  k.emit(`mov.f32 ${ss}, 0f00000000`);
  for (let j = 0; j < cols; j++) {
    const i = k.reg('u32', 'col'), g = k.reg('pred', 'in');
    k.emit(`add.u32 ${i}, ${tid}, ${j * nt}`, `setp.lt.u32 ${g}, ${i}, ${d}`, `mov.f32 ${xv[j]}, 0f00000000`);
    k.emit(`@${g} ld.global.f32 ${xv[j]}, [${k.addr(xrow, i, 4)}]`);
    k.emit(`fma.rn.f32 ${ss}, ${xv[j]}, ${xv[j]}, ${ss}`);
    guard.push(g), col.push(i);
  }
  blockTreeSum(k, [ss], tid, nt);
  const inv = k.reg('f32', 'inv'), wv = k.reg('f32', 'w'), v = k.reg('f32', 'v');
  k.emit(`mul.f32 ${ss}, ${ss}, ${f32Imm(1 / d)}`, `add.f32 ${ss}, ${ss}, ${f32Imm(eps)}`, `sqrt.rn.f32 ${inv}, ${ss}`, `rcp.rn.f32 ${inv}, ${inv}`);
  const h = bf16 ? k.reg('b16', 'h') : '';
  for (let j = 0; j < cols; j++) {
    const wa = k.addr(w, col[j]!, 4), ya = k.addr(yrow, col[j]!, bf16 ? 2 : 4);
    const store = bf16 ? [`cvt.rn.bf16.f32 ${h}, ${v}`, `@${guard[j]} st.global.b16 [${ya}], ${h}`] : [`@${guard[j]} st.global.f32 [${ya}], ${v}`];
    k.emit(`mov.f32 ${wv}, 0f00000000`, `@${guard[j]} ld.global.nc.f32 ${wv}, [${wa}]`, `mul.f32 ${v}, ${xv[j]}, ${inv}`, `mul.f32 ${v}, ${v}, ${wv}`, ...store);
  }
  if (bf16 && pad8(d) > d) {
    // the row's padding columns d .. pad8(d) − 1: zeros, one a thread (fewer than 8 ≤ nt)
    const p = k.reg('pred', 'pad');
    k.emit(`setp.lt.u32 ${p}, ${tid}, ${pad8(d) - d}`, `@${p} st.global.b16 [${k.addr(k.addr(yrow, d, 2), tid, 2)}], 0`);
  }
  return { name, text: k.render() };
}
