// gemm.ts's 'xw' and 'xtw' layouts and its store_bf16 / silu_pair epilogues (the training GEMMs):
// - without a GPU: every new spec assembles with ptxas for sm_80 and sm_90 with no local memory;
//   the gate/up interleaving and the float64 references agree with small cases worked by hand;
// - on the GPU machine: random operands with awkward shapes (tails in every dimension, K not a
//   multiple of 8 or of the 32-wide K step), NaN-poisoned outputs whose padding columns must stay
//   NaN, against float64 products of the same rounded inputs (test/helpers/gemm-check.ts).
import test from 'ava';
import { gemm, GEMM_DEFAULT, gemmGrid, gemmThreads, interleaveGateUp, siluPairRows, type GemmEpilogue, type GemmLayout, type GemmSpec } from '../../targets/cuda/ptx/gemm.js';
import { decodeToF32 } from '../../src/util/dtype.js';
import type { DevicePtr } from '../../targets/cuda/driver.js';
import { cuda, freeAll, launch, pad8, poisoned, randomF32, rng, upload, weight } from '../helpers/cuda.js';
import { accumulatorStart, compareGemm, gemmLayoutReference, paddingTouched, plusStart, silu64, siluPairReference } from '../helpers/gemm-check.js';
import { cudaDeviceRequirement, findPtxas, ptxasRequirement, testsNeeding } from '../helpers/requires.js';
import { assemblePtx, NO_LOCAL_MEMORY } from '../helpers/ptxas.js';

const SMALL: Omit<GemmSpec, 'dtype'> = { bm: 64, bn: 64, warpsM: 2, warpsN: 2 };
/** Every new layout × epilogue (xwt store/accumulate are cuda-gemm.test.ts's). */
const NEW: { layout: GemmLayout; epilogue: GemmEpilogue }[] = [
  ...(['xw', 'xtw'] as const).flatMap((layout) => (['store', 'accumulate', 'store_bf16'] as const).map((epilogue) => ({ layout, epilogue }))),
  ...(['store_bf16', 'silu_pair', 'silu_pair_bf16'] as const).map((epilogue) => ({ layout: 'xwt' as const, epilogue })),
];
const label = (s: GemmSpec) => `gemm ${s.layout} ${s.epilogue} ${s.dtype} ${s.bm}x${s.bn}/${s.warpsM}x${s.warpsN}`;

// ---- without a GPU ----
const ptxas = findPtxas();
const ptxasTest = testsNeeding(ptxasRequirement(ptxas));
const ptxasSpecs: GemmSpec[] = [
  ...NEW.flatMap((c) => (['bf16', 'f16'] as const).map((dtype) => ({ dtype, ...GEMM_DEFAULT, ...c }))),
  ...NEW.map((c) => ({ dtype: 'bf16' as const, ...SMALL, ...c })),
];
for (const spec of ptxasSpecs) {
  ptxasTest(`${label(spec)}: assembles for sm_80 and sm_90, no local memory`, (t) => {
    for (const arch of ['sm_80', 'sm_90'] as const) {
      const r = assemblePtx([gemm(spec).text], arch);
      t.is(r.status, 0, `${arch}: ${r.stderr}`);
      t.regex(r.stderr, NO_LOCAL_MEMORY, `${arch}: ${r.stderr}`);
    }
  });
}

test('gemm layouts read [K, ·] operands with ldmatrix.trans, K-contiguous ones without; names differ', (t) => {
  const trans = (layout: GemmLayout) => (gemm({ dtype: 'bf16', ...GEMM_DEFAULT, layout }).text.match(/ldmatrix\.sync\.aligned\.m8n8\.x4\.trans\.shared\.b16/g) ?? []).length;
  // 64×32 warp tiles: 4 A blocks and 2 B blocks (16×16 each) per k-slice, two k-slices a step
  t.is(trans('xwt'), 0);
  t.is(trans('xw'), 2 * 2);
  t.is(trans('xtw'), 2 * (4 + 2));
  const names = new Set(NEW.map((c) => gemm({ dtype: 'bf16', ...GEMM_DEFAULT, ...c }).name));
  names.add(gemm({ dtype: 'bf16', ...GEMM_DEFAULT }).name);
  t.is(names.size, NEW.length + 1);
  t.throws(() => gemm({ dtype: 'bf16', ...GEMM_DEFAULT, layout: 'xw', epilogue: 'silu_pair' }), { message: /xwt layout/ });
});

