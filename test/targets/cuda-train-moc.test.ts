// The f32 SIMT MoC kernels of training (targets/cuda/ptx/train-moc.ts) against the ref kernels, the
// oracle (targets/ref/kernels.ts mocSelect, mocGather, mocUp, mocDown; targets/ref/train-kernels.ts
// mocRowsGrad):
// - every kernel assembles for sm_80 and sm_90 with no local memory (needs ptxas);
// - each case runs on the CPU through the PTX interpreter and, with a GPU, on the GPU: T = 1, F = 172
//   (stories260K's FFN) with K = 32, K = F, a:b patterns with a tail block, ties (values on a coarse
//   grid), −0 next to +0, NaN next to −∞, d not a multiple of 4, rows never selected, inputs' padding
//   NaN (never read), outputs NaN-poisoned (padding checked untouched);
// - on the GPU, two moc_rows_grad runs give the same bits (no atomics).
// Tolerance: selection and gather move values and indices: exact. The products sum in f32 in the ref's
// order (the ref in float64): within 2e-5 of Σ|terms| (the ref kernel on |inputs|).
import test from 'ava';
import { mocDown, mocGather, mocRowGrid, mocRowsGrad, mocRowsGradGrid, mocRowThreads, mocSelect, mocSelectedCount, mocSelectGrid, mocSelectThreads, ROWS_GRAD_THREADS, type MocSelectSpec } from '../../targets/cuda/ptx/train-moc.js';
import { pad8 } from '../../targets/cuda/ptx/layout.js';
import * as ref from '../../targets/ref/kernels.js';
import { mocRowsGrad as refRowsGrad } from '../../targets/ref/train-kernels.js';
import { freeAll, randomF32, rng } from '../helpers/cuda.js';
import { cudaDeviceRequirement, findPtxas, ptxasRequirement, testsNeeding } from '../helpers/requires.js';
import { assemblePtx, NO_LOCAL_MEMORY } from '../helpers/ptxas.js';
import { floats, mismatches, padRows, paddingWritten, runOn, randomDistinctIdx, simAndGpu, unpadRows, type Where } from '../helpers/train-kernels.js';
import { mocUp } from '../../targets/cuda/ptx/train-moc.js';

const ptxasTest = testsNeeding(ptxasRequirement(findPtxas()));
const cudaTest = testsNeeding(cudaDeviceRequirement());

ptxasTest('train MoC kernels assemble for sm_80 and sm_90, no local memory', (t) => {
  const kernels = [mocSelect({ F: 172, sel: { k: 32 } }), mocSelect({ F: 5464, sel: { k: 1366 } }), mocSelect({ F: 5464, sel: { a: 2, b: 8 } }), mocGather(172, 32),
    mocUp(64, 32), mocUp(2049, 1366), mocDown(64, 32), mocDown(2049, 1366), mocRowsGrad(64, 32), mocRowsGrad(2049, 1366)];
  for (const arch of ['sm_80', 'sm_90'] as const) {
    const r = assemblePtx(kernels.map((k) => k.text), arch);
    t.is(r.status, 0, `${arch}: ${r.stderr}`);
    for (const k of kernels) t.regex(r.stderr, new RegExp(`Compiling entry function '${k.name}'[^]*?${NO_LOCAL_MEMORY.source}`), `${arch} ${k.name}: ${r.stderr}`);
  }
});

