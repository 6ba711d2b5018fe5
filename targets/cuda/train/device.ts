// The few things the CUDA training executor (executor.ts) asks of a device: memory, copies, and
// kernel launches. Two implementations: the CUDA driver (cuda-device.ts) and, for tests without a
// GPU, the CPU PTX interpreter (test/helpers/train-sim-device.ts), so the whole executor runs in
// `npm test` on any machine.
import type { TensorMapTiled } from '../driver.js';
import type { Kernel } from '../ptx/dense.js';

/** A device address: a bigint on the CUDA driver, a number in the interpreter. */
export type DevPtr = number | bigint;

/**
 * One kernel parameter, in the kernel's declaration order. `tmap`: a tensor map (a Hopper kernel's
 * 'tmap' param, passed by value) the device encodes from this description (driver.ts
 * tensorMapEncodeTiled); the description holds the address, so it is made once the buffers exist.
 */
export type LaunchArg = { ptr: DevPtr } | { u32: number } | { f32: number } | { tmap: TensorMapTiled };

/** What a launch may ask beyond grid, block and params. */
export interface LaunchOptions {
  /** Dynamic shared memory bytes (absent: none); the device raises the function's limit where needed. */
  shared?: number;
  /** The module target: 'sm_90a' for kernels with wgmma / setmaxnreg (absent: the device's own arch). */
  target?: 'sm_90a';
}

/** What gemm-sm90.ts's persistent Hopper GEMM needs of a device that runs it. */
export interface WgmmaDevice {
  /** Multiprocessors: the persistent grid has one CTA each (gemm90Grid). */
  multiprocessors: number;
}

export interface TrainDevice {
  /**
   * Present when the device runs sm_90a kernels (compute capability 9.0) and the Hopper GEMM is
   * wanted (targets/cuda/index.ts wgmmaWanted: MOCC_CUDA_WGMMA=0 turns it off); the bf16 GEMM ops
   * then launch gemm-sm90.ts (ops-bf16.ts trainGemmKernel). Absent: gemm.ts's mma.sync kernel.
   */
  readonly wgmma?: WgmmaDevice;
  /** `bytes` of device memory (contents unspecified), 256-byte aligned. */
  alloc(bytes: number): DevPtr;
  /** Copies data's bytes to dst (after every launch before it). */
  upload(dst: DevPtr, data: ArrayBufferView): void;
  /** Copies out.byteLength bytes from src into out, after every launch before it. */
  download<T extends ArrayBufferView>(src: DevPtr, out: T): T;
  /** Sets `bytes` (a multiple of 4) at dst to the 32-bit `word` (NaN poison in tests). */
  fill(dst: DevPtr, bytes: number, word: number): void;
  /** Launches k over grid × block threads (1-D blocks; dynamic shared memory and target per opts), in order. */
  launch(k: Kernel, grid: [number, number, number], block: number, args: readonly LaunchArg[], opts?: LaunchOptions): void;
  /** Frees what alloc gave. */
  free(p: DevPtr): void;
}

/** p + bytes, in p's representation. */
export function ptrAdd(p: DevPtr, bytes: number): DevPtr {
  return typeof p === 'bigint' ? p + BigInt(bytes) : p + bytes;
}
