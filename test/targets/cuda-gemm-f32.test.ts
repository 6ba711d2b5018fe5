// The f32 SIMT GEMM (targets/cuda/ptx/gemm-f32.ts), Y (+)= X·Wᵀ, the prefill GEMM of models with f32
// linears (LowerOptions.prefillF32):
// - without a GPU: every tile configuration assembles with ptxas for sm_80 and sm_90 with no local
//   memory, the text is deterministic and uses fma.rn.f32 with 16-byte loads, bad tiles are refused;
// - on the GPU machine: random f32 X, W with awkward M, N, K (M = 1, tails in every dimension, K = 0,
//   K not a multiple of 4, 8 or the 16-wide K step, a large product), NaN-poisoned Y (store) or random
//   Y with NaN padding columns (accumulate), against a float64 product of the same inputs. f32
//   accumulation in k order: a relative error near 1e-7 of Σ|x·w|.
import test from 'ava';
import { gemmF32, GEMM_F32_DEFAULT, gemmF32Grid, gemmF32Threads, type GemmF32Spec } from '../../targets/cuda/ptx/gemm-f32.js';
import { download, freeAll, pad8, poisoned, randomF32, rng, unpadF32, upload, weight, launch } from '../helpers/cuda.js';
import { accumulatorStart, compareGemm, gemmReference, paddingTouched, plusStart } from '../helpers/gemm-check.js';
import { cudaDeviceRequirement, findPtxas, ptxasRequirement, testsNeeding } from '../helpers/requires.js';
import { assemblePtx, NO_LOCAL_MEMORY } from '../helpers/ptxas.js';
import { PtxSim } from '../helpers/ptx-sim.js';
import { ptxModule } from '../../targets/cuda/ptx/builder.js';

const TILES: GemmF32Spec[] = [
  GEMM_F32_DEFAULT, // 64×64, 256 threads of 4×4 (the lowering's)
  { bm: 128, bn: 64, tm: 8, tn: 4 }, // 256 threads of 8×4
  { bm: 32, bn: 64, tm: 4, tn: 4 }, // 128 threads
];
const EPILOGUES = ['store', 'accumulate'] as const;

const ptxas = findPtxas();
const ptxasTest = testsNeeding(ptxasRequirement(ptxas));

for (const tile of TILES) {
  for (const epilogue of EPILOGUES) {
    const spec = { ...tile, epilogue };
    ptxasTest(`gemm f32 ${tile.bm}x${tile.bn} t${tile.tm}x${tile.tn} ${epilogue}: assembles for sm_80 and sm_90, no local memory`, (t) => {
      for (const arch of ['sm_80', 'sm_90'] as const) {
        const r = assemblePtx([gemmF32(spec).text], arch);
        t.is(r.status, 0, `${arch}: ${r.stderr}`);
        t.regex(r.stderr, NO_LOCAL_MEMORY, `${arch}: ${r.stderr}`);
      }
    });
  }
}

test('gemm f32 text is deterministic, exact-rounding FFMA over 16-byte loads, named like gemm.ts', (t) => {
  const a = gemmF32(GEMM_F32_DEFAULT), b = gemmF32(GEMM_F32_DEFAULT);
  t.is(a.text, b.text);
  t.is(a.name, 'gemm_xwt_f32_m64n64k16_t4x4');
  t.is(gemmF32({ ...GEMM_F32_DEFAULT, epilogue: 'accumulate' }).name, 'gemm_xwt_f32_m64n64k16_t4x4_acc');
  // 16 k × 4×4 products a K step, each one fma.rn.f32 (no fast-math contraction choices)
  t.is(a.text.match(/fma\.rn\.f32/g)?.length, 16 * 16);
  t.notRegex(a.text, /mma|\.bf16|\.f16/);
  t.regex(a.text, /ld\.global\.v4\.f32/);
  t.regex(a.text, /ld\.shared\.v4\.f32/);
  t.regex(a.text, /st\.global\.v4\.f32/);
  t.deepEqual(gemmF32Grid(GEMM_F32_DEFAULT, 130, 65), [2, 3, 1]);
  t.is(gemmF32Threads(GEMM_F32_DEFAULT), 256);
});