test('train MoC: names, grids, counts, Top-K by the radix select and the rest without shuffles or atomics, bad specs refused', (t) => {
  const s: MocSelectSpec = { F: 172, sel: { k: 32 } }, p: MocSelectSpec = { F: 10, sel: { a: 2, b: 4 } };
  t.is(mocSelect(s).name, 'train_moc_select_f172_k32');
  t.is(mocSelect(p).name, 'train_moc_select_f10_a2b4');
  t.is(mocSelectedCount(p), 2 + 2 + 2);
  t.is(mocSelectedCount({ F: 9, sel: { a: 2, b: 4 } }), 2 + 2 + 1);
  t.deepEqual(mocSelectGrid(s, 5), [5, 1, 1]);
  t.deepEqual(mocSelectGrid(p, 5), [5, 3, 1]);
  t.is(mocSelectThreads(s), 256);
  t.is(mocSelectThreads(p), 32);
  t.is(mocSelectThreads({ F: 5464, sel: { k: 1 } }), 704); // moc.ts selectShape: 704 threads of 8 channels
  t.regex(mocSelect(s).text, /red\.shared\.add\.u32[^]*shfl\.sync/, 'Top-K: the radix select (shared histograms, shuffles)');
  t.deepEqual(mocRowGrid(300, 7), [7, 3, 1]);
  t.is(mocRowThreads(5), 32);
  t.deepEqual(mocRowsGradGrid(172), [172, 1, 1]);
  for (const k of [mocSelect(p), mocGather(172, 32), mocUp(64, 32), mocDown(64, 32), mocRowsGrad(64, 32)]) t.notRegex(k.text, /shfl|vote|atom\.|\bred\./);
  t.throws(() => mocSelect({ F: 8, sel: { k: 9 } }), { message: /not in 1\.\.8/ });
  t.throws(() => mocSelect({ F: 8, sel: { a: 3, b: 2 } }), { message: /1 ≤ a ≤ b/ });
  t.throws(() => mocSelect({ F: 70000, sel: { k: 9 } }), { message: /exceed/ });
  t.is(mocRowsGrad(8, 4, 32).name, 'train_moc_rows_grad_d8_k4_t32');
  t.throws(() => mocRowsGrad(8, 4, 48), { message: /power of two/ });
});

/** Values on a coarse grid (many ties), with −0, +0, NaN, −∞ and +∞ sprinkled in. */
function gateValues(n: number, r: () => number): Float32Array {
  const specials = [-0, 0, NaN, -Infinity, Infinity];
  return Float32Array.from({ length: n }, () => {
    const u = r();
    if (u > 0.9) return specials[Math.floor(((r() + 1) / 2) * specials.length)]!;
    return Math.round(u * 4) / 4;
  });
}

/** Rows of K indices from a padded [T, pad8(K)] i32 buffer. */
const idxRows = (raw: Uint8Array, T: number, K: number) => {
  const all = new Int32Array(raw.buffer, raw.byteOffset, T * pad8(K));
  return Int32Array.from({ length: T * K }, (_, i) => all[Math.floor(i / K) * pad8(K) + (i % K)]!);
};

// [T, F, selection]: stories260K's gate; one row of one channel; K = F; a smaller K with ties; a:b
// with a tail block shorter than a and one longer; F past one block of threads; the 1B preset's gate
const SELECTS: [number, number, MocSelectSpec['sel']][] = [[3, 172, { k: 32 }], [1, 1, { k: 1 }], [2, 13, { k: 13 }], [4, 40, { k: 7 }], [2, 10, { a: 3, b: 4 }], [2, 11, { a: 2, b: 4 }], [1, 1100, { k: 300 }], [2, 5464, { k: 1024 }]];
for (const [T, F, sel] of SELECTS) {
  simAndGpu(`moc_select + moc_gather T=${T} F=${F} ${'k' in sel ? `k=${sel.k}` : `${sel.a}:${sel.b}`} vs ref`, (where) => (t) => {
    const s = { F, sel }, K = mocSelectedCount(s);
    const g = gateValues(T * F, rng(T * 31 + F));
    const out = runOn(where, { idx: { poison: T * pad8(K) * 4 }, out: { poison: T * pad8(K) * 4 }, g: { data: padRows(g, T, F, NaN) } }, [
      { kernel: mocSelect(s), grid: mocSelectGrid(s, T), block: mocSelectThreads(s), args: ['idx', 'g'] },
      { kernel: mocGather(F, K), grid: mocRowGrid(K, T), block: mocRowThreads(K), args: ['out', 'g', 'idx'] },
    ]);
    const want = ref.mocSelect(g, F, sel);
    t.deepEqual(Array.from(idxRows(out.idx!, T, K)), Array.from(want));
    t.is(paddingWritten(floats(out.idx!), T, K), 0, 'idx padding written');
    const raw = floats(out.out!);
    // NaN gate values compare as NaN: check bits
    t.deepEqual(new Uint32Array(unpadRows(raw, T, K).buffer), new Uint32Array(ref.mocGather(g, F, want, K).buffer));
    t.is(paddingWritten(raw, T, K), 0, 'gather padding written');
  });
}

