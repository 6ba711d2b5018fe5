// A ggml block-quantized tensor in a file, seen as the dense f32/f16/bf16 tensor it dequantizes to.
// Reads decode only the blocks that cover the asked range, straight from the file: the whole tensor is
// never held in memory unless the caller asks for all of it.
import { bytesFor, decodeToF32, encodeFromF32 } from '../util/dtype.js';
import { dequantizeBlocks, type GgmlBlockType } from './ggml-quants.js';
import { elementCount, type FileHandle, type TensorSource } from './tensor.js';

/** What a block-quantized tensor is dequantized to. */
export type DequantDType = 'f32' | 'f16' | 'bf16';

export class DequantizedFileTensor implements TensorSource {
  readonly byteLength: number;
  /** Bytes the quantized blocks take in the file. */
  readonly storedByteLength: number;
  private readonly elements: number;
  constructor(
    readonly file: FileHandle,
    readonly name: string,
    readonly block: GgmlBlockType,
    readonly shape: readonly number[],
    readonly offset: number,
    /** The dense type this tensor presents (values are d·q rounded once to it). */
    readonly dtype: DequantDType,
  ) {
    this.elements = elementCount(shape);
    if (this.elements % block.blockElems !== 0) throw new Error(`${name}: ${this.elements} elements is not a whole number of ${block.name} blocks`);
    this.storedByteLength = (this.elements / block.blockElems) * block.blockBytes;
    this.byteLength = bytesFor(dtype, this.elements);
  }

  /** Elements [e0, e1) dequantized to float32 (exact ggml values, before rounding to `dtype`). */
  private dequantizeRange(e0: number, e1: number): Float32Array<ArrayBuffer> {
    const be = this.block.blockElems;
    const b0 = Math.floor(e0 / be), b1 = Math.ceil(e1 / be);
    const raw = this.file.read(this.offset + b0 * this.block.blockBytes, (b1 - b0) * this.block.blockBytes);
    const all = dequantizeBlocks(this.block, raw, b1 - b0);
    return e0 === b0 * be && e1 === b1 * be ? all : all.slice(e0 - b0 * be, e1 - b0 * be);
  }

  readBytes(start: number, end: number): Uint8Array {
    if (start < 0 || end > this.byteLength || start > end) throw new Error(`${this.name}: byte range [${start}, ${end}) outside tensor of ${this.byteLength} bytes`);
    const eb = bytesFor(this.dtype, 1);
    const e0 = Math.floor(start / eb), e1 = Math.ceil(end / eb);
    const bytes = encodeFromF32(this.dtype, this.dequantizeRange(e0, e1));
    return bytes.subarray(start - e0 * eb, end - e0 * eb);
  }

  readRowsF32(r0: number, r1: number): Float32Array {
    const row = elementCount(this.shape.slice(1));
    if (r0 < 0 || r1 * row > this.elements || r0 > r1) throw new Error(`${this.name}: rows [${r0}, ${r1}) outside tensor of shape [${this.shape}]`);
    const v = this.dequantizeRange(r0 * row, r1 * row);
    // The values this tensor stands for are the ones rounded to its dtype.
    return this.dtype === 'f32' ? v : decodeToF32(this.dtype, encodeFromF32(this.dtype, v), v.length, v);
  }

  toFloat32(): Float32Array {
    return this.readRowsF32(0, this.shape.length === 0 ? 1 : this.shape[0]!);
  }
}
