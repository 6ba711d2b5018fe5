// A first look at the sm_80 tensor-core GEMM (targets/cuda/ptx/gemm.ts) on the GPU machine:
// TFLOP/s of each tile configuration on a few of issue 16's shapes, bf16 in, f32 out. Random
// inputs (never zeros); median of `reps` samples of `iters` back-to-back launches timed with
// events. Not yet the issue's `gemm` benchmark (no cuBLAS beside it here: see torch_gemm in the
// command that ran it).
//   node dist/bench/gpu/gemm-sm80.js [--out FILE]
import { writeFileSync } from 'node:fs';
import { packParams } from '../../targets/cuda/driver.js';
import { gemm, gemmGrid, gemmThreads, type GemmSpec } from '../../targets/cuda/ptx/gemm.js';
import { cuda, fn, freeAll, pad8, poisoned, randomF32, rng, weight } from '../../test/helpers/cuda.js';

const SHAPES: [number, number, number][] = [[4096, 4096, 4096], [16384, 2048, 2048], [16384, 5461, 2048]];
const TILES: Omit<GemmSpec, 'dtype'>[] = [
  { bm: 128, bn: 128, warpsM: 2, warpsN: 4 },
  { bm: 128, bn: 128, warpsM: 2, warpsN: 2 },
  { bm: 64, bn: 128, warpsM: 1, warpsN: 4 },
  { bm: 64, bn: 64, warpsM: 2, warpsN: 2 },
];

function timeMs(spec: GemmSpec, m: number, n: number, k: number, args: bigint[], reps = 7, iters = 10): number {
  const c = cuda(), s = c.createStream(), f = fn(gemm(spec));
  const p = packParams([...args.map((v) => ({ type: 'u64' as const, value: v })), ...[m, n, k].map((v) => ({ type: 'u32' as const, value: v }))]);
  const run = () => f.launch(gemmGrid(spec, m, n), [gemmThreads(spec), 1, 1], 0, s, p.bytes, p.offsets);
  for (let i = 0; i < 3; i++) run();
  s.synchronize();
  const a = c.createEvent(), b = c.createEvent(), times: number[] = [];
  for (let r = 0; r < reps; r++) {
    a.record(s);
    for (let i = 0; i < iters; i++) run();
    b.record(s);
    b.synchronize();
    times.push(b.elapsedMs(a) / iters);
  }
  times.sort((x, y) => x - y);
  return times[Math.floor(times.length / 2)]!;
}

const out = process.argv.includes('--out') ? process.argv[process.argv.indexOf('--out') + 1] : undefined;
const rows: Record<string, unknown>[] = [];
console.log(`device: ${cuda().device.name}`);
for (const [m, n, k] of SHAPES) {
  const r = rng(m + n + k);
  const x = weight(randomF32(m * k, r), m, k, 'bf16'), w = weight(randomF32(n * k, r), n, k, 'bf16');
  const y = poisoned(m * pad8(n) * 4);
  for (const tile of TILES) {
    const spec: GemmSpec = { dtype: 'bf16', ...tile };
    const ms = timeMs(spec, m, n, k, [y, x.device, w.device]);
    const tflops = (2 * m * n * k) / (ms * 1e-3) / 1e12;
    rows.push({ m, n, k, tile: `${tile.bm}x${tile.bn}/${tile.warpsM}x${tile.warpsN}`, ms, tflops });
    console.log(`${m}x${n}x${k}  tile ${tile.bm}x${tile.bn} warps ${tile.warpsM}x${tile.warpsN}: ${ms.toFixed(3)} ms, ${tflops.toFixed(1)} TFLOP/s`);
  }
  freeAll();
}
if (out) writeFileSync(out, JSON.stringify({ device: cuda().device.name, rows }, null, 2));
