// bench wgsl: the WGSL kernels on a real GPU through Dawn (npm webgpu), batch 1, bf16 weights.
//  1. FFN 2048×5464 (K = 1024): WGSL MoC (gate GEMV → Top-K → gathered up·SiLU(G) → gathered down
//     partials → reduce) vs WGSL dense (gate and up GEMVs → SiLU·mul → down GEMV), each run once per
//     weight copy with the copies rotated so the L2 cannot serve them; µs per FFN from GPU timestamps
//     around one compute pass of many FFNs, and the fraction of the byte floor
//     (weight bytes ÷ the copy bandwidth torch_ffn.py measured in the same run).
//  2. Decoding the 1B-preset LLaMA (make_llama_1b.py), dense and MoC K = 1024: tokens/s of the
//     runtime's greedy loop (one submission a token, the next token chosen on the device), median of
//     7 runs, and the host time to encode one step (WebGPU command buffers cannot be replayed).
// mocc's CUDA path is measured in the same run by run.sh (ffn-decode, decode-e2e).
// Usage: node dist/bench/wgsl/wgsl-bench.js --torch OUT/torch_ffn.json [--model DIR] [--small] --out OUT/wgsl-bench.json
import { readFileSync, writeFileSync } from 'node:fs';
import { loadModel } from '../../driver/load.js';
import type { WgslKernel } from '../../targets/wgsl/kernel.js';
import { elementwise, gemv } from '../../targets/wgsl/kernels/dense.js';
import { mocDown, mocDownReduce, mocDownSlices, mocUpSilu, topkSelect } from '../../targets/wgsl/kernels/moc.js';
import { HIST_BINS, maskWords, mocDownMasked, mocSelectUp } from '../../targets/wgsl/kernels/moc-fused.js';
import { createWgslSession, wgslDevice } from '../../targets/wgsl/index.js';
import { createPipeline } from '../../targets/wgsl/runtime/session.js';
import { bf16Source } from './random-bf16.js';

const arg = (name: string) => { const i = process.argv.indexOf(name); return i > 0 ? process.argv[i + 1] : undefined; };
const torch = arg('--torch') ? JSON.parse(readFileSync(arg('--torch')!, 'utf8')) : null;
const bw: number | null = torch ? torch.copyBandwidthTBs * 1e12 : null;
const L2 = 50 * 2 ** 20; // H100's L2 (the copies exceed 4× this)
// whole-nanosecond GPU timestamps (Dawn rounds them otherwise)
process.env.MOCC_DAWN_FLAGS ??= 'disable-dawn-features=timestamp_quantization';
const dev = await wgslDevice();
const { device } = dev;
if (!device.features.has('timestamp-query')) throw new Error(`${dev.description} has no timestamp-query: the FFN timing needs GPU timestamps`);
console.log(`wgsl bench on ${dev.description} (${dev.variant} kernels)`);

const randomBf16 = bf16Source(12345);
const STORAGE = GPUBufferUsage.STORAGE, COPY_DST = GPUBufferUsage.COPY_DST;
function gpuBuffer(data: Uint32Array | Float32Array | number): GPUBuffer {
  const size = typeof data === 'number' ? data : data.byteLength;
  const b = device.createBuffer({ size: Math.max(16, Math.ceil(size / 4) * 4), usage: STORAGE | COPY_DST });
  if (typeof data !== 'number') device.queue.writeBuffer(b, 0, data.buffer as ArrayBuffer, data.byteOffset, data.byteLength);
  return b;
}
const pipelines = new Map<string, GPUComputePipeline>();
const call = device.createBuffer({ size: 16, usage: GPUBufferUsage.UNIFORM | COPY_DST });
device.queue.writeBuffer(call, 0, new Uint32Array([1, 0, 0, 0]));
interface Step { pipeline: GPUComputePipeline; group: GPUBindGroup; grid: [number, number, number] }
async function step(k: WgslKernel, buffers: GPUBuffer[]): Promise<Step> {
  if (!pipelines.has(k.key)) pipelines.set(k.key, await createPipeline(device, k.key, k));
  const pipeline = pipelines.get(k.key)!;
  const group = device.createBindGroup({ layout: pipeline.getBindGroupLayout(0), entries: [call, ...buffers].map((buffer, i) => ({ binding: i, resource: { buffer } })) });
  return { pipeline, group, grid: k.grid.map((g) => (g === 'T' ? 1 : g)) as [number, number, number] };
}
/**
 * Median µs per FFN: `ffns` (one list of steps per weight copy) encoded `iters` times in one compute
 * pass, timed on the GPU by timestamps at the pass's start and end (the wall clock around a
 * submission also counts Dawn's delay in noticing that the work is done: several ms here).
 */
