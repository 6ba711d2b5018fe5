// castRows (targets/cuda/ptx/cast.ts): f32 rows → bf16 / f16 rows, eight elements a thread, against
// src/util/dtype.ts f32ToBf16 / f32ToF16 (the host's round to nearest even, itself the oracle of the
// bf16 AdamW and GEMM tests) bit for bit: every element of every padded row (the padding columns are
// converted too), on widths around the eight-element step (1, 7, 8, 9, 15, 17), a GEMM width that is
// not a multiple of 8 (172) and one of several blocks (2051 + a 1B-like 5461 on the GPU), with ties,
// signed zeros, subnormals, ±∞, NaN and values past the 16-bit range in the data; the output buffer
// is exactly the rows' size and NaN-poisoned, so a missed or out-of-range store shows. The PTX
// interpreter runs it without a GPU; the GPU machine runs the same cases on the hardware.
import test, { type ExecutionContext } from 'ava';
import { castGrid, castRows, CAST_THREADS } from '../../targets/cuda/ptx/cast.js';
import { pad8 } from '../../targets/cuda/ptx/layout.js';
import { f32ToBf16, f32ToF16 } from '../../src/util/dtype.js';
import { assertEachAssembles } from '../helpers/ptxas.js';
import { rng } from '../helpers/random.js';
import { cudaDeviceRequirement, findPtxas, ptxasRequirement, testsNeeding } from '../helpers/requires.js';
import { gpuDev, simDev, type Dev } from '../helpers/train-dev.js';

/** Awkward f32 values: a bf16 tie each way, an f16 tie, signed zeros, the smallest subnormal, ±∞, NaN, out of f16 range, a bf16 overflow to ∞. */
const SPECIAL = new Float32Array(new Uint32Array([0x3f808000, 0x3f818000, 0x3f801000, 0x00000000, 0x80000000, 0x00000001, 0x7f800000, 0xff800000, 0x7fc00000, 0x47800000, 0x7f7fffff]).buffer);

function check(t: ExecutionContext, dev: Dev, dtype: 'bf16' | 'f16', rows: number, width: number, seed: number) {
  const w = pad8(width), r = rng(seed);
  const x = Float32Array.from({ length: rows * w }, (_, i) => (i % 13 === 5 ? SPECIAL[(i / 13) % SPECIAL.length | 0]! : r() * 3));
  const y = dev.nan(rows * w * 2, true);
  dev.run(castRows(dtype, width), [castGrid(width), rows, 1], CAST_THREADS, [{ ptr: y }, { ptr: dev.buf(x) }]);
  const got = dev.get(y, new Uint16Array(rows * w)), round = dtype === 'bf16' ? f32ToBf16 : f32ToF16;
  const bad: string[] = [];
  for (let i = 0; i < got.length; i++) {
    const want = round(x[i]!), nan = Number.isNaN(x[i]!);
    // a NaN stays a NaN (its payload is the hardware's); everything else is the host's rounding exactly
    const ok = nan ? (got[i]! & 0x7fff) > (dtype === 'bf16' ? 0x7f80 : 0x7c00) : got[i] === want;
    if (!ok && bad.length < 4) bad.push(`[${(i / w) | 0}, ${i % w}] ${x[i]}: 0x${got[i]!.toString(16)} vs 0x${want.toString(16)}`);
  }
  t.deepEqual(bad, []);
}

const CASES: Array<[number, number]> = [[3, 1], [2, 7], [5, 8], [2, 9], [3, 15], [2, 17], [4, 172], [2, 2051]];

const ptxasTest = testsNeeding(ptxasRequirement(findPtxas()));
ptxasTest('castRows assembles for sm_80 and sm_90 with no local memory', (t) => {
  assertEachAssembles(t, [castRows('bf16', 172), castRows('f16', 9)]);
});

for (const dtype of ['bf16', 'f16'] as const) {
  for (const [rows, width] of CASES) test(`castRows ${dtype}, interpreted: ${rows} rows of ${width}: the host's round to nearest even, padding converted`, (t) => check(t, simDev(), dtype, rows, width, rows * 1000 + width));
}

const gpu = testsNeeding(cudaDeviceRequirement());
for (const dtype of ['bf16', 'f16'] as const) {
  for (const [rows, width] of [...CASES, [300, 5461] as [number, number]]) {
    gpu.serial(`GPU: castRows ${dtype}, ${rows} rows of ${width}: the host's round to nearest even, padding converted`, (t) => {
      const dev = gpuDev();
      t.teardown(() => dev.free());
      check(t, dev, dtype, rows, width, rows * 1000 + width);
    });
  }
}
