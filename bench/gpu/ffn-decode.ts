// bench ffn-decode: one FFN at batch 1, bf16 weights, mocc MoC vs mocc dense, each under a CUDA graph
// that runs the FFN once per weight copy (copies rotated so the L2 cannot serve them). PyTorch's
// cuBLAS figures and the copy bandwidth come from torch_ffn.py in the same run (run.sh).
// Usage: node dist/bench/gpu/ffn-decode.js --torch OUT/torch_ffn.json --out OUT/ffn-decode.json
import { readFileSync, writeFileSync } from 'node:fs';
import * as D from '../../targets/cuda/ptx/dense.js';
import * as M from '../../targets/cuda/ptx/moc.js';
import { cuda, fn, pad8, poisoned, randomF32, rng, upload, weight } from './harness.js';
import { packParams, type DevicePtr } from '../../targets/cuda/driver.js';
import type { Kernel } from '../../targets/cuda/ptx/dense.js';

const arg = (name: string) => { const i = process.argv.indexOf(name); return i > 0 ? process.argv[i + 1] : undefined; };
const torch = JSON.parse(readFileSync(arg('--torch')!, 'utf8'));
const bw: number = torch.copyBandwidthTBs * 1e12; // bytes/s, read + write counted
const SHAPES = [[2048, 5464, 1024], [4096, 14336, 2688]] as const;
const l2 = cuda().device.l2Bytes;

