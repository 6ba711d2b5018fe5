// Where a training step's GPU time goes, by kernel family, without a profiler: a TrainDevice wrapper
// that, while on, records a CUDA event before and after every launch on the null stream (the stream
// the executor and the optimizer issue everything on, in order: cuda-device.ts), then reads the
// elapsed time of each pair. A pair's time is the kernel's run plus whatever idle gap the host left
// before it started, so the families' sum is close to the step's wall time when the host keeps ahead
// of the GPU, and the rest of the wall time is host time (the gap is then before the first event).
// Families are a kernel's name up to its second '_' (gemm_xwt, train_moc, cast_rows ...), as
// ncu_sum.py groups ncu's output, so the two compare.
// Events cost little (two records a launch) but are not free: the step time a bench reports comes
// from steps run with the timer off.
import type { Cuda, CudaEvent } from '../../targets/cuda/driver.js';
import type { TrainDevice } from '../../targets/cuda/train/device.js';

export interface KernelFamilyTime {
  family: string;
  launches: number;
  ms: number;
  /** The family's kernels by full name, longest first (a family such as train_moc holds Top-K and gathers). */
  kernels: { name: string; launches: number; ms: number }[];
}

/** A kernel's family: its name up to the second '_'. */
export const kernelFamily = (name: string) => name.split('_').slice(0, 2).join('_');

export function kernelTimer(dev: TrainDevice, cuda: Cuda) {
  const pool: CudaEvent[] = [];
  const marks: { name: string; from: number }[] = [];
  let used = 0, on = false;
  const event = () => (used < pool.length ? pool[used++]! : (pool.push(cuda.createEvent()), pool[used++]!));
  const timed: TrainDevice = {
    ...dev,
    launch(k, grid, block, args, opts) {
      if (!on) return dev.launch(k, grid, block, args, opts);
      const from = used;
      event().record(null);
      dev.launch(k, grid, block, args, opts);
      event().record(null);
      marks.push({ name: k.name, from });
    },
  };
  return {
    dev: timed,
    /** Starts recording (forgets what an earlier start recorded). */
    start() {
      on = true;
      used = 0;
      marks.length = 0;
    },
    /** Stops recording and returns the families, longest first (waits for the last event). */
    stop(): KernelFamilyTime[] {
      on = false;
      if (used) pool[used - 1]!.synchronize();
      const by = new Map<string, KernelFamilyTime>();
      for (const m of marks) {
        const f = kernelFamily(m.name), ms = pool[m.from + 1]!.elapsedMs(pool[m.from]!);
        const e = by.get(f) ?? { family: f, launches: 0, ms: 0, kernels: [] };
        e.launches++;
        e.ms += ms;
        const k = e.kernels.find((x) => x.name === m.name) ?? (e.kernels.push({ name: m.name, launches: 0, ms: 0 }), e.kernels.at(-1)!);
        k.launches++;
        k.ms += ms;
        by.set(f, e);
      }
      for (const e of by.values()) e.kernels.sort((a, b) => b.ms - a.ms);
      return [...by.values()].sort((a, b) => b.ms - a.ms);
    },
    dispose() {
      for (const e of pool) e.destroy();
      pool.length = 0;
    },
  };
}

/**
 * The families as lines: launches, ms, share of the families' sum; under a family of several kernels,
 * its `perFamily` longest kernels by full name.
 */
export function formatKernelTimes(times: readonly KernelFamilyTime[], top = 16, perFamily = 3): string[] {
  const total = times.reduce((s, t) => s + t.ms, 0);
  const line = (indent: string, name: string, launches: number, ms: number) => `${indent}${name.padEnd(32 - indent.length)} x${String(launches).padStart(5)} ${ms.toFixed(2).padStart(10)} ms ${((100 * ms) / total).toFixed(1).padStart(5)}%`;
  const lines = times.slice(0, top).flatMap((t) => [
    line('    ', t.family, t.launches, t.ms),
    ...(t.kernels.length > 1 ? t.kernels.slice(0, perFamily).map((k) => line('        ', k.name, k.launches, k.ms)) : []),
  ]);
  const rest = times.slice(top);
  if (rest.length) lines.push(`    (${rest.length} more families) ${rest.reduce((s, t) => s + t.ms, 0).toFixed(2)} ms`);
  lines.push(`    sum of ${times.reduce((s, t) => s + t.launches, 0)} launches: ${total.toFixed(1)} ms`);
  return lines;
}
