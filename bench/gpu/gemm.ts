// The tensor-core GEMMs on the GPU machine: TFLOP/s of the sm_80 kernel (gemm.ts) and, on Hopper,
// of the sm_90a kernel (gemm-sm90.ts) on issue 16's shapes, bf16 in: Y[M, N] = X[M, K]·W[N, K]ᵀ
// (layout 'xwt', the forward linears), and the 1B training shapes' input gradient dX = dY·W ('xw':
// dY [16384, 5461], W [5461, 2048]) and weight gradient dW = dYᵀ·X ('xtw': dY [16384, 5461] read
// transposed, X [16384, 2048]; M = 5461, K = 16384 tokens). Operands as each layout stores them,
// rows padded to pad8 (layout.ts). Random inputs (never zeros); before timing, each kernel's output
// is spot-checked on a few rows against a float64 product (a race or a wrong fragment at full size
// shows here, not only in the small-shape tests); median of `reps` samples of `iters` back-to-back
// launches timed with events. With --torch FILE (the JSON of bench/gpu/torch_gemm.py, same run,
// same shapes and layouts) it prints % of cuBLAS.
//   node dist/bench/gpu/gemm.js [--torch FILE] [--out FILE] [--shapes 4096x4096x4096,16384x2048x5461:xw,...]
import { readFileSync, writeFileSync } from 'node:fs';
import type { CudaStream } from '../../targets/cuda/driver.js';
import { packParams } from '../../targets/cuda/driver.js';
import { gemm, GEMM_DEFAULT, gemmGrid, gemmThreads, type GemmLayout, type GemmSpec } from '../../targets/cuda/ptx/gemm.js';
import { GEMM90_DEFAULT, type Gemm90Spec } from '../../targets/cuda/ptx/gemm-sm90.js';
import { decodeToF32 } from '../../src/util/dtype.js';
import { gemmLayoutRowReference } from '../../test/helpers/gemm-check.js';
import { cuda, fn, freeAll, gemm90Launcher, pad8, poisoned, randomF32, rng, weight } from '../../test/helpers/cuda.js';
import type { DevicePtr } from '../../targets/cuda/driver.js';

const arg = (name: string) => (process.argv.includes(name) ? process.argv[process.argv.indexOf(name) + 1] : undefined);
/**
 * M×N×K[:layout] (default xwt); the issue's: a square, the 1B FFN's up/gate (5461 = 2/3·4·2048) and
 * down-shaped, the LM head; the FFN down linear's dX ('xw') and dW ('xtw') at 16384 tokens.
 */
const SHAPES: [number, number, number, GemmLayout][] = (arg('--shapes') ?? '4096x4096x4096,16384x5461x2048,16384x2048x2048,16384x32000x2048,16384x2048x5461:xw,5461x2048x16384:xtw')
  .split(',').map((s) => {
    const [dims, layout = 'xwt'] = s.split(':');
    if (layout !== 'xwt' && layout !== 'xw' && layout !== 'xtw') throw new Error(`--shapes: unknown layout ${layout}`);
    return [...(dims!.split('x').map(Number) as [number, number, number]), layout];
  });
const SM80: Omit<GemmSpec, 'dtype'>[] = [GEMM_DEFAULT, { bm: 128, bn: 128, warpsM: 2, warpsN: 2 }];
const SM90: Omit<Gemm90Spec, 'dtype'>[] = [
  { out: 'f32', ...GEMM90_DEFAULT },
  { out: 'bf16', ...GEMM90_DEFAULT },
  { out: 'f32', consumers: 2, bn: 128, stages: 6 },
];

interface Variant { name: string; out: 'f32' | 'bf16'; launch: (s: CudaStream | null) => void }

function timeMs(run: (s: CudaStream) => void, reps = 7, iters = 10): number {
  const c = cuda(), s = c.createStream();
  for (let i = 0; i < 3; i++) run(s);
  s.synchronize();
  const a = c.createEvent(), b = c.createEvent(), times: number[] = [];
  for (let r = 0; r < reps; r++) {
    a.record(s);
    for (let i = 0; i < iters; i++) run(s);
    b.record(s);
    b.synchronize();
    times.push(b.elapsedMs(a) / iters);
  }
  times.sort((x, y) => x - y);
  return times[Math.floor(times.length / 2)]!;
}

