// The WGSL MoC kernels (targets/wgsl/kernels/moc.ts), both variants, run through Dawn on the
// adapter here (SwiftShader without a GPU), against the ref kernels. Selections must match
// mocSelect exactly, on adversarial rows too (ties, NaN of any payload, ±0, ±Inf, denormals, rows
// of one value); the projections within a relative error of 1e-4.
import test from 'ava';
import * as ref from '../../targets/ref/kernels.js';
import type { Variant, WeightDType, WgslKernel } from '../../targets/wgsl/kernel.js';
import {
  MAX_SELECT_CHANNELS,
  mocDown,
  mocDownReduce,
  mocDownSlices,
  mocGather,
  mocUp,
  mocUpSilu,
  patternSelect,
  topkSelect,
} from '../../targets/wgsl/kernels/moc.js';
import { gateRows, ROWS } from '../helpers/gate-rows.js';
import { maxRelErr, packWeight, poisoned, randomF32, runKernel } from '../helpers/webgpu.js';
import { testsNeeding, webgpuRequirement } from '../helpers/requires.js';

/** Tests that run kernels need a WebGPU adapter (skipped without one; a failure in CI). */
const gpuTest = testsNeeding(await webgpuRequirement());

const VARIANTS: Variant[] = ['cpu', 'gpu'];
const DTYPES: WeightDType[] = ['f32', 'f16', 'bf16'];

/** Runs a selection kernel on g [T, F]; idx starts as -1 everywhere. */
async function select(kernel: WgslKernel, g: Float32Array, T: number, perToken: number): Promise<number[]> {
  const [idx] = await runKernel(kernel, [new Int32Array(T * perToken).fill(-1), g], { T });
  return Array.from(idx!);
}

/** Every kind of row, one token each: a dispatch covers them all. */
const ALL_ROWS = Object.keys(ROWS);

for (const variant of VARIANTS) {
  gpuTest(`topkSelect ${variant}: exactly mocSelect on adversarial rows`, async (t) => {
    // K = F, odd F and K, K = 1; F = 5464, K = 1024 runs every radix pass at the real size. (Few
    // (F, K): each is a pipeline of its own, and SwiftShader takes seconds to compile the gpu one.)
    for (const [i, [F, K]] of [[172, 172], [333, 37], [1000, 1], [5464, 1024]].entries()) {
      const kernel = topkSelect(F, K, variant);
      const g = gateRows(F, ALL_ROWS, 100 + 10 * i);
      t.deepEqual(await select(kernel, g, ALL_ROWS.length, K), Array.from(ref.mocSelect(g, F, { k: K })), `F=${F} K=${K}`);
      const one = g.subarray(F, 2 * F); // T = 1
      t.deepEqual(await select(kernel, one, 1, K), Array.from(ref.mocSelect(one, F, { k: K })), `F=${F} K=${K} T=1`);
    }
  });

  gpuTest(`patternSelect ${variant}: exactly mocSelect with {a, b}, short last blocks included`, async (t) => {
    // [F, a, b]: tails longer and shorter than a, b = 64, one short block only, a = b
    for (const [i, [F, a, b]] of [[333, 3, 7], [172, 4, 5], [1000, 16, 64], [37, 8, 64], [100, 3, 3]].entries()) {
      const g = gateRows(F, ALL_ROWS, 300 + 10 * i);
      const want = ref.mocSelect(g, F, { a, b });
      t.deepEqual(await select(patternSelect(F, a, b, variant), g, ALL_ROWS.length, want.length / ALL_ROWS.length), Array.from(want), `F=${F} ${a}:${b}`);
    }
  });

  gpuTest(`mocGather ${variant}: copies the kept gate values bit for bit`, async (t) => {
    for (const [F, K, T] of [[333, 37, 3], [172, 172, 1]] as const) {
      const g = gateRows(F, Array(T).fill('specials'), 400 + K);
      const idx = ref.mocSelect(randomF32(T * F, 401 + K), F, { k: K });
      const [z] = await runKernel(mocGather(F, K, variant), [poisoned(T * K), g, idx], { T });
      const want = ref.mocGather(g, F, idx, K);
      t.deepEqual(Array.from(new Uint32Array(z!.buffer)), Array.from(new Uint32Array(want.buffer)), `F=${F} K=${K}`);
    }
  });
}

