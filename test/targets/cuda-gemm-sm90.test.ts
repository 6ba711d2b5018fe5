// The Hopper GEMM generator (targets/cuda/ptx/gemm-sm90.ts), Y = X·Wᵀ with wgmma and TMA:
// - without a GPU: every configuration assembles with ptxas for sm_90a with no local memory and
//   no ignored setmaxnreg, and the text is deterministic;
// - on a Hopper GPU (compute capability 9.x; skipped elsewhere): random X, W at awkward M, N, K
//   (tails in every dimension, K not a multiple of 8 or of the 64-wide step, K = 0, more tiles than
//   multiprocessors so CTAs loop, more row tiles than the grouped order's group), NaN-poisoned Y,
//   against a float64 product of the same rounded inputs computed here; the 'accumulate' epilogue
//   on a random Y0 against Y0 + that product (Y0's row padding must stay as it was).
import test from 'ava';
import { gemm90, GEMM90_DEFAULT, type Gemm90Spec } from '../../targets/cuda/ptx/gemm-sm90.js';
import { decodeToF32 } from '../../src/util/dtype.js';
import { cuda, download, freeAll, gemm90Launcher, pad8, padF32, poisoned, randomF32, rng, unpadF32, upload, weight } from '../helpers/cuda.js';
import { compareGemm, gemmReference } from '../helpers/gemm-check.js';
import { findPtxas, hopperDeviceRequirement, ptxasRequirement, testsNeeding } from '../helpers/requires.js';
import { assemblePtx, NO_LOCAL_MEMORY } from '../helpers/ptxas.js';

const CONFIGS: Gemm90Spec[] = [
  { dtype: 'bf16', out: 'f32', ...GEMM90_DEFAULT }, // 128×256, 2 consumers, 4 stages
  { dtype: 'f16', out: 'f32', ...GEMM90_DEFAULT },
  { dtype: 'bf16', out: 'bf16', ...GEMM90_DEFAULT },
  { dtype: 'bf16', out: 'f32', consumers: 2, bn: 128, stages: 5 },
  { dtype: 'f16', out: 'f32', consumers: 1, bn: 64, stages: 3 }, // one consumer: no setmaxnreg
  { dtype: 'bf16', out: 'f32', ...GEMM90_DEFAULT, epilogue: 'accumulate' }, // Y += X·Wᵀ (the residual linears)
];
const label = (s: Gemm90Spec) => `${s.dtype}->${s.out} ${64 * s.consumers}x${s.bn} s${s.stages}${s.epilogue === 'accumulate' ? ' acc' : ''}`;

const ptxas = findPtxas();
const ptxasTest = testsNeeding(ptxasRequirement(ptxas));

for (const spec of CONFIGS) {
  ptxasTest(`gemm90 ${label(spec)}: assembles for sm_90a, no local memory, setmaxnreg honoured`, (t) => {
    const r = assemblePtx([gemm90(spec).text], 'sm_90a');
    t.is(r.status, 0, r.stderr);
    t.regex(r.stderr, NO_LOCAL_MEMORY, r.stderr);
    t.notRegex(r.stderr, /warning/i, r.stderr);
  });
}

test('gemm90 text is deterministic and on the Hopper path (TMA with mbarriers, wgmma from shared memory)', (t) => {
  const s = CONFIGS[0]!;
  const a = gemm90(s), b = gemm90(s);
  t.is(a.text, b.text);
  t.regex(a.text, /wgmma\.mma_async\.sync\.aligned\.m64n256k16\.f32\.bf16\.bf16 \{(%acc_\d+, ){127}%acc_\d+\}, %da_\d+, %db_\d+/);
  t.regex(a.text, /cp\.async\.bulk\.tensor\.2d\.shared::cluster\.global\.mbarrier::complete_tx::bytes/);
  t.regex(a.text, /mbarrier\.arrive\.expect_tx\.shared::cta\.b64 _, \[%pfb_\d+\], 49152/);
  t.regex(a.text, /\.param \.align 64 \.b8 tmx\[128\]/);
  t.regex(a.text, /setmaxnreg\.dec\.sync\.aligned\.u32 40/);
  t.regex(a.text, /setmaxnreg\.inc\.sync\.aligned\.u32 232/);
  t.regex(gemm90({ ...s, out: 'bf16' }).text, /cvt\.rn\.bf16x2\.f32/);
  t.notRegex(gemm90(CONFIGS[4]!).text, /setmaxnreg/);
  const acc = gemm90(CONFIGS[5]!);
  t.is(acc.name, 'gemm90_xwt_bf16_f32_m128n256k64_s4_acc');
  t.is(a.name, 'gemm90_xwt_bf16_f32_m128n256k64_s4');
  t.regex(acc.text, /@%both_\d+ ld\.global\.v2\.f32 \{%old0_\d+, %old1_\d+\}/);
  t.notRegex(a.text, /ld\.global/);
});

