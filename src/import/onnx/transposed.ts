// ONNX's MatMul keeps a linear layer's weight as [in, out] (x·W); mocc's canonical layout is HF's
// [out, in]. This view presents a 2-D tensor transposed, in its stored dtype, without copying the
// file: the transposed bytes are built on first read and kept in a cache of ONE tensor shared by all
// views of an import, so converting reads each weight once and memory stays at the largest matrix.
import { bytesFor, decodeToF32 } from '../../util/dtype.js';
import type { TensorSource } from '../tensor.js';

/** The one transposed tensor kept in memory; the package writer reads weights one after another. */
export class TransposeCache {
  private owner: TransposedTensor | undefined;
  private bytes: Uint8Array | undefined;
  get(t: TransposedTensor, build: () => Uint8Array): Uint8Array {
    if (this.owner !== t || !this.bytes) {
      this.bytes = undefined; // drop the previous one before building the next
      this.bytes = build();
      this.owner = t;
    }
    return this.bytes;
  }
}

export class TransposedTensor implements TensorSource {
  readonly name: string;
  readonly shape: readonly number[];
  readonly byteLength: number;
  constructor(private readonly src: TensorSource, private readonly cache: TransposeCache) {
    if (src.shape.length !== 2) throw new Error(`${src.name}: only 2-D tensors are transposed`);
    this.name = src.name;
    this.shape = [src.shape[1]!, src.shape[0]!];
    this.byteLength = src.byteLength;
  }
  get dtype() {
    return this.src.dtype;
  }
  private all(): Uint8Array {
    return this.cache.get(this, () => {
      const [rows, cols] = this.src.shape as [number, number];
      const eb = bytesFor(this.dtype, 1);
      const inB = this.src.readBytes(0, this.src.byteLength);
      const out = new Uint8Array(inB.length);
      for (let r = 0; r < rows; r++) {
        for (let c = 0; c < cols; c++) {
          const from = (r * cols + c) * eb;
          const to = (c * rows + r) * eb;
          for (let b = 0; b < eb; b++) out[to + b] = inB[from + b]!;
        }
      }
      return out;
    });
  }
  readBytes(start: number, end: number): Uint8Array {
    if (start < 0 || end > this.byteLength || start > end) throw new Error(`${this.name}: byte range [${start}, ${end}) outside tensor of ${this.byteLength} bytes`);
    return this.all().slice(start, end);
  }
  readRowsF32(r0: number, r1: number): Float32Array {
    const row = bytesFor(this.dtype, this.shape[1]!);
    return decodeToF32(this.dtype, this.readBytes(r0 * row, r1 * row), (r1 - r0) * this.shape[1]!);
  }
  toFloat32(): Float32Array {
    return this.readRowsF32(0, this.shape[0]!);
  }
}

/** Rows [r0, r1) of a 2-D tensor: q, k or v of a packed projection (onnxruntime-genai's fused QKV). */
export class RowsTensor implements TensorSource {
  readonly name: string;
  readonly shape: readonly number[];
  readonly byteLength: number;
  private readonly base: number;
  constructor(private readonly src: TensorSource, private readonly r0: number, r1: number) {
    if (src.shape.length !== 2 || r0 < 0 || r1 > src.shape[0]! || r0 >= r1) throw new Error(`${src.name}: rows [${r0}, ${r1}) of [${src.shape}]`);
    const row = bytesFor(src.dtype, src.shape[1]!);
    this.name = `${src.name}[${r0}:${r1}]`;
    this.shape = [r1 - r0, src.shape[1]!];
    this.byteLength = (r1 - r0) * row;
    this.base = r0 * row;
  }
  get dtype() {
    return this.src.dtype;
  }
  readBytes(start: number, end: number): Uint8Array {
    if (start < 0 || end > this.byteLength || start > end) throw new Error(`${this.name}: byte range [${start}, ${end}) outside tensor of ${this.byteLength} bytes`);
    return this.src.readBytes(this.base + start, this.base + end);
  }
  readRowsF32(r0: number, r1: number): Float32Array {
    return this.src.readRowsF32(this.r0 + r0, this.r0 + r1);
  }
  toFloat32(): Float32Array {
    return this.readRowsF32(0, this.shape[0]!);
  }
}