/**
 * Shapes of the projection tests: d = 61 has an odd length and a last 8-chunk of 5; K = F keeps
 * every channel. (mocUp and mocUpSilu share the code but for the gate, so they share the shapes out:
 * every shape is a pipeline of its own per dtype and variant, and the gpu ones compile slowly.)
 */
const SHAPE = {
  a: { d: 72, F: 172, K: 37, T: 3 },
  all: { d: 64, F: 333, K: 333, T: 1 },
  odd: { d: 61, F: 100, K: 1, T: 3 },
  many: { d: 64, F: 1000, K: 1000, T: 1 }, // 63 slices of 16 kept channels in mocDown, the last short
};

/**
 * maxRelErr with the absolute floor a tenth of the outputs' rms: the kernels sum in f32 and the ref
 * in float64, so the error scales with the terms, not with an output that cancels to near 0 (with
 * the default floor of 1e-3, such outputs measured up to 2e-4). A wrong or missing term is still
 * off by far more.
 */
function relErr(got: Float32Array, want: Float32Array): number {
  const rms = Math.sqrt(want.reduce((a, v) => a + v * v, 0) / want.length);
  return maxRelErr(got, want, 0.1 * rms);
}

/** Random x [T, d], W [F, d] packed as `dtype`, and the kept channels of a random gate [T, F]. */
function projInputs(dtype: WeightDType, s: { d: number; F: number; K: number; T: number }, seed: number) {
  const g = randomF32(s.T * s.F, seed, 4);
  const w = packWeight(dtype, randomF32(s.F * s.d, seed + 1), s.F, s.d);
  return { g, w, x: randomF32(s.T * s.d, seed + 2), idx: ref.mocSelect(g, s.F, { k: s.K }) };
}

for (const variant of VARIANTS) {
  for (const dtype of DTYPES) {
    gpuTest(`mocUp ${variant} ${dtype}: mocUp of the rounded weights`, async (t) => {
      for (const [i, s] of [SHAPE.a, SHAPE.odd].entries()) {
        const { w, x, idx } = projInputs(dtype, s, 500 + 10 * i);
        const [y] = await runKernel(mocUp(dtype, s.d, s.K, variant), [poisoned(s.T * s.K), x, w.data, idx], { T: s.T });
        const want = ref.mocUp(x, w.rounded, s.d, idx, s.K);
        t.true(relErr(y as Float32Array, want) <= 1e-4, `d=${s.d} K=${s.K} T=${s.T}: ${relErr(y as Float32Array, want)}`);
      }
    });

    gpuTest(`mocUpSilu ${variant} ${dtype}: silu(gather(g)) · mocUp`, async (t) => {
      const s = SHAPE.all;
      const { g, w, x, idx } = projInputs(dtype, s, 600);
      const [z] = await runKernel(mocUpSilu(dtype, s.d, s.F, s.K, variant), [poisoned(s.T * s.K), x, w.data, idx, g], { T: s.T });
      const want = ref.mul(ref.silu(ref.mocGather(g, s.F, idx, s.K)), ref.mocUp(x, w.rounded, s.d, idx, s.K));
      t.true(relErr(z as Float32Array, want) <= 1e-4, `d=${s.d} K=${s.K} T=${s.T}: ${relErr(z as Float32Array, want)}`);
    });

    gpuTest(`mocDown + mocDownReduce ${variant} ${dtype}: mocDown of the rounded weights`, async (t) => {
      for (const [i, s] of Object.values(SHAPE).entries()) {
        const { w, idx } = projInputs(dtype, s, 700 + 10 * i);
        const z = randomF32(s.T * s.K, 701 + 10 * i);
        const slices = mocDownSlices(s.K);
        const [partial] = await runKernel(mocDown(dtype, s.d, s.K, variant), [poisoned(s.T * slices * s.d), z, w.data, idx], { T: s.T });
        const [y] = await runKernel(mocDownReduce(s.d, slices, variant), [poisoned(s.T * s.d), partial!], { T: s.T });
        const want = ref.mocDown(z, w.rounded, s.d, idx, s.K);
        t.true(relErr(y as Float32Array, want) <= 1e-4, `d=${s.d} K=${s.K} T=${s.T}: ${relErr(y as Float32Array, want)}`);
        // with the residual folded in: y = res + Σ partials
        const res = randomF32(s.T * s.d, 702 + 10 * i);
        const [yr] = await runKernel(mocDownReduce(s.d, slices, variant, true), [poisoned(s.T * s.d), partial!, res], { T: s.T });
        const wantR = ref.add(res, want);
        t.true(relErr(yr as Float32Array, wantR) <= 1e-4, `residual, d=${s.d} K=${s.K} T=${s.T}: ${relErr(yr as Float32Array, wantR)}`);
      }
    });
  }
}

