// A tensor stored in a checkpoint file, read lazily by offset: nothing is loaded until asked for.
import { closeSync, openSync, readSync } from 'node:fs';
import { bytesFor, decodeToF32, type StorageDType } from '../util/dtype.js';

export interface TensorSource {
  /** Name as the source file spells it (for error messages). */
  readonly name: string;
  readonly dtype: StorageDType;
  /** Row-major, outermost first (GGUF's reversed ne[] order is already undone). */
  readonly shape: readonly number[];
  readonly byteLength: number;
  /** Raw stored bytes [start, end) of this tensor. */
  readBytes(start: number, end: number): Uint8Array;
  /** Rows [r0, r1) of the tensor viewed as [shape[0], rest], decoded to float32. */
  readRowsF32(r0: number, r1: number): Float32Array;
  /** The whole tensor decoded to float32. */
  toFloat32(): Float32Array;
}

export function elementCount(shape: readonly number[]): number {
  return shape.reduce((a, b) => a * b, 1);
}

/** Shared open file: importers open each file once and hand out tensors that read from it. */
export class FileHandle {
  private fd: number | null;
  constructor(readonly path: string, readonly size: number) {
    this.fd = openSync(path, 'r');
  }
  read(position: number, length: number): Uint8Array {
    if (this.fd === null) throw new Error(`${this.path}: file already closed`);
    const buf = new Uint8Array(length);
    let done = 0;
    while (done < length) {
      const n = readSync(this.fd, buf, done, length - done, position + done);
      if (n === 0) throw new Error(`${this.path}: unexpected end of file at byte ${position + done} (wanted ${length} bytes at ${position})`);
      done += n;
    }
    return buf;
  }
  close(): void {
    if (this.fd !== null) closeSync(this.fd);
    this.fd = null;
  }
}

/** A tensor at a byte offset of an open file. The caller has checked offset+length against the file. */
export class FileTensor implements TensorSource {
  readonly byteLength: number;
  constructor(
    readonly file: FileHandle,
    readonly name: string,
    readonly dtype: StorageDType,
    readonly shape: readonly number[],
    readonly offset: number,
  ) {
    this.byteLength = bytesFor(dtype, elementCount(shape));
  }
  readBytes(start: number, end: number): Uint8Array {
    if (start < 0 || end > this.byteLength || start > end) throw new Error(`${this.name}: byte range [${start}, ${end}) outside tensor of ${this.byteLength} bytes`);
    return this.file.read(this.offset + start, end - start);
  }
  readRowsF32(r0: number, r1: number): Float32Array {
    // A vector's rows are single elements, which a block type (q8_0: 32 to a block) cannot address one by
    // one: decode the whole vector (vectors are small) and cut the rows out.
    if (this.shape.length <= 1) return this.decodeAll().slice(r0, r1);
    const rowElems = elementCount(this.shape.slice(1));
    const rowBytes = bytesFor(this.dtype, rowElems);
    const bytes = this.readBytes(r0 * rowBytes, r1 * rowBytes);
    return decodeToF32(this.dtype, bytes, (r1 - r0) * rowElems);
  }
  toFloat32(): Float32Array {
    return this.shape.length <= 1 ? this.decodeAll() : this.readRowsF32(0, this.shape[0]!);
  }
  private decodeAll(): Float32Array {
    return decodeToF32(this.dtype, this.readBytes(0, this.byteLength), elementCount(this.shape));
  }
}

/** A tensor held in memory (tests, derived weights). */
export class MemoryTensor implements TensorSource {
  readonly dtype = 'f32' as const;
  readonly byteLength: number;
  constructor(readonly name: string, readonly shape: readonly number[], readonly data: Float32Array) {
    if (data.length !== elementCount(shape)) throw new Error(`${name}: ${data.length} values for shape [${shape}]`);
    this.byteLength = data.byteLength;
  }
  readBytes(start: number, end: number): Uint8Array {
    return new Uint8Array(this.data.buffer, this.data.byteOffset + start, end - start).slice();
  }
  readRowsF32(r0: number, r1: number): Float32Array {
    const row = elementCount(this.shape.slice(1));
    return this.data.slice(r0 * row, r1 * row);
  }
  toFloat32(): Float32Array {
    return this.data.slice();
  }
}