type L = { k: Kernel; grid: [number, number, number]; block: number; args: (DevicePtr | number)[] };
function timeGraph(launches: L[], copies: number, reps = 30, iters = 20): number {
  const c = cuda();
  const s = c.createStream();
  const prepared = launches.map((l) => ({ f: fn(l.k), l, p: packParams(l.args.map((a) => (typeof a === 'bigint' ? { type: 'u64' as const, value: a } : { type: 'u32' as const, value: a }))) }));
  const run = () => { for (const x of prepared) x.f.launch(x.l.grid, [x.l.block, 1, 1], 0, s, x.p.bytes, x.p.offsets); };
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
  const x = upload(new Float32Array(pad8(d)).map((_, i) => (i < d ? r() : 0)));
  const y = upload(new Float32Array(pad8(d)));
  const g = poisoned(pad8(f) * 4), u = poisoned(pad8(f) * 4), z = poisoned(pad8(f) * 4), idx = poisoned(pad8(k) * 4), zk = poisoned(pad8(k) * 4);
  const { slices } = M.downSplit(k);
  const partial = poisoned(slices * pad8(d) * 4);
  const moc: L[] = [], dense: L[] = [];
  const gate = { dtype: 'bf16' as const, inDim: d, outDim: f, epilogue: 'store' as const };
  const up = { dtype: 'bf16' as const, inDim: d, outDim: k, gather: { wRows: f, gateWidth: f }, epilogue: 'silu_gate' as const, rowsPerWarp: 1, unroll: 8 }; // as lowered
  const downDense = { dtype: 'bf16' as const, inDim: f, outDim: d, epilogue: 'accumulate' as const };
  const denseCopies = Math.max(3, Math.ceil((4 * l2) / denseBytes));
  for (let c = 0; c < Math.max(copies, denseCopies); c++) {
    const wg = weight(randomF32(f * d, r, 0.02), f, d, 'bf16').device;
    const wu = weight(randomF32(f * d, r, 0.02), f, d, 'bf16').device;
    if (c < copies) {
      const wdT = weight(randomF32(f * d, r, 0.02), f, d, 'bf16').device;
      moc.push({ k: D.gemv(gate), grid: D.gemvGrid(gate, 1), block: 256, args: [g, x, wg] });
      moc.push({ k: M.topkSelect(f, k), grid: [1, 1, 1], block: M.selectShape(f).threads, args: [idx, g] });
      moc.push({ k: D.gemv(up), grid: D.gemvGrid(up, 1), block: 256, args: [zk, x, wu, idx, g] });
      moc.push({ k: M.downPartial('bf16', d, k), grid: [Math.ceil(pad8(d) / 8 / M.DOWN_THREADS), slices, 1], block: M.DOWN_THREADS, args: [partial, zk, wdT, idx] });
      moc.push({ k: M.downReduce(d, k), grid: [Math.ceil(d / 256), 1, 1], block: 256, args: [y, partial] });
    }
    if (c < denseCopies) {
      const wd = weight(randomF32(d * f, r, 0.02), d, f, 'bf16').device;
      dense.push({ k: D.gemv(gate), grid: D.gemvGrid(gate, 1), block: 256, args: [g, x, wg] });
      dense.push({ k: D.gemv({ ...gate }), grid: D.gemvGrid(gate, 1), block: 256, args: [u, x, wu] });
      dense.push({ k: D.elementwise('silu_mul', pad8(f)), grid: [Math.ceil(pad8(f) / 256), 1, 1], block: 256, args: [z, g, u] });
      dense.push({ k: D.gemv(downDense), grid: D.gemvGrid(downDense, 1), block: 256, args: [y, z, wd] });
    }
  }
  const mocUs = timeGraph(moc, copies), denseUs = timeGraph(dense, denseCopies);
  // Where the time goes: each stage alone, under its own graph (same copies).
  const stage = (list: L[], prefix: string, c: number) => timeGraph(list.filter((l) => l.k.name.startsWith(prefix)), c);
  const stages = {
    gate: stage(moc, 'gemv_bf16_i' + d + '_o' + f + '_store', copies), topk: stage(moc, 'moc_topk', copies),
    upSilu: stage(moc, 'gemv_bf16_i' + d + '_o' + k + '_g', copies), downPartial: stage(moc, 'moc_down_partial', copies), downReduce: stage(moc, 'moc_down_reduce', copies),
  };
  // GEMV shapes to choose from: rows per warp × chunks in flight, on the gate projection.
  const variants: Record<string, number> = {};
  for (const R of [1, 2, 4]) for (const U of [2, 4, 8]) {
    const spec = { ...gate, rowsPerWarp: R, unroll: U };
    variants[`r${R}u${U}`] = timeGraph(moc.filter((l) => l.k.name.startsWith('gemv_bf16_i' + d + '_o' + f + '_store')).map((l) => ({ ...l, k: D.gemv(spec), grid: D.gemvGrid(spec, 1) })), copies);
  }
  console.log(`  ${d}x${f} K=${k} stages µs: ${Object.entries(stages).map(([n, v]) => `${n} ${v.toFixed(1)}`).join(', ')}; gate GEMV variants: ${Object.entries(variants).map(([n, v]) => `${n} ${v.toFixed(1)}`).join(', ')}`);
  const t = torch.shapes.find((s: { d: number; dFfn: number }) => s.d === d && s.dFfn === f);
  const row = {
    d, dFfn: f, k, copiesMoc: copies, copiesDense: denseCopies,
    mocUs, denseUs, cublasGraphUs: t?.cublasGraphUs ?? null,
    mocFloorUs: (mocBytes / bw) * 1e6, denseFloorUs: (denseBytes / bw) * 1e6,
  };
  rows.push({ ...row, stages, gateVariants: variants, mocFractionOfFloor: row.mocFloorUs / mocUs, denseFractionOfFloor: row.denseFloorUs / denseUs });
}
const out = { device: cuda().device.name, copyBandwidthTBs: torch.copyBandwidthTBs, l2Bytes: l2, rows };
writeFileSync(arg('--out')!, JSON.stringify(out, null, 2) + '\n');
console.log(`ffn-decode on ${out.device} (copy bandwidth ${torch.copyBandwidthTBs.toFixed(2)} TB/s)`);
console.log('  d     d_ffn  K     | mocc MoC µs (floor, frac) | mocc dense µs (floor, frac) | cuBLAS dense graph µs');
for (const r of rows as any[]) {
  console.log(`  ${r.d}  ${r.dFfn}  ${r.k}  | ${r.mocUs.toFixed(1)} (${r.mocFloorUs.toFixed(1)}, ${(100 * r.mocFractionOfFloor).toFixed(0)}%) | ${r.denseUs.toFixed(1)} (${r.denseFloorUs.toFixed(1)}, ${(100 * r.denseFractionOfFloor).toFixed(0)}%) | ${r.cublasGraphUs?.toFixed(1)}`);
}
