// The cuda target's kernels against the ref target's (targets/ref/kernels.ts), each on fresh random
// inputs with NaN-poisoned outputs: GEMVs (plain, several sharing x, RMSNorm folded, rows split over
// warps, gathered MoC up), Top-K and a:b selection, the MoC down and the fused up·down (reduced by a second kernel and in its last block), embedding,
// RMSNorm, elementwise, argmax, RoPE, the KV stores (f32, bf16 and f16 caches) and the split decode
// attention, merged by a combine kernel and in its last block (against a float64 reference, NaN in
// the cache past the live rows). They need a CUDA device (the GPU machine: bash bench/gpu/run.sh
// check); elsewhere, CI included, they skip with one line saying why.
import type { ExecutionContext } from 'ava';
import * as R from '../../targets/ref/kernels.js';
import * as A from '../../targets/cuda/ptx/attention.js';
import * as DA from '../../targets/cuda/ptx/decode-attention.js';
import type { KvDType } from '../../targets/cuda/program.js';
import { decodeToF32, encodeFromF32 } from '../../src/util/dtype.js';
import * as D from '../../targets/cuda/ptx/dense.js';
import * as M from '../../targets/cuda/ptx/moc.js';
import { download, freeAll, launch, pad8, padF32, poisoned, randomF32, relErr, rng, unpadF32, upload, weight } from '../helpers/cuda.js';
import { cudaDeviceRequirement, testsNeeding } from '../helpers/requires.js';

const cudaTest = testsNeeding(cudaDeviceRequirement());
let nextSeed = 1;
/**
 * One check as one test, on the shared CUDA context, one at a time; its seed is fixed when it is
 * registered (so a test's inputs do not depend on which others ran) and its device memory is freed after.
 */
function guarded(name: string, body: (t: ExecutionContext, r: () => number) => void): void {
  const seed = nextSeed++;
  cudaTest.serial(name, (t) => {
    t.teardown(freeAll);
    body(t, rng(seed));
  });
}
// f32 accumulation only: both sides use the weights' exact stored values, whatever their dtype
const GEMV_TOL = 2e-6;

/**
 * One GEMV spec on fresh random inputs (x, the norm weight, W, W2 for silu_pair, y for accumulate)
 * against the ref target: store, accumulate (+ y), silu_pair (silu(W·xn)·(W2·xn)); xn = RMSNorm(x)
 * when the spec folds the norm.
 */
function checkGemv(name: string, spec: D.GemvSpec, T: number, tol: number): void {
  guarded(name, (t, r) => {
    const { dtype, inDim, outDim, epilogue } = spec;
    const x = randomF32(T * inDim, r, 2);
    const nw = weight(randomF32(inDim, r), 1, inDim, dtype);
    const w = weight(randomF32(outDim * inDim, r, 0.05), outDim, inDim, dtype);
    const w2 = weight(randomF32(outDim * inDim, r, 0.05), outDim, inDim, dtype);
    const y0 = epilogue === 'accumulate' ? randomF32(T * outDim, r) : undefined;
    const y = y0 ? upload(padF32(y0, T, outDim)) : poisoned(T * pad8(outDim) * 4);
    const args = [y, upload(padF32(x, T, inDim)), w.device, ...(epilogue === 'silu_pair' ? [w2.device] : []), ...(spec.norm ? [nw.device] : [])];
    launch(D.gemv(spec), D.gemvGrid(spec, T), 256, args);
    const got = unpadF32(download(y, new Float32Array(T * pad8(outDim))), T, outDim);
    const xn = spec.norm ? R.rmsnorm(x, nw.exact, spec.norm.eps) : x;
    const a = R.linear(xn, w.exact, inDim);
    const want = epilogue === 'silu_pair' ? R.mul(R.silu(a), R.linear(xn, w2.exact, inDim)) : y0 ? R.add(a, y0) : a;
    const e = relErr(got, want);
    t.true(e < tol, `rel ${e.toExponential(2)}`);
  });
}


// ---- GEMV ----
for (const dtype of ['f32', 'bf16', 'f16'] as const) {
  for (const [inDim, outDim, T] of [[64, 172, 1], [172, 64, 3], [2048, 5461, 1], [5461, 2048, 2], [4096, 1000, 1]] as const) {
    for (const epilogue of ['store', 'accumulate'] as const) checkGemv(`gemv ${dtype} ${inDim}→${outDim} T=${T} ${epilogue}`, { dtype, inDim, outDim, epilogue }, T, GEMV_TOL);
  }
}

// ---- several GEMVs sharing x in one launch (Q/K/V, gate/up) ----
for (const dtype of ['f32', 'bf16'] as const) {
  for (const [inDim, outs, T] of [[64, [64, 32, 32], 2], [2048, [2048, 512, 512], 1], [2048, [5461, 5461], 1]] as const) {
    const name = `gemv multi ${dtype} ${inDim}→${outs.join('+')} T=${T}`;
    guarded(name, (t, r) => {
        const x = randomF32(T * inDim, r);
      const specs = outs.map((o) => ({ dtype, inDim, outDim: o, epilogue: 'store' as const }));
      const ws = outs.map((o) => weight(randomF32(o * inDim, r, 0.05), o, inDim, dtype));
      const ys = outs.map((o) => poisoned(T * pad8(o) * 4));
      const args: bigint[] = [upload(padF32(x, T, inDim))];
      outs.forEach((_, i) => args.push(ys[i]!, ws[i]!.device));
      launch(D.gemvMulti(specs), [D.gemvMultiGrid(specs), T, 1], 256, args);
      const worst = Math.max(...outs.map((o, i) => relErr(unpadF32(download(ys[i]!, new Float32Array(T * pad8(o))), T, o), R.linear(x, ws[i]!.exact, inDim))));
      t.true(worst < 2e-6, `rel ${worst.toExponential(2)}`);
    });
  }
}