test('interleaveGateUp: blocks of 8 gate rows then the matching 8 up rows, zero rows past F', (t) => {
  // F = 10 rows of 2 elements: gate row r = [r, -r], up row r = [100 + r, -100 - r]
  const f = 10, gate = new Float32Array(20), up = new Float32Array(20);
  for (let r = 0; r < f; r++) gate.set([r, -r], 2 * r), up.set([100 + r, -100 - r], 2 * r);
  const w = interleaveGateUp(gate, up, f, 2);
  t.is(siluPairRows(f), 32);
  t.is(w.length, 32 * 2);
  const rowOf = (i: number) => [w[2 * i]! + 0, w[2 * i + 1]! + 0];
  for (let r = 0; r < 8; r++) {
    t.deepEqual(rowOf(r), [r, -r + 0]);
    t.deepEqual(rowOf(8 + r), [100 + r, -100 - r]);
  }
  t.deepEqual(rowOf(16), [8, -8]);
  t.deepEqual(rowOf(17), [9, -9]);
  for (let i = 18; i < 24; i++) t.deepEqual(rowOf(i), [0, 0]);
  t.deepEqual(rowOf(24), [108, -108]);
  t.deepEqual(rowOf(25), [109, -109]);
  for (let i = 26; i < 32; i++) t.deepEqual(rowOf(i), [0, 0]);
  t.true(interleaveGateUp(new Uint16Array([1, 2]), new Uint16Array([3, 4]), 1, 2) instanceof Uint16Array);
});

test('gemmLayoutReference and siluPairReference agree with products worked by hand', (t) => {
  // X = [[1, 2]] (M 1, K 2); the product with W = [[1, 0, 2], [0, 1, 3]] (K × N) is [1, 2, 8]
  const wKN = new Float32Array([1, 0, 2, 0, 1, 3]), wNK = new Float32Array([1, 0, 0, 1, 2, 3]);
  for (const [layout, x, w] of [['xwt', [1, 2], wNK], ['xw', [1, 2], wKN], ['xtw', [1, 2], wKN]] as const) {
    const r = gemmLayoutReference(layout, new Float32Array(x), w, 1, 3, 2);
    t.deepEqual([...r.y], [1, 2, 8], layout);
    t.deepEqual([...r.mag], [1, 2, 8], layout);
  }
  // xtw with M 2: x = [[1, 3], [2, 4]] stored K × M means X = [[1, 2], [3, 4]]; times W above
  t.deepEqual([...gemmLayoutReference('xtw', new Float32Array([1, 3, 2, 4]), wKN, 2, 3, 2).y], [1, 2, 8, 3, 4, 18]);
  // silu(1) = 1 / (1 + e^-1) = 0.7310585786300049; g = X·gate = 1, u = X·up = 3
  t.is(silu64(0), 0);
  t.true(Math.abs(silu64(1) - 0.7310585786300049) < 1e-15);
  const s = siluPairReference(new Float32Array([1, 2]), new Float32Array([1, 0]), new Float32Array([1, 1]), 1, 1, 2);
  t.true(Math.abs(s.y[0]! - 3 * 0.7310585786300049) < 1e-14);
});

// ---- on the GPU ----
const cudaTest = testsNeeding(cudaDeviceRequirement());
let nextSeed = 1000;

/** A device output of M × pad8(N) (f32 or bf16) poisoned with NaN, or for accumulate random values with NaN padding. */
function output(bf16: boolean, m: number, n: number, start?: Float32Array): DevicePtr {
  if (!start) return poisoned(m * pad8(n) * (bf16 ? 2 : 4), bf16 ? 0x7fc07fc0 : 0x7fc00000);
  return upload(accumulatorStart(start, m, n));
}
/** The output read back: its M × N values and how many padding elements are no longer NaN. */
function readOutput(p: DevicePtr, bf16: boolean, m: number, n: number): { got: Float32Array; padTouched: number } {
  const ld = pad8(n), bytes = new Uint8Array(m * ld * (bf16 ? 2 : 4));
  cuda().synchronize();
  cuda().copyFromDevice(bytes, p);
  const all = bf16 ? decodeToF32('bf16', bytes, m * ld) : new Float32Array(bytes.buffer);
  const got = new Float32Array(m * n);
  for (let i = 0; i < m; i++) got.set(all.subarray(i * ld, i * ld + n), i * n);
  return { got, padTouched: paddingTouched(all, m, n) };
}

// [M, N, K]; for xtw K is the token count, the long one
const SHAPES: Record<'xw' | 'xtw' | 'xwt', [number, number, number][]> = {
  xw: [[1, 8, 16], [17, 72, 64], [130, 200, 136], [5, 3, 7], [300, 260, 520], [64, 128, 40]],
  xtw: [[8, 16, 1], [72, 64, 17], [200, 136, 130], [3, 5, 7], [130, 203, 1000], [64, 64, 2051]],
  xwt: [[17, 72, 64], [130, 203, 136], [5, 3, 7]],
};

