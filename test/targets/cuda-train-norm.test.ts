// RMSNorm's backward (targets/cuda/ptx/train-norm.ts: per-block rows and partial dweight, then a
// column sum) against the ref kernel rmsnormGrad (targets/ref/train-kernels.ts), the oracle:
// - both kernels assemble for sm_80 and sm_90 with no local memory (needs ptxas);
// - each case runs on the CPU through the PTX interpreter and, with a GPU, on the GPU: awkward d (1,
//   under a chunk, a thread count that is not a power of two, more columns than threads), T with a
//   last block of fewer rows, inputs' padding NaN (never read), outputs NaN-poisoned;
// - on the GPU, two runs give the same bits (no atomics: fixed summation order);
// - the accumulate variant (rmsnorm_grad_acc, passes/matmul-accumulate.ts), where dx's storage holds
//   acc on entry: bit for bit the plain kernels followed by the f32 add kernel (train-forward.ts
//   binary) of acc and dx in either order (add(a, dx) and add(dx, a) both fold), dweight's bits too,
//   acc's padding (NaN) untouched.
// Tolerance: f32 sums of d terms in a tree vs float64: within 1e-5 of the magnitudes summed,
// r·|dy·w| + r³/d·|x|·Σ|dy·w·x| for dx and Σ_rows |dy·x|·r for dweight. A wrong index is O(1) off.
import test from 'ava';
import { columnSum, columnSumGrid, COLUMN_SUM_THREADS, rmsnormGradGrid, rmsnormGradPartRows, rmsnormGradRows, rmsnormGradThreads, type RmsnormGradSpec } from '../../targets/cuda/ptx/train-norm.js';
import { pad8 } from '../../targets/cuda/ptx/layout.js';
import { rmsnormGrad } from '../../targets/ref/train-kernels.js';
import { freeAll, randomF32, rng } from '../helpers/cuda.js';
import { cudaDeviceRequirement, findPtxas, ptxasRequirement, testsNeeding } from '../helpers/requires.js';
import { assemblePtx, NO_LOCAL_MEMORY } from '../helpers/ptxas.js';
import { floats, mismatches, padRows, paddingWritten, runOn, simAndGpu, unpadRows, type TrainLaunch } from '../helpers/train-kernels.js';
import { binary } from '../../targets/cuda/ptx/train-forward.js';
import { ELEMENTWISE_THREADS, mapGrid } from '../../targets/cuda/ptx/train-elementwise.js';

const ptxasTest = testsNeeding(ptxasRequirement(findPtxas()));
const cudaTest = testsNeeding(cudaDeviceRequirement());

ptxasTest('rmsnorm_grad kernels assemble for sm_80 and sm_90, no local memory', (t) => {
  const kernels = [rmsnormGradRows({ d: 2048, eps: 1e-5 }), rmsnormGradRows({ d: 8192, eps: 1e-6, rowsPerBlock: 8 }), rmsnormGradRows({ d: 300, eps: 1e-5 }), columnSum(2048), rmsnormGradRows({ d: 2048, eps: 1e-5 }, true), rmsnormGradRows({ d: 300, eps: 1e-5 }, true)];
  for (const arch of ['sm_80', 'sm_90'] as const) {
    const r = assemblePtx(kernels.map((k) => k.text), arch);
    t.is(r.status, 0, `${arch}: ${r.stderr}`);
    for (const k of kernels) t.regex(r.stderr, new RegExp(`Compiling entry function '${k.name}'[^]*?${NO_LOCAL_MEMORY.source}`), `${arch} ${k.name}: ${r.stderr}`);
  }
});

test('rmsnorm_grad kernels: deterministic text, grids', (t) => {
  const s = { d: 300, eps: 1e-5, rowsPerBlock: 4 };
  t.is(rmsnormGradRows(s).text, rmsnormGradRows(s).text);
  t.deepEqual(rmsnormGradGrid(s, 9), [3, 1, 1]);
  t.is(rmsnormGradPartRows(s, 9), 3);
  t.notRegex(rmsnormGradRows(s).text, /shfl|atom\.|\bred\./);
  t.is(rmsnormGradRows(s, true).name, `${rmsnormGradRows(s).name}_acc`);
  t.deepEqual(columnSumGrid(257), [2, 1, 1]);
});

