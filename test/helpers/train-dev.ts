// One small device interface for the training-kernel tests (cuda-train-*.test.ts), so the same check
// runs on the CPU through the PTX interpreter (ptx-sim.ts) and on the GPU (cuda.ts): buffers from host
// bytes or NaN-poisoned, launches with typed scalar parameters, downloads into typed arrays.
import { packParams, type DevicePtr } from '../../targets/cuda/driver.js';
import { ptxModule } from '../../targets/cuda/ptx/builder.js';
import type { Kernel } from '../../targets/cuda/ptx/dense.js';
import { cuda, fn, freeAll, poisoned, upload } from './cuda.js';
import { PtxSim } from './ptx-sim.js';

export type Arg = { ptr: Ptr } | { u32: number } | { f32: number };
export type Ptr = number | DevicePtr;

export interface Dev {
  /** A buffer holding `data`'s bytes. */
  buf(data: ArrayBufferView): Ptr;
  /** `bytes` of NaN: f32 NaN words, or two bf16 NaNs a word with `bf16`. */
  nan(bytes: number, bf16?: boolean): Ptr;
  run(k: Kernel, grid: [number, number, number], block: number, args: Arg[]): void;
  get<T extends Float32Array | Int32Array | Uint16Array | Uint32Array>(p: Ptr, out: T): T;
  free(): void;
}

const NAN_F32 = 0x7fc00000, NAN_BF16X2 = 0x7fc07fc0;

/** The interpreter: every global access checked aligned and inside its allocation. */
export function simDev(bytes = 1 << 24): Dev {
  const sim = new PtxSim(bytes);
  const bytesOf = (v: ArrayBufferView) => new Uint8Array(v.buffer, v.byteOffset, v.byteLength);
  const sizes = new Map<number, number>();
  return {
    buf(data) {
      const b = sim.alloc(data.byteLength);
      bytesOf(data).forEach((x, i) => sim.mem.setUint8(b.addr + i, x));
      sizes.set(b.addr, data.byteLength);
      return b.addr;
    },
    nan(n, bf16 = false) {
      const b = sim.alloc(n);
      for (let o = 0; o + 4 <= n; o += 4) sim.mem.setUint32(b.addr + o, bf16 ? NAN_BF16X2 : NAN_F32, true);
      if (n % 4) sim.mem.setUint16(b.addr + n - 2, 0x7fc0, true);
      sizes.set(b.addr, n);
      return b.addr;
    },
    run(k, grid, block, args) {
      sim.launch(ptxModule([k.text], 'sm_80'), grid, block, args.map((a) => Number('ptr' in a ? a.ptr : 'u32' in a ? a.u32 : a.f32)));
    },
    get(p, out) {
      const dst = bytesOf(out);
      for (let i = 0; i < dst.length; i++) dst[i] = sim.mem.getUint8(Number(p) + i);
      return out;
    },
    free() {},
  };
}

/** The GPU through the driver (tests using it are gated by cudaDeviceRequirement). */
export function gpuDev(): Dev {
  return {
    buf: (data) => upload(data),
    nan: (n, bf16 = false) => poisoned(n, bf16 ? NAN_BF16X2 : NAN_F32),
    run(k, grid, block, args) {
      if (grid[0] * grid[1] * grid[2] === 0) return;
      const { bytes, offsets } = packParams(args.map((a) => ('ptr' in a ? { type: 'u64' as const, value: a.ptr as DevicePtr } : 'u32' in a ? { type: 'u32' as const, value: a.u32 } : { type: 'f32' as const, value: a.f32 })));
      fn(k).launch(grid, [block, 1, 1], 0, null, bytes, offsets);
    },
    get(p, out) {
      cuda().synchronize();
      cuda().copyFromDevice(out, p as DevicePtr);
      return out;
    },
    free: freeAll,
  };
}
