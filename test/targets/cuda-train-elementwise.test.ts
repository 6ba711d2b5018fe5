// The elementwise training kernels (targets/cuda/ptx/train-elementwise.ts) against the ref target's
// kernels of the same ops (targets/ref/train-kernels.ts, kernels.ts), the oracle:
// - every kernel assembles for sm_80 and sm_90 with no local memory (needs ptxas);
// - each case runs on the CPU through the PTX interpreter (test/helpers/ptx-sim.ts) and, where a GPU
//   is present, the same case on the GPU: awkward widths (1, under a chunk, one past a block, long),
//   outputs poisoned with NaN, padding columns checked untouched.
// Tolerances (f32 kernels vs the ref's float64 math rounded once): σ comes from ex2.approx (relative
// error ~2^-22) of an argument x·log2 e rounded to f32 (relative error of 2^arg ≈ |x|·2^-24), so a
// gradient is within 1e-5 of |result| + |dy|·(1 + |x|) (the second term: the x·(1 − σ) factor of
// silu', where 1 + x·(1 − σ) may cancel). RoPE: the table's cos/sin are f32 roundings of the ref's
// float64 values, so each rotated element is within 1e-6·(|a| + |b|) of its pair. A wrong element
// index or formula is off by O(1).
import test from 'ava';
import { sigmoidGrad, siluGrad, swigluGrad, elementwiseGrid, mapGrid, ELEMENTWISE_THREADS, ropeAtPositions, ropeGrad, ropeGradGrid, ropePairsPerThread } from '../../targets/cuda/ptx/train-elementwise.js';
import { ROPE_THREADS } from '../../targets/cuda/ptx/attention.js';
import { pad8 } from '../../targets/cuda/ptx/layout.js';
import * as ref from '../../targets/ref/train-kernels.js';
import { mul, silu as refSilu, type RopeParams } from '../../targets/ref/kernels.js';
import { binary, silu as siluKernel } from '../../targets/cuda/ptx/train-forward.js';
import { ropeTableImage } from '../../targets/lowering/rope-table.js';
import { randomF32, rng } from '../helpers/cuda.js';
import { findPtxas, ptxasRequirement, testsNeeding } from '../helpers/requires.js';
import { assemblePtx, NO_LOCAL_MEMORY } from '../helpers/ptxas.js';
import { floats, mismatches, padRows, paddingWritten, runOn, simAndGpu, unpadRows, type Where } from '../helpers/train-kernels.js';

const ptxasTest = testsNeeding(ptxasRequirement(findPtxas()));

ptxasTest('train elementwise kernels assemble for sm_80 and sm_90, no local memory', (t) => {
  const kernels = [siluGrad(300), sigmoidGrad(7), swigluGrad(5464), ropeGrad(32, 64, 'half'), ropeGrad(8, 128, 'interleaved')];
  for (const arch of ['sm_80', 'sm_90'] as const) {
    const r = assemblePtx(kernels.map((k) => k.text), arch);
    t.is(r.status, 0, `${arch}: ${r.stderr}`);
    for (const k of kernels) t.regex(r.stderr, new RegExp(`Compiling entry function '${k.name}'[^]*?${NO_LOCAL_MEMORY.source}`), `${arch} ${k.name}: ${r.stderr}`);
  }
});

test('train elementwise kernel text is deterministic and named by its shape', (t) => {
  t.is(siluGrad(300).text, siluGrad(300).text);
  t.is(swigluGrad(7).name, 'swiglu_grad_w7');
  t.is(ropeGrad(3, 8, 'interleaved').name, 'rope_grad_interleaved_h3_hd8');
  t.deepEqual(elementwiseGrid(257, 5), [2, 5, 1]);
  t.deepEqual(mapGrid(257, 5), [1, 5, 1], 'map kernels: a thread a group of four columns');
  t.deepEqual(mapGrid(1027, 2), [2, 2, 1]);
});


// [T, width]: one element; under a chunk; a chunk; one past a block; several blocks with a tail; a
// map kernel's groups of 4 with a tail of 2, and past one block of groups (257 groups, a tail of 3)
const SHAPES: [number, number][] = [[1, 1], [3, 7], [2, 8], [5, 257], [4, 600], [3, 6], [2, 1027]];

/** x spread over [-12, 12) so σ saturates on both sides; dy in [-1, 1). */
const inputs = (seed: number, n: number) => {
  const r = rng(seed);
  return { x: randomF32(n, r, 12), dy: randomF32(n, r), u: randomF32(n, r, 3) };
};