function rmsnormGradCase(where: 'sim' | 'gpu', s: RmsnormGradSpec, T: number, seed: number) {
  const d = s.d, r = rng(seed);
  const x = randomF32(T * d, r, 3), w = randomF32(d, r, 2), dy = randomF32(T * d, r);
  const G = rmsnormGradPartRows(s, T);
  const launches: TrainLaunch[] = [
    { kernel: rmsnormGradRows(s), grid: rmsnormGradGrid(s, T), block: rmsnormGradThreads(s), args: ['dx', 'part', 'x', 'w', 'dy', T] },
    { kernel: columnSum(d), grid: columnSumGrid(d), block: COLUMN_SUM_THREADS, args: ['dw', 'part', G] },
  ];
  const out = runOn(where, {
    dx: { poison: T * pad8(d) * 4 }, dw: { poison: pad8(d) * 4 }, part: { poison: G * pad8(d) * 4 },
    x: { data: padRows(x, T, d, NaN) }, w: { data: padRows(w, 1, d, NaN) }, dy: { data: padRows(dy, T, d, NaN) },
  }, launches);
  return { x, w, dy, out };
}

// [T, d, rows a block]: d = 1; d under a chunk and 2 rows a block (last block 1 row); 160 threads (not
// a power of two) and a tail block; two full blocks; 1024 threads with 3 columns each
const CASES: [number, number, number | undefined][] = [[1, 1, undefined], [3, 7, 2], [5, 300, 2], [64, 64, undefined], [3, 2500, 2]];

for (const [T, d, R] of CASES) {
  const s: RmsnormGradSpec = { d, eps: 1e-5, ...(R ? { rowsPerBlock: R } : {}) };
  const body = (where: 'sim' | 'gpu') => (t: import('ava').ExecutionContext) => {
    const { x, w, dy, out } = rmsnormGradCase(where, s, T, T * 131 + d);
    const [wantDx, wantDw] = rmsnormGrad(x, w, dy, s.eps);
    // magnitudes each result sums (float64)
    const tolDx = new Float64Array(T * d), tolDw = new Float64Array(d);
    for (let r = 0; r < T; r++) {
      let ss = 0, S = 0;
      for (let i = 0; i < d; i++) (ss += x[r * d + i]! ** 2), (S += Math.abs(dy[r * d + i]! * w[i]! * x[r * d + i]!));
      const inv = 1 / Math.sqrt(ss / d + s.eps);
      for (let i = 0; i < d; i++) {
        const e = r * d + i;
        tolDx[e] = 1e-5 * (inv * Math.abs(dy[e]! * w[i]!) + (inv ** 3 / d) * Math.abs(x[e]!) * S) + 1e-30;
        tolDw[i] += 1e-5 * Math.abs(dy[e]! * x[e]!) * inv;
      }
    }
    const rawDx = floats(out.dx!), rawDw = floats(out.dw!);
    const ex = mismatches(unpadRows(rawDx, T, d), wantDx, (i) => tolDx[i]!);
    const ew = mismatches(rawDw.subarray(0, d), wantDw, (i) => tolDw[i]! + 1e-30);
    t.is(ex.bad, 0, `dx ${ex.first}`);
    t.is(ew.bad, 0, `dweight ${ew.first}`);
    t.is(paddingWritten(rawDx, T, d) + paddingWritten(rawDw, 1, d), 0, 'padding written');
  };
  const title = `rmsnorm_grad T=${T} d=${d} rows/block=${R ?? 'default'} vs ref`;
  test(`${title} (interpreted)`, body('sim'));
  cudaTest.serial(`${title} (GPU)`, (t) => {
    t.teardown(freeAll);
    body('gpu')(t);
  });
}

