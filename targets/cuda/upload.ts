// Host-side preparation of device constants: weights with padded rows in their stored type,
// transposed weights, and RoPE cos/sin tables (float64 on the host, like the ref target).
import type { TensorSource } from '../../src/import/tensor.js';
import { encodeFromF32 } from '../../src/util/dtype.js';
import { ropeInvFreq, transpose } from '../ref/kernels.js';
import type { Node } from '../../src/ir/types.js';
import type { ConstDecl } from './program.js';
import { elemBytes, pad8, type WeightDType } from './ptx/layout.js';

export function deviceDType(src: TensorSource): WeightDType {
  return src.dtype === 'f16' || src.dtype === 'bf16' ? src.dtype : 'f32';
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
  const dtype = deviceDType(src);
  const raw = src.dtype === dtype ? src.readBytes(0, src.byteLength) : encodeFromF32('f32', src.toFloat32());
  return padRows(raw, rows, cols, elemBytes(dtype));
}

/** The device image of a host-computed constant. */
export function constImage(c: ConstDecl, weights: ReadonlyMap<string, TensorSource>, maxPos: number): Uint8Array {
  if (c.kind === 'transpose') {
    const src = weights.get(c.of);
    if (!src) throw new Error(`weight ${c.of} is missing`);
    const [rows, cols] = matrixShape(src);
    const dtype = deviceDType(src);
    const t = transpose(src.toFloat32(), rows, cols);
    return padRows(encodeFromF32(dtype, t), cols, rows, elemBytes(dtype));
  }
  const inv = ropeInvFreq({ heads: 1, headDim: c.headDim, theta: c.theta, style: 'half', ...(c.llama3 ? { llama3: c.llama3 } : {}) });
  const half = c.headDim / 2;
  const table = new Float32Array(maxPos * half * 2);
  for (let p = 0; p < maxPos; p++) {
    for (let i = 0; i < half; i++) {
      const ang = p * inv[i]!;
      table[(p * half + i) * 2] = Math.cos(ang);
      table[(p * half + i) * 2 + 1] = Math.sin(ang);
    }
  }
  return new Uint8Array(table.buffer);
}

/** The RoPE cos/sin table a rope or attention node needs, named by everything it depends on. */
export function ropeTableConst(n: Node): ConstDecl {
  const a = n.attrs;
  const name = `rope_table_hd${a.head_dim}_t${a.theta}${a.scaling ? `_l3_${a.factor}_${a.low_freq_factor}_${a.high_freq_factor}_${a.original_max_pos}` : ''}`;
  return {
    name, kind: 'rope', headDim: a.head_dim as number, theta: a.theta as number,
    ...(a.scaling === 'llama3' ? { llama3: { factor: a.factor as number, lowFreqFactor: a.low_freq_factor as number, highFreqFactor: a.high_freq_factor as number, originalMaxPos: a.original_max_pos as number } } : {}),
  };
}
