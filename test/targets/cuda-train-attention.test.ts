// The f32 SIMT attention kernels of training (targets/cuda/ptx/train-attention.ts: the forward, and
// attention_grad as attentionGradQ then attentionGradKV) against the ref kernels, the oracle
// (targets/ref/kernels.ts seqAttention, targets/ref/train-kernels.ts attentionGrad):
// - every kernel assembles for sm_80 and sm_90 with no local memory (needs ptxas);
// - each case runs on the CPU through the PTX interpreter and, with a GPU, on the GPU: T = 1, several
//   packed sequences (one longer than a tile of threads), GQA groups of 1, 2 and 3, hd = 1, odd hd
//   (scalar loads), hd = NT, hd > NT (two columns a thread, the second partial), inputs' padding NaN
//   (never read), outputs NaN-poisoned (padding checked untouched);
// - on the GPU, two runs give the same bits (no atomics).
// Tolerance: f32 sums in a fixed order against the ref's float64, exp by ex2.approx (~2^-22
// relative): within 2e-5 of the largest magnitude of the tensor compared (1 + that for the forward,
// whose values are convex combinations of v rows). A wrong row, head or mask is off by O(that).
import test from 'ava';
import { attentionForward, attentionGradKV, attentionGradQ, attentionKeyGrid, attentionRowGrid, attentionStatsBytes, attentionThreads, type TrainAttentionSpec } from '../../targets/cuda/ptx/train-attention.js';
import { pad8 } from '../../targets/cuda/ptx/layout.js';
import { seqAttention } from '../../targets/ref/kernels.js';
import { attentionGrad } from '../../targets/ref/train-kernels.js';
import { freeAll, randomF32, rng } from '../helpers/cuda.js';
import { cudaDeviceRequirement, findPtxas, ptxasRequirement, testsNeeding } from '../helpers/requires.js';
import { assemblePtx, NO_LOCAL_MEMORY } from '../helpers/ptxas.js';
import { floats, mismatches, padRows, paddingWritten, runOn, simAndGpu, unpadRows, type Where } from '../helpers/train-kernels.js';

const ptxasTest = testsNeeding(ptxasRequirement(findPtxas()));
const cudaTest = testsNeeding(cudaDeviceRequirement());

ptxasTest('train attention kernels assemble for sm_80 and sm_90, no local memory', (t) => {
  const specs: TrainAttentionSpec[] = [{ heads: 32, kvHeads: 8, hd: 128 }, { heads: 8, kvHeads: 4, hd: 8 }, { heads: 6, kvHeads: 2, hd: 5, threads: 32 }, { heads: 4, kvHeads: 4, hd: 256, threads: 64 }];
  const kernels = specs.flatMap((s) => [attentionForward(s), attentionGradQ(s), attentionGradKV(s)]);
  for (const arch of ['sm_80', 'sm_90'] as const) {
    const r = assemblePtx(kernels.map((k) => k.text), arch);
    t.is(r.status, 0, `${arch}: ${r.stderr}`);
    for (const k of kernels) t.regex(r.stderr, new RegExp(`Compiling entry function '${k.name}'[^]*?${NO_LOCAL_MEMORY.source}`), `${arch} ${k.name}: ${r.stderr}`);
  }
});

test('train attention: names, grids, no shuffles or atomics, bad specs refused', (t) => {
  const s = { heads: 6, kvHeads: 2, hd: 12, threads: 32 };
  t.is(attentionForward(s).name, 'train_attention_fwd_h6_kv2_hd12_t32');
  t.is(attentionGradQ(s).name, 'train_attention_grad_q_h6_kv2_hd12_t32');
  t.is(attentionGradKV(s).name, 'train_attention_grad_kv_h6_kv2_hd12_t32');
  t.deepEqual(attentionRowGrid(s, 9), [9, 6, 1]);
  t.deepEqual(attentionKeyGrid(s, 9), [9, 2, 1]);
  t.is(attentionStatsBytes(s, 9), 9 * 6 * 16);
  t.is(attentionThreads({ heads: 1, kvHeads: 1, hd: 8 }), 128);
  for (const k of [attentionForward(s), attentionGradQ(s), attentionGradKV(s)]) t.notRegex(k.text, /shfl|vote|atom\.|\bred\./);
  t.throws(() => attentionForward({ heads: 3, kvHeads: 2, hd: 8 }), { message: /multiple/ });
  t.throws(() => attentionForward({ heads: 2, kvHeads: 2, hd: 8, threads: 96 }), { message: /power of two/ });
});


interface Case {
  s: TrainAttentionSpec;
  /** Lengths of the packed sequences (T is their sum). */
  lens: number[];
}