/** Worst |got − want| / Σ|x·w| over `rows` sampled rows of Y (NaN: an unwritten element); x, w as `layout` stores them. */
function spotCheck(y: DevicePtr, out: 'f32' | 'bf16', layout: GemmLayout, x: Float32Array, w: Float32Array, m: number, n: number, k: number, rows: number[]): number {
  const eb = out === 'f32' ? 4 : 2, ld = pad8(n);
  let worst = 0;
  cuda().synchronize();
  for (const i of rows) {
    const bytes = new Uint8Array(ld * eb);
    cuda().copyFromDevice(bytes, y + BigInt(i * ld * eb));
    const got = decodeToF32(out, bytes, ld);
    const want = gemmLayoutRowReference(layout, x, w, i, m, n, k);
    for (let j = 0; j < n; j++) {
      const e = Math.abs(got[j]! - want.y[j]!) / Math.max(want.mag[j]!, 1e-30);
      worst = Number.isNaN(e) ? Infinity : Math.max(worst, e);
    }
  }
  return worst;
}

const torch = arg('--torch') ? (JSON.parse(readFileSync(arg('--torch')!, 'utf8')) as { rows: { m: number; n: number; k: number; layout?: GemmLayout; tflops: number }[] }) : undefined;
const dev = cuda().device;
const hopper = dev.computeCapability[0] === 9;
console.log(`device: ${dev.name} (cc ${dev.computeCapability.join('.')}, ${dev.multiprocessors} SMs)${hopper ? '' : ': no sm_90a kernels'}`);
const rows: Record<string, unknown>[] = [];
for (const [m, n, k, layout] of SHAPES) {
  const r = rng(m + n + k);
  // stored as the layout says: x [M, K] or (xtw) [K, M]; w [N, K] or (xw, xtw) [K, N]
  const x = layout === 'xtw' ? weight(randomF32(m * k, r), k, m, 'bf16') : weight(randomF32(m * k, r), m, k, 'bf16');
  const w = layout === 'xwt' ? weight(randomF32(n * k, r), n, k, 'bf16') : weight(randomF32(n * k, r), k, n, 'bf16');
  const y = poisoned(m * pad8(n) * 4);
  const variants: Variant[] = SM80.map((tile) => {
    const spec: GemmSpec = { dtype: 'bf16', ...tile, layout }, f = fn(gemm(spec));
    const p = packParams([...[y, x.device, w.device].map((v) => ({ type: 'u64' as const, value: v })), ...[m, n, k].map((v) => ({ type: 'u32' as const, value: v }))]);
    return { name: `sm80 ${tile.bm}x${tile.bn}/${tile.warpsM}x${tile.warpsN} f32`, out: 'f32' as const, launch: (s: CudaStream | null) => f.launch(gemmGrid(spec, m, n), [gemmThreads(spec), 1, 1], 0, s, p.bytes, p.offsets) };
  });
  if (hopper) {
    for (const cfg of SM90) {
      const spec: Gemm90Spec = { dtype: 'bf16', ...cfg, layout };
      variants.push({ name: `sm90a ${64 * spec.consumers}x${spec.bn} s${spec.stages} ${spec.out}`, out: spec.out, launch: gemm90Launcher(spec, y, x.device, w.device, m, n, k) });
    }
  }
  const sample = [0, Math.floor(m / 3), m - 1].filter((v, i, a) => a.indexOf(v) === i);
  const ref = torch?.rows.find((t) => t.m === m && t.n === n && t.k === k && (t.layout ?? 'xwt') === layout)?.tflops;
  for (const v of variants) {
    cuda().memsetD32(y, v.out === 'f32' ? 0x7fc00000 : 0x7fc07fc0, Math.ceil((m * pad8(n) * 4) / 4));
    v.launch(null);
    const worst = spotCheck(y, v.out, layout, x.exact, w.exact, m, n, k, sample);
    const ok = worst <= 2e-5 || (v.out === 'bf16' && worst <= 2 ** -8);
    const ms = timeMs((s) => v.launch(s));
    const tflops = (2 * m * n * k) / (ms * 1e-3) / 1e12;
    rows.push({ m, n, k, layout, kernel: v.name, ms, tflops, spotCheckWorst: worst, ok, pctCublas: ref ? (100 * tflops) / ref : undefined });
    console.log(`${m}x${n}x${k}${layout === 'xwt' ? '' : ` ${layout}`}  ${v.name.padEnd(24)} ${ms.toFixed(3)} ms  ${tflops.toFixed(1)} TFLOP/s${ref ? `  ${((100 * tflops) / ref).toFixed(0)}% of cuBLAS` : ''}  check ${ok ? 'ok' : `FAILED (worst ${worst.toExponential(2)} of Σ|x·w|)`}`);
  }
  freeAll();
}
if (arg('--out')) writeFileSync(arg('--out')!, JSON.stringify({ device: dev.name, rows }, null, 2));