async function time(ffns: Step[][], iters: number = process.argv.includes('--small') ? 2 : 20, reps = process.argv.includes('--small') ? 3 : 15): Promise<number> {
  const querySet = device.createQuerySet({ type: 'timestamp', count: 2 });
  const resolved = device.createBuffer({ size: 16, usage: GPUBufferUsage.QUERY_RESOLVE | GPUBufferUsage.COPY_SRC });
  const once = async (): Promise<number> => {
    const enc = device.createCommandEncoder();
    const pass = enc.beginComputePass({ timestampWrites: { querySet, beginningOfPassWriteIndex: 0, endOfPassWriteIndex: 1 } });
    for (let i = 0; i < iters; i++) for (const f of ffns) for (const s of f) (pass.setPipeline(s.pipeline), pass.setBindGroup(0, s.group), pass.dispatchWorkgroups(...s.grid));
    pass.end();
    enc.resolveQuerySet(querySet, 0, 2, resolved, 0);
    const read = device.createBuffer({ size: 16, usage: GPUBufferUsage.MAP_READ | COPY_DST });
    enc.copyBufferToBuffer(resolved, 0, read, 0, 16);
    device.queue.submit([enc.finish()]);
    await read.mapAsync(GPUMapMode.READ);
    const [t0, t1] = new BigUint64Array(read.getMappedRange());
    read.destroy();
    return Number(t1! - t0!) / 1000 / (iters * ffns.length);
  };
  await once();
  const times: number[] = [];
  for (let r = 0; r < reps; r++) times.push(await once());
  times.sort((a, b) => a - b);
  querySet.destroy();
  return times[Math.floor(times.length / 2)]!;
}

