// The backward GEMMs of a linear in plain f32 SIMT, for the CUDA training executor (targets/cuda/train/):
//   matmul    (ops-train.ts): out[M, N] = a[M, K] · b[K, N]       (dx = dy · W, W the [out, in] weight)
//   matmul_tn (ops-train.ts): out[M, N] = a[K, M]ᵀ · b[K, N]      (dW = dyᵀ · x, K the T rows)
// Correct and simple first: one thread an output element, an fma.rn.f32 chain over k in increasing
// order (the sum an f32 loop computes: ~1e-7 relative to Σ|a·b|; the ref sums in float64). No shared
// memory, no tiling: every operand element is read K times from L1/L2. The fast path replaces these
// with the tensor-core GEMM (gemm-sm90.ts, whose 'xw' and 'xtw' layouts are exactly these two
// products) and the tiled f32 GEMM (gemm-f32.ts, 'xwt' only); this file is the correctness backbone
// the CPU PTX interpreter runs.
//
// Layout: every matrix f32 with rows of pad8(its row length) elements (layout.ts); only columns < N
// are written. The static sizes are in the name; the row count of a (M for matmul, K for matmul_tn,
// T in a training graph) is a run-time u32 param or the grid's y extent.
import { KernelBuilder } from './builder.js';
import type { Kernel } from './dense.js';
import { pad8 } from './layout.js';

export const MATMUL_THREADS = 128;

/** Grid of either kernel for an [M, N] output: x over column blocks, y over rows. Block MATMUL_THREADS. */
export const matmulGrid = (M: number, N: number): [number, number, number] => [Math.max(1, Math.ceil(N / MATMUL_THREADS)), M, 1];

/**
 * The frame: thread (row m = ctaid.y, column n < N); `kLoop` runs the reduction. Params out, a, b,
 * then u32 K (used by matmul_tn; matmul's K is static). Threads past N leave at once (no barriers).
 * `accumulate`: out += the sum (matmul_acc, passes/matmul-accumulate.ts): the thread reads its element
 * and adds the finished sum to it with one add.f32, the add kernel's arithmetic (train-forward.ts binary).
 */
function matmulKernel(name: string, N: number, body: (k: KernelBuilder, p: { a: string; b: string; K: string }, m: string, n: string, acc: string) => void, accumulate = false): Kernel {
  const k = new KernelBuilder(name, [...['out', 'a', 'b'].map((x) => ({ name: x, type: 'u64' as const })), { name: 'K', type: 'u32' as const }]);
  k.blockSize(MATMUL_THREADS);
  const out = k.ptrParam('out'), a = k.ptrParam('a'), b = k.ptrParam('b'), K = k.u32Param('K');
  const tid = k.special('%tid.x', 'tid'), bx = k.special('%ctaid.x', 'bx'), m = k.special('%ctaid.y', 'm');
  const n = k.reg('u32', 'n'), p = k.reg('pred', 'p'), done = k.label('done');
  k.emit(`mad.lo.u32 ${n}, ${bx}, ${MATMUL_THREADS}, ${tid}`, `setp.ge.u32 ${p}, ${n}, ${N}`, `@${p} bra ${done}`);
  const acc = k.reg('f32', 'acc');
  k.emit(`mov.f32 ${acc}, 0f00000000`);
  body(k, { a, b, K }, m, n, acc);
  const at = k.addr(k.addr(out, m, pad8(N) * 4), n, 4);
  if (accumulate) {
    const old = k.reg('f32', 'old');
    k.emit(`ld.global.f32 ${old}, [${at}]`, `add.f32 ${acc}, ${old}, ${acc}`);
  }
  k.emit(`st.global.f32 [${at}], ${acc}`);
  k.place(done);
  return { name, text: k.render() };
}

/**
 * acc += Σ_k x[k]·y[k] over k < K, where x[k] is at xa + k·xStep and y[k] at ya + k·yStep (bytes).
 * K a register or an immediate; the pointers are advanced in place.
 */
function dotLoop(k: KernelBuilder, K: string | number, xa: string, xStep: number, ya: string, yStep: number, acc: string): void {
  const i = k.reg('u32', 'i'), p = k.reg('pred', 'p'), x = k.reg('f32', 'x'), y = k.reg('f32', 'y');
  const loop = k.label('k'), end = k.label('kdone');
  k.emit(`mov.u32 ${i}, 0`);
  k.place(loop);
  k.emit(`setp.ge.u32 ${p}, ${i}, ${K}`, `@${p} bra ${end}`);
  k.emit(`ld.global.f32 ${x}, [${xa}]`, `ld.global.f32 ${y}, [${ya}]`, `fma.rn.f32 ${acc}, ${x}, ${y}, ${acc}`);
  k.emit(`add.s64 ${xa}, ${xa}, ${xStep}`, `add.s64 ${ya}, ${ya}, ${yStep}`, `add.u32 ${i}, ${i}, 1`, `bra ${loop}`);
  k.place(end);
}

/**
 * matmul: out[m, n] = Σ_k a[m, k]·b[k, n], a [M, pad8(K)], b [K, pad8(N)]. K and N static; the K
 * param is ignored (pass K). Grid matmulGrid(M, N). `accumulate`: out[m, n] += the sum (matmul_acc).
 */
export function matmulNN(K: number, N: number, accumulate = false): Kernel {
  return matmulKernel(`matmul_f32_k${K}_n${N}${accumulate ? '_acc' : ''}`, N, (k, p, m, n, acc) => {
    const xa = k.addr(p.a, m, pad8(K) * 4), ya = k.addr(p.b, n, 4);
    dotLoop(k, K, xa, 4, ya, pad8(N) * 4, acc);
  }, accumulate);
}

/**
 * matmul_tn: out[m, n] = Σ_k a[k, m]·b[k, n], a [K, pad8(M)], b [K, pad8(N)], K the run-time param
 * (a training graph's T). M and N static. Grid matmulGrid(M, N).
 */
export function matmulTN(M: number, N: number): Kernel {
  return matmulKernel(`matmul_tn_f32_m${M}_n${N}`, N, (k, p, m, n, acc) => {
    const xa = k.addr(p.a, m, 4), ya = k.addr(p.b, n, 4);
    dotLoop(k, p.K, xa, pad8(M) * 4, ya, pad8(N) * 4, acc);
  });
}