// Rows whose K-th largest value is tied between −0 and +0, or between NaN and −∞: the ref compares
// them equal, so the first in channel order is kept (random rows rarely put the threshold there)
simAndGpu('moc_select ties of −0 with +0 and of NaN with −∞ vs ref', (where) => (t) => {
  const F = 8, K = 3;
  const g = Float32Array.from([
    -1, 1, 0.5, 0, -0, 0, -2, -0, // keeps 1, 0.5 and channel 3's +0 (the first zero)
    -3, 2, -0, 0, -0, 1, 0, -4, // keeps 2, 1 and channel 2's −0 (ahead of channel 3's +0)
    -Infinity, NaN, 5, NaN, -Infinity, Infinity, NaN, NaN, // keeps ∞, 5 and channel 0's −∞
    NaN, -Infinity, 5, -Infinity, NaN, Infinity, NaN, -Infinity, // keeps ∞, 5 and channel 0's NaN
  ]);
  const T = g.length / F, s = { F, sel: { k: K } };
  const out = runOn(where, { idx: { poison: T * pad8(K) * 4 }, g: { data: padRows(g, T, F, NaN) } },
    [{ kernel: mocSelect(s), grid: mocSelectGrid(s, T), block: mocSelectThreads(s), args: ['idx', 'g'] }]);
  const want = ref.mocSelect(g, F, { k: K });
  t.deepEqual(Array.from(want), [1, 2, 3, 1, 2, 5, 0, 2, 5, 0, 2, 5]); // the oracle's rule, stated
  t.deepEqual(Array.from(idxRows(out.idx!, T, K)), Array.from(want));
});

const padIdx = (idx: Int32Array, T: number, K: number) => {
  const out = new Int32Array(T * pad8(K)).fill(-1);
  for (let tt = 0; tt < T; tt++) out.set(idx.subarray(tt * K, (tt + 1) * K), tt * pad8(K));
  return out;
};
const abs = (x: Float32Array) => x.map(Math.abs);

// [T, F, K, d]: stories260K's FFN (F = 172, K = 32, d = 64); T = 1; d not a multiple of 4 and under
// one; K = F; d past a block of threads; rows never selected (K small against F)
// (interpreted, moc_rows_grad runs 32 threads a block: d = 130 is then more than one column a thread)
const PROJECTIONS: [number, number, number, number][] = [[5, 172, 32, 64], [1, 3, 1, 1], [3, 9, 9, 7], [2, 20, 5, 130], [40, 60, 3, 6]];
for (const [T, F, K, d] of PROJECTIONS) {
  simAndGpu(`moc_up, moc_down, moc_rows_grad T=${T} F=${F} K=${K} d=${d} vs ref`, (where) => (t) => {
    const r = rng(T * 7 + F * 3 + K + d);
    const x = randomF32(T * d, r), w = randomF32(F * d, r), z = randomF32(T * K, r), idx = randomDistinctIdx(T, K, F, r);
    const NTr = where === 'sim' ? 32 : ROWS_GRAD_THREADS; // (the interpreter runs idle threads too)
    const out = runOn(where, {
      up: { poison: T * pad8(K) * 4 }, down: { poison: T * pad8(d) * 4 }, gw: { poison: F * pad8(d) * 4 },
      x: { data: padRows(x, T, d, NaN) }, w: { data: padRows(w, F, d, NaN) }, z: { data: padRows(z, T, K, NaN) }, idx: { data: padIdx(idx, T, K) },
    }, [
      { kernel: mocUp(d, K), grid: mocRowGrid(K, T), block: mocRowThreads(K), args: ['up', 'x', 'w', 'idx'] },
      { kernel: mocDown(d, K), grid: mocRowGrid(d, T), block: mocRowThreads(d), args: ['down', 'z', 'w', 'idx'] },
      // dW as moc_down's rule emits it: moc_rows_grad(z, dy = x, idx)
      { kernel: mocRowsGrad(d, K, NTr), grid: mocRowsGradGrid(F), block: NTr, args: ['gw', 'z', 'x', 'idx', T] },
    ]);
    const checks: [string, Float32Array, Float32Array, number, number][] = [
      ['up', ref.mocUp(x, w, d, idx, K), ref.mocUp(abs(x), abs(w), d, idx, K), T, K],
      ['down', ref.mocDown(z, w, d, idx, K), ref.mocDown(abs(z), abs(w), d, idx, K), T, d],
      ['rows_grad', refRowsGrad(z, x, idx, K, F), refRowsGrad(abs(z), abs(x), idx, K, F), F, d],
    ];
    const keys = { up: 'up', down: 'down', rows_grad: 'gw' } as Record<string, string>;
    for (const [key, want, mag, rows, cols] of checks) {
      const raw = floats(out[keys[key]!]!);
      const { bad, first } = mismatches(unpadRows(raw, rows, cols), want, (i) => 2e-5 * mag[i]!);
      t.is(bad, 0, `${key}: ${first}`);
      t.is(paddingWritten(raw, rows, cols), 0, `${key}: padding written`);
    }
  });
}