for (const c of NEW.filter((c) => c.epilogue !== 'silu_pair' && c.epilogue !== 'silu_pair_bf16')) {
  for (const tile of [GEMM_DEFAULT, SMALL]) {
    const spec: GemmSpec = { dtype: 'bf16', ...tile, ...c };
    for (const [m, n, k] of SHAPES[c.layout]) {
      const seed = nextSeed++;
      cudaTest.serial(`${label(spec)}: M=${m} N=${n} K=${k} vs float64`, (t) => {
        t.teardown(freeAll);
        const r = rng(seed);
        // stored shapes (rows × row length) of x and w, per the layout
        const [xr, xc] = c.layout === 'xtw' ? [k, m] : [m, k];
        const [wr, wc] = c.layout === 'xwt' ? [n, k] : [k, n];
        const x = weight(randomF32(xr * xc, r), xr, xc, spec.dtype);
        const w = weight(randomF32(wr * wc, r), wr, wc, spec.dtype);
        const bf16 = c.epilogue === 'store_bf16';
        const y0 = c.epilogue === 'accumulate' ? randomF32(m * n, r) : undefined;
        const y = output(bf16, m, n, y0);
        launch(gemm(spec), gemmGrid(spec, m, n), gemmThreads(spec), [y, x.device, w.device, m, n, k]);
        const { got, padTouched } = readOutput(y, bf16, m, n);
        const ref = gemmLayoutReference(c.layout, x.exact, w.exact, m, n, k);
        const want = y0 ? plusStart(ref, y0) : ref;
        // f32 accumulation: a few roundings of Σ|x·w|; a bf16 output adds its own rounding (2^-8 relative)
        const { bad, worst, rel } = compareGemm(got, want, 2e-5, bf16 ? 2 ** -8 : 0);
        t.is(bad, 0, `${bad} of ${got.length} elements off (NaN = unwritten); worst ${worst.toExponential(2)} of the allowance`);
        t.true(rel < (bf16 ? 4e-3 : 1e-5), `rel ${rel.toExponential(2)}`);
        t.is(padTouched, 0, 'padding columns written');
      });
    }
  }
}

// silu_pair: gate and up [F, K] interleaved into one weight of siluPairRows(F) rows; F not a multiple
// of 8, and F = 70 needs two column tiles of 128 (2·72 = 144 interleaved columns)
for (const epilogue of ['silu_pair', 'silu_pair_bf16'] as const) {
  for (const tile of [GEMM_DEFAULT, SMALL]) {
    for (const dtype of ['bf16', 'f16'] as const) {
      const spec: GemmSpec = { dtype, ...tile, epilogue };
      for (const [m, f, k] of [[17, 70, 64], [130, 203, 136], [5, 3, 7], [1, 8, 1000]] as [number, number, number][]) {
        const seed = nextSeed++;
        cudaTest.serial(`${label({ ...spec, layout: 'xwt' })}: M=${m} F=${f} K=${k} vs float64`, (t) => {
          t.teardown(freeAll);
          const r = rng(seed);
          const x = weight(randomF32(m * k, r), m, k, dtype);
          const gate = randomF32(f * k, r), up = randomF32(f * k, r);
          const w = weight(interleaveGateUp(gate, up, f, k), siluPairRows(f), k, dtype);
          // the exact (rounded) gate and up, taken back out of the interleaved image
          const ge = new Float32Array(f * k), ue = new Float32Array(f * k);
          for (let i = 0; i < f; i++) {
            const row = 16 * Math.floor(i / 8) + (i % 8);
            ge.set(w.exact.subarray(row * k, (row + 1) * k), i * k);
            ue.set(w.exact.subarray((row + 8) * k, (row + 9) * k), i * k);
          }
          const bf16 = epilogue === 'silu_pair_bf16';
          const y = output(bf16, m, f);
          launch(gemm(spec), gemmGrid(spec, m, f), gemmThreads(spec), [y, x.device, w.device, m, f, k]);
          const { got, padTouched } = readOutput(y, bf16, m, f);
          const { bad, worst, rel } = compareGemm(got, siluPairReference(x.exact, ge, ue, m, f, k), 2e-5, bf16 ? 2 ** -8 : 0);
          t.is(bad, 0, `${bad} of ${got.length} elements off (NaN = unwritten); worst ${worst.toExponential(2)} of the allowance`);
          t.true(rel < (bf16 ? 4e-3 : 1e-5), `rel ${rel.toExponential(2)}`);
          t.is(padTouched, 0, 'padding columns written');
        });
      }
    }
  }
}
