// The Hopper GEMM generator (targets/cuda/ptx/gemm-sm90.ts), Y = X·Wᵀ ('xwt'), X·W ('xw') and Xᵀ·W
// ('xtw') with wgmma and TMA:
// - without a GPU: every configuration assembles with ptxas for sm_90a with no local memory and
//   no ignored setmaxnreg, the text is deterministic, each layout's operands get the transpose
//   immediates, descriptors and tensor maps worked out by hand, and a stage's expect_tx equals the
//   bytes of the boxes its copies bring;
// - on a Hopper GPU (compute capability 9.x; skipped elsewhere): random X, W at awkward M, N, K
//   (tails in every dimension, K not a multiple of 8 or of the 64-wide step, K = 0, more tiles than
//   multiprocessors so CTAs loop, more row tiles than the grouped order's group), NaN-poisoned Y,
//   against a float64 product of the same rounded inputs computed here (gemm-check.ts, from the
//   operands as each layout stores them); the 'accumulate' epilogue on a random Y0 against Y0 +
//   that product (Y0's row padding must stay as it was).
import test from 'ava';
import { gemm90, GEMM90_DEFAULT, gemm90TensorMap, type Gemm90Spec } from '../../targets/cuda/ptx/gemm-sm90.js';
import { decodeToF32 } from '../../src/util/dtype.js';
import { cuda, download, freeAll, gemm90Launcher, pad8, padF32, poisoned, randomF32, rng, unpadF32, upload, weight } from '../helpers/cuda.js';
import { compareGemm, gemmLayoutReference, gemmLayoutRowReference, gemmReference, plusStart } from '../helpers/gemm-check.js';
import { findPtxas, hopperDeviceRequirement, ptxasRequirement, testsNeeding } from '../helpers/requires.js';
import { assemblePtx, NO_LOCAL_MEMORY } from '../helpers/ptxas.js';

const CONFIGS: Gemm90Spec[] = [
  { dtype: 'bf16', out: 'f32', ...GEMM90_DEFAULT }, // 128×256, 2 consumers, 4 stages
  { dtype: 'f16', out: 'f32', ...GEMM90_DEFAULT },
  { dtype: 'bf16', out: 'bf16', ...GEMM90_DEFAULT },
  { dtype: 'bf16', out: 'f32', consumers: 2, bn: 128, stages: 5 },
  { dtype: 'f16', out: 'f32', consumers: 1, bn: 64, stages: 3 }, // one consumer: no setmaxnreg
  { dtype: 'bf16', out: 'f32', ...GEMM90_DEFAULT, epilogue: 'accumulate' }, // Y += X·Wᵀ (the residual linears)
  // the training layouts: W [K, N] N-major ('xw': dX = dY·W), and X [K, M] M-major too ('xtw': dW = dYᵀ·X)
  { dtype: 'bf16', out: 'f32', ...GEMM90_DEFAULT, layout: 'xw' },
  { dtype: 'bf16', out: 'f32', ...GEMM90_DEFAULT, layout: 'xtw' },
  { dtype: 'f16', out: 'f32', consumers: 2, bn: 128, stages: 5, layout: 'xw' },
  { dtype: 'f16', out: 'f32', consumers: 1, bn: 64, stages: 3, layout: 'xtw' }, // one box of A and of B a stage
  { dtype: 'bf16', out: 'bf16', ...GEMM90_DEFAULT, layout: 'xw' },
  { dtype: 'bf16', out: 'f32', ...GEMM90_DEFAULT, layout: 'xtw', epilogue: 'accumulate' }, // gradient accumulation
  { dtype: 'f16', out: 'f32', ...GEMM90_DEFAULT, layout: 'xw', epilogue: 'accumulate' }, // the MoC prefill's down GEMM into the residual
  { dtype: 'bf16', out: 'f32', ...GEMM90_DEFAULT, layout: 'xw', epilogue: 'accumulate' }, // matmul_acc: a dx summed into another (passes/matmul-accumulate.ts)
];
const label = (s: Gemm90Spec) =>
  `${s.layout && s.layout !== 'xwt' ? `${s.layout} ` : ''}${s.dtype}->${s.out} ${64 * s.consumers}x${s.bn} s${s.stages}${s.epilogue === 'accumulate' ? ' acc' : ''}`;

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
  t.regex(acc.text, /@%bg_\d+ ld\.global\.v2\.f32 \{%oldg_\d+, %oldg_\d+\}/);
  // the accumulate epilogue's loads come 8 fragments at a time, before that group's stores
  const loads = [...acc.text.matchAll(/ld\.global\.v2\.f32/g)].map((m) => m.index!), firstStore = acc.text.indexOf('st.global.v2.f32');
  t.true(loads.length === 64 && loads.filter((i) => i < firstStore).length === 8, `${loads.length} loads, ${loads.filter((i) => i < firstStore).length} before the first store`);
  t.notRegex(a.text, /ld\.global/);
});