// ---- gathered up projection with SiLU(G)·U ----
for (const dtype of ['f32', 'bf16'] as const) {
  for (const [d, f, k, T] of [[64, 172, 32, 2], [2048, 5464, 1024, 1], [4096, 14336, 2688, 1]] as const) {
    const name = `moc up+silu ${dtype} d${d} F${f} K${k} T=${T}`;
    guarded(name, (t, r) => {
        const w = weight(randomF32(f * d, r, 0.05), f, d, dtype);
      const x = randomF32(T * d, r), g = randomF32(T * f, r, 3);
      const idx = R.mocSelect(g, f, { k });
      const z = poisoned(T * pad8(k) * 4);
      const spec = { dtype, inDim: d, outDim: k, gather: { wRows: f, gateWidth: f }, epilogue: 'silu_gate' as const };
      launch(D.gemv(spec), D.gemvGrid(spec, T), 256, [z, upload(padF32(x, T, d)), w.device, upload(padI32(idx, T, k)), upload(padF32(g, T, f))]);
      const got = unpadF32(download(z, new Float32Array(T * pad8(k))), T, k);
      const want = R.mul(R.silu(R.mocGather(g, f, idx, k)), R.mocUp(x, w.exact, d, idx, k));
      const e = relErr(got, want);
      t.true(e < 1e-5, `rel ${e.toExponential(2)}`);
    });
  }
}

function padI32(x: Int32Array, rows: number, cols: number): Int32Array {
  const ld = pad8(cols);
  const out = new Int32Array(rows * ld);
  for (let r = 0; r < rows; r++) out.set(x.subarray(r * cols, (r + 1) * cols), r * ld);
  return out;
}

// ---- Top-K and a:b selection ----
for (const [f, k, T] of [[172, 1, 2], [172, 32, 3], [172, 172, 1], [5461, 1024, 2], [5464, 1024, 1], [14336, 2688, 2], [300, 57, 1]] as const) {
  for (const ties of [false, true]) {
    const name = `topk F${f} K${k} T=${T}${ties ? ' (ties, NaN, ±0)' : ''}`;
    guarded(name, (t, r) => {
        const g = randomF32(T * f, r, 4);
      if (ties) {
        for (let i = 0; i < g.length; i++) g[i] = Math.round(g[i]! * 2) / 2; // few distinct values
        g[3] = NaN; g[5] = -0; g[6] = 0;
      }
      const idx = poisoned(T * pad8(k) * 4), tau = poisoned(4);
      launch(M.topkSelect(f, k, { tau: true }), [1, T, 1], M.selectShape(f).threads, [idx, upload(padF32(g, T, f)), tau]);
      const got = download(idx, new Int32Array(T * pad8(k)));
      const want = R.mocSelect(g, f, { k });
      let bad = 0;
      for (let t = 0; t < T; t++) for (let j = 0; j < k; j++) if (got[t * pad8(k) + j] !== want[t * k + j]) bad++;
      // τ: the last token's K-th largest value (the float of the smallest kept key: NaN as −∞, −0 as +0), bit for bit
      const keptKeys = Array.from(want.subarray((T - 1) * k, T * k), (c) => M.selectKey(g[(T - 1) * f + c]!));
      const wantTau = M.selectKeyValue(Math.min(...keptKeys));
      const gotTau = download(tau, new Float32Array(1))[0]!;
      const tauOk = Object.is(gotTau, wantTau);
      t.true(bad === 0 && tauOk, `${bad ? `${bad} indices differ` : 'exact'}; τ ${gotTau} (want ${wantTau})`);
    });
  }
}
for (const [f, a, b] of [[172, 2, 8], [172, 3, 5], [5461, 4, 16], [64, 1, 64]] as const) {
  const name = `pattern ${a}:${b} F${f}`;
  guarded(name, (t, r) => {
    const T = 2;
    const g = randomF32(T * f, r);
    const kOut = a * Math.floor(f / b) + Math.min(a, f % b);
    const idx = poisoned(T * pad8(kOut) * 4);
    launch(M.patternSelect(f, a, b), [Math.ceil(Math.ceil(f / b) / 128), T, 1], 128, [idx, upload(padF32(g, T, f))]);
    const got = download(idx, new Int32Array(T * pad8(kOut)));
    const want = R.mocSelect(g, f, { a, b });
    let bad = 0;
    for (let t = 0; t < T; t++) for (let j = 0; j < kOut; j++) if (got[t * pad8(kOut) + j] !== want[t * kOut + j]) bad++;
    t.true(bad === 0, bad ? `${bad} indices differ` : 'exact');
  });
}

