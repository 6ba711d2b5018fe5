// The fused MoC FFN of the 'gpu' kernels (targets/wgsl/kernels/moc-fused.ts), run through Dawn on
// the adapter here (SwiftShader without a GPU), against the ref kernels:
//  - the gate GEMV's histogram equals a histogram the test computes from the GEMV's own output;
//  - mocSelectUp keeps exactly ref.mocSelect's channels on adversarial rows (ties, NaN, ±0, ±Inf,
//    one value everywhere), and its h is SiLU(G)·up of the kept rows (0 elsewhere);
//  - mocDownMasked is ref.mocDown of those channels (with the residual too), and zeroes the histogram.
import test from 'ava';
import * as ref from '../../targets/ref/kernels.js';
import type { WeightDType } from '../../targets/wgsl/kernel.js';
import { gemv } from '../../targets/wgsl/kernels/dense.js';
import { HIST_BINS, HIST_BITS, MAX_FUSED_K, maskWords, mocDownMasked, mocSelectUp } from '../../targets/wgsl/kernels/moc-fused.js';
import { gateRows, ROWS } from '../helpers/gate-rows.js';
import { assertWithinLimits, maxRelErr, packWeight, poisoned, randomF32, runKernel, workgroupBytes } from '../helpers/webgpu.js';
import { testsNeeding, webgpuRequirement } from '../helpers/requires.js';

/** Tests that run kernels need a WebGPU adapter (skipped without one; a failure in CI). */
const gpuTest = testsNeeding(await webgpuRequirement());

const DTYPES: WeightDType[] = ['f32', 'f16', 'bf16'];

/**
 * The selection order of a float's bits as a u32 (ARCHITECTURE.md's "K largest, ties → lower
 * index", with ref.mocSelect's treatment of NaN as -Inf and of -0 as +0), written here from that
 * definition: larger float → larger key.
 */
function orderKey(bits: number): number {
  if ((bits & 0x7fffffff) >>> 0 > 0x7f800000) bits = 0xff800000; // NaN ranks as -Inf
  if (bits === 0x80000000) bits = 0; // -0 as +0
  return (bits & 0x80000000 ? ~bits : bits | 0x80000000) >>> 0;
}

/** Per token, how many of g's values fall in each bin of their key's top HIST_BITS bits. */
function histogram(g: Float32Array, F: number): Uint32Array {
  const bits = new Uint32Array(g.buffer, g.byteOffset, g.length);
  const h = new Uint32Array((g.length / F) * HIST_BINS);
  bits.forEach((b, i) => h[Math.floor(i / F) * HIST_BINS + (orderKey(b) >>> (32 - HIST_BITS))]!++);
  return h;
}

/** The channels a keep mask [T, words] marks, per token in ascending order (mocSelect's layout). */
function maskedChannels(mask: Uint32Array, F: number, T: number): number[] {
  const out: number[] = [];
  for (let t = 0; t < T; t++) for (let c = 0; c < F; c++) if ((mask[t * maskWords(F) + (c >> 5)]! >>> (c & 31)) & 1) out.push(c);
  return out;
}

/** maxRelErr with an absolute floor of a tenth of the outputs' rms (as wgsl-moc.test.ts explains). */
function relErr(got: Float32Array, want: Float32Array): number {
  const rms = Math.sqrt(want.reduce((a, v) => a + v * v, 0) / want.length) || 1;
  return maxRelErr(got, want, 0.1 * rms);
}

gpuTest('gate GEMV with hist: y as before, and the histogram of its outputs\' selection keys', async (t) => {
  for (const [i, [d, F, T, variant]] of ([[64, 333, 3, 'gpu'], [61, 100, 2, 'cpu']] as const).entries()) {
    const x = randomF32(T * d, 40 + i), w = packWeight('bf16', randomF32(F * d, 41 + i), F, d);
    const spec = { dtype: 'bf16', inDim: d, outDim: F, outStride: F, rowBase: 0, variant, hist: true } as const;
    const [y, , , hist] = await runKernel(gemv(spec), [poisoned(T * F), x, w.data, new Uint32Array(T * HIST_BINS)], { T });
    t.true(maxRelErr(y as Float32Array, ref.linear(x, w.rounded, d)) <= 1e-4, `y, d=${d} F=${F}`);
    t.deepEqual(Array.from(hist!), Array.from(histogram(y as Float32Array, F)), `hist, d=${d} F=${F} ${variant}`);
  }
  t.throws(() => gemv({ dtype: 'f32', inDim: 8, outDim: 8, outStride: 8, rowBase: 0, variant: 'gpu', hist: true, residual: true }), { message: /histogram/ });
});

/** Runs mocSelectUp on gate rows g [T, F]: the kept channels per token, and h. */
async function selectUp(dtype: WeightDType, d: number, F: number, K: number, g: Float32Array, seed: number) {
  const T = g.length / F;
  const x = randomF32(T * d, seed), w = packWeight(dtype, randomF32(F * d, seed + 1), F, d);
  const [h, mask] = await runKernel(mocSelectUp(dtype, d, F, K), [poisoned(T * F), new Uint32Array(T * maskWords(F)).fill(0xdeadbeef), x, w.data, g, histogram(g, F)], { T });
  return { T, x, w, h: h as Float32Array, kept: maskedChannels(mask as Uint32Array, F, T) };
}