test('gemm90 rejects configurations it cannot build', (t) => {
  t.throws(() => gemm90({ dtype: 'bf16', out: 'f32', consumers: 2, bn: 264, stages: 4 }), { message: /multiple of 16 up to 256/ });
  t.throws(() => gemm90({ dtype: 'bf16', out: 'f32', consumers: 2, bn: 256, stages: 5 }), { message: /227 KB/ });
  t.throws(() => gemm90({ dtype: 'bf16', out: 'f32', consumers: 4, bn: 128, stages: 2 }), { message: /consumer warpgroups/ });
  t.throws(() => gemm90({ dtype: 'bf16', out: 'bf16', ...GEMM90_DEFAULT, epilogue: 'accumulate' }), { message: /accumulate needs an f32 Y/ });
});

test('the float64 reference: a product worked by hand, and the check catches NaN and a wrong element', (t) => {
  // X = [[1, 2], [3, 4]], W = [[5, 6], [7, -8], [9, 10]]: Y = X·Wᵀ = [[17, -9, 29], [39, -11, 67]]
  const want = gemmReference(Float32Array.of(1, 2, 3, 4), Float32Array.of(5, 6, 7, -8, 9, 10), 2, 3, 2);
  t.deepEqual([...want.y], [17, -9, 29, 39, -11, 67]);
  t.deepEqual([...want.mag], [17, 23, 29, 39, 53, 67]);
  t.is(compareGemm(Float32Array.of(17, -9, 29, 39, -11, 67), want).bad, 0);
  t.is(compareGemm(Float32Array.of(17, -9, 29, 39, NaN, 67), want).bad, 1);
  t.is(compareGemm(Float32Array.of(17, -9, 29.01, 39, -11, 67), want).bad, 1);
  t.is(compareGemm(Float32Array.of(17, -9, 29.01, 39, -11, 67), want, 2e-5, 2 ** -8).bad, 0);
});

// ---- on a Hopper GPU ----
const hopperTest = testsNeeding(hopperDeviceRequirement());
let nextSeed = 1000;

const SHAPES: [number, number, number][] = [
  [1, 8, 16], [17, 72, 64], [130, 200, 136], [1, 200, 20], [17, 8, 1000], [300, 260, 520], [5, 3, 7],
  [33, 40, 0], // K = 0: zeros
  [1100, 520, 72], // 9 row tiles of 128: past one group of the grouped order
  [2100, 2100, 100], // 17 × 9 tiles of 128×256: more than the multiprocessors, CTAs take several
];

for (const spec of CONFIGS) {
  for (const [m, n, k] of SHAPES) {
    const seed = nextSeed++;
    hopperTest.serial(`gemm90 ${label(spec)}: M=${m} N=${n} K=${k} vs float64`, (t) => {
      t.teardown(freeAll);
      const r = rng(seed);
      const x = weight(randomF32(m * k, r), m, k, spec.dtype);
      const w = weight(randomF32(n * k, r), n, k, spec.dtype);
      const ld = pad8(n);
      let got: Float32Array;
      const want = gemmReference(x.exact, w.exact, m, n, k);
      if (spec.epilogue === 'accumulate') {
        // Y0 random in the columns, 7 in the row padding (which must stay untouched)
        const y0 = randomF32(m * n, r), padded = padF32(y0, m, n);
        for (let i = 0; i < m; i++) for (let j = n; j < ld; j++) padded[i * ld + j] = 7;
        const y = upload(padded);
        gemm90Launcher(spec, y, x.device, w.device, m, n, k)();
        const raw = download(y, new Float32Array(m * ld));
        let padOk = true;
        for (let i = 0; i < m; i++) for (let j = n; j < ld; j++) padOk &&= raw[i * ld + j] === 7;
        t.true(padOk, 'the row padding was written');
        got = unpadF32(raw, m, n);
        for (let i = 0; i < m * n; i++) {
          want.y[i]! += y0[i]!;
          want.mag[i]! += Math.abs(y0[i]!);
        }
      } else if (spec.out === 'f32') {
        const y = poisoned(m * ld * 4);
        gemm90Launcher(spec, y, x.device, w.device, m, n, k)();
        got = unpadF32(download(y, new Float32Array(m * ld)), m, n);
      } else {
        const y = poisoned(m * ld * 2, 0x7fc07fc0);
        gemm90Launcher(spec, y, x.device, w.device, m, n, k)();
        cuda().synchronize();
        const bytes = new Uint8Array(m * ld * 2);
        cuda().copyFromDevice(bytes, y);
        got = unpadF32(decodeToF32('bf16', bytes, m * ld), m, n);
      }
      // f32 accumulation: a few roundings of Σ|x·w|; bf16 output adds its own rounding (2^-8 relative)
      const outRound = spec.out === 'bf16' ? 2 ** -8 : 0;
      const { bad, worst, rel } = compareGemm(got, want, 2e-5, outRound);
      t.is(bad, 0, `${bad} of ${got.length} elements off (NaN = unwritten); worst ${worst.toExponential(2)} of the allowance`);
      t.true(rel < (spec.out === 'bf16' ? 4e-3 : 1e-5), `rel ${rel.toExponential(2)}`);
    });
  }
}