// ---- gathered down projection (+ residual) ----
for (const dtype of ['f32', 'bf16'] as const) {
  for (const [d, f, k, T] of [[64, 172, 32, 2], [2048, 5464, 1024, 1], [4096, 14336, 2688, 1], [100, 300, 7, 1]] as const) {
    const name = `moc down ${dtype} d${d} F${f} K${k} T=${T}`;
    guarded(name, (t, r) => {
        const w = weight(randomF32(f * d, r, 0.05), f, d, dtype);
      const z = randomF32(T * k, r), y0 = randomF32(T * d, r);
      const idx = R.mocSelect(randomF32(T * f, r), f, { k });
      const { slices } = M.downSplit(k);
      const partial = poisoned(T * slices * pad8(d) * 4);
      const y = upload(padF32(y0, T, d));
      launch(M.downPartial(dtype, d, k), [Math.ceil(pad8(d) / 8 / M.DOWN_THREADS), slices, T], M.DOWN_THREADS, [partial, upload(padF32(z, T, k)), w.device, upload(padI32(idx, T, k))]);
      launch(M.downReduce(d, slices), [M.reduceGrid(d), T, 1], M.REDUCE_THREADS, [y, partial]);
      const got = unpadF32(download(y, new Float32Array(T * pad8(d))), T, d);
      const want = R.add(y0, R.mocDown(z, w.exact, d, idx, k));
      const e = relErr(got, want);
      t.true(e < 1e-5, `rel ${e.toExponential(2)}`);
    });
  }
}

// ---- RMSNorm folded into GEMVs; a dense FFN's paired gate/up with SiLU·mul ----
// The norm is applied on the fly (x·nw, then the dot scaled by rsqrt(mean(x²)+eps)), a different
// rounding order from RMSNorm-then-GEMV: the tolerance is f32 rounding over the row, not exactness.
const NORM_TOL = 1e-5;
for (const dtype of ['f32', 'bf16'] as const) {
  for (const [inDim, outDim, T] of [[64, 172, 3], [2048, 5461, 1], [300, 70, 2]] as const) {
    for (const epilogue of ['store', 'silu_pair'] as const) {
      for (const withNorm of [true, false]) {
        if (epilogue === 'store' && !withNorm) continue; // plain store is covered above
        // paired rows as lowered (one of each matrix a warp), plain store with the default two
        const spec: D.GemvSpec = { dtype, inDim, outDim, epilogue, norm: withNorm ? { dtype, eps: 1e-5 } : undefined, rowsPerWarp: epilogue === 'silu_pair' ? 1 : 2 };
        checkGemv(`gemv ${dtype} ${inDim}→${outDim} T=${T} ${epilogue}${withNorm ? ' +rmsnorm' : ''}`, spec, T, NORM_TOL);
      }
    }
  }
}
guarded('gemv multi bf16 2048→2048+512+512 +rmsnorm T=2', (t, r) => {
  const T = 2, inDim = 2048, outs = [2048, 512, 512];
  const x = randomF32(T * inDim, r, 2);
  const nw = weight(randomF32(inDim, r), 1, inDim, 'f32');
  const norm = { dtype: 'f32' as const, eps: 1e-6 };
  const specs = outs.map((o): D.GemvSpec => ({ dtype: 'bf16', inDim, outDim: o, epilogue: 'store', norm }));
  const ws = outs.map((o) => weight(randomF32(o * inDim, r, 0.05), o, inDim, 'bf16'));
  const ys = outs.map((o) => poisoned(T * pad8(o) * 4));
  const args: bigint[] = [upload(padF32(x, T, inDim)), nw.device];
  outs.forEach((_, i) => args.push(ys[i]!, ws[i]!.device));
  launch(D.gemvMulti(specs), [D.gemvMultiGrid(specs), T, 1], 256, args);
  const xn = R.rmsnorm(x, nw.exact, 1e-6);
  const worst = Math.max(...outs.map((o, i) => relErr(unpadF32(download(ys[i]!, new Float32Array(T * pad8(o))), T, o), R.linear(xn, ws[i]!.exact, inDim))));
  t.true(worst < NORM_TOL, `rel ${worst.toExponential(2)}`);
});

// ---- GEMVs with each row split over 2, 4 or 8 warps (few, long rows: the down and O projections) ----
for (const split of [2, 4, 8]) {
  for (const [dtype, inDim, outDim, T, epilogue, withNorm, rowsPerWarp] of [
    ['bf16', 5461, 2048, 2, 'accumulate', false, 1], ['f32', 172, 64, 3, 'store', false, 2], ['bf16', 2048, 2048, 1, 'accumulate', false, 2],
    ['f16', 100, 37, 2, 'store', false, 1], ['bf16', 2048, 700, 2, 'store', true, 1], ['f32', 300, 70, 2, 'silu_pair', true, 1],
  ] as const) {
    const spec: D.GemvSpec = { dtype, inDim, outDim, epilogue, norm: withNorm ? { dtype, eps: 1e-5 } : undefined, rowsPerWarp, split };
    checkGemv(`gemv split ${split} ${dtype} ${inDim}→${outDim} T=${T} ${epilogue}${withNorm ? ' +rmsnorm' : ''} r${rowsPerWarp}`, spec, T, withNorm ? NORM_TOL : GEMV_TOL);
  }
}

// ---- the fused MoC up·SiLU·down (partials) + reduce, as lowered ----
/** [d, F, K, T, with RMSNorm folded] of the fused up·down cases. */
const MOC_UPDOWN_CASES = [[64, 172, 32, 2, true], [2048, 5464, 1024, 1, true], [4096, 14336, 2688, 1, true], [100, 300, 7, 3, false], [2048, 5461, 1000, 2, false]] as const;

/**
 * One fused up·down case as lowered (RMSNorm folded, and then the L2 warmed from τ = 0: about half
 * the rows asked for) or without: random weights and inputs, the kernel spec, its inputs after the
 * partials (on the device), the start y0 and the ref kernels' y0 + down(SiLU(g)·up(x)) at Top-K.
 */
