// The tensor-core GEMM generator (targets/cuda/ptx/gemm.ts), Y = X·Wᵀ:
// - without a GPU: every tile configuration assembles with ptxas for sm_80 and sm_90 with no local
//   memory (no spills), and the text is deterministic;
// - on the GPU machine (bash bench/gpu/run.sh check): random X, W with awkward M, N, K (tails in
//   every dimension, K not a multiple of 8 or of the 32-wide K step), NaN-poisoned Y, against a
//   float64 product of the same rounded inputs computed here.
import test from 'ava';
import { gemm, GEMM_DEFAULT, gemmGrid, gemmThreads, type GemmSpec } from '../../targets/cuda/ptx/gemm.js';
import { download, freeAll, pad8, poisoned, randomF32, rng, unpadF32, upload, weight, launch } from '../helpers/cuda.js';
import { accumulatorStart, compareGemm, gemmReference, paddingTouched, plusStart } from '../helpers/gemm-check.js';
import { cudaDeviceRequirement, findPtxas, ptxasRequirement, testsNeeding } from '../helpers/requires.js';
import { assemblePtx, NO_LOCAL_MEMORY } from '../helpers/ptxas.js';

const TILES: Omit<GemmSpec, 'dtype'>[] = [
  GEMM_DEFAULT, // 128×128, 8 warps of 64×32
  { bm: 128, bn: 128, warpsM: 2, warpsN: 2 }, // 4 warps of 64×64
  { bm: 64, bn: 64, warpsM: 2, warpsN: 2 }, // 4 warps of 32×32
  { bm: 64, bn: 128, warpsM: 1, warpsN: 4 }, // 4 warps of 64×32
  { ...GEMM_DEFAULT, epilogue: 'accumulate' }, // ptxas only (its own GPU tests below)
];

const ptxas = findPtxas();
const ptxasTest = testsNeeding(ptxasRequirement(ptxas));

for (const dtype of ['bf16', 'f16'] as const) {
  for (const tile of TILES) {
    const spec = { dtype, ...tile };
    ptxasTest(`gemm ${dtype} ${tile.bm}x${tile.bn} warps ${tile.warpsM}x${tile.warpsN}${tile.epilogue ? ' ' + tile.epilogue : ''}: assembles for sm_80 and sm_90, no local memory`, (t) => {
      for (const arch of ['sm_80', 'sm_90'] as const) {
        const r = assemblePtx([gemm(spec).text], arch);
        t.is(r.status, 0, `${arch}: ${r.stderr}`);
        t.regex(r.stderr, NO_LOCAL_MEMORY, `${arch}: ${r.stderr}`);
      }
    });
  }
}

test('gemm text is deterministic and uses the tensor-core path (cp.async, ldmatrix, mma m16n8k16)', (t) => {
  for (const dtype of ['bf16', 'f16'] as const) {
    const a = gemm({ dtype, ...GEMM_DEFAULT }), b = gemm({ dtype, ...GEMM_DEFAULT });
    t.is(a.text, b.text);
    t.regex(a.text, new RegExp(`mma\\.sync\\.aligned\\.m16n8k16\\.row\\.col\\.f32\\.${dtype}\\.${dtype}\\.f32`));
    t.regex(a.text, /ldmatrix\.sync\.aligned\.m8n8\.x4\.shared\.b16/);
    t.regex(a.text, /cp\.async\.cg\.shared\.global \[[^\]]+\], \[[^\]]+\], 16, %sz_\d+/);
    t.regex(a.text, /cp\.async\.wait_group 1/);
  }
  t.not(gemm({ dtype: 'bf16', ...GEMM_DEFAULT }).name, gemm({ dtype: 'f16', ...GEMM_DEFAULT }).name);
});

test("gemm 'accumulate': Y's old values are loaded a group of fragments at a time, before that group's stores", (t) => {
  const acc = gemm({ dtype: 'bf16', bm: 128, bn: 128, warpsM: 4, warpsN: 2, epilogue: 'accumulate' }).text; // warp tiles 32×64: 8 n-tiles, one group of 8
  const loads = [...acc.matchAll(/ld\.global\.v2\.f32/g)].map((m) => m.index!), firstStore = acc.indexOf('st.global.v2.f32');
  t.true(loads.length > 8 && loads.filter((i) => i < firstStore).length === 8, `${loads.length} loads, ${loads.filter((i) => i < firstStore).length} before the first store`);
});

