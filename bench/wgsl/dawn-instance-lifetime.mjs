// Minimal reproduction: Dawn's Node binding (npm webgpu 0.6.2) frees its instance when the object
// create() returned is garbage-collected, even while a device made from it is still in use. The
// next submit / mapAsync / pipeline creation then crashes the process at random: SIGSEGV,
// "The futex facility returned an unexpected error code", "pthread_mutex_lock: Assertion ...",
// or std::system_error "Invalid argument". Workaround (targets/wgsl/node-gpu.ts): keep a
// reference to every instance for the life of the process.
//
//   node --expose-gc bench/wgsl/dawn-instance-lifetime.mjs drop   # crashes (or hangs) within the loop
//   node --expose-gc bench/wgsl/dawn-instance-lifetime.mjs keep   # prints "200 rounds"
// On a machine without a GPU: VK_ICD_FILENAMES=/usr/lib/chromium/vk_swiftshader_icd.json
import { create, globals } from 'webgpu';

Object.assign(globalThis, globals);
const keep = process.argv[2] === 'keep';
let instance = create([]);
const adapter = await instance.requestAdapter();
if (!adapter) throw new Error('no adapter (see the comment at the top)');
const device = await adapter.requestDevice();
if (!keep) instance = null; // only the adapter and device remain referenced
const code = '@group(0) @binding(0) var<storage, read_write> o: array<f32>;\n'
  + '@compute @workgroup_size(64) fn main(@builtin(global_invocation_id) g: vec3u) { o[g.x] = o[g.x] + 1.0; }';
const pipeline = device.createComputePipeline({ layout: 'auto', compute: { module: device.createShaderModule({ code }), entryPoint: 'main' } });
const data = device.createBuffer({ size: 1024, usage: GPUBufferUsage.STORAGE | GPUBufferUsage.COPY_SRC | GPUBufferUsage.COPY_DST });
const group = device.createBindGroup({ layout: pipeline.getBindGroupLayout(0), entries: [{ binding: 0, resource: { buffer: data } }] });
for (let i = 0; i < 200; i++) {
  globalThis.gc?.();
  device.queue.writeBuffer(data, 0, new Uint32Array([i]));
  const enc = device.createCommandEncoder();
  const pass = enc.beginComputePass();
  pass.setPipeline(pipeline);
  pass.setBindGroup(0, group);
  pass.dispatchWorkgroups(4);
  pass.end();
  const read = device.createBuffer({ size: 1024, usage: GPUBufferUsage.MAP_READ | GPUBufferUsage.COPY_DST });
  enc.copyBufferToBuffer(data, 0, read, 0, 1024);
  device.queue.submit([enc.finish()]);
  await read.mapAsync(GPUMapMode.READ);
  read.unmap();
  read.destroy();
}
console.log('200 rounds');
device.destroy();