test('gemm90 layouts: transpose immediates, MN-major descriptors (LBO 8192, slices 2048 bytes apart), one copy a 64x64 box', (t) => {
  const wgmmaTail = (text: string) => [...text.matchAll(/wgmma\.mma_async\S+ \{[^}]*\}, %da_\d+, %db_\d+, (%one_\d+, \d, \d, \d, \d);/g)].map((m) => m[1]!.replace(/%one_\d+/, 'p'));
  const kinds = { xwt: 'p, 1, 1, 0, 0', xw: 'p, 1, 1, 0, 1', xtw: 'p, 1, 1, 1, 1' } as const;
  for (const layout of ['xwt', 'xw', 'xtw'] as const) {
    const text = gemm90({ dtype: 'bf16', out: 'f32', ...GEMM90_DEFAULT, layout }).text;
    t.deepEqual(wgmmaTail(text), Array(4).fill(kinds[layout]), layout);
    // leading byte offset in bits 16-29 of the low word: 1 (K-major, unused) or 8192 >> 4 = 512
    const lbo = (reg: string) => Number(new RegExp(`or\\.b32 %${reg}_\\d+, %${reg}_\\d+, (\\d+);`).exec(text)![1]) >> 16;
    t.is(lbo('alo0'), layout === 'xtw' ? 512 : 1, layout);
    t.is(lbo('blo0'), layout === 'xwt' ? 1 : 512, layout);
    // the four k16 slices of a step: 32 bytes along a K-major row (2 in 16-byte units), 16 K rows of 128 bytes (128) MN-major
    const steps = (reg: string) => [...text.matchAll(new RegExp(`add\\.u32 %${reg}_\\d+, %\\w+_\\d+, (\\d+);`, 'g'))].map((m) => Number(m[1]));
    t.deepEqual(steps('lo'), layout === 'xtw' ? [0, 128, 256, 384] : [0, 2, 4, 6], layout);
    t.deepEqual(steps('lob'), layout === 'xwt' ? [0, 2, 4, 6] : [0, 128, 256, 384], layout);
  }
  t.is(gemm90({ dtype: 'bf16', out: 'f32', ...GEMM90_DEFAULT, layout: 'xw' }).name, 'gemm90_xw_bf16_f32_m128n256k64_s4');
  t.is(gemm90({ dtype: 'bf16', out: 'f32', ...GEMM90_DEFAULT, layout: 'xtw' }).name, 'gemm90_xtw_bf16_f32_m128n256k64_s4');
});

test('gemm90TensorMap: each operand as its layout stores it, worked by hand', (t) => {
  const s = { dtype: 'bf16' as const, out: 'f32' as const, ...GEMM90_DEFAULT }; // BM 128, BN 256
  const map = (layout: 'xwt' | 'xw' | 'xtw', which: 'x' | 'w', rows: number, k: number) => {
    const m = gemm90TensorMap({ ...s, layout }, which, 0n, rows, k);
    return { dims: m.dims, strides: m.strides, box: m.box };
  };
  // M = 100, N = 30, K = 13: K-major rows are pad8(13) = 16 elements (32 bytes) apart
  t.deepEqual(map('xwt', 'x', 100, 13), { dims: [13, 100], strides: [32], box: [64, 128] });
  t.deepEqual(map('xwt', 'w', 30, 13), { dims: [13, 30], strides: [32], box: [64, 256] });
  t.deepEqual(map('xw', 'x', 100, 13), { dims: [13, 100], strides: [32], box: [64, 128] });
  // W [K, N]: K rows of pad8(30) = 32 elements (64 bytes), boxes of 64 N × 64 K
  t.deepEqual(map('xw', 'w', 30, 13), { dims: [30, 13], strides: [64], box: [64, 64] });
  // X [K, M]: K rows of pad8(100) = 104 elements (208 bytes)
  t.deepEqual(map('xtw', 'x', 100, 13), { dims: [100, 13], strides: [208], box: [64, 64] });
  t.deepEqual(map('xtw', 'w', 30, 13), { dims: [30, 13], strides: [64], box: [64, 64] });
});