function attentionRun(where: Where, c: Case, seed: number) {
  const { heads, kvHeads, hd } = c.s;
  const T = c.lens.reduce((a, b) => a + b, 0), qw = heads * hd, kvw = kvHeads * hd;
  const r = rng(seed);
  const q = randomF32(T * qw, r, 2), k = randomF32(T * kvw, r, 2), v = randomF32(T * kvw, r), dy = randomF32(T * qw, r);
  // sequence ids: not 0-based and not consecutive (only contiguity matters)
  const seq = Int32Array.from(c.lens.flatMap((n, i) => Array.from({ length: n }, () => 7 + 3 * i)));
  const NT = attentionThreads(c.s);
  const out = runOn(where, {
    out: { poison: T * pad8(qw) * 4 }, dq: { poison: T * pad8(qw) * 4 }, dk: { poison: T * pad8(kvw) * 4 }, dv: { poison: T * pad8(kvw) * 4 },
    stats: { poison: attentionStatsBytes(c.s, T) },
    q: { data: padRows(q, T, qw, NaN) }, k: { data: padRows(k, T, kvw, NaN) }, v: { data: padRows(v, T, kvw, NaN) }, dy: { data: padRows(dy, T, qw, NaN) }, seq: { data: seq },
  }, [
    { kernel: attentionForward(c.s), grid: attentionRowGrid(c.s, T), block: NT, args: ['out', 'q', 'k', 'v', 'seq'] },
    { kernel: attentionGradQ(c.s), grid: attentionRowGrid(c.s, T), block: NT, args: ['dq', 'stats', 'q', 'k', 'v', 'seq', 'dy'] },
    { kernel: attentionGradKV(c.s), grid: attentionKeyGrid(c.s, T), block: NT, args: ['dk', 'dv', 'stats', 'q', 'k', 'v', 'seq', 'dy', T] },
  ]);
  return { q, k, v, dy, seq, T, out };
}

const maxAbs = (x: Float32Array) => x.reduce((m, v) => Math.max(m, Math.abs(v)), 0);

const CASES: Case[] = [
  { s: { heads: 1, kvHeads: 1, hd: 1, threads: 32 }, lens: [1] }, // T = 1, hd = 1
  { s: { heads: 4, kvHeads: 2, hd: 8, threads: 32 }, lens: [3, 4] }, // stories260K's head shape, two sequences
  { s: { heads: 2, kvHeads: 1, hd: 12, threads: 32 }, lens: [40, 1, 5] }, // a sequence past a tile; one of one row
  { s: { heads: 6, kvHeads: 2, hd: 5, threads: 32 }, lens: [6, 4] }, // odd hd (scalar dots), groups of 3, 6 parts
  { s: { heads: 2, kvHeads: 1, hd: 40, threads: 32 }, lens: [9] }, // hd > NT: two columns a thread, the second partial
  { s: { heads: 2, kvHeads: 2, hd: 64, threads: 64 }, lens: [2, 3] }, // hd = NT: one part
];

for (const c of CASES) {
  const title = `train attention h=${c.s.heads} kv=${c.s.kvHeads} hd=${c.s.hd} threads=${attentionThreads(c.s)} seqs=${c.lens.join('+')} vs ref`;
  const body = (where: Where) => (t: import('ava').ExecutionContext) => {
    const { heads, kvHeads, hd } = c.s;
    const { q, k, v, dy, seq, T, out } = attentionRun(where, c, c.lens.length * 1000 + heads * 100 + hd);
    const qw = heads * hd, kvw = kvHeads * hd;
    const wantOut = seqAttention(q, k, v, seq, heads, kvHeads, hd);
    const [wantDq, wantDk, wantDv] = attentionGrad(q, k, v, seq, dy, heads, kvHeads, hd);
    const checks: [string, Float32Array, number, number][] = [['out', wantOut, qw, 1], ['dq', wantDq, qw, 0], ['dk', wantDk, kvw, 0], ['dv', wantDv, kvw, 0]];
    for (const [key, want, w, plus] of checks) {
      const raw = floats(out[key]!);
      const tol = 2e-5 * (plus + maxAbs(want)) + 1e-7;
      const { bad, first } = mismatches(unpadRows(raw, T, w), want, () => tol);
      t.is(bad, 0, `${key}: ${first}`);
      t.is(paddingWritten(raw, T, w), 0, `${key}: padding written`);
    }
  };
  simAndGpu(title, body);
}

// Larger shapes on the GPU only (the interpreter would take minutes): llama-like heads, long sequences.
for (const c of [
  { s: { heads: 8, kvHeads: 4, hd: 64 }, lens: [300, 45, 167] },
  { s: { heads: 4, kvHeads: 1, hd: 128, threads: 256 }, lens: [513] },
  { s: { heads: 8, kvHeads: 4, hd: 8 }, lens: [256, 256] },
] as Case[]) {
  cudaTest.serial(`train attention h=${c.s.heads} kv=${c.s.kvHeads} hd=${c.s.hd} seqs=${c.lens.join('+')} vs ref (GPU)`, (t) => {
    t.teardown(freeAll);
    const { heads, kvHeads, hd } = c.s;
    const { q, k, v, dy, seq, T, out } = attentionRun('gpu', c, 77 + hd);
    const [wantDq, wantDk, wantDv] = attentionGrad(q, k, v, seq, dy, heads, kvHeads, hd);
    const checks: [string, Float32Array, number, number][] = [['out', seqAttention(q, k, v, seq, heads, kvHeads, hd), heads * hd, 1], ['dq', wantDq, heads * hd, 0], ['dk', wantDk, kvHeads * hd, 0], ['dv', wantDv, kvHeads * hd, 0]];
    for (const [key, want, w, plus] of checks) {
      const { bad, first } = mismatches(unpadRows(floats(out[key]!), T, w), want, () => 2e-5 * (plus + maxAbs(want)) + 1e-7);
      t.is(bad, 0, `${key}: ${first}`);
    }
  });
}

cudaTest.serial('train attention: two GPU runs give the same bits (GPU)', (t) => {
  t.teardown(freeAll);
  const c: Case = { s: { heads: 8, kvHeads: 2, hd: 64 }, lens: [200, 57] };
  const a = attentionRun('gpu', c, 3).out, b = attentionRun('gpu', c, 3).out;
  for (const key of ['out', 'dq', 'dk', 'dv']) t.deepEqual(a[key], b[key], key);
});