for (const [T, w] of SHAPES) {
  for (const op of ['silu', 'sigmoid'] as const) {
    simAndGpu(`${op}_grad T=${T} w=${w} vs ref`, (where) => (t) => {
      const { x, dy } = inputs(T * 1000 + w, T * w);
      const kernel = op === 'silu' ? siluGrad(w) : sigmoidGrad(w);
      const out = runOn(where, { dx: { poison: T * pad8(w) * 4 }, x: { data: padRows(x, T, w) }, dy: { data: padRows(dy, T, w) } },
        [{ kernel, grid: mapGrid(w, T), block: ELEMENTWISE_THREADS, args: ['dx', 'x', 'dy'] }]);
      const raw = floats(out.dx!);
      const want = (op === 'silu' ? ref.siluGrad : ref.sigmoidGrad)(x, dy);
      const { bad, first } = mismatches(unpadRows(raw, T, w), want, (i) => 1e-5 * (Math.abs(want[i]!) + Math.abs(dy[i]!) * (1 + Math.abs(x[i]!))));
      t.is(bad, 0, first);
      t.is(paddingWritten(raw, T, w), 0, 'padding written');
    });
  }
  simAndGpu(`swiglu_grad T=${T} w=${w} vs silu_grad(g, dz·u) and dz·silu(g)`, (where) => (t) => {
    const { x: g, dy: dz, u } = inputs(T * 7 + w, T * w);
    const out = runOn(where, { dg: { poison: T * pad8(w) * 4 }, du: { poison: T * pad8(w) * 4 }, g: { data: padRows(g, T, w) }, u: { data: padRows(u, T, w) }, dz: { data: padRows(dz, T, w) } },
      [{ kernel: swigluGrad(w), grid: mapGrid(w, T), block: ELEMENTWISE_THREADS, args: ['dg', 'du', 'g', 'u', 'dz'] }]);
    // the composition grad-rules.ts emits for z = mul(silu(g), u)
    const dzu = mul(dz, u);
    const wantG = ref.siluGrad(g, dzu), wantU = mul(dz, refSilu(g));
    const rawG = floats(out.dg!), rawU = floats(out.du!);
    const eg = mismatches(unpadRows(rawG, T, w), wantG, (i) => 1e-5 * (Math.abs(wantG[i]!) + Math.abs(dzu[i]!) * (1 + Math.abs(g[i]!))));
    const eu = mismatches(unpadRows(rawU, T, w), wantU, (i) => 1e-5 * (Math.abs(wantU[i]!) + Math.abs(dz[i]!)));
    t.is(eg.bad, 0, `dg ${eg.first}`);
    t.is(eu.bad, 0, `du ${eu.first}`);
    t.is(paddingWritten(rawG, T, w) + paddingWritten(rawU, T, w), 0, 'padding written');
  });
}

// [T, heads, hd, style, llama3]: hd/2 odd; one pair; a row of several blocks of threads
const ROPES: [number, number, number, 'half' | 'interleaved', boolean][] = [
  [3, 3, 6, 'half', false], [4, 2, 6, 'interleaved', false], [1, 1, 2, 'half', false], [5, 5, 64, 'half', true], [2, 9, 32, 'interleaved', true],
];
for (const [T, heads, hd, style, llama3] of ROPES) {
  simAndGpu(`rope_grad ${style} T=${T} heads=${heads} hd=${hd}${llama3 ? ' llama3' : ''} vs ref`, (where) => (t) => {
    const r = rng(T * 31 + heads * 7 + hd);
    const w = heads * hd, maxPos = 300;
    const dy = randomF32(T * w, r);
    const pos = Int32Array.from({ length: T }, () => Math.floor(((r() + 1) / 2) * maxPos)); // any order, repeats allowed
    const p: RopeParams = { heads, headDim: hd, theta: 10000, style, ...(llama3 ? { llama3: { factor: 8, lowFreqFactor: 1, highFreqFactor: 4, originalMaxPos: 64 } } : {}) };
    const table = ropeTableImage({ name: 'rope', kind: 'rope', headDim: hd, theta: p.theta, ...(p.llama3 ? { llama3: p.llama3 } : {}) }, maxPos);
    const out = runOn(where, { dx: { poison: T * pad8(w) * 4 }, dy: { data: padRows(dy, T, w) }, table: { data: table }, pos: { data: pos } },
      [{ kernel: ropeGrad(heads, hd, style), grid: ropeGradGrid(heads, hd, style, T), block: ROPE_THREADS, args: ['dx', 'dy', 'table', 'pos'] }]);
    const raw = floats(out.dx!);
    const want = ref.ropeGrad(dy, p, pos);
    // a pair's two elements: (i, i + hd/2) for 'half', (2i, 2i + 1) for 'interleaved'
    const partner = (i: number) => {
      const c = i % hd, base = i - c;
      return style === 'half' ? base + ((c + hd / 2) % hd) : base + (c ^ 1);
    };
    const { bad, first } = mismatches(unpadRows(raw, T, w), want, (i) => 1e-6 * (Math.abs(dy[i]!) + Math.abs(dy[partner(i)]!)));
    t.is(bad, 0, first);
    t.is(paddingWritten(raw, T, w), 0, 'padding written');
  });
}

