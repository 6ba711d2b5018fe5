// Running the training kernels' checks (test/targets/cuda-train-*.test.ts) the same way on the CPU
// (test/helpers/ptx-sim.ts, the generated PTX interpreted) and on a GPU: a case names its buffers
// (inputs with their bytes, outputs poisoned with NaN words) and its launches once, and runOn
// returns every buffer's bytes afterwards, wherever it ran.
import type { Kernel } from '../../targets/cuda/ptx/dense.js';
import { ptxModule } from '../../targets/cuda/ptx/builder.js';
import { pad8 } from '../../targets/cuda/ptx/layout.js';
import { download, launch, poisoned, upload } from './cuda.js';
import { PtxSim } from './ptx-sim.js';

/** A buffer's start: given bytes, or `bytes` of NaN words (0x7fc00000: an f32 NaN; as u16 pairs, 0xffff-free garbage). */
export type BufInit = { data: ArrayBufferView } | { poison: number };

export interface TrainLaunch {
  kernel: Kernel;
  grid: [number, number, number];
  block: number;
  /** A buffer's name (its address, u64) or a u32 value, in the kernel's params order. */
  args: (string | number)[];
}

const bytesOf = (b: BufInit) => ('data' in b ? b.data.byteLength : b.poison);

/** Runs the launches in order on the sim or the GPU; every buffer's bytes afterwards. */
export function runOn(where: 'sim' | 'gpu', bufs: Record<string, BufInit>, launches: TrainLaunch[]): Record<string, Uint8Array> {
  const names = Object.keys(bufs);
  if (where === 'sim') {
    const total = names.reduce((n, k) => n + Math.ceil(Math.max(bytesOf(bufs[k]!), 4) / 256) * 256, 256);
    const sim = new PtxSim(total + 256);
    const at = Object.fromEntries(names.map((k) => {
      const b = bufs[k]!;
      return [k, 'data' in b ? sim.uploadBytes(b.data) : sim.alloc(b.poison, NaN)];
    }));
    for (const l of launches) sim.launch(ptxModule([l.kernel.text], 'sm_80'), l.grid, l.block, l.args.map((a) => (typeof a === 'string' ? at[a]!.addr : a)));
    return Object.fromEntries(names.map((k) => [k, new Uint8Array(sim.mem.buffer, at[k]!.addr, bytesOf(bufs[k]!)).slice()]));
  }
  const at = Object.fromEntries(names.map((k) => {
    const b = bufs[k]!;
    return [k, 'data' in b ? upload(b.data) : poisoned(b.poison)];
  }));
  for (const l of launches) if (l.grid.every((g) => g > 0)) launch(l.kernel, l.grid, l.block, l.args.map((a) => (typeof a === 'string' ? at[a]! : a)));
  return Object.fromEntries(names.map((k) => {
    const n = bytesOf(bufs[k]!);
    const out = download(at[k]!, new Float32Array(Math.ceil(Math.max(n, 4) / 4)));
    return [k, new Uint8Array(out.buffer, 0, n).slice()];
  }));
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
