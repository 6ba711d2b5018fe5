// bench ffn-decode: one FFN at batch 1, bf16 weights, mocc MoC vs mocc dense, each under a CUDA graph
// that runs the FFN once per weight copy (copies rotated so the L2 cannot serve them). The kernels
// are the ones the lowering emits for a LLaMA FFN (RMSNorm folded into the GEMVs that read x):
//   MoC:   gate GEMV → Top-K → fused gathered up·SiLU·down partials → reduce (+ residual); as
//          lowered, the up·down kernel, while Top-K runs, warms the L2 with the up/down rows of the
//          channels at or above the threshold the previous Top-K left (UpDownSpec.warm); timed
//          with and without that
//   dense: paired gate/up GEMV with SiLU·mul → down GEMV (+ residual)
// Each is timed with programmatic dependent launch (kernels overlap their start with the previous
// kernel's end, sm_90) and without, side by side. PyTorch's cuBLAS figures and the copy bandwidth
// come from torch_ffn.py in the same run (run.sh).
// Usage: node dist/bench/gpu/ffn-decode.js --torch OUT/torch_ffn.json --out OUT/ffn-decode.json
import { readFileSync, writeFileSync } from 'node:fs';
import * as D from '../../targets/cuda/ptx/dense.js';
import * as M from '../../targets/cuda/ptx/moc.js';
import { cuda, fn, pad8, poisoned, randomF32, rng, upload, weight } from '../../test/helpers/cuda.js';
import { packParams, type DevicePtr } from '../../targets/cuda/driver.js';
import type { Kernel } from '../../targets/cuda/ptx/dense.js';

const arg = (name: string) => { const i = process.argv.indexOf(name); return i > 0 ? process.argv[i + 1] : undefined; };
const torch = JSON.parse(readFileSync(arg('--torch')!, 'utf8'));
const bw: number = torch.copyBandwidthTBs * 1e12; // bytes/s, read + write counted
const SHAPES = [[2048, 5464, 1024], [4096, 14336, 2688]] as const;
const l2 = cuda().device.l2Bytes;
const hopper = cuda().device.computeCapability[0] >= 9;

type L = { k: Kernel; grid: [number, number, number]; block: number; args: (DevicePtr | number)[] };
/** Median µs per FFN of a graph running `launches` (copies FFNs), replayed `iters` times per sample. */
function timeGraph(launches: L[], copies: number, overlap: boolean, reps = 30, iters = 20): number {
  const c = cuda();
  const s = c.createStream();
  const prepared = launches.map((l) => ({ f: fn(l.k), l, p: packParams(l.args.map((a) => (typeof a === 'bigint' ? { type: 'u64' as const, value: a } : { type: 'u32' as const, value: a }))) }));
  const run = () => { for (const x of prepared) x.f.launch(x.l.grid, [x.l.block, 1, 1], 0, s, x.p.bytes, x.p.offsets, { overlap }); };
  run(); s.synchronize();
  s.beginCapture(); run(); const exec = s.endCapture().instantiate();
  for (let i = 0; i < 5; i++) exec.launch(s);
  s.synchronize();
  const a = c.createEvent(), b = c.createEvent();
  const times: number[] = [];
  for (let r = 0; r < reps; r++) {
    a.record(s);
    for (let i = 0; i < iters; i++) exec.launch(s);
    b.record(s);
    b.synchronize();
    times.push((b.elapsedMs(a) * 1000) / (iters * copies));
  }
  times.sort((x, y) => x - y);
  return times[Math.floor(times.length / 2)]!;
}

