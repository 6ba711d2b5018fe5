// A TrainDevice that runs nothing: it hands out addresses and records every launch, for checking an
// executor's launch list without a GPU (cuda-train-bf16*.test.ts).
import type { TrainDevice } from '../../targets/cuda/train/device.js';
import type { Launch } from '../../targets/cuda/train/ops.js';

/** A device that allocates addresses and records launches, running nothing (downloads read zeros). */
export function recordingDevice() {
  const launches: Launch[] = [], allocs: { ptr: number; bytes: number }[] = [];
  let next = 1 << 20;
  const dev: TrainDevice = {
    alloc(bytes) {
      const ptr = next;
      next += Math.ceil(Math.max(4, bytes) / 256) * 256 + 256;
      allocs.push({ ptr, bytes });
      return ptr;
    },
    upload() {},
    download: (_src, out) => out,
    fill() {},
    launch: (kernel, grid, block, args, opts) =>
      void launches.push({ kernel, grid: [...grid], block, args: [...args], ...(opts?.shared ? { shared: opts.shared } : {}), ...(opts?.target ? { target: opts.target } : {}) }),
    free() {},
  };
  return { dev, launches, allocs };
}