test('gemm f32 rejects a tile its threads cannot cover', (t) => {
  t.throws(() => gemmF32({ bm: 64, bn: 64, tm: 3, tn: 4 }), { message: /multiples of 4/ });
  t.throws(() => gemmF32({ bm: 64, bn: 60, tm: 4, tn: 8 }), { message: /divide the CTA tile/ });
  t.throws(() => gemmF32({ bm: 256, bn: 256, tm: 4, tn: 4 }), { message: /1024/ });
  t.throws(() => gemmF32({ bm: 16, bn: 16, tm: 4, tn: 4 }), { message: /whole warps|chunks/ });
});

// The f64 reference itself on a product worked by hand: X = [[1, 2, 3]], W = [[1, 0, -1], [0.5, 0.5, 0.5]].
test('gemmReference: a 1×2×3 product worked by hand', (t) => {
  const r = gemmReference(Float32Array.of(1, 2, 3), Float32Array.of(1, 0, -1, 0.5, 0.5, 0.5), 1, 2, 3);
  t.deepEqual([...r.y], [1 - 3, 3]);
  t.deepEqual([...r.mag], [4, 3]);
});

// ---- on the GPU ----
const cudaTest = testsNeeding(cudaDeviceRequirement());
let nextSeed = 1;

// [M, N, K]: M = 1 (one token), tails in every dimension, K < 4, K not a multiple of 8 or 16, K = 0,
// several row and column tiles, and one large product (a 1B-sized linear's width at 300 tokens).
const SHAPES: [number, number, number][] = [
  [1, 8, 16], [1, 200, 20], [5, 3, 7], [17, 72, 64], [64, 64, 16], [130, 200, 136], [17, 8, 1000], [3, 65, 2], [33, 127, 0], [300, 260, 520], [300, 2048, 2048],
];

for (const tile of TILES) {
  for (const [m, n, k] of SHAPES) {
    if (m * n * k > 1e8 && tile !== GEMM_F32_DEFAULT) continue; // the large product once (its f64 reference is slow)
    const seed = nextSeed++;
    cudaTest.serial(`gemm f32 ${tile.bm}x${tile.bn}/t${tile.tm}x${tile.tn} store: M=${m} N=${n} K=${k} vs float64`, (t) => {
      t.teardown(freeAll);
      const r = rng(seed);
      const x = weight(randomF32(m * k, r), m, k, 'f32');
      const w = weight(randomF32(n * k, r), n, k, 'f32');
      const y = poisoned(m * pad8(n) * 4);
      launch(gemmF32(tile), gemmF32Grid(tile, m, n), gemmF32Threads(tile), [y, x.device, w.device, m, n, k]);
      const raw = download(y, new Float32Array(m * pad8(n)));
      const got = unpadF32(raw, m, n);
      const want = gemmReference(x.exact, w.exact, m, n, k);
      // f32 accumulation of f32 products in k order: each element within a few f32 roundings of its
      // Σ|x·w| (K = 0: exactly 0); a wrong index or a missed tail is off by O(1), NaN = unwritten
      const { bad, worst, rel } = compareGemm(got, want, 1e-5);
      t.is(bad, 0, `${bad} of ${got.length} elements off (NaN = unwritten); worst ${worst.toExponential(2)} of the allowance`);
      t.true(rel < 1e-5, `rel ${rel.toExponential(2)}`);
      t.is(paddingTouched(raw, m, n), 0, 'padding columns written');
    });
  }
}