for (const spec of CONFIGS) {
  test(`gemm90 ${label(spec)}: a stage's expect_tx is the bytes of the boxes its copies bring`, (t) => {
    const text = gemm90(spec).text;
    const boxBytes = (which: 'x' | 'w') => gemm90TensorMap(spec, which, 0n, 1, 1).box.reduce((a, b) => a * b, 2);
    const copies = (map: string) => (text.match(new RegExp(`cp\\.async\\.bulk\\.tensor\\.2d\\S+ \\[%\\w+\\], \\[%${map}_\\d+,`, 'g')) ?? []).length;
    const expect = Number(/mbarrier\.arrive\.expect_tx\.shared::cta\.b64 _, \[%pfb_\d+\], (\d+);/.exec(text)![1]);
    t.is(copies('tmx') * boxBytes('x') + copies('tmw') * boxBytes('w'), expect);
    t.is(expect, (64 * spec.consumers + spec.bn) * 128);
  });
}

test('gemmLayoutRowReference: the rows of gemmLayoutReference, from the operands as stored', (t) => {
  const r = rng(7), m = 5, n = 3, k = 4;
  for (const layout of ['xwt', 'xw', 'xtw'] as const) {
    const x = randomF32(m * k, r), w = randomF32(n * k, r);
    const all = gemmLayoutReference(layout, x, w, m, n, k);
    for (let i = 0; i < m; i++) {
      const row = gemmLayoutRowReference(layout, x, w, i, m, n, k);
      t.deepEqual([...row.y], [...all.y.subarray(i * n, (i + 1) * n)], `${layout} row ${i}`);
      t.deepEqual([...row.mag], [...all.mag.subarray(i * n, (i + 1) * n)], `${layout} row ${i}`);
    }
  }
  // xtw by hand: x = [[1, 3], [2, 4]] stored K × M is X = [[1, 2], [3, 4]]; W [K, N] = [[1, 0, 2], [0, 1, 3]]
  t.deepEqual([...gemmLayoutRowReference('xtw', Float32Array.of(1, 3, 2, 4), Float32Array.of(1, 0, 2, 0, 1, 3), 1, 2, 3, 2).y], [3, 4, 18]);
});

test('gemm90 rejects configurations it cannot build', (t) => {
  t.throws(() => gemm90({ dtype: 'bf16', out: 'f32', consumers: 2, bn: 264, stages: 4 }), { message: /multiple of 16 up to 256/ });
  t.throws(() => gemm90({ dtype: 'bf16', out: 'f32', consumers: 2, bn: 256, stages: 5 }), { message: /227 KB/ });
  t.throws(() => gemm90({ dtype: 'bf16', out: 'f32', consumers: 4, bn: 128, stages: 2 }), { message: /consumer warpgroups/ });
  t.throws(() => gemm90({ dtype: 'bf16', out: 'bf16', ...GEMM90_DEFAULT, epilogue: 'accumulate' }), { message: /accumulate needs an f32 Y/ });
  t.throws(() => gemm90({ dtype: 'bf16', out: 'f32', consumers: 2, bn: 96, stages: 4, layout: 'xw' }), { message: /bn a multiple of 64/ });
  t.notThrows(() => gemm90({ dtype: 'bf16', out: 'f32', consumers: 2, bn: 96, stages: 4 }));
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
      const r = rng(seed), layout = spec.layout ?? 'xwt';
      // stored as the layout says: x [M, K] or (xtw) [K, M]; w [N, K] or (xw, xtw) [K, N]; rows padded to pad8
      const x = layout === 'xtw' ? weight(randomF32(m * k, r), k, m, spec.dtype) : weight(randomF32(m * k, r), m, k, spec.dtype);
      const w = layout === 'xwt' ? weight(randomF32(n * k, r), n, k, spec.dtype) : weight(randomF32(n * k, r), k, n, spec.dtype);
      const ld = pad8(n);
      let got: Float32Array;
      const want = gemmLayoutReference(layout, x.exact, w.exact, m, n, k);
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
        plusStart(want, y0);
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
