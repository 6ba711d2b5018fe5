// ONNX external data: the weights of a model in one file beside model.onnx, each initializer at an
// offset recorded in its TensorProto (location, offset, length). Offsets are 16-byte aligned so a
// runtime that maps the file can read every tensor in place.
import { closeSync, openSync, writeSync } from 'node:fs';

const ALIGN = 16;

export class ExternalDataWriter {
  private fd: number | null;
  private size = 0;

  /** `fileName` is what the TensorProtos name (relative to model.onnx); `path` is where it is written. */
  constructor(readonly fileName: string, path: string) {
    this.fd = openSync(path, 'w');
  }

  append(bytes: Uint8Array): { offset: number; length: number } {
    if (this.fd === null) throw new Error(`${this.fileName}: already closed`);
    const pad = (ALIGN - (this.size % ALIGN)) % ALIGN;
    if (pad) writeSync(this.fd, new Uint8Array(pad));
    const offset = this.size + pad;
    let done = 0;
    while (done < bytes.byteLength) done += writeSync(this.fd, bytes, done, bytes.byteLength - done);
    this.size = offset + bytes.byteLength;
    return { offset, length: bytes.byteLength };
  }

  close(): void {
    if (this.fd !== null) closeSync(this.fd);
    this.fd = null;
  }
}
