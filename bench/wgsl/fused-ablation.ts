// Where the fused MoC stages spend their time, on a real GPU through Dawn: each stage timed alone
// (GPU timestamps around a pass of many dispatches, weights rotated over 7 copies), then again with
// one part cut out of its WGSL text. Differences show what each part costs. Then what a workgroup
// barrier and a cross-workgroup sum by atomics cost. A probe for design work, not a benchmark of
// record: the cut kernels compute wrong results. (Results: bench/results/wgsl/fused-ablation.h100.log.)
// Usage: node dist/bench/wgsl/fused-ablation.js
import { assemble, type StorageBuffer, type WgslKernel } from '../../targets/wgsl/kernel.js';
import { gemv } from '../../targets/wgsl/kernels/dense.js';
import { HIST_BINS, maskWords, mocDownMasked, mocSelectUp } from '../../targets/wgsl/kernels/moc-fused.js';
import { wgslDevice } from '../../targets/wgsl/index.js';
import { createPipeline } from '../../targets/wgsl/runtime/session.js';
import { bf16Source } from './random-bf16.js';

process.env.MOCC_DAWN_FLAGS ??= 'disable-dawn-features=timestamp_quantization';
const { device, description } = await wgslDevice();
console.log(`fused-ablation on ${description}`);
const [d, f, k, copies] = process.argv.includes("--small") ? [256, 688, 128, 2] : [2048, 5464, 1024, 7];
const randomBf16 = bf16Source(99);
const buffer = (data: Uint32Array | Float32Array | number): GPUBuffer => {
  const size = typeof data === 'number' ? data : data.byteLength;
  const b = device.createBuffer({ size: Math.max(16, size), usage: GPUBufferUsage.STORAGE | GPUBufferUsage.COPY_DST });
  if (typeof data !== 'number') device.queue.writeBuffer(b, 0, data.buffer as ArrayBuffer, data.byteOffset, data.byteLength);
  return b;
};
const call = device.createBuffer({ size: 16, usage: GPUBufferUsage.UNIFORM | GPUBufferUsage.COPY_DST });
device.queue.writeBuffer(call, 0, new Uint32Array([1, 0, 0, 0]));
async function steps(kernel: WgslKernel, sets: GPUBuffer[][]) {
  const pipeline = await createPipeline(device, kernel.key + Math.random(), kernel);
  const grid = kernel.grid.map((g) => (g === 'T' ? 1 : g)) as [number, number, number];
  return sets.map((bufs) => ({ pipeline, grid, group: device.createBindGroup({ layout: pipeline.getBindGroupLayout(0), entries: [call, ...bufs].map((buffer, i) => ({ binding: i, resource: { buffer } })) }) }));
}
type Step = Awaited<ReturnType<typeof steps>>[number];
async function time(list: Step[], iters = process.argv.includes("--small") ? 1 : 40, reps = process.argv.includes("--small") ? 1 : 5): Promise<number> {
  const qs = device.createQuerySet({ type: 'timestamp', count: 2 });
  const res = device.createBuffer({ size: 16, usage: GPUBufferUsage.QUERY_RESOLVE | GPUBufferUsage.COPY_SRC });
  const out: number[] = [];
  for (let r = 0; r <= reps; r++) {
    const enc = device.createCommandEncoder();
    const pass = enc.beginComputePass({ timestampWrites: { querySet: qs, beginningOfPassWriteIndex: 0, endOfPassWriteIndex: 1 } });
    for (let i = 0; i < iters; i++) for (const s of list) (pass.setPipeline(s.pipeline), pass.setBindGroup(0, s.group), pass.dispatchWorkgroups(...s.grid));
    pass.end();
    enc.resolveQuerySet(qs, 0, 2, res, 0);
    const read = device.createBuffer({ size: 16, usage: GPUBufferUsage.MAP_READ | GPUBufferUsage.COPY_DST });
    enc.copyBufferToBuffer(res, 0, read, 0, 16);
    device.queue.submit([enc.finish()]);
    await read.mapAsync(GPUMapMode.READ);
    const [t0, t1] = new BigUint64Array(read.getMappedRange());
    read.destroy();
    if (r > 0) out.push(Number(t1! - t0!) / 1000 / (iters * list.length));
  }
  return out.sort((a, b) => a - b)[out.length >> 1]!;
}
/** A kernel with text replaced (each `from` must occur). */
function cut(kernel: WgslKernel, ...edits: [string | RegExp, string | ((m: string) => string)][]): WgslKernel {
  let code = kernel.code;
  for (const [from, to] of edits) {
    if (!(typeof from === 'string' ? code.includes(from) : from.test(code))) throw new Error(`${kernel.key}: no ${from}`);
    code = typeof from === 'string' ? code.split(from).join(to as string) : code.replace(from, to as string);
  }
  return { ...kernel, code };
}