// ---- 1. the FFN ----
// --small: a quick run of the same code on a CPU adapter
const [d, f, k] = process.argv.includes('--small') ? [256, 688, 128] : [2048, 5464, 1024];
const v = dev.variant;
const x = gpuBuffer(new Float32Array(d).map((_, i) => Math.sin(i)));
const [g, u, h, z, y] = [gpuBuffer(f * 4), gpuBuffer(f * 4), gpuBuffer(f * 4), gpuBuffer(k * 4), gpuBuffer(d * 4)];
const idx = gpuBuffer(k * 4);
const slices = mocDownSlices(k);
const partial = gpuBuffer(slices * d * 4);
// the fused path's selection histogram (zero between FFNs), and its keep mask
const hist = gpuBuffer(HIST_BINS * 4), mask = gpuBuffer(maskWords(f) * 4);
const denseBytes = 3 * d * f * 2, mocBytes = (f + 2 * k) * d * 2;
const copies = (bytes: number) => (process.argv.includes('--small') ? 3 : Math.max(3, Math.ceil((4 * L2) / bytes)));
const mocCopies = copies(mocBytes), denseCopies = copies(denseBytes);
const gate = (histogram: boolean) => gemv({ dtype: 'bf16', inDim: d, outDim: f, outStride: f, rowBase: 0, variant: v, hist: histogram });
const moc5: Step[][] = [], fused: Step[][] = [], dense: Step[][] = [];
const fusedWeights: [GPUBuffer, GPUBuffer, GPUBuffer][] = [];
for (let c = 0; c < Math.max(mocCopies, denseCopies); c++) {
  const wg = gpuBuffer(randomBf16(f * d)), wu = gpuBuffer(randomBf16(f * d)); // [F, d]
  if (c < mocCopies) {
    const wdT = gpuBuffer(randomBf16(f * d)); // W_down stored [F, d]
    moc5.push([
      await step(gate(false), [g, x, wg]),
      await step(topkSelect(f, k, v), [idx, g]),
      await step(mocUpSilu('bf16', d, f, k, v), [z, x, wu, idx, g]),
      await step(mocDown('bf16', d, k, v), [partial, z, wdT, idx]),
      await step(mocDownReduce(d, slices, v), [y, partial]),
    ]);
    if (v === 'gpu') {
      fusedWeights.push([wg, wu, wdT]);
      fused.push([
        await step(gate(true), [g, x, wg, hist]),
        await step(mocSelectUp('bf16', d, f, k), [h, mask, x, wu, g, hist]),
        await step(mocDownMasked('bf16', d, f, k), [y, hist, h, mask, wdT]),
      ]);
    }
  }
  if (c < denseCopies) {
    const wd = gpuBuffer(randomBf16(d * f)); // [d, F]
    dense.push([
      await step(gate(false), [g, x, wg]),
      await step(gemv({ dtype: 'bf16', inDim: d, outDim: f, outStride: f, rowBase: 0, variant: v }), [u, x, wu]),
      await step(elementwise('silu_mul', f), [h, g, u]),
      await step(gemv({ dtype: 'bf16', inDim: f, outDim: d, outStride: d, rowBase: 0, variant: v }), [y, h, wd]),
    ]);
  }
}
/** µs of each stage dispatched alone (each once per weight copy, rotated). */
async function stagesAlone(names: string[], ffns: Step[][]): Promise<Record<string, number>> {
  return Object.fromEntries(await Promise.all(names.map(async (name, i) => [name, await time(ffns.map((ffn) => [ffn[i]!]))] as const)));
}
// The SM clock idles at ~400 MHz here and the MoC kernels are latency-bound: a first FFN timing read
// 2-3× slow. Keep the GPU busy for 1.5 s before timing anything.
const warmStart = performance.now();
while (performance.now() - warmStart < (process.argv.includes('--small') ? 0 : 1500)) await time(dense, 20, 1);
const floor = (bytes: number) => (bw ? (bytes / bw) * 1e6 : null);
const report = (us: number, bytes: number) => ({ us, floorUs: floor(bytes), fractionOfFloor: bw ? floor(bytes)! / us : null });
const denseUs = await time(dense);
const moc5Us = await time(moc5);
const moc5Stages = await stagesAlone(['gate GEMV', 'Top-K', 'up·SiLU', 'down partials', 'down reduce'], moc5);
let fusedReport: (ReturnType<typeof report> & { stagesUs: Record<string, number> }) | null = null;
if (fused.length) {
  const fusedUs = await time(fused);
  // Stages alone: the gate GEMV counts into a histogram nobody reads; mocSelectUp reads one that a
  // single gate dispatch filled (kept valid: no stage-3 dispatch zeroes it); stage 3 zeroes a spare.
  const spare = gpuBuffer(HIST_BINS * 4), valid = gpuBuffer(HIST_BINS * 4);
  const fill = await step(gate(true), [g, x, fusedWeights[0]![0], valid]);
  const enc = device.createCommandEncoder(), pass = enc.beginComputePass();
  pass.setPipeline(fill.pipeline); pass.setBindGroup(0, fill.group); pass.dispatchWorkgroups(...fill.grid); pass.end();
  device.queue.submit([enc.finish()]);
  const alone: Step[][] = [];
  for (const [wg, wu, wdT] of fusedWeights) {
    alone.push([
      await step(gate(true), [u, x, wg, spare]),
      await step(mocSelectUp('bf16', d, f, k), [h, mask, x, wu, g, valid]),
      await step(mocDownMasked('bf16', d, f, k), [y, spare, h, mask, wdT]),
    ]);
  }
  fusedReport = { ...report(fusedUs, mocBytes), stagesUs: await stagesAlone(['gate GEMV + histogram', 'select + up·SiLU', 'masked down'], alone) };
}
// what one dependent dispatch costs with nearly no work: a chain of 1-workgroup and 132-workgroup dispatches
const tiny = async (wgs: number): Promise<number> => {
  const n = 64 * wgs, a = gpuBuffer(n * 4), b = gpuBuffer(n * 4), c = gpuBuffer(n * 4);
  const one = await step(elementwise('add', n), [a, b, c]); // each dispatch writes a: Dawn orders them
  return time([[one]], 200, 7);
};
const dispatchUs = { oneWorkgroup: await tiny(1), workgroups132: await tiny(132) };
const headline = fusedReport?.us ?? moc5Us;
const ffn = {
  shape: { d, dFfn: f, k }, mocCopies, denseCopies,
  moc: fusedReport ? { kernels: 'fused, 3 dispatches', ...fusedReport } : { kernels: '5 dispatches', ...report(moc5Us, mocBytes), stagesUs: moc5Stages },
  moc5: { kernels: '5 dispatches', ...report(moc5Us, mocBytes), stagesUs: moc5Stages },
  dense: report(denseUs, denseBytes),
  mocSpeedup: denseUs / headline,
  dependentDispatchUs: dispatchUs,
};
const pct = (r: { fractionOfFloor: number | null }) => `${(100 * (r.fractionOfFloor ?? 0)).toFixed(0)}%`;
console.log(`FFN ${d}×${f} K=${k}: WGSL MoC ${headline.toFixed(1)} µs (${ffn.moc.kernels}; floor ${ffn.moc.floorUs?.toFixed(1)}, ${pct(ffn.moc)}), `
  + `WGSL dense ${denseUs.toFixed(1)} µs (floor ${ffn.dense.floorUs?.toFixed(1)}, ${pct(ffn.dense)}); MoC ${ffn.mocSpeedup.toFixed(2)}× dense`);