// The accumulate epilogue (Y += X·Wᵀ: the residual add of a prefill): Y starts as random values, and
// padding columns of Y are NaN that must stay as they are. K = 0 leaves Y as it was.
for (const tile of TILES.slice(0, 2)) {
  for (const [m, n, k] of [[1, 64, 64], [17, 72, 64], [130, 203, 136], [5, 3, 7], [9, 13, 0]] as [number, number, number][]) {
    const seed = nextSeed++;
    const spec: GemmF32Spec = { ...tile, epilogue: 'accumulate' };
    cudaTest.serial(`gemm f32 ${tile.bm}x${tile.bn}/t${tile.tm}x${tile.tn} accumulate: M=${m} N=${n} K=${k}: Y += X·Wᵀ vs float64`, (t) => {
      t.teardown(freeAll);
      const r = rng(seed);
      const x = weight(randomF32(m * k, r), m, k, 'f32');
      const w = weight(randomF32(n * k, r), n, k, 'f32');
      const y0 = randomF32(m * n, r);
      const y = upload(accumulatorStart(y0, m, n));
      launch(gemmF32(spec), gemmF32Grid(spec, m, n), gemmF32Threads(spec), [y, x.device, w.device, m, n, k]);
      const raw = download(y, new Float32Array(m * pad8(n)));
      const got = unpadF32(raw, m, n);
      const { bad } = compareGemm(got, plusStart(gemmReference(x.exact, w.exact, m, n, k), y0), 1e-5);
      t.is(bad, 0, `${bad} of ${got.length} elements off`);
      t.is(paddingTouched(raw, m, n), 0, 'padding columns written');
    });
  }
}

// ---- without a GPU: the PTX text itself, interpreted (test/helpers/ptx-sim.ts) ----
// The generated kernel run by a small PTX interpreter on small awkward shapes: its indexing, tails,
// stage switching and barriers, and that every global access is aligned and inside its buffer (x
// and w allocated with exactly their rows), against the same float64 reference as on the GPU.
for (const [tile, epilogue, m, n, k] of [
  [GEMM_F32_DEFAULT, 'store', 5, 3, 7], [GEMM_F32_DEFAULT, 'store', 70, 65, 20], [GEMM_F32_DEFAULT, 'accumulate', 17, 72, 33],
  [GEMM_F32_DEFAULT, 'store', 2, 9, 0], [{ bm: 32, bn: 64, tm: 4, tn: 4 }, 'store', 33, 5, 40], [{ bm: 128, bn: 64, tm: 8, tn: 4 }, 'accumulate', 3, 70, 18],
] as const) {
  test(`gemm f32 ${tile.bm}x${tile.bn}/t${tile.tm}x${tile.tn} ${epilogue}, interpreted: M=${m} N=${n} K=${k} vs float64`, (t) => {
    const r = rng(1000 + m * 7 + n * 3 + k);
    const sim = new PtxSim(1 << 22);
    const xs = randomF32(m * k, r), ws = randomF32(n * k, r), y0 = randomF32(m * n, r);
    const pad = (a: Float32Array, rows: number, cols: number, fill = 0) => {
      const out = new Float32Array(rows * pad8(cols)).fill(fill);
      for (let i = 0; i < rows; i++) for (let j = 0; j < cols; j++) out[i * pad8(cols) + j] = a[i * cols + j]!;
      return out;
    };
    const x = sim.upload(pad(xs, m, k)), w = sim.upload(pad(ws, n, k));
    const y = sim.upload(epilogue === 'store' ? new Float32Array(m * pad8(n)).fill(NaN) : pad(y0, m, n, NaN));
    const spec: GemmF32Spec = { ...tile, epilogue };
    sim.launch(ptxModule([gemmF32(spec).text], 'sm_80'), gemmF32Grid(spec, m, n), gemmF32Threads(spec), [y.addr, x.addr, w.addr, m, n, k]);
    const raw = sim.download(y, m * pad8(n));
    const got = unpadF32(raw, m, n);
    const want = gemmReference(xs, ws, m, n, k);
    if (epilogue === 'accumulate') for (let i = 0; i < want.y.length; i++) (want.y[i]! += y0[i]!), (want.mag[i]! += Math.abs(y0[i]!));
    const { bad, worst } = compareGemm(got, want, 1e-5);
    t.is(bad, 0, `${bad} of ${got.length} elements off; worst ${worst.toExponential(2)} of the allowance`);
    t.is(paddingTouched(raw, m, n), 0, 'padding columns written');
  });
}
