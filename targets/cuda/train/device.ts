// The few things the CUDA training executor (executor.ts) asks of a device: memory, copies, and
// kernel launches. Two implementations: the CUDA driver (cuda-device.ts) and, for tests without a
// GPU, the CPU PTX interpreter (test/helpers/train-sim-device.ts), so the whole executor runs in
// `npm test` on any machine.
import type { Kernel } from '../ptx/dense.js';

/** A device address: a bigint on the CUDA driver, a number in the interpreter. */
export type DevPtr = number | bigint;

/** One kernel parameter, in the kernel's declaration order. */
export type LaunchArg = { ptr: DevPtr } | { u32: number } | { f32: number };

export interface TrainDevice {
  /** `bytes` of device memory (contents unspecified), 256-byte aligned. */
  alloc(bytes: number): DevPtr;
  /** Copies data's bytes to dst (after every launch before it). */
  upload(dst: DevPtr, data: ArrayBufferView): void;
  /** Copies out.byteLength bytes from src into out, after every launch before it. */
  download<T extends ArrayBufferView>(src: DevPtr, out: T): T;
  /** Sets `bytes` (a multiple of 4) at dst to the 32-bit `word` (NaN poison in tests). */
  fill(dst: DevPtr, bytes: number, word: number): void;
  /** Launches k over grid × block threads (1-D blocks, no dynamic shared memory), in order. */
  launch(k: Kernel, grid: [number, number, number], block: number, args: readonly LaunchArg[]): void;
  /** Frees what alloc gave. */
  free(p: DevPtr): void;
}

/** p + bytes, in p's representation. */
export function ptrAdd(p: DevPtr, bytes: number): DevPtr {
  return typeof p === 'bigint' ? p + BigInt(bytes) : p + bytes;
}