const x = buffer(new Float32Array(d).map((_, i) => Math.sin(i)));
const g = buffer(f * 4), h = buffer(f * 4), y = buffer(d * 4), mask = buffer(maskWords(f) * 4);
const hist = buffer(HIST_BINS * 4), spare = buffer(HIST_BINS * 4);
const w = Array.from({ length: copies }, () => [buffer(randomBf16(f * d)), buffer(randomBf16(f * d)), buffer(randomBf16(f * d))] as const);
// the gate GEMV's shape (the fused path's, with its histogram)
const gateSpec = { dtype: 'bf16', inDim: d, outDim: f, outStride: f, rowBase: 0, variant: 'gpu', hist: true } as const;
// one gate GEMV fills g and a histogram that stays valid (nothing zeroes it)
const [fill] = await steps(gemv(gateSpec), [[g, x, w[0]![0], hist]]);
{
  const enc = device.createCommandEncoder(), pass = enc.beginComputePass();
  pass.setPipeline(fill!.pipeline); pass.setBindGroup(0, fill!.group); pass.dispatchWorkgroups(...fill!.grid); pass.end();
  device.queue.submit([enc.finish()]);
}
const up = mocSelectUp('bf16', d, f, k);
const upSets = w.map(([, wu]) => [h, mask, x, wu, g, hist]);
const upCuts: Record<string, WgslKernel> = {
  'select + up (as built)': up,
  'no up phase': cut(up, ['let n = atomicLoad(&nKept);', 'let n = 0u;']),
  'no rank loop': cut(up, ['let nc = atomicLoad(&nCand);', 'let nc = 0u;']),
  'no keys read': cut(up, [/selKey\(g\[t \* F \+ min\(lid \+ \d+u, F - 1u\)\]\)/g, 'lid']),
  'keys read and kept alive, no rank loop': cut(up, ['let nc = atomicLoad(&nCand);', `let nc = 0u;
  if (bstar == 0xffffffffu) { h[0] = f32(${Array.from({ length: Math.ceil(f / 256) }, (_, e) => `k${e}`).join(' ^ ')}); }`]),
  'rank loop over one key a invocation': cut(up, [/let n = select\(0u, 1u, \(\(k0[^;]*;/, (m: string) => m.split(' + select')[0]! + ';']),
  'selKey = bits': cut(up, [/fn selKey\(bits: u32\) -> u32 \{[\s\S]*?\n\}/, 'fn selKey(bits: u32) -> u32 { return bits; }']),
  'up only (kept = 6 fixed rows, no select)': cut(up, [/  \/\/ this invocation's \d+ bins[\s\S]*?let n = atomicLoad\(&nKept\);/, 'let n = 6u;'], ['kept[team + 0u]', '(team * 5u)'], ['let j = kept[lid];', 'let j = lid * 5u;']),
};
const down = mocDownMasked('bf16', d, f, k);
// the down projection's own h and mask, from one dispatch of the real select + up (the cut ones above write other masks)
const hDown = buffer(f * 4), maskDown = buffer(maskWords(f) * 4);
{
  const [real] = await steps(up, [[hDown, maskDown, x, w[0]![1], g, hist]]);
  const enc = device.createCommandEncoder(), pass = enc.beginComputePass();
  pass.setPipeline(real!.pipeline); pass.setBindGroup(0, real!.group); pass.dispatchWorkgroups(...real!.grid); pass.end();
  device.queue.submit([enc.finish()]);
}
const downSets = w.map(([, , wd]) => [y, spare, hDown, maskDown, wd]);
const noList: [RegExp, string] = [/share\[min\(rl \+ (\d+)u, K - 1u\)\]/g, 'min((rl + $1u) * 5u, F - 1u)'];
const downCuts: Record<string, WgslKernel> = {
  'masked down (as built)': down,
  'masked down, 1 chunk a workgroup': mocDownMasked('bf16', d, f, k, false, 1),
  'masked down, 2 chunks a workgroup': mocDownMasked('bf16', d, f, k, false, 2),
  'no list (rows j·5)': cut(down, noList),
  'no list, no h read': cut(down, noList, [/select\(0\.0, h\[t \* F \+ c\d+\], rl \+ \d+u < K\)/g, 'f32(rl)']),
};
const gateK = gemv(gateSpec);
// What a workgroup barrier phase costs: 86 workgroups of 256, each passing a value around workgroup
// memory n times (a store, a barrier, a neighbour's load).
const phases = (n: number): WgslKernel => assemble(`phases/${n}`, [{ name: 'out', access: 'read_write', type: 'array<u32>' }], `
var<workgroup> s: array<u32, 256>;
@compute @workgroup_size(256)
fn main(@builtin(local_invocation_index) lid: u32, @builtin(workgroup_id) wid: vec3<u32>) {
  var v = lid + wid.x;
  for (var i = 0u; i < ${n}u; i++) {
    s[lid] = v;
    workgroupBarrier();
    v += s[(lid + 1u) % 256u];
    workgroupBarrier();
  }
  out[wid.x * 256u + lid] = v;
}`, [86, 1, 1]);
const phaseOut = buffer(86 * 256 * 4);
// What a cross-workgroup sum costs: 86 workgroups each add 2048 values (8 an invocation) into one
// [2048] output, by plain stores of partial sums (no sum: the baseline), by 32-bit integer atomics,
// by 64-bit fixed point (two u32 atomics, the carry from the low word's old value), or by an f32
// compare-exchange loop.
const accumulate = (mode: 'store' | 'i32' | 'fixed64' | 'casf32'): WgslKernel => {
  const cols = Array.from({ length: 8 }, (_, e) => e);
  const value = (e: number) => `let v${e} = f32(lid * 8u + ${e}u) * 0.001 - f32(wid.x) * 0.01;`;
  const idx = (e: number) => `let i${e} = (lid * 8u + ${e}u + wid.x * 24u) % 2048u;`;
  const body = {
    store: cols.map((e) => `out[wid.x * 2048u + i${e}] = bitcast<u32>(v${e});`),
    i32: cols.map((e) => `atomicAdd(&acc[i${e}], bitcast<u32>(i32(v${e} * 65536.0)));`),
    fixed64: [
      ...cols.map((e) => `let f${e} = floor(v${e}); let lo${e} = u32((v${e} - f${e}) * 4294967296.0); let o${e} = atomicAdd(&acc[2u * i${e}], lo${e});`),
      ...cols.map((e) => `let hv${e} = bitcast<u32>(i32(f${e})) + select(0u, 1u, o${e} + lo${e} < o${e}); if (hv${e} != 0u) { atomicAdd(&acc[2u * i${e} + 1u], hv${e}); }`),
    ],
    casf32: [
      ...cols.map((e) => `var o${e} = atomicLoad(&acc[i${e}]);`),
      ...cols.map((e) => `loop { let r = atomicCompareExchangeWeak(&acc[i${e}], o${e}, bitcast<u32>(bitcast<f32>(o${e}) + v${e})); if (r.exchanged) { break; } o${e} = r.old_value; }`),
    ],
  }[mode];
  const out: StorageBuffer = mode === 'store' ? { name: 'out', access: 'read_write', type: 'array<u32>' } : { name: 'acc', access: 'read_write', type: 'array<atomic<u32>>' };
  return assemble(`accumulate/${mode}`, [out], `
@compute @workgroup_size(256)
fn main(@builtin(local_invocation_index) lid: u32, @builtin(workgroup_id) wid: vec3<u32>) {
${cols.map(value).join('\n')}
${cols.map(idx).join('\n')}
${body.join('\n')}
}`, [86, 1, 1]);
};
const accOut = buffer(86 * 2048 * 4);

console.log(`adapter features: ${[...(await wgslDevice()).adapter.features].join(', ')}`);
// The SM clock idles low (405 MHz seen right after a run) and these kernels are latency-bound, so
// warm up for about a second, then time every variant in rounds and keep each one's median.
const variants: [string, Step[]][] = [];
variants.push(['gate GEMV + histogram', await steps(gateK, w.map(([wg]) => [h, x, wg, spare]))]);
variants.push(['gate GEMV', await steps(gemv({ ...gateSpec, hist: false }), w.map(([wg]) => [h, x, wg]))]);
for (const lanes of [16, 64, 128]) variants.push([`gate GEMV + histogram, ${lanes} lanes a row`, await steps(gemv({ ...gateSpec, lanes }), w.map(([wg]) => [h, x, wg, spare]))]);
for (const [name, kern] of Object.entries(upCuts)) variants.push([name, await steps(kern, upSets)]);
for (const [name, kern] of Object.entries(downCuts)) variants.push([name, await steps(kern, downSets)]);
for (const n of [0, 4, 16]) variants.push([`${n} barrier round trips`, await steps(phases(n), [[phaseOut]])]);
for (const m of ['store', 'i32', 'fixed64', 'casf32'] as const) variants.push([`86×2048 sums by ${m}`, await steps(accumulate(m), [[accOut]])]);
const warm = performance.now();
while (performance.now() - warm < (process.argv.includes('--small') ? 0 : 1500)) await time(variants[0]![1], 200, 1);
const rounds: Record<string, number[]> = {};
for (let r = 0; r < 5; r++) for (const [name, list] of variants) (rounds[name] ??= []).push(await time(list));
const results = Object.fromEntries(Object.entries(rounds).map(([n, v]) => [n, v.sort((a, b) => a - b)[v.length >> 1]!]));
for (const [name, us] of Object.entries(results)) console.log(`${name.padEnd(44)} ${us.toFixed(2)} µs`);
device.destroy();
