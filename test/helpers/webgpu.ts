// Runs single WGSL kernels on the WebGPU device Dawn offers here (SwiftShader on a machine without a
// GPU), for tests that check each kernel against the ref target.
import type { ExecutionContext } from 'ava';
import { encodeFromF32, decodeToF32 } from '../../src/util/dtype.js';
import type { WeightDType, WgslKernel } from '../../targets/wgsl/kernel.js';
import { pad8 } from '../../targets/wgsl/kernel.js';
import { openNodeDevice } from '../../targets/wgsl/node-gpu.js';
import type { OpenedDevice } from '../../targets/wgsl/runtime/device.js';
import { createPipeline } from '../../targets/wgsl/runtime/session.js';
import { randomFrom, rng } from './random.js';

let opened: Promise<OpenedDevice> | null = null;

/** One device per test process. */
export function testDevice(): Promise<OpenedDevice> {
  opened ??= openNodeDevice();
  return opened;
}

export type HostArray = Float32Array | Int32Array | Uint32Array;

/**
 * Dispatches `kernel` once with `buffers` bound in order at @binding(1..n) and the Call uniform
 * {T, pos}; returns every buffer's contents afterwards (read_write ones changed by the kernel).
 */
export async function runKernel(kernel: WgslKernel, buffers: HostArray[], call: { T: number; pos?: number }): Promise<HostArray[]> {
  const { device } = await testDevice();
  if (buffers.length !== kernel.bindings.length) throw new Error(`${kernel.key}: ${kernel.bindings.length} bindings, ${buffers.length} buffers given`);
  const pipeline = await createPipeline(device, kernel.key, kernel);
  device.pushErrorScope('validation');
  const uniform = device.createBuffer({ size: 16, usage: GPUBufferUsage.UNIFORM | GPUBufferUsage.COPY_DST });
  device.queue.writeBuffer(uniform, 0, new Uint32Array([call.T, call.pos ?? 0, 0, 0]));
  const gpuBufs = buffers.map((b) => {
    const buf = device.createBuffer({ size: Math.max(16, Math.ceil(b.byteLength / 4) * 4), usage: GPUBufferUsage.STORAGE | GPUBufferUsage.COPY_SRC | GPUBufferUsage.COPY_DST });
    device.queue.writeBuffer(buf, 0, b.buffer, b.byteOffset, b.byteLength);
    return buf;
  });
  const bindGroup = device.createBindGroup({
    layout: pipeline.getBindGroupLayout(0),
    entries: [{ binding: 0, resource: { buffer: uniform } }, ...gpuBufs.map((buffer, i) => ({ binding: i + 1, resource: { buffer } }))],
  });
  const enc = device.createCommandEncoder();
  const pass = enc.beginComputePass();
  pass.setPipeline(pipeline);
  pass.setBindGroup(0, bindGroup);
  const [x, y, z] = kernel.grid.map((d) => (d === 'T' ? call.T : d)) as [number, number, number];
  pass.dispatchWorkgroups(x, y, z);
  pass.end();
  const reads = gpuBufs.map((b) => {
    const r = device.createBuffer({ size: b.size, usage: GPUBufferUsage.MAP_READ | GPUBufferUsage.COPY_DST });
    enc.copyBufferToBuffer(b, 0, r, 0, b.size);
    return r;
  });
  device.queue.submit([enc.finish()]);
  const err = await device.popErrorScope();
  if (err) throw new Error(`${kernel.key}: ${err.message}`);
  const out: HostArray[] = [];
  for (let i = 0; i < reads.length; i++) {
    await reads[i]!.mapAsync(GPUMapMode.READ);
    const bytes = reads[i]!.getMappedRange().slice(0, buffers[i]!.byteLength);
    reads[i]!.unmap();
    const Ctor = buffers[i]!.constructor as new (b: ArrayBuffer) => HostArray;
    out.push(new Ctor(bytes));
    reads[i]!.destroy();
    gpuBufs[i]!.destroy();
  }
  uniform.destroy();
  return out;
}

