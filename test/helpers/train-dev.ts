// One small device interface for the training-kernel tests (cuda-train-*.test.ts), so the same check
// runs on the CPU through the PTX interpreter and on the GPU: buffers from host bytes or NaN-poisoned,
// launches with typed scalar parameters, downloads into typed arrays. A thin layer over the training
// executor's TrainDevice (targets/cuda/train/device.ts), so there is one interpreter device
// (train-sim-device.ts: accesses checked aligned and inside an allocation) and one GPU device
// (cuda-device.ts); this file adds only the NaN poisoning and freeing everything at the end.
import { ptrAdd, type DevPtr, type LaunchArg, type TrainDevice } from '../../targets/cuda/train/device.js';
import { cudaTrainDevice } from '../../targets/cuda/train/cuda-device.js';
import type { Kernel } from '../../targets/cuda/ptx/dense.js';
import { simTrainDevice } from './train-sim-device.js';

export type Arg = LaunchArg;
export type Ptr = DevPtr;

export interface Dev {
  /** A buffer holding `data`'s bytes. */
  buf(data: ArrayBufferView): Ptr;
  /** `bytes` (even) of NaN: f32 NaN words, or two bf16 NaNs a word with `bf16`; a last half word is a bf16 NaN. */
  nan(bytes: number, bf16?: boolean): Ptr;
  run(k: Kernel, grid: [number, number, number], block: number, args: Arg[]): void;
  get<T extends ArrayBufferView>(p: Ptr, out: T): T;
  /** Frees every buffer this Dev gave. */
  free(): void;
}

export const NAN_F32 = 0x7fc00000, NAN_BF16X2 = 0x7fc07fc0;

/** The Dev over a TrainDevice; every buffer is allocated at exactly its size (the interpreter checks accesses against it). */
export function devOver(d: TrainDevice): Dev {
  const owned: DevPtr[] = [];
  const alloc = (bytes: number) => {
    const p = d.alloc(bytes);
    owned.push(p);
    return p;
  };
  return {
    buf(data) {
      const p = alloc(data.byteLength);
      d.upload(p, data);
      return p;
    },
    nan(n, bf16 = false) {
      if (n % 2) throw new Error(`nan: ${n} bytes, not whole bf16 or f32 elements`);
      const p = alloc(n), words = n - (n % 4);
      d.fill(p, words, bf16 ? NAN_BF16X2 : NAN_F32);
      if (n % 4) d.upload(ptrAdd(p, words), Uint16Array.of(0x7fc0));
      return p;
    },
    run: (k, grid, block, args) => d.launch(k, grid, block, args),
    get: (p, out) => d.download(p, out),
    free() {
      for (const p of owned.splice(0)) d.free(p);
    },
  };
}

/** The interpreter (train-sim-device.ts) with `bytes` of global memory. */
export const simDev = (bytes = 1 << 24): Dev => devOver(simTrainDevice(bytes));

/** The GPU through the driver (cuda-device.ts; tests using it are gated by cudaDeviceRequirement). */
export const gpuDev = (): Dev => devOver(cudaTrainDevice());