function mocUpDownCase(r: () => number, dtype: 'f32' | 'bf16' | 'f16', d: number, f: number, k: number, T: number, withNorm: boolean) {
  const warm = withNorm;
  const wu = weight(randomF32(f * d, r, 0.05), f, d, dtype), wd = weight(randomF32(f * d, r, 0.05), f, d, dtype);
  const nw = weight(randomF32(d, r), 1, d, 'f32');
  const x = randomF32(T * d, r, 2), g = randomF32(T * f, r, 3), y0 = randomF32(T * d, r);
  const idx = R.mocSelect(g, f, { k });
  const norm = withNorm ? { dtype: 'f32' as const, eps: 1e-5 } : undefined;
  const inputs = [upload(padF32(x, T, d)), wu.device, wd.device, upload(padI32(idx, T, k)), upload(padF32(g, T, f)), ...(withNorm ? [nw.device] : []), ...(warm ? [upload(new Float32Array([0]))] : [])];
  const xn = withNorm ? R.rmsnorm(x, nw.exact, 1e-5) : x;
  const z = R.mul(R.silu(R.mocGather(g, f, idx, k)), R.mocUp(xn, wu.exact, d, idx, k));
  const want = R.add(y0, R.mocDown(z, wd.exact, d, idx, k));
  return { spec: { dtype, d, f, kKeep: k, norm, warm }, split: M.upDownSplit(k), inputs, y0, want };
}

/** The two-kernel path of a case: mocUpDown's partials, then downReduce into y (rows of pad8(d), y0 at the start); y read back. */
function mocTwoKernels(c: ReturnType<typeof mocUpDownCase>, T: number): Float32Array {
  const { d } = c.spec;
  const y = upload(padF32(c.y0, T, d)), partial = poisoned(T * c.split.blocks * pad8(d) * 4);
  launch(M.mocUpDown(c.spec), [c.split.blocks, T, 1], 256, [partial, ...c.inputs]);
  launch(M.downReduce(d, c.split.blocks), [M.reduceGrid(d), T, 1], M.REDUCE_THREADS, [y, partial]);
  return download(y, new Float32Array(T * pad8(d)));
}

for (const dtype of ['f32', 'bf16'] as const) {
  for (const [d, f, k, T, withNorm] of MOC_UPDOWN_CASES) {
    const name = `moc up·down fused ${dtype} d${d} F${f} K${k} T=${T}${withNorm ? ' +rmsnorm +warm' : ''}`;
    guarded(name, (t, r) => {
      const c = mocUpDownCase(r, dtype, d, f, k, T, withNorm);
      const e = relErr(unpadF32(mocTwoKernels(c, T), T, d), c.want);
      t.true(e < NORM_TOL, `rel ${e.toExponential(2)}`);
    });
  }
}

// The fused up·down whose tail blocks add the partials into y (merge 'tail', MOCC_CUDA_MOC_TAIL=1): the
// same cases and reference, in all three weight dtypes, plus T = 40 (40 rows' tails in one grid of
// 40 × blocks), and the two-kernel path on the same inputs, which it must match bit for bit (the tail
// sums in downReduce's order). It runs twice on the same counters, each time on a fresh copy of y and
// NaN-poisoned partials; the counters must be back at zero after each (a ticket or arrival count left
// over would give blocks the wrong rows or let the wrong blocks reduce).
for (const dtype of ['f32', 'bf16', 'f16'] as const) {
  for (const [d, f, k, T, withNorm] of [...MOC_UPDOWN_CASES, [70, 300, 8, 5, true] as const, [2048, 5461, 1024, 40, true] as const]) {
    const name = `moc up·down, reduce in its tail blocks ${dtype} d${d} F${f} K${k} T=${T}${withNorm ? ' +rmsnorm +warm' : ''}: against the ref kernels, bitwise the two-kernel path, counters reset`;
    guarded(name, (t, r) => {
      const c = mocUpDownCase(r, dtype, d, f, k, T, withNorm);
      const { split, inputs, y0, want } = c;
      const partialBytes = T * split.blocks * pad8(d) * 4;
      const read = (y: bigint) => download(y, new Float32Array(T * pad8(d)));
      const two = mocTwoKernels(c, T);
      const kernel = M.mocUpDown({ ...c.spec, merge: 'tail' });
      const nCounters = M.mocTailCounters(T);
      const counters = upload(new Int32Array(nCounters));
      const report: string[] = [];
      let ok = true;
      for (const call of [1, 2]) {
        const y = upload(padF32(y0, T, d));
        launch(kernel, [split.blocks, T, 1], 256, [y, poisoned(partialBytes), ...inputs, counters]);
        const gotPadded = read(y), got = unpadF32(gotPadded, T, d);
        const e = relErr(got, want);
        const differing = gotPadded.filter((v, i) => !Object.is(v, two[i])).length;
        const left = download(counters, new Int32Array(nCounters)).filter((v) => v !== 0).length;
        ok &&= e < NORM_TOL && differing === 0 && left === 0;
        report.push(`call ${call}: rel ${e.toExponential(2)}, ${differing} values differ from the two-kernel path, ${left} counters not zero`);
      }
      t.true(ok, `${report.join('; ')} (${split.blocks} blocks a row, ${M.mocTailBlocks(d, k)} in the tail)`);
    });
  }
}