/**
 * A weight [rows, cols] as the wgsl target stores it (rows padded to 8 elements; f16/bf16 two a
 * word), and its values after rounding to that dtype (what the ref must be given).
 */
export function packWeight(dtype: WeightDType, values: Float32Array, rows: number, cols: number): { data: Float32Array | Uint32Array; rounded: Float32Array } {
  const ld = pad8(cols);
  const padded = new Float32Array(rows * ld);
  for (let r = 0; r < rows; r++) padded.set(values.subarray(r * cols, (r + 1) * cols), r * ld);
  if (dtype === 'f32') return { data: padded, rounded: values.slice() };
  const bytes = encodeFromF32(dtype, padded);
  const all = decodeToF32(dtype, bytes, padded.length);
  const rounded = new Float32Array(rows * cols);
  for (let r = 0; r < rows; r++) rounded.set(all.subarray(r * ld, r * ld + cols), r * cols);
  return { data: new Uint32Array(bytes.buffer, bytes.byteOffset, bytes.byteLength / 4), rounded };
}

/** Uniform random floats in [-scale, scale) from a seeded generator (fresh per call site seed). */
export function randomF32(n: number, seed: number, scale = 1): Float32Array {
  return randomFrom(n, rng(seed), scale);
}

/** An output buffer poisoned with NaN, so an element the kernel never writes cannot pass. */
export const poisoned = (n: number): Float32Array => new Float32Array(n).fill(NaN);

/** Largest |a-b| / (|b| + floor): relative error with an absolute floor for values near zero. */
export function maxRelErr(a: Float32Array, b: Float32Array, floor = 1e-3): number {
  if (a.length !== b.length) throw new Error(`length ${a.length} vs ${b.length}`);
  let m = 0;
  for (let i = 0; i < a.length; i++) {
    const e = Math.abs(a[i]! - b[i]!) / (Math.abs(b[i]!) + floor);
    m = Math.max(m, Number.isNaN(e) ? Infinity : e);
  }
  return m;
}

/**
 * Bytes of workgroup memory a module declares: its arrays of f32, u32, atomic<u32> or vec4<f32>
 * (sized by literals or consts), and its scalar u32 / atomic<u32> / vec2<u32> variables.
 */
export function workgroupBytes(code: string): number {
  const consts = new Map([...code.matchAll(/const (\w+) = (\d+)u;/g)].map((m) => [m[1]!, Number(m[2])]));
  const arrays = [...code.matchAll(/var<workgroup> \w+: array<(f32|u32|atomic<u32>|vec4<f32>), (\w+)>/g)]
    .reduce((sum, m) => sum + (m[1] === 'vec4<f32>' ? 16 : 4) * (consts.get(m[2]!) ?? Number(m[2]!.replace(/u$/, ''))), 0);
  const scalars = [...code.matchAll(/var<workgroup> \w+: (u32|atomic<u32>|vec2<u32>);/g)].reduce((sum, m) => sum + (m[1] === 'vec2<u32>' ? 8 : 4), 0);
  return arrays + scalars;
}

/**
 * Asserts that each kernel compiles on the test device without errors, dispatches at most 65535
 * workgroups a dimension, and stays within WebGPU's default limits of 16 KiB of workgroup memory
 * and 8 storage buffers a stage.
 */
export async function assertWithinLimits(t: ExecutionContext, kernels: WgslKernel[]): Promise<void> {
  const { device } = await testDevice();
  for (const k of kernels) {
    const module = device.createShaderModule({ code: k.code });
    const errors = (await module.getCompilationInfo()).messages.filter((m) => m.type === 'error');
    t.deepEqual(errors.map((m) => `${m.lineNum}: ${m.message}`), [], k.key);
    for (const dim of k.grid) t.true(dim === 'T' || (Number.isInteger(dim) && dim >= 1 && dim <= 65535), `${k.key}: grid ${k.grid}`);
    t.true(workgroupBytes(k.code) <= 16384, `${k.key}: ${workgroupBytes(k.code)} bytes of workgroup memory`);
    t.true(k.bindings.length <= 8, k.key);
  }
}
