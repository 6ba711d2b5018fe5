// Launching single generated kernels on host arrays, for the GPU checks and benchmarks.
import type { CudaStream, DevicePtr } from '../../targets/cuda/driver.js';
import { packParams } from '../../targets/cuda/driver.js';
import { cudaContext } from '../../targets/cuda/index.js';
import { archFor, ptxModule, type CudaArch } from '../../targets/cuda/ptx/builder.js';
import { gemm90, gemm90Grid, gemm90SharedBytes, gemm90TensorMap, gemm90Threads, type Gemm90Spec } from '../../targets/cuda/ptx/gemm-sm90.js';
import type { Kernel } from '../../targets/cuda/ptx/dense.js';
import { pad8, type WeightDType } from '../../targets/cuda/ptx/layout.js';
import { decodeToF32, encodeFromF32 } from '../../src/util/dtype.js';

export const cuda = () => cudaContext();
const loaded = new Map<string, ReturnType<ReturnType<typeof cuda>['loadModule']>>();

/**
 * The kernel as a function, loaded as the device's PTX flavour (sm_90: with the programmatic-launch
 * waits), or as `arch` (sm_90a for kernels with wgmma).
 */
export function fn(k: Kernel, arch?: CudaArch | 'sm_90a') {
  let m = loaded.get(k.name);
  if (!m) loaded.set(k.name, (m = cuda().loadModule(ptxModule([k.text], arch ?? archFor(cuda().device.computeCapability)), k.name)));
  return m.getFunction(k.name);
}

/**
 * A launcher of the Hopper GEMM (gemm-sm90.ts) on device buffers: the tensor maps made once, the
 * function's shared-memory limit raised, a persistent grid of one CTA per multiprocessor.
 * x and w in spec.dtype as spec.layout stores them (gemm-sm90.ts header: 'xwt' x m × pad8(k), w n × pad8(k);
 * 'xw' w k × pad8(n); 'xtw' x k × pad8(m), w k × pad8(n)); gemm90TensorMap knows each operand's map
 * from m (x's rows) or n (w's) and k. y: m × pad8(n) in spec.out. Nothing to do when m or n is 0.
 */
export function gemm90Launcher(spec: Gemm90Spec, y: DevicePtr, x: DevicePtr, w: DevicePtr, m: number, n: number, k: number): (stream?: CudaStream | null) => void {
  if (m === 0 || n === 0) return () => {};
  const c = cuda(), kernel = gemm90(spec), f = fn(kernel, 'sm_90a'), shared = gemm90SharedBytes(spec);
  f.setMaxDynamicShared(shared);
  // a tensor map needs every dimension >= 1: with K = 0 the maps are never read, so describe one column
  const kk = Math.max(k, 1);
  const p = packParams([
    { type: 'u64', value: y },
    { type: 'tmap', value: c.tensorMapEncodeTiled(gemm90TensorMap(spec, 'x', x, m, kk)) },
    { type: 'tmap', value: c.tensorMapEncodeTiled(gemm90TensorMap(spec, 'w', w, n, kk)) },
    { type: 'u32', value: m }, { type: 'u32', value: n }, { type: 'u32', value: k },
  ]);
  const grid = gemm90Grid(spec, m, n, c.device.multiprocessors), block: [number, number, number] = [gemm90Threads(spec), 1, 1];
  return (stream = null) => f.launch(grid, block, shared, stream, p.bytes, p.offsets);
}

export function launch(k: Kernel, grid: [number, number, number], block: number, args: (DevicePtr | number)[]): void {
  const { bytes, offsets } = packParams(args.map((a) => (typeof a === 'bigint' ? { type: 'u64' as const, value: a } : { type: 'u32' as const, value: a })));
  fn(k).launch(grid, [block, 1, 1], 0, null, bytes, offsets);
}

const allocs: DevicePtr[] = [];
export function upload(data: ArrayBufferView): DevicePtr {
  const p = cuda().malloc(Math.max(4, data.byteLength));
  allocs.push(p);
  cuda().copyToDevice(p, data);
  return p;
}
/**
 * Device memory filled with NaN, so an element a kernel failed to write is caught: f32 NaN words,
 * or with `word` 0x7fc07fc0 two bf16 NaNs a word.
 */
export function poisoned(bytes: number, word = 0x7fc00000): DevicePtr {
  const p = cuda().malloc(Math.max(4, bytes));
  allocs.push(p);
  cuda().memsetD32(p, word, Math.ceil(bytes / 4));
  return p;
}
export function download<T extends Float32Array | Int32Array>(p: DevicePtr, out: T): T {
  cuda().synchronize();
  cuda().copyFromDevice(out, p);
  return out;
}
export function freeAll(): void {
  for (const p of allocs.splice(0)) cuda().free(p);
}

export { rng, randomFrom as randomF32 } from './random.js';

/** Rows × cols floats → padded rows (zeros in the padding). */
export function padF32(x: Float32Array, rows: number, cols: number): Float32Array {
  const ld = pad8(cols);
  const out = new Float32Array(rows * ld);
  for (let r = 0; r < rows; r++) out.set(x.subarray(r * cols, (r + 1) * cols), r * ld);
  return out;
}
export function unpadF32(x: Float32Array, rows: number, cols: number): Float32Array {
  const ld = pad8(cols);
  const out = new Float32Array(rows * cols);
  for (let r = 0; r < rows; r++) out.set(x.subarray(r * ld, r * ld + cols), r * cols);
  return out;
}

/** A weight in `dtype` as the device stores it (padded rows), and the exact f32 values it holds. */
export function weight(values: Float32Array, rows: number, cols: number, dtype: WeightDType): { device: DevicePtr; exact: Float32Array } {
  const enc = encodeFromF32(dtype, values);
  const exact = decodeToF32(dtype, enc, values.length);
  const eb = dtype === 'f32' ? 4 : 2;
  const ld = pad8(cols);
  const padded = new Uint8Array(rows * ld * eb);
  for (let r = 0; r < rows; r++) padded.set(enc.subarray(r * cols * eb, (r + 1) * cols * eb), r * ld * eb);
  return { device: upload(padded), exact };
}

export function relErr(got: Float32Array, want: Float32Array): number {
  let num = 0, den = 0;
  for (let i = 0; i < want.length; i++) {
    const g = got[i]!;
    if (!Number.isFinite(g)) return Infinity;
    num += (g - want[i]!) ** 2;
    den += want[i]! ** 2;
  }
  return Math.sqrt(num / Math.max(den, 1e-30));
}
export { pad8 };
