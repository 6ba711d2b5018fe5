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