gpuTest('mocSelectUp keeps exactly mocSelect\'s channels, on every kind of adversarial row', async (t) => {
  // every row kind, one token each; odd F (a last mask word part-filled), K = F, K = 1, the paper's
  // size, and an 8B-size one (56 keys an invocation)
  const kinds = Object.keys(ROWS);
  for (const [i, [F, K]] of [[333, 37], [172, 172], [100, 1], [5464, 1024], [14336, 2688]].entries()) {
    const g = gateRows(F, kinds, 900 + 10 * i);
    const { kept } = await selectUp('f32', 8, F, K, g, 950 + i);
    t.deepEqual(kept, Array.from(ref.mocSelect(g, F, { k: K })), `F=${F} K=${K}`);
  }
});

gpuTest('mocSelectUp: h is SiLU(G)·up of the kept channels and 0 for the others', async (t) => {
  for (const dtype of DTYPES) {
    for (const [i, [d, F, K]] of [[72, 333, 37], [61, 100, 100]].entries()) {
      const g = randomF32(3 * F, 960 + i, 4);
      const { T, x, w, h, kept } = await selectUp(dtype, d, F, K, g, 970 + i);
      const idx = ref.mocSelect(g, F, { k: K });
      t.deepEqual(kept, Array.from(idx), `${dtype} d=${d} F=${F}: kept`);
      const z = ref.mul(ref.silu(ref.mocGather(g, F, idx, K)), ref.mocUp(x, w.rounded, d, idx, K));
      const want = new Float32Array(T * F);
      idx.forEach((c, j) => (want[Math.floor(j / K) * F + c] = z[j]!));
      t.true(relErr(h, want) <= 1e-4, `${dtype} d=${d} F=${F} K=${K}: ${relErr(h, want)}`);
    }
  }
});

gpuTest('mocDownMasked: mocDown of the kept channels, with and without the residual; the histogram is zeroed', async (t) => {
  for (const dtype of DTYPES) {
    // d = 61: a last 32-column group ending in a part-filled 8-chunk; d = 72: of one chunk; K = F
    for (const [i, [d, F, K, T]] of [[64, 333, 37, 3], [61, 100, 100, 1], [72, 172, 20, 2]].entries()) {
      const g = randomF32(T * F, 980 + i);
      const idx = ref.mocSelect(g, F, { k: K });
      const mask = new Uint32Array(T * maskWords(F));
      idx.forEach((c, j) => (mask[Math.floor(j / K) * maskWords(F) + (c >> 5)]! |= 1 << (c & 31)));
      // h holds values at every channel: the dropped ones must not count
      const h = randomF32(T * F, 981 + i);
      const w = packWeight(dtype, randomF32(F * d, 982 + i), F, d);
      const z = ref.mocGather(h, F, idx, K);
      const want = ref.mocDown(z, w.rounded, d, idx, K);
      const hist = new Uint32Array(T * HIST_BINS).fill(7);
      const [y, histAfter] = await runKernel(mocDownMasked(dtype, d, F, K), [poisoned(T * d), hist, h, mask, w.data], { T });
      t.true(relErr(y as Float32Array, want) <= 1e-4, `${dtype} d=${d} F=${F}: ${relErr(y as Float32Array, want)}`);
      t.true(histAfter!.every((v) => v === 0), 'histogram zeroed');
      const res = randomF32(T * d, 983 + i);
      const [yr] = await runKernel(mocDownMasked(dtype, d, F, K, true), [poisoned(T * d), hist, h, mask, w.data, res], { T });
      t.true(relErr(yr as Float32Array, ref.add(res, want)) <= 1e-4, `residual ${dtype} d=${d}`);
    }
  }
});

test('fused kernels: deterministic text, keys that differ exactly when the code does, and size errors', (t) => {
  const makers = [
    () => mocSelectUp('bf16', 64, 172, 32), () => mocSelectUp('f16', 64, 172, 32), () => mocSelectUp('bf16', 72, 172, 32),
    () => mocSelectUp('bf16', 64, 173, 32), () => mocSelectUp('bf16', 64, 172, 33),
    () => mocDownMasked('bf16', 64, 172, 32), () => mocDownMasked('f32', 64, 172, 32), () => mocDownMasked('bf16', 72, 172, 32),
    () => mocDownMasked('bf16', 64, 173, 32), () => mocDownMasked('bf16', 64, 172, 33), () => mocDownMasked('bf16', 64, 172, 32, true),
  ];
  const all = makers.map((make) => {
    const k = make();
    t.deepEqual(make(), k, k.key);
    return k;
  });
  t.is(new Set(all.map((k) => k.key)).size, all.length);
  t.is(new Set(all.map((k) => k.code)).size, all.length);
  t.throws(() => mocSelectUp('bf16', 64, 172, 173), { message: /K = 173/ });
  t.throws(() => mocSelectUp('bf16', 64, 70000, 8), { message: /at most 65535/ });
  t.throws(() => mocDownMasked('bf16', 64, 8000, MAX_FUSED_K + 1), { message: new RegExp(`at most ${MAX_FUSED_K} kept`) });
});

gpuTest.serial('model-sized fused kernels compile, within the dispatch, binding and workgroup-memory limits', async (t) => {
  // the paper's 2048×5464 FFN, an 8B-size one, and the most kept channels the down kernel lists
  const kernels = [[2048, 5464, 1024], [4096, 14336, 2688], [4096, 14336, MAX_FUSED_K]].flatMap(([d, F, K]) => [
    gemv({ dtype: 'bf16', inDim: d!, outDim: F!, outStride: F!, rowBase: 0, variant: 'gpu', hist: true }),
    mocSelectUp('bf16', d!, F!, K!),
    mocDownMasked('bf16', d!, F!, K!, true),
  ]);
  await assertWithinLimits(t, kernels);
  t.is(workgroupBytes(mocDownMasked('bf16', 4096, 14336, MAX_FUSED_K).code), 4 * MAX_FUSED_K + 4 * 256 + 4 * 16 + 4 * 256); // the parser sees them all
});
