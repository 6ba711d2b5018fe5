// The device image of a weight or host-computed constant, the same bytes for every GPU target:
//  - a weight keeps its stored type when that is f16 or bf16, and is f32 otherwise;
//  - a matrix is row-major with its row stride padded to a multiple of 8 elements (pad8), the
//    padding zero, so kernels read whole 16-byte chunks of any row without tail cases; a vector is
//    one row, and a tensor of rank > 2 is rows × (the product of the other axes);
//  - a transposed weight is transposed on the host, then stored like a weight.
import type { TensorSource } from '../../src/import/tensor.js';
import { encodeFromF32 } from '../../src/util/dtype.js';
import { transpose } from '../ref/kernels.js';
import type { ConstDecl } from './program.js';
import { ropeTableImage } from './rope-table.js';

export type WeightDType = 'f32' | 'f16' | 'bf16';

/** Elements a row is padded to a multiple of. */
export const ROW_ALIGN = 8;
export const pad8 = (n: number): number => Math.ceil(n / ROW_ALIGN) * ROW_ALIGN;
export const elemBytes = (d: WeightDType): number => (d === 'f32' ? 4 : 2);

/** The type a weight stored as `dtype` has on the device. */
export function deviceDType(dtype: string): WeightDType {
  return dtype === 'f16' || dtype === 'bf16' ? dtype : 'f32';
}

/** Rows × cols of a weight as stored on the device (a vector is one row). */
export function matrixShape(src: { shape: readonly number[] }): [number, number] {
  return src.shape.length === 1 ? [1, src.shape[0]!] : [src.shape[0]!, src.shape.slice(1).reduce((a, b) => a * b, 1)];
}

/** Pads each row of `raw` (rows × cols elements of `bytes` each) to pad8(cols) with zeros. */
export function padRows(raw: Uint8Array, rows: number, cols: number, bytes: number): Uint8Array {
  const ld = pad8(cols);
  if (ld === cols) return raw;
  const out = new Uint8Array(rows * ld * bytes);
  for (let r = 0; r < rows; r++) out.set(raw.subarray(r * cols * bytes, (r + 1) * cols * bytes), r * ld * bytes);
  return out;
}

/** The device image of a weight: its stored bytes, rows padded. */
export function weightImage(src: TensorSource): Uint8Array {
  const [rows, cols] = matrixShape(src);
  const dtype = deviceDType(src.dtype);
  const raw = src.dtype === dtype ? src.readBytes(0, src.byteLength) : encodeFromF32('f32', src.toFloat32());
  return padRows(raw, rows, cols, elemBytes(dtype));
}

/** The device image of a host-computed constant. */
export function constImage(c: ConstDecl, weights: ReadonlyMap<string, TensorSource>, maxPos: number): Uint8Array {
  if (c.kind === 'rope') return ropeTableImage(c, maxPos);
  const src = weights.get(c.of);
  if (!src) throw new Error(`weight ${c.of} is missing`);
  const [rows, cols] = matrixShape(src);
  const dtype = deviceDType(src.dtype);
  const t = transpose(src.toFloat32(), rows, cols);
  return padRows(encodeFromF32(dtype, t), cols, rows, elemBytes(dtype));
}