cudaTest.serial('rmsnorm_grad T=700 d=2048: two GPU runs give the same bits (GPU)', (t) => {
  t.teardown(freeAll);
  const s = { d: 2048, eps: 1e-5 };
  const a = rmsnormGradCase('gpu', s, 700, 5).out, b = rmsnormGradCase('gpu', s, 700, 5).out;
  t.deepEqual(a.dx, b.dx);
  t.deepEqual(a.dw, b.dw);
});

// The accumulate variant against the plain kernel then the add kernel, bit for bit: the same dx (the
// same instructions up to the store), then one round-to-nearest f32 add of acc and dx, as add_f32's.
// acc spans magnitudes around dx's and far above (the sum rounds), and includes exact zeros.
for (const [T, d, R] of CASES) {
  const s: RmsnormGradSpec = { d, eps: 1e-5, ...(R ? { rowsPerBlock: R } : {}) };
  simAndGpu(`rmsnorm_grad_acc T=${T} d=${d} rows/block=${R ?? 'default'}: bit for bit rmsnorm_grad then add(acc, dx) and add(dx, acc)`, (where) => (t) => {
    const r = rng(T * 977 + d);
    const x = randomF32(T * d, r, 3), w = randomF32(d, r, 2), dy = randomF32(T * d, r);
    const acc = randomF32(T * d, r).map((v, i) => (i % 7 === 3 ? 0 : v * 10 ** ((i % 5) - 1)));
    const G = rmsnormGradPartRows(s, T), rows = rmsnormGradRows(s), grid = rmsnormGradGrid(s, T), block = rmsnormGradThreads(s);
    const inputs = { x: { data: padRows(x, T, d, NaN) }, w: { data: padRows(w, 1, d, NaN) }, dy: { data: padRows(dy, T, d, NaN) } };
    const sum = (first: string, second: string): TrainLaunch => ({ kernel: binary('add', d), grid: mapGrid(d, T), block: ELEMENTWISE_THREADS, args: ['s', first, second] });
    const plain = runOn(where, {
      ...inputs, dx: { poison: T * pad8(d) * 4 }, dw: { poison: pad8(d) * 4 }, part: { poison: G * pad8(d) * 4 },
      acc: { data: padRows(acc, T, d, NaN) }, s: { poison: T * pad8(d) * 4 }, s2: { poison: T * pad8(d) * 4 },
    }, [
      { kernel: rows, grid, block, args: ['dx', 'part', 'x', 'w', 'dy', T] },
      { kernel: columnSum(d), grid: columnSumGrid(d), block: COLUMN_SUM_THREADS, args: ['dw', 'part', G] },
      sum('acc', 'dx'),
      { ...sum('dx', 'acc'), args: ['s2', 'dx', 'acc'] },
    ]);
    const fused = runOn(where, {
      ...inputs, out: { data: padRows(acc, T, d, NaN) }, dw: { poison: pad8(d) * 4 }, part: { poison: G * pad8(d) * 4 },
    }, [
      { kernel: rmsnormGradRows(s, true), grid, block, args: ['out', 'part', 'x', 'w', 'dy', T] },
      { kernel: columnSum(d), grid: columnSumGrid(d), block: COLUMN_SUM_THREADS, args: ['dw', 'part', G] },
    ]);
    const bits = (b: Uint8Array) => Array.from(new Uint32Array(unpadRows(floats(b), T, d).buffer));
    t.deepEqual(bits(fused.out!), bits(plain.s!), 'acc + dx');
    t.deepEqual(bits(fused.out!), bits(plain.s2!), 'dx + acc');
    t.deepEqual(Array.from(new Uint32Array(floats(fused.dw!).slice(0, d).buffer)), Array.from(new Uint32Array(floats(plain.dw!).slice(0, d).buffer)), 'dweight');
    t.true(bits(fused.out!).some((v, i) => v !== Array.from(new Uint32Array(acc.buffer))[i]), 'the sum is not acc');
    t.is(T * (pad8(d) - d), floats(fused.out!).filter((v, i) => i % pad8(d) >= d && Number.isNaN(v)).length, 'acc\'s padding untouched (still NaN)');
  });
}