test('gemm rejects a tile its warps cannot cover', (t) => {
  t.throws(() => gemm({ dtype: 'bf16', bm: 128, bn: 128, warpsM: 3, warpsN: 4 }), { message: /warp tile rows/ });
  t.throws(() => gemm({ dtype: 'bf16', bm: 128, bn: 64, warpsM: 2, warpsN: 8 }), { message: /warp tile columns/ });
  t.throws(() => gemm({ dtype: 'bf16', bm: 256, bn: 256, warpsM: 4, warpsN: 4 }), { message: /48 KB/ });
});

// ---- on the GPU ----
const cudaTest = testsNeeding(cudaDeviceRequirement());
let nextSeed = 1;

const SHAPES: [number, number, number][] = [
  [1, 8, 16], [17, 72, 64], [130, 200, 136], [1, 200, 20], [17, 8, 1000], [130, 72, 64], [64, 128, 32], [300, 260, 520], [5, 3, 7],
];

for (const dtype of ['bf16', 'f16'] as const) {
  for (const tile of TILES.filter((x) => x.epilogue === undefined)) {
    const spec = { dtype, ...tile };
    for (const [m, n, k] of SHAPES) {
      const seed = nextSeed++;
      cudaTest.serial(`gemm ${dtype} ${tile.bm}x${tile.bn}/${tile.warpsM}x${tile.warpsN}: M=${m} N=${n} K=${k} vs float64`, (t) => {
        t.teardown(freeAll);
        const r = rng(seed);
        const x = weight(randomF32(m * k, r), m, k, dtype);
        const w = weight(randomF32(n * k, r), n, k, dtype);
        const y = poisoned(m * pad8(n) * 4);
        launch(gemm(spec), gemmGrid(spec, m, n), gemmThreads(spec), [y, x.device, w.device, m, n, k]);
        const got = unpadF32(download(y, new Float32Array(m * pad8(n))), m, n);
        const want = gemmReference(x.exact, w.exact, m, n, k);
        // f32 accumulation of exact products: a norm-wise relative error near 1e-7, and no element
        // off by more than a few f32 roundings of its Σ|x·w| (a wrong fragment is off by O(1))
        const { bad, worst, rel } = compareGemm(got, want);
        t.is(bad, 0, `${bad} of ${got.length} elements off (NaN = unwritten); worst ${worst.toExponential(2)} of the allowance`);
        t.true(rel < 1e-5, `rel ${rel.toExponential(2)}`);
      });
    }
  }
}

// The accumulate epilogue (Y += X·Wᵀ: the residual add of a prefill): Y starts as random values, and
// padding columns of Y (between N and pad8(N)) are poisoned with NaN that must stay as they are.
for (const [m, n, k] of [[17, 72, 64], [130, 203, 136], [5, 3, 7]] as [number, number, number][]) {
  const seed = nextSeed++;
  const spec: GemmSpec = { dtype: 'bf16', ...GEMM_DEFAULT, epilogue: 'accumulate' };
  cudaTest.serial(`gemm bf16 accumulate: M=${m} N=${n} K=${k}: Y += X·Wᵀ vs float64`, (t) => {
    t.teardown(freeAll);
    const r = rng(seed);
    const x = weight(randomF32(m * k, r), m, k, 'bf16');
    const w = weight(randomF32(n * k, r), n, k, 'bf16');
    const y0 = randomF32(m * n, r);
    const y = upload(accumulatorStart(y0, m, n));
    launch(gemm(spec), gemmGrid(spec, m, n), gemmThreads(spec), [y, x.device, w.device, m, n, k]);
    const raw = download(y, new Float32Array(m * pad8(n)));
    const got = unpadF32(raw, m, n);
    const { bad } = compareGemm(got, plusStart(gemmReference(x.exact, w.exact, m, n, k), y0), 2e-5);
    t.is(bad, 0, `${bad} of ${got.length} elements off`);
    t.is(paddingTouched(raw, m, n), 0, 'padding columns written');
  });
}