const stageLine = (st: Record<string, number>) => Object.entries(st).map(([n, us]) => `${n} ${us.toFixed(1)}`).join(', ');
if (fusedReport) console.log(`  fused stages alone (µs): ${stageLine(fusedReport.stagesUs)}`);
console.log(`  MoC in 5 dispatches: ${moc5Us.toFixed(1)} µs; stages alone (µs): ${stageLine(moc5Stages)}`);
console.log(`  a dependent dispatch with almost no work: ${dispatchUs.oneWorkgroup.toFixed(2)} µs (1 workgroup), ${dispatchUs.workgroups132.toFixed(2)} µs (132)`);

// ---- 2. decoding the 1B preset ----
const decode: Record<string, unknown>[] = [];
const dir = arg('--model');
if (dir) {
  for (const [label, selection] of [['WGSL dense', 'dense'], [`WGSL MoC K=${k}`, { k }]] as const) {
    const m = loadModel(dir, { selection });
    const s = await createWgslSession(m, dev);
    const spec = m.spec;
    const prompt = Array.from({ length: 16 }, (_, i) => (i * 7919 + 13) % spec.vocabSize);
    const NEW = 64;
    const lastArgmax = (l: Float32Array) => { let b = l.length - spec.vocabSize; for (let i = b; i < l.length; i++) if (l[i]! > l[b]!) b = i; return b - (l.length - spec.vocabSize); };
    s.reset();
    await s.greedy(lastArgmax(await s.forward(prompt)), 4); // warm-up
    const runs: number[] = [];
    for (let r = 0; r < 7; r++) {
      s.reset();
      const first = lastArgmax(await s.forward(prompt));
      const t0 = performance.now();
      await s.greedy(first, NEW);
      runs.push(NEW / ((performance.now() - t0) / 1000));
    }
    runs.sort((a, b) => a - b);
    const kept = selection === 'dense' ? spec.dFfn : k;
    const bytesPerToken = 2 * (spec.nLayers * (spec.dim * (spec.nHeads + 2 * spec.nKvHeads) * spec.headDim + spec.nHeads * spec.headDim * spec.dim + spec.dim * (spec.dFfn + 2 * kept)) + spec.vocabSize * spec.dim);
    const tps = runs[3]!;
    const encodeUs = s.encodeMicroseconds();
    const floorTps = bw ? bw / bytesPerToken : null;
    decode.push({ label, tokensPerSecond: tps, runs, floorTokensPerSecond: floorTps, fractionOfFloor: floorTps ? tps / floorTps : null, dispatchesPerToken: s.model.program.steps.length + s.model.program.greedyTail.length, hostEncodeMicrosecondsPerToken: encodeUs });
    console.log(`${label.padEnd(16)} ${tps.toFixed(1)} tok/s (floor ${floorTps?.toFixed(0)}, ${(100 * (floorTps ? tps / floorTps : 0)).toFixed(1)}%; runs ${runs.map((r) => r.toFixed(0)).join(' ')}); `
      + `encoding a step on the host: ${encodeUs.toFixed(0)} µs`);
    s.close();
    m.close();
  }
}
writeFileSync(arg('--out')!, JSON.stringify({ adapter: dev.description, variant: dev.variant, copyBandwidthTBs: torch?.copyBandwidthTBs ?? null, ffn, decode }, null, 2) + '\n');
device.destroy();