// ---- embedding, RMSNorm, elementwise, argmax ----
for (const dtype of ['f32', 'bf16', 'f16'] as const) {
  guarded(`embedding ${dtype} d=70`, (t, r) => {
    const V = 50, d = 70, toks = Int32Array.of(3, 49, 0, 3);
    const table = weight(randomF32(V * d, r), V, d, dtype);
    const y = poisoned(toks.length * pad8(d) * 4);
    launch(D.embedding(dtype, d), [1, toks.length, 1], 256, [y, table.device, upload(toks)]);
    const got = unpadF32(download(y, new Float32Array(toks.length * pad8(d))), toks.length, d);
    const e = relErr(got, R.embedding(table.exact, d, toks));
    t.true(e === 0, `rel ${e}`);
  });
  for (const d of [64, 2048, 300]) {
    guarded(`rmsnorm ${dtype} d=${d}`, (t, r) => {
        const T = 3;
      const x = randomF32(T * d, r, 2);
      const w = weight(randomF32(d, r), 1, d, dtype);
      const y = poisoned(T * pad8(d) * 4);
      launch(D.rmsnorm(dtype, d, 1e-5), [1, T, 1], D.rmsnormThreads(d), [y, upload(padF32(x, T, d)), w.device]);
      const got = unpadF32(download(y, new Float32Array(T * pad8(d))), T, d);
      const e = relErr(got, R.rmsnorm(x, w.exact, 1e-5));
      t.true(e < 1e-6, `rel ${e.toExponential(2)}`);
    });
  }
}
for (const op of ['silu_mul', 'add'] as const) {
  guarded(`${op} width 172 T=3`, (t, r) => {
    const T = 3, w = 172;
    const a = randomF32(T * w, r, 4), b = randomF32(T * w, r);
    const z = poisoned(T * pad8(w) * 4);
    launch(D.elementwise(op, pad8(w)), [Math.ceil(pad8(w) / 256), T, 1], 256, [z, upload(padF32(a, T, w)), upload(padF32(b, T, w))]);
    const got = unpadF32(download(z, new Float32Array(T * pad8(w))), T, w);
    const want = op === 'add' ? R.add(a, b) : R.mul(R.silu(a), b);
    const e = relErr(got, want);
    t.true(e < 1e-6, `rel ${e.toExponential(2)}`);
  });
}
for (const n of [512, 32000, 1000]) {
  guarded(`argmax n=${n} (ties)`, (t, r) => {
    const x = randomF32(n, r);
    x[n - 7] = 5; x[n - 300 > 0 ? n - 300 : 1] = 5; // a tie at the maximum: the lower index wins
    const out = poisoned(4), hist = poisoned(64 * 4);
    launch(D.argmax(n), [1, 1, 1], 1024, [out, upload(x), hist, upload(Int32Array.of(9))]);
    const got = download(out, new Int32Array(1))[0]!;
    const h = download(hist, new Int32Array(64))[9]!;
    const want = Math.min(n - 7, n - 300 > 0 ? n - 300 : 1);
    t.true(got === want && h === want, `got ${got} (history ${h}), want ${want}`);
  });
}

// ---- RoPE, KV store + attention ----
for (const style of ['half', 'interleaved'] as const) {
  for (const [heads, hd] of [[8, 8], [32, 64], [4, 128]] as const) {
    const name = `rope ${style} h${heads} hd${hd}`;
    guarded(name, (t, r) => {
        const T = 3, pos0 = 17, maxPos = 64;
      const x = randomF32(T * heads * hd, r);
      const inv = R.ropeInvFreq({ heads, headDim: hd, theta: 10000, style });
      const table = new Float32Array(maxPos * hd);
      for (let p = 0; p < maxPos; p++) for (let i = 0; i < hd / 2; i++) (table[(p * hd) / 2 * 2 + i * 2] = Math.cos(p * inv[i]!)), (table[(p * hd) / 2 * 2 + i * 2 + 1] = Math.sin(p * inv[i]!));
      const xd = upload(padF32(x, T, heads * hd));
      launch(A.rope(heads, hd, style), [Math.ceil((heads * hd) / 2 / A.ROPE_THREADS), T, 1], A.ROPE_THREADS, [xd, upload(table), upload(Int32Array.of(pos0))]);
      const got = unpadF32(download(xd, new Float32Array(T * pad8(heads * hd))), T, heads * hd);
      const e = relErr(got, R.rope(x, { heads, headDim: hd, theta: 10000, style }, pos0));
      t.true(e < 1e-6, `rel ${e.toExponential(2)}`);
    });
  }
}
// ---- decode attention: split over the cached positions, then the combine (flash-decoding) ----
/**
 * The f64 reference: softmax(q·Kᵀ/√hd)·V of query row t, head h, over cache rows 0..pos0+t
 * (GQA: KV head h / (heads/kvHeads)), from the values the cache holds. Written here, not taken from
 * the ref target, so that it is float64 throughout.
 */
function attentionF64(q: Float32Array, cacheK: Float32Array, cacheV: Float32Array, pos0: number, T: number, heads: number, kvh: number, hd: number): Float64Array {
  const kvw = kvh * hd, out = new Float64Array(T * heads * hd);
  for (let t = 0; t < T; t++) for (let h = 0; h < heads; h++) {
    const n = pos0 + t + 1, c0 = Math.floor(h / (heads / kvh)) * hd, qo = (t * heads + h) * hd;
    const score = new Float64Array(n);
    let max = -Infinity;
    for (let s = 0; s < n; s++) {
      let dot = 0;
      for (let i = 0; i < hd; i++) dot += q[qo + i]! * cacheK[s * kvw + c0 + i]!;
      score[s] = dot / Math.sqrt(hd);
      max = Math.max(max, score[s]!);
    }
    let sum = 0;
    for (let s = 0; s < n; s++) sum += score[s] = Math.exp(score[s]! - max);
    for (let i = 0; i < hd; i++) {
      let acc = 0;
      for (let s = 0; s < n; s++) acc += score[s]! * cacheV[s * kvw + c0 + i]!;
      out[qo + i] = acc / sum;
    }
  }
  return out;
}

