// Running the training kernels' checks (test/targets/cuda-train-*.test.ts) the same way on the CPU
// (the generated PTX interpreted) and on a GPU: a case names its buffers (inputs with their bytes,
// outputs poisoned with NaN) and its launches once, and runOn returns every buffer's bytes
// afterwards, wherever it ran. The device is train-dev.ts's Dev (over the executor's TrainDevice),
// so the memory checks and the NaN poison are the ones every training test uses.
import type { Kernel } from '../../targets/cuda/ptx/dense.js';
import { pad8 } from '../../targets/cuda/ptx/layout.js';
import test, { type ExecutionContext } from 'ava';
import { gpuDev, simDev, type Ptr } from './train-dev.js';
import { freeAll } from './cuda.js';
import { cudaDeviceRequirement, testsNeeding } from './requires.js';

/** A buffer's start: given bytes, or `bytes` of NaN (Dev.nan: f32 NaN words 0x7fc00000; as u16 pairs, 0x7fc0 and 0). */
export type BufInit = { data: ArrayBufferView } | { poison: number };

export interface TrainLaunch {
  kernel: Kernel;
  grid: [number, number, number];
  block: number;
  /** A buffer's name (its address, u64) or a u32 value, in the kernel's params order. */
  args: (string | number)[];
}

const bytesOf = (b: BufInit) => ('data' in b ? b.data.byteLength : b.poison);

/** Runs the launches in order on the sim or the GPU; every buffer's bytes afterwards (the buffers are freed). */
export function runOn(where: 'sim' | 'gpu', bufs: Record<string, BufInit>, launches: TrainLaunch[]): Record<string, Uint8Array> {
  const names = Object.keys(bufs);
  // the interpreter's memory: every buffer in its 256-byte-aligned slot after the first 256 bytes
  const simBytes = names.reduce((n, k) => n + Math.ceil(Math.max(bytesOf(bufs[k]!), 4) / 256) * 256, 512);
  const dev = where === 'sim' ? simDev(simBytes) : gpuDev();
  try {
    const at = new Map<string, Ptr>(names.map((k) => {
      const b = bufs[k]!;
      return [k, 'data' in b ? dev.buf(b.data) : dev.nan(b.poison)];
    }));
    const ptr = (name: string) => {
      const p = at.get(name);
      if (p === undefined) throw new Error(`runOn: no buffer ${name}`);
      return { ptr: p };
    };
    for (const l of launches) dev.run(l.kernel, l.grid, l.block, l.args.map((a) => (typeof a === 'string' ? ptr(a) : { u32: a })));
    return Object.fromEntries(names.map((k) => [k, dev.get(at.get(k)!, new Uint8Array(bytesOf(bufs[k]!)))]));
  } finally {
    dev.free();
  }
}

export const floats = (b: Uint8Array): Float32Array => new Float32Array(b.buffer, b.byteOffset, b.byteLength / 4);

/** rows × cols → rows of pad8(cols) (padding `fill`: 0 as the device keeps it, NaN to see it is never read into a result). */
export function padRows(x: Float32Array, rows: number, cols: number, fill = 0): Float32Array {
  const out = new Float32Array(rows * pad8(cols)).fill(fill);
  for (let r = 0; r < rows; r++) out.set(x.subarray(r * cols, (r + 1) * cols), r * pad8(cols));
  return out;
}
export function unpadRows(x: Float32Array, rows: number, cols: number): Float32Array {
  const out = new Float32Array(rows * cols);
  for (let r = 0; r < rows; r++) out.set(x.subarray(r * pad8(cols), r * pad8(cols) + cols), r * cols);
  return out;
}
/** Padding elements of a NaN-poisoned output that are no longer NaN (a kernel wrote past a row). */
export function paddingWritten(raw: Float32Array, rows: number, cols: number): number {
  let n = 0;
  for (let r = 0; r < rows; r++) for (let c = cols; c < pad8(cols); c++) if (!Number.isNaN(raw[r * pad8(cols) + c]!)) n++;
  return n;
}

/** Elements with |got − want| > tol(i) (NaN counts: an unwritten element), and the first of them. */
export function mismatches(got: ArrayLike<number>, want: ArrayLike<number>, tol: (i: number) => number): { bad: number; first: string } {
  let bad = 0, first = '';
  for (let i = 0; i < want.length; i++) {
    const g = got[i]!, w = want[i]!;
    if (!(Math.abs(g - w) <= tol(i))) {
      if (!bad) first = `[${i}] got ${g}, want ${w} (tol ${tol(i).toExponential(2)})`;
      bad++;
    }
  }
  return { bad, first };
}

/** Where a training-kernel check runs: the PTX interpreter, or the GPU. */
export type Where = 'sim' | 'gpu';

const cudaTest = testsNeeding(cudaDeviceRequirement());

/** Registers one check twice: interpreted (always) and on the GPU (skipped without one, its buffers freed after). */
export function simAndGpu(title: string, body: (where: Where) => (t: ExecutionContext) => void): void {
  test(`${title} (interpreted)`, body('sim'));
  cudaTest.serial(`${title} (GPU)`, (t) => {
    t.teardown(freeAll);
    body('gpu')(t);
  });
}

/** Each of T rows: K distinct channels of F in random order (a partial Fisher–Yates shuffle), so kernels cannot rely on ascending indices. */
export function randomDistinctIdx(T: number, K: number, F: number, r: () => number): Int32Array {
  const idx = new Int32Array(T * K);
  for (let tt = 0; tt < T; tt++) {
    const perm = Int32Array.from({ length: F }, (_, i) => i);
    for (let k = 0; k < K; k++) {
      const j = k + Math.floor(((r() + 1) / 2) * (F - k));
      [perm[k], perm[j]] = [perm[j]!, perm[k]!];
      idx[tt * K + k] = perm[k]!;
    }
  }
  return idx;
}