test('mocDownSlices: at most 64 slices, covering all K channels', (t) => {
  for (let K = 1; K <= 20000; K += K < 300 ? 1 : 37) {
    const s = mocDownSlices(K);
    if (s < 1 || s > 64 || s * Math.ceil(K / s) < K) t.fail(`K=${K}: ${s} slices`);
  }
  t.pass();
});

test('kernel text is deterministic, and keys differ exactly when the code does', (t) => {
  // specs that differ in one parameter each, per variant
  const specs = (v: Variant): (() => WgslKernel)[] => [
    () => topkSelect(172, 32, v), () => topkSelect(173, 32, v), () => topkSelect(172, 33, v),
    () => patternSelect(172, 2, 8, v), () => patternSelect(173, 2, 8, v), () => patternSelect(172, 3, 8, v), () => patternSelect(172, 2, 9, v),
    () => mocGather(172, 32, v), () => mocGather(173, 32, v), () => mocGather(172, 33, v),
    () => mocDownReduce(64, 4, v), () => mocDownReduce(72, 4, v), () => mocDownReduce(64, 5, v),
    ...DTYPES.flatMap((dt) => [
      () => mocUp(dt, 64, 32, v), () => mocUp(dt, 72, 32, v), () => mocUp(dt, 64, 33, v),
      () => mocUpSilu(dt, 64, 172, 32, v), () => mocUpSilu(dt, 72, 172, 32, v), () => mocUpSilu(dt, 64, 173, 32, v), () => mocUpSilu(dt, 64, 172, 33, v),
      () => mocDown(dt, 64, 32, v), () => mocDown(dt, 72, 32, v), () => mocDown(dt, 64, 33, v),
    ]),
  ];
  const all = VARIANTS.flatMap((v) => specs(v).map((make) => {
    const k = make();
    t.deepEqual(make(), k, k.key); // the same text again
    return k;
  }));
  const codeOf = new Map<string, string>();
  for (const k of all) {
    if (codeOf.has(k.key)) t.is(codeOf.get(k.key), k.code, `one key, two codes: ${k.key}`);
    codeOf.set(k.key, k.code);
  }
  t.is(new Set(codeOf.values()).size, codeOf.size, 'one code, two keys');
  // within a variant every spec has a key of its own; across variants only the gather and the
  // down projection, which have no workgroup cooperation, share theirs
  const [cpu, gpu] = VARIANTS.map((v) => specs(v).map((make) => make().key));
  for (const keys of [cpu!, gpu!]) t.is(new Set(keys).size, keys.length);
  const shared = cpu!.filter((k) => gpu!.includes(k));
  t.deepEqual(shared, cpu!.filter((k) => /^moc_(gather|down)\//.test(k)));
  t.is(shared.length, 3 + 3 * DTYPES.length);
});

test('sizes the kernels cannot select over are errors', (t) => {
  t.throws(() => topkSelect(172, 173, 'cpu'), { message: /K = 173/ });
  t.throws(() => topkSelect(172, 0, 'gpu'), { message: /K must be an integer/ });
  t.throws(() => topkSelect(MAX_SELECT_CHANNELS + 1, 8, 'gpu'), { message: /at most 65535 channels/ });
  t.throws(() => patternSelect(172, 9, 8, 'cpu'), { message: /a ≤ b/ });
  t.throws(() => patternSelect(1000, 2, 300, 'gpu'), { message: /b ≤ 256/ });
});