// A tile boundary of moc_rows_grad (2048 entries) crossed several times, on the GPU and interpreted
simAndGpu('moc_rows_grad T=170 K=13 F=20 d=8 (two tiles) vs ref', (where) => (t) => {
  const T = 170, K = 13, F = 20, d = 8, r = rng(4242);
  const a = randomF32(T * K, r), b = randomF32(T * d, r), idx = randomDistinctIdx(T, K, F, r);
  const out = runOn(where, { gw: { poison: F * pad8(d) * 4 }, a: { data: padRows(a, T, K, NaN) }, b: { data: padRows(b, T, d, NaN) }, idx: { data: padIdx(idx, T, K) } },
    [{ kernel: mocRowsGrad(d, K), grid: mocRowsGradGrid(F), block: ROWS_GRAD_THREADS, args: ['gw', 'a', 'b', 'idx', T] }]);
  const mag = refRowsGrad(abs(a), abs(b), idx, K, F);
  const { bad, first } = mismatches(unpadRows(floats(out.gw!), F, d), refRowsGrad(a, b, idx, K, F), (i) => 2e-5 * mag[i]!);
  t.is(bad, 0, first);
});

cudaTest.serial('moc kernels at stories260K size T=4096: vs ref, and two moc_rows_grad runs give the same bits (GPU)', (t) => {
  t.teardown(freeAll);
  const T = 4096, F = 172, K = 32, d = 64, r = rng(99);
  const g = randomF32(T * F, r), x = randomF32(T * d, r), w = randomF32(F * d, r), z = randomF32(T * K, r);
  const s = { F, sel: { k: K } };
  const run = () => runOn('gpu', {
    idx: { poison: T * pad8(K) * 4 }, up: { poison: T * pad8(K) * 4 }, gw: { poison: F * pad8(d) * 4 },
    g: { data: padRows(g, T, F) }, x: { data: padRows(x, T, d) }, w: { data: padRows(w, F, d) }, z: { data: padRows(z, T, K) },
  }, [
    { kernel: mocSelect(s), grid: mocSelectGrid(s, T), block: mocSelectThreads(s), args: ['idx', 'g'] },
    { kernel: mocUp(d, K), grid: mocRowGrid(K, T), block: mocRowThreads(K), args: ['up', 'x', 'w', 'idx'] },
    { kernel: mocRowsGrad(d, K), grid: mocRowsGradGrid(F), block: ROWS_GRAD_THREADS, args: ['gw', 'z', 'x', 'idx', T] },
  ]);
  const a = run(), b = run();
  const idx = ref.mocSelect(g, F, { k: K });
  t.deepEqual(Array.from(idxRows(a.idx!, T, K)), Array.from(idx));
  const up = mismatches(unpadRows(floats(a.up!), T, K), ref.mocUp(x, w, d, idx, K), (i) => 2e-5 * ref.mocUp(abs(x), abs(w), d, idx, K)[i]!);
  t.is(up.bad, 0, up.first);
  const mag = refRowsGrad(abs(z), abs(x), idx, K, F);
  const gw = mismatches(unpadRows(floats(a.gw!), F, d), refRowsGrad(z, x, idx, K, F), (i) => 2e-5 * mag[i]!);
  t.is(gw.bad, 0, gw.first);
  t.deepEqual(a.gw, b.gw);
});