/** NaN in each cache dtype: rows a kernel must not read (or write) hold it. */
const NAN_BITS = { f32: 0x7fc00000, bf16: 0x7fc0, f16: 0x7e00 } as const;

/**
 * A cache of `cap` rows of kvw `dtype` elements as the device holds it (rows padded to pad8(kvw)):
 * rows [0, live) from `values` (rounded to the dtype), every other row NaN. Returns the device
 * copy and the exact values of the live rows as f32.
 */
function cacheImage(values: Float32Array, live: number, cap: number, kvw: number, dtype: KvDType): { device: bigint; exact: Float32Array } {
  const ld = pad8(kvw);
  const exact = decodeToF32(dtype, encodeFromF32(dtype, values), values.length);
  const bits = dtype === 'f32' ? new Uint32Array(cap * ld).fill(NAN_BITS.f32) : new Uint16Array(cap * ld).fill(NAN_BITS[dtype]);
  const enc = dtype === 'f32' ? new Uint32Array(exact.buffer.slice(0)) : new Uint16Array(encodeFromF32(dtype, values).buffer);
  for (let r = 0; r < live; r++) bits.set(enc.subarray(r * kvw, (r + 1) * kvw), r * ld);
  return { device: upload(bits), exact };
}

/** Rows [from, to) of a device cache, decoded to f32 (padding dropped). */
function cacheRows(device: bigint, cap: number, kvw: number, dtype: KvDType, from: number, to: number): Float32Array {
  const ld = pad8(kvw), eb = dtype === 'f32' ? 4 : 2;
  const raw = download(device, new Int32Array((cap * ld * eb) / 4));
  const bytes = new Uint8Array(raw.buffer);
  const out = new Float32Array((to - from) * kvw);
  for (let r = from; r < to; r++) decodeToF32(dtype, bytes.subarray(r * ld * eb, (r * ld + kvw) * eb), kvw, out.subarray((r - from) * kvw, (r - from + 1) * kvw));
  return out;
}

// f32 accumulation of up to 2048 positions with ex2.approx: the old one-block kernel's 1e-5 holds
const ATTN_TOL = 1e-5;
const CACHE_DTYPES = ['f32', 'bf16', 'f16'] as const;
// [heads, kvHeads, hd, capacity, pos0, T]: the last row attends to pos0 + T positions
const ATTN_CASES: [number, number, number, number, number, number][] = [];
for (const pos0 of [0, 62, 63, 64, 999, 2046]) ATTN_CASES.push([32, 32, 64, 2048, pos0, 1]); // 1, 63, 64, 65, 1000, 2047 positions
ATTN_CASES.push([32, 32, 64, 2048, 2047, 1], [8, 2, 64, 2048, 1000, 1], [8, 2, 64, 2048, 60, 9], [4, 4, 8, 2048, 0, 1], [4, 4, 8, 2048, 64, 1], [8, 4, 8, 512, 0, 5], [8, 4, 8, 512, 300, 3], [4, 1, 128, 300, 250, 2], [12, 4, 96, 1024, 129, 2]);
// early: the first rounds' loads split at pos0 (rows before it issued before griddepcontrol.wait, the
// rest after): every live row must still be read exactly once.
for (const cache of CACHE_DTYPES) {
  for (const [heads, kvh, hd, cap, pos0, T] of ATTN_CASES) for (const early of [false, true]) {
    const name = `decode attention ${cache} cache h${heads} kv${kvh} hd${hd} cap${cap} pos${pos0} T=${T}${early ? ' early' : ''}`;
    guarded(name, (t, r) => {
      const kvw = kvh * hd, live = pos0 + T;
      const spec = { heads, kvHeads: kvh, hd, cache, capacity: cap, early };
      const S = DA.splitLayout(spec).splits;
      const ck = cacheImage(randomF32(live * kvw, r), live, cap, kvw, cache), cv = cacheImage(randomF32(live * kvw, r), live, cap, kvw, cache);
      const q = randomF32(T * heads * hd, r, 4);
      const pos = upload(Int32Array.of(pos0));
      // partials and output start as NaN: a dead chunk's slot must not be read, every output written
      const part = poisoned(T * heads * S * pad8(DA.partialWidth(hd)) * 4), out = poisoned(T * pad8(heads * hd) * 4);
      launch(DA.attentionSplit(spec), [heads, S, T], DA.SPLIT_THREADS, [part, upload(padF32(q, T, heads * hd)), ck.device, cv.device, pos]);
      launch(DA.attentionCombine(spec), [heads, T, 1], DA.combineThreads(hd), [out, part, pos]);
      const got = unpadF32(download(out, new Float32Array(T * pad8(heads * hd))), T, heads * hd);
      const want = Float32Array.from(attentionF64(q, ck.exact, cv.exact, pos0, T, heads, kvh, hd));
      const e = relErr(got, want);
      t.true(e < ATTN_TOL, `rel ${e.toExponential(2)} (${S} splits)`);
    });
  }
}