// The 4-pair rope threads (ropePairsPerThread: style 'half' with hd/2 a multiple of 4) against the
// one-pair kernel of the same shape, bit for bit: forward and inverse rotations, f32 and bf16 rows,
// heads spanning several threads and blocks, rows at scattered positions, NaN-poisoned outputs.
for (const [T, heads, hd] of [[3, 1, 8], [2, 3, 24], [4, 5, 64], [1, 40, 16]] as const) {
  for (const direction of ['forward', 'inverse'] as const) {
    for (const out of ['f32', 'bf16'] as const) {
      simAndGpu(`rope ${direction} ${out} T=${T} heads=${heads} hd=${hd}: 4 pairs a thread = one pair a thread, bit for bit`, (where) => (t) => {
        t.is(ropePairsPerThread(hd, 'half'), 4);
        const r = rng(T * 131 + heads * 17 + hd), w = heads * hd, maxPos = 200;
        const dy = randomF32(T * w, r, 3);
        const pos = Int32Array.from({ length: T }, () => Math.floor(((r() + 1) / 2) * maxPos));
        const table = ropeTableImage({ name: 'rope', kind: 'rope', headDim: hd, theta: 10000 }, maxPos);
        const rowBytes = T * pad8(w) * (out === 'bf16' ? 2 : 4);
        const run = (pairs: number) => runOn(where, { dx: { poison: rowBytes }, dy: { data: padRows(dy, T, w) }, table: { data: table }, pos: { data: pos } },
          [{ kernel: ropeAtPositions(`rope_test_p${pairs}`, heads, hd, 'half', direction, out, pairs), grid: ropeGradGrid(heads, hd, 'half', T, pairs), block: ROPE_THREADS, args: ['dx', 'dy', 'table', 'pos'] }]).dx!;
        const one = run(1), four = run(4);
        t.is(Buffer.compare(Buffer.from(one), Buffer.from(four)), 0, 'the two kernels wrote different bytes');
      });
    }
  }
}

// The forward map kernels (train-forward.ts): add and mul exactly the f32 operation (one rounding),
// silu within its ex2.approx tolerance; out aliasing an input (in place), as the executor may run them.
for (const [T, w] of SHAPES) {
  for (const op of ['add', 'mul'] as const) {
    simAndGpu(`${op} T=${T} w=${w}, in place over a: the f32 ${op} of each pair`, (where) => (t) => {
      const { x: a, u: b } = inputs(T * 31 + w, T * w);
      const out = runOn(where, { a: { data: padRows(a, T, w, NaN) }, b: { data: padRows(b, T, w, NaN) } },
        [{ kernel: binary(op, w), grid: mapGrid(w, T), block: ELEMENTWISE_THREADS, args: ['a', 'a', 'b'] }]);
      const raw = floats(out.a!), got = unpadRows(raw, T, w);
      const want = Float32Array.from(a, (v, i) => (op === 'add' ? v + b[i]! : v * b[i]!));
      t.deepEqual(Array.from(got), Array.from(want));
      let nan = 0;
      for (let r = 0; r < T; r++) for (let c = w; c < pad8(w); c++) if (Number.isNaN(raw[r * pad8(w) + c]!)) nan++;
      t.is(nan, T * (pad8(w) - w), 'padding untouched (still NaN)');
    });
  }
  simAndGpu(`silu T=${T} w=${w} vs ref`, (where) => (t) => {
    const { x } = inputs(T * 17 + w, T * w);
    const out = runOn(where, { y: { poison: T * pad8(w) * 4 }, x: { data: padRows(x, T, w) } },
      [{ kernel: siluKernel(w), grid: mapGrid(w, T), block: ELEMENTWISE_THREADS, args: ['y', 'x'] }]);
    const raw = floats(out.y!), want = refSilu(x);
    const { bad, first } = mismatches(unpadRows(raw, T, w), want, (i) => 1e-5 * (Math.abs(want[i]!) + Math.abs(x[i]!) * 2 ** -20));
    t.is(bad, 0, first);
    t.is(paddingWritten(raw, T, w), 0, 'padding written');
  });
}