const rows: Record<string, unknown>[] = [];
for (const [d, f, k] of SHAPES) {
  const r = rng(d + f);
  const denseBytes = 3 * d * f * 2;
  const mocBytes = (f + 2 * k) * d * 2;
  const copies = Math.max(3, Math.ceil((4 * l2) / mocBytes));
  const denseCopies = Math.max(3, Math.ceil((4 * l2) / denseBytes));
  const x = upload(new Float32Array(pad8(d)).map((_, i) => (i < d ? r() : 0)));
  const y = upload(new Float32Array(pad8(d)));
  const nw = weight(randomF32(d, r), 1, d, 'f32').device;
  const norm = { dtype: 'f32' as const, eps: 1e-5 };
  const g = poisoned(pad8(f) * 4), z = poisoned(pad8(f) * 4), idx = poisoned(pad8(k) * 4);
  const split = M.upDownSplit(k);
  const partial = poisoned(split.blocks * pad8(d) * 4);
  const moc: L[] = [], dense: L[] = [], mocWarm: L[] = [];
  // the select hint, shared by all copies: each copy's up·down warms the L2 from the threshold the
  // previous copy's Top-K left (different weights, so a different kept set: like a new token)
  const tau = upload(new Float32Array([Infinity]));
  const gate: D.GemvSpec = { dtype: 'bf16', inDim: d, outDim: f, epilogue: 'store', norm, ...D.gemvLayout(d, f) }; // as lowered
  const pair: D.GemvSpec = { dtype: 'bf16', inDim: d, outDim: f, epilogue: 'silu_pair', norm, rowsPerWarp: 1 }; // as lowered
  const downDense: D.GemvSpec = { dtype: 'bf16', inDim: f, outDim: d, epilogue: 'accumulate', ...D.gemvLayout(f, d) }; // as lowered
  const upDown = M.mocUpDown({ dtype: 'bf16', d, f, kKeep: k, norm });
  const upDownWarm = M.mocUpDown({ dtype: 'bf16', d, f, kKeep: k, norm, warm: true });
  for (let c = 0; c < Math.max(copies, denseCopies); c++) {
    const wg = weight(randomF32(f * d, r, 0.02), f, d, 'bf16').device;
    const wu = weight(randomF32(f * d, r, 0.02), f, d, 'bf16').device;
    if (c < copies) {
      const wdT = weight(randomF32(f * d, r, 0.02), f, d, 'bf16').device;
      moc.push({ k: D.gemv(gate), grid: D.gemvGrid(gate, 1), block: 256, args: [g, x, wg, nw] });
      moc.push({ k: M.topkSelect(f, k), grid: [1, 1, 1], block: M.selectShape(f).threads, args: [idx, g] });
      moc.push({ k: upDown, grid: [split.blocks, 1, 1], block: 256, args: [partial, x, wu, wdT, idx, g, nw] });
      moc.push({ k: M.downReduce(d, split.blocks), grid: [M.reduceGrid(d), 1, 1], block: M.REDUCE_THREADS, args: [y, partial] });
      mocWarm.push(moc.at(-4)!);
      mocWarm.push({ k: M.topkSelect(f, k, { tau: true }), grid: [1, 1, 1], block: M.selectShape(f).threads, args: [idx, g, tau] });
      mocWarm.push({ k: upDownWarm, grid: [split.blocks, 1, 1], block: 256, args: [partial, x, wu, wdT, idx, g, nw, tau] });
      mocWarm.push(moc.at(-1)!);
    }
    if (c < denseCopies) {
      const wd = weight(randomF32(d * f, r, 0.02), d, f, 'bf16').device;
      dense.push({ k: D.gemv(pair), grid: D.gemvGrid(pair, 1), block: 256, args: [z, x, wg, wu, nw] });
      dense.push({ k: D.gemv(downDense), grid: D.gemvGrid(downDense, 1), block: 256, args: [y, z, wd] });
    }
  }
  const modes = hopper ? [true, false] : [false];
  const timed: Record<string, { mocUs: number; mocWarmUs: number; denseUs: number; stages: Record<string, number> }> = {};
  for (const overlap of modes) {
    // Where the time goes: each stage alone, under its own graph (same copies).
    const stage = (prefix: string) => timeGraph(moc.filter((l) => l.k.name.startsWith(prefix)), copies, overlap);
    timed[overlap ? 'pdl' : 'plain'] = {
      mocUs: timeGraph(moc, copies, overlap), mocWarmUs: timeGraph(mocWarm, copies, overlap), denseUs: timeGraph(dense, denseCopies, overlap),
      stages: {
        gate: stage(D.gemvName(gate)), topk: stage('moc_topk'), upDown: stage('moc_updown'), reduce: stage('moc_reduce'),
        // Top-K then up·down, with the warming (Top-K writing the threshold) and without
        topkUpDownWarm: timeGraph(mocWarm.filter((l) => /^moc_(topk|updown)/.test(l.k.name)), copies, overlap),
        topkUpDown: timeGraph(moc.filter((l) => /^moc_(topk|updown)/.test(l.k.name)), copies, overlap),
      },
    };
  }
  // GEMV variants on the gate projection (programmatic launch on): RMSNorm folded or not, how much
  // of the matrix is prefetched to L2 before the wait, rows per warp × chunks in flight.
  const gateLaunches = moc.filter((l) => l.k.name === D.gemvName(gate));
  const variant = (spec: D.GemvSpec) => timeGraph(gateLaunches.map((l) => ({ ...l, k: D.gemv(spec), grid: D.gemvGrid(spec, 1), args: spec.norm ? l.args : l.args.slice(0, 3) })), copies, hopper);
  // (earlier runs also timed prefetching the whole matrix, r4 u4, r2 u8, r1 u8: bench/NOTES.md)
  const unsplit = { ...gate, rowsPerWarp: 2, unroll: 4, split: 1 };
  const gateVariants: Record<string, number> = {
    [`lowered ${JSON.stringify(D.gemvLayout(d, f))}`]: variant(gate),
    'no norm, no prefetch, r2 u4': variant({ ...unsplit, norm: undefined, prefetchBytes: 0 }),
    'norm, no prefetch, r2 u4': variant({ ...unsplit, prefetchBytes: 0 }),
    'norm, prefetch 4 MiB, r2 u4': variant(unsplit),
    'norm, prefetch 4 MiB, r2 u2 split 2': variant({ ...gate, rowsPerWarp: 2, unroll: 2, split: 2 }),
    'norm, prefetch 4 MiB, r1 u4 split 4': variant({ ...gate, rowsPerWarp: 1, unroll: 4, split: 4 }),
  };

  // Row layouts of the dense down projection (d rows of d_ffn; residual accumulated), alone.
  const downLaunches = dense.filter((l) => l.k.name === D.gemvName(downDense));
  const downVariant = (v: Partial<D.GemvSpec>) => {
    const spec = { ...downDense, ...v };
    return timeGraph(downLaunches.map((l) => ({ ...l, k: D.gemv(spec), grid: D.gemvGrid(spec, 1) })), denseCopies, hopper);
  };
  const downVariants: Record<string, number> = {
    [`lowered ${JSON.stringify(D.gemvLayout(f, d))}`]: downVariant({}),
    'r2 u4 (before splitting rows)': downVariant({ rowsPerWarp: 2, unroll: 4, split: 1 }),
    'r1 u4 split 8': downVariant({ rowsPerWarp: 1, unroll: 4, split: 8 }),
    'r2 u2 split 8': downVariant({ rowsPerWarp: 2, unroll: 2, split: 8 }),
  };

  console.log(`  ${d}x${f} down GEMV variants µs: ${Object.entries(downVariants).map(([n, v]) => `${n} ${v.toFixed(1)}`).join('; ')}`);
  // The dense FFN's first half as lowered: one paired GEMV with SiLU·mul (earlier runs compared it
  // with two rows a warp and with a multi-GEMV plus SiLU·mul: bench/NOTES.md).
  const pairOnly = timeGraph(dense.filter((l) => l.k.name === D.gemvName(pair)), denseCopies, hopper);
  const denseHalf = { pairedGemv: pairOnly };
  console.log(`  ${d}x${f} gate GEMV variants µs: ${Object.entries(gateVariants).map(([n, v]) => `${n} ${v.toFixed(1)}`).join('; ')}`);
  console.log(`  ${d}x${f} dense gate+up: paired GEMV ${pairOnly.toFixed(1)} µs`);
  for (const [mode, v] of Object.entries(timed)) console.log(`  ${d}x${f} K=${k} ${mode}: MoC ${v.mocWarmUs.toFixed(1)} µs (without the L2 warming: ${v.mocUs.toFixed(1)}), dense ${v.denseUs.toFixed(1)} µs; MoC stages alone µs: ${Object.entries(v.stages).map(([n, t]) => `${n} ${t.toFixed(1)}`).join(', ')}`);
  const best = timed[hopper ? 'pdl' : 'plain']!;
  const t = torch.shapes.find((s: { d: number; dFfn: number }) => s.d === d && s.dFfn === f);
  const row = {
    d, dFfn: f, k, copiesMoc: copies, copiesDense: denseCopies, programmaticLaunch: hopper,
    mocUs: best.mocWarmUs, mocUnwarmedUs: best.mocUs, denseUs: best.denseUs, cublasGraphUs: t?.cublasGraphUs ?? null,
    mocFloorUs: (mocBytes / bw) * 1e6, denseFloorUs: (denseBytes / bw) * 1e6,
  };
  rows.push({ ...row, byMode: timed, gateVariants, downVariants, denseHalf, mocFractionOfFloor: row.mocFloorUs / row.mocUs, denseFractionOfFloor: row.denseFloorUs / row.denseUs });
}
const out = { device: cuda().device.name, copyBandwidthTBs: torch.copyBandwidthTBs, l2Bytes: l2, rows };
writeFileSync(arg('--out')!, JSON.stringify(out, null, 2) + '\n');
console.log(`ffn-decode on ${out.device} (copy bandwidth ${torch.copyBandwidthTBs.toFixed(2)} TB/s)`);
console.log('  d     d_ffn  K     | mocc MoC µs (floor, frac) | mocc dense µs (floor, frac) | cuBLAS dense graph µs');
for (const r of rows as any[]) {
  console.log(`  ${r.d}  ${r.dFfn}  ${r.k}  | ${r.mocUs.toFixed(1)} (${r.mocFloorUs.toFixed(1)}, ${(100 * r.mocFractionOfFloor).toFixed(0)}%) | ${r.denseUs.toFixed(1)} (${r.denseFloorUs.toFixed(1)}, ${(100 * r.denseFractionOfFloor).toFixed(0)}%) | ${r.cublasGraphUs?.toFixed(1)}`);
}