// The split kernel that merges in its last block (merge 'last-block'): the same cases and reference.
// Each case launches twice on the same counters: at pos0, then at pos1 = ⌊pos0/2⌋ (fewer live chunks
// where pos0 is large), each into a fresh NaN output; the counters must be back at zero after each
// (a counter left over would make no block, or the wrong one, merge the next launch's partials).
for (const cache of CACHE_DTYPES) {
  for (const [heads, kvh, hd, cap, pos0, T] of ATTN_CASES) for (const early of [false, true]) {
    const name = `decode attention merged in the last block, ${cache} cache h${heads} kv${kvh} hd${hd} cap${cap} pos${pos0} then ${Math.floor(pos0 / 2)} T=${T}${early ? ' early' : ''}`;
    guarded(name, (t, r) => {
      const kvw = kvh * hd, live = pos0 + T;
      const spec = { heads, kvHeads: kvh, hd, cache, capacity: cap, merge: 'last-block' as const, early };
      const S = DA.splitLayout(spec).splits;
      const ck = cacheImage(randomF32(live * kvw, r), live, cap, kvw, cache), cv = cacheImage(randomF32(live * kvw, r), live, cap, kvw, cache);
      const q = randomF32(T * heads * hd, r, 4), qd = upload(padF32(q, T, heads * hd));
      const counters = upload(new Int32Array(T * heads));
      const kernel = DA.attentionSplit(spec);
      const report: string[] = [];
      let ok = true;
      for (const p of [pos0, Math.floor(pos0 / 2)]) {
        const out = poisoned(T * pad8(heads * hd) * 4), part = poisoned(T * heads * S * pad8(DA.partialWidth(hd)) * 4);
        launch(kernel, [heads, S, T], DA.SPLIT_THREADS, [out, part, qd, ck.device, cv.device, upload(Int32Array.of(p)), counters]);
        const got = unpadF32(download(out, new Float32Array(T * pad8(heads * hd))), T, heads * hd);
        const e = relErr(got, Float32Array.from(attentionF64(q, ck.exact, cv.exact, p, T, heads, kvh, hd)));
        const left = download(counters, new Int32Array(T * heads)).filter((c) => c !== 0).length;
        ok &&= e < ATTN_TOL && left === 0;
        report.push(`pos ${p}: rel ${e.toExponential(2)}, ${left} counters not zero`);
      }
      t.true(ok, `${report.join('; ')} (${S} splits)`);
    });
  }
}

// the store kernels round to the cache dtype: to nearest even, as the host's encoder does
const STORE_TOL = { f32: 1e-6, bf16: 4e-3, f16: 5e-4 } as const;
for (const cache of CACHE_DTYPES) {
  guarded(`kv store ${cache} cache: rows pos..pos+T rounded exactly, the rows around them untouched`, (t, r) => {
    const kvw = 40, T = 3, pos0 = 5, cap = 12;
    const k = randomF32(T * kvw, r, 3), v = randomF32(T * kvw, r, 3);
    const ck = cacheImage(new Float32Array(0), 0, cap, kvw, cache).device, cv = cacheImage(new Float32Array(0), 0, cap, kvw, cache).device;
    launch(A.kvStore(kvw, cache), [A.kvStoreGrid(kvw), T, 1], 128, [ck, cv, upload(padF32(k, T, kvw)), upload(padF32(v, T, kvw)), upload(Int32Array.of(pos0))]);
    const round = (x: Float32Array) => decodeToF32(cache, encodeFromF32(cache, x), x.length);
    const same = (a: Float32Array, b: Float32Array) => a.every((x, i) => Object.is(x, b[i]));
    const gotK = cacheRows(ck, cap, kvw, cache, pos0, pos0 + T), gotV = cacheRows(cv, cap, kvw, cache, pos0, pos0 + T);
    const around = [pos0 - 1, pos0 + T].every((row) => [ck, cv].every((c) => cacheRows(c, cap, kvw, cache, row, row + 1).every(Number.isNaN)));
    t.true(same(gotK, round(k)) && same(gotV, round(v)) && around, `k exact ${same(gotK, round(k))}, v exact ${same(gotV, round(v))}, rows around untouched ${around}`);
  });
}

for (const style of ['half', 'interleaved'] as const) {
  for (const [heads, kvh, hd, T, cache] of [[8, 4, 8, 3, 'f32'], [32, 8, 64, 1, 'f32'], [4, 4, 128, 2, 'f32'], [8, 4, 8, 3, 'bf16'], [32, 8, 64, 1, 'f16'], [4, 4, 128, 2, 'bf16']] as const) {
    const name = `rope+kv store ${style} h${heads} kv${kvh} hd${hd} T=${T} ${cache} cache`;
    guarded(name, (t, r) => {
        const pos0 = 13, cap = 40, kvw = kvh * hd;
      const q = randomF32(T * heads * hd, r), k = randomF32(T * kvw, r), v = randomF32(T * kvw, r);
      const inv = R.ropeInvFreq({ heads, headDim: hd, theta: 10000, style });
      const table = new Float32Array(cap * hd);
      for (let p = 0; p < cap; p++) for (let i = 0; i < hd / 2; i++) (table[p * hd + i * 2] = Math.cos(p * inv[i]!)), (table[p * hd + i * 2 + 1] = Math.sin(p * inv[i]!));
      const ck = cacheImage(new Float32Array(0), 0, cap, kvw, cache).device, cv = cacheImage(new Float32Array(0), 0, cap, kvw, cache).device;
      const qd = upload(padF32(q, T, heads * hd)), kd = upload(padF32(k, T, kvw));
      launch(A.ropeStore(heads, kvh, hd, style, cache), [A.ropeStoreGrid(heads, kvh, hd), T, 1], A.ROPE_THREADS, [qd, kd, upload(padF32(v, T, kvw)), ck, cv, upload(table), upload(Int32Array.of(pos0))]);
      const gotQ = unpadF32(download(qd, new Float32Array(T * pad8(heads * hd))), T, heads * hd);
      const cacheK = cacheRows(ck, cap, kvw, cache, pos0, pos0 + T);
      const cacheV = cacheRows(cv, cap, kvw, cache, pos0, pos0 + T);
      const eq = relErr(gotQ, R.rope(q, { heads, headDim: hd, theta: 10000, style }, pos0));
      const ek = relErr(cacheK, R.rope(k, { heads: kvh, headDim: hd, theta: 10000, style }, pos0));
      const ev = relErr(cacheV, v);
      const tol = Math.max(1e-6, STORE_TOL[cache]);
      t.true(eq < 1e-6 && ek < tol && (cache === 'f32' ? ev === 0 : ev < tol), `rel q ${eq.toExponential(2)}, k ${ek.toExponential(2)}, v ${ev}`);
    });
  }
}

