// How the CUDA training executor stores a value: row-major with the last axis padded to pad8 (the
// CUDA target's layout, ptx/layout.ts), zeros never relied on. A value of shape [..., w] is
// rows = Π(leading dims) rows of pad8(w) elements: f32 [T, 172] takes T·176 floats, the loss f32[1]
// 8 floats (room for ce_finalize's (mean, n) pair), i32 [T] pad8(T) ints. The memory plan is made in
// these bytes (passes/memory-plan.ts planMemory's `bytesOf`), so the arena has room for the padding.
// A value a node writes over its consumed input is stored in that input's bytes (checkInPlace).
import type { TensorType } from '../../../src/ir/types.js';
import { elementBytes } from '../../../src/util/dtype.js';
import { boundDim, type ValueBytes } from '../../../passes/memory-plan.js';
import { pad8 } from '../ptx/layout.js';
import { opDef } from '../../../src/ir/ops.js';
import type { OpContext } from './ops.js';

/** [rows, width] of a value's padded matrix (a scalar shape [] is one row of one). */
export function rowsAndWidth(t: TensorType, dims: Record<string, number>): [number, number] {
  const s = t.shape.map((d) => boundDim(d, dims));
  if (s.length === 0) return [1, 1];
  return [s.slice(0, -1).reduce((a, b) => a * b, 1), s[s.length - 1]!];
}

/** The bytes a value takes on the device (the memory plan's size function). */
export const deviceBytes: ValueBytes = (t, dims) => {
  const [rows, width] = rowsAndWidth(t, dims);
  return rows * pad8(width) * elementBytes(t.dtype);
};

/**
 * A node whose op consumes an input (src/ir/ops.ts OpDef.consumes: matmul_acc's and rmsnorm_grad_acc's acc) adds into it
 * where it is stored: the memory plan puts output 0 at that input's offset (passes/memory-plan.ts, in
 * place). Refused if it does not (the kernel would add to whatever output 0's bytes held).
 */
export function checkInPlace(c: OpContext): void {
  const slot = opDef(c.node.op).consumes!;
  if (c.output(0) !== c.input(slot)) throw new Error(`training node %${c.node.outputs[0]!.name} (${c.node.op}) adds into its input ${slot}, but the plan stores its output elsewhere`);
}

type Elements = Float32Array | Int32Array | Uint16Array;

/** Host rows of `width` → padded rows (zeros in the padding), as the device stores them. */
export function padRows<T extends Elements>(x: T, rows: number, width: number): T {
  const ld = pad8(width);
  if (ld === width) return x;
  const out = new (x.constructor as new (n: number) => T)(rows * ld);
  for (let r = 0; r < rows; r++) out.set(x.subarray(r * width, (r + 1) * width), r * ld);
  return out;
}

/** Padded device rows → host rows of `width`. */
export function unpadRows<T extends Elements>(x: T, rows: number, width: number): T {
  const ld = pad8(width);
  if (ld === width) return x;
  const out = new (x.constructor as new (n: number) => T)(rows * width);
  for (let r = 0; r < rows; r++) out.set(x.subarray(r * ld, r * ld + width), r * width);
  return out;
}