// ---- Q/K/V in one GEMV launch that rotates q and k and appends k and v to the caches (as lowered) ----
for (const style of ['half', 'interleaved'] as const) {
  for (const [dtype, d, heads, kvh, hd, T, cache] of [['f32', 64, 8, 4, 8, 3, 'f32'], ['bf16', 2048, 32, 8, 64, 1, 'f32'], ['bf16', 300, 4, 4, 128, 2, 'f32'], ['bf16', 2048, 32, 8, 64, 1, 'bf16'], ['f16', 300, 4, 4, 128, 2, 'f16'], ['f32', 64, 8, 4, 8, 3, 'bf16']] as const) {
    const name = `gemv multi q/k/v + rope + kv append ${style} ${dtype} d${d} h${heads} kv${kvh} hd${hd} T=${T} +rmsnorm, ${cache} cache`;
    guarded(name, (t, r) => {
        const pos0 = 13, cap = 40, qw = heads * hd, kvw = kvh * hd;
      const x = randomF32(T * d, r, 2);
      const nw = weight(randomF32(d, r), 1, d, 'f32');
      const [wq, wk, wv] = [qw, kvw, kvw].map((o) => weight(randomF32(o * d, r, 0.05), o, d, dtype));
      const inv = R.ropeInvFreq({ heads, headDim: hd, theta: 10000, style });
      const table = new Float32Array(cap * hd);
      for (let p = 0; p < cap; p++) for (let i = 0; i < hd / 2; i++) (table[p * hd + i * 2] = Math.cos(p * inv[i]!)), (table[p * hd + i * 2 + 1] = Math.sin(p * inv[i]!));
      const norm = { dtype: 'f32' as const, eps: 1e-5 };
      const specs: D.GemvSpec[] = [
        { dtype, inDim: d, outDim: qw, epilogue: 'store', norm, rope: { hd, style } },
        { dtype, inDim: d, outDim: kvw, epilogue: 'store', norm, rope: { hd, style }, toCache: true, cacheDtype: cache },
        { dtype, inDim: d, outDim: kvw, epilogue: 'store', norm, toCache: true, cacheDtype: cache },
      ];
      const qd = poisoned(T * pad8(qw) * 4);
      const ck = cacheImage(new Float32Array(0), 0, cap, kvw, cache).device, cv = cacheImage(new Float32Array(0), 0, cap, kvw, cache).device;
      launch(D.gemvMulti(specs), [D.gemvMultiGrid(specs), T, 1], 256, [upload(padF32(x, T, d)), nw.device, qd, wq!.device, ck, wk!.device, cv, wv!.device, upload(table), upload(Int32Array.of(pos0))]);
      const xn = R.rmsnorm(x, nw.exact, 1e-5);
      const gotQ = unpadF32(download(qd, new Float32Array(T * pad8(qw))), T, qw);
      const cacheK = cacheRows(ck, cap, kvw, cache, 0, cap);
      const cacheV = cacheRows(cv, cap, kvw, cache, 0, cap);
      const eq = relErr(gotQ, R.rope(R.linear(xn, wq!.exact, d), { heads, headDim: hd, theta: 10000, style }, pos0));
      const ek = relErr(cacheK.subarray(pos0 * kvw, (pos0 + T) * kvw), R.rope(R.linear(xn, wk!.exact, d), { heads: kvh, headDim: hd, theta: 10000, style }, pos0));
      const ev = relErr(cacheV.subarray(pos0 * kvw, (pos0 + T) * kvw), R.linear(xn, wv!.exact, d));
      // the rows around the new positions keep their poison (NaN): nothing else of the cache is written
      const untouched = [pos0 - 1, pos0 + T].every((row) => [cacheK, cacheV].every((c) => c.subarray(row * kvw, (row + 1) * kvw).every((v) => Number.isNaN(v))));
      const tol = Math.max(NORM_TOL, STORE_TOL[cache]); // the cache rounds k and v to its dtype
      t.true(eq < NORM_TOL && ek < tol && ev < tol && untouched, `rel q ${eq.toExponential(2)}, k ${ek.toExponential(2)}, v ${ev.toExponential(2)}; other cache rows untouched: ${untouched}`);
    });
  }
}

