// ONNX initializers as lazily read tensors. External data (`location`, `offset`, `length`) is read by
// offset from files inside the model's directory only, each checked against its file's size and against
// dims × dtype before anything is read; raw_data and float_data initializers live in the .onnx itself.
import { existsSync, realpathSync, statSync } from 'node:fs';
import { dirname, isAbsolute, join, relative, resolve } from 'node:path';
import { ONNX_DTYPE } from '../../onnx/proto.js';
import { bytesFor, decodeToF32, type StorageDType } from '../../util/dtype.js';
import { describe, nameText, UserError } from '../../util/errors.js';
import { elementCount, FileHandle, FileTensor, type TensorSource } from '../tensor.js';
import type { OnnxTensorProto } from './model.js';

/** TensorProto.DataLocation.EXTERNAL. */
const EXTERNAL = 1;

/** Bytes per element of the ONNX data types the importer reads. */
const ELEM_BYTES = new Map<number, number>([
  [ONNX_DTYPE.FLOAT, 4], [ONNX_DTYPE.FLOAT16, 2], [ONNX_DTYPE.BFLOAT16, 2], [ONNX_DTYPE.DOUBLE, 8],
  [ONNX_DTYPE.INT64, 8], [ONNX_DTYPE.INT32, 4], [ONNX_DTYPE.INT16, 2], [ONNX_DTYPE.INT8, 1],
  [ONNX_DTYPE.UINT8, 1], [ONNX_DTYPE.UINT16, 2], [ONNX_DTYPE.BOOL, 1],
]);
/** ONNX float types mocc stores weights as. */
const WEIGHT_DTYPE = new Map<number, StorageDType>([[ONNX_DTYPE.FLOAT, 'f32'], [ONNX_DTYPE.FLOAT16, 'f16'], [ONNX_DTYPE.BFLOAT16, 'bf16']]);

/** An initializer's bytes: in the .onnx (raw) or a range of an external file, located and checked. */
export type InitBytes = { kind: 'raw'; bytes: Uint8Array } | { kind: 'file'; file: FileHandle; offset: number };

export interface OnnxInitializer {
  name: string;
  dataType: number;
  dims: number[];
  data: InitBytes | { kind: 'values'; values: number[] };
}

/** Opens each external file once; every location is checked to stay inside the model's directory. */
export class ExternalFiles {
  readonly handles = new Map<string, FileHandle>();
  constructor(readonly modelPath: string) {}

  open(location: string, tensor: string): FileHandle {
    const where = `${this.modelPath}: initializer ${nameText(tensor)}`;
    const parts = location.split(/[\\/]/);
    if (location === '' || isAbsolute(location) || /^[A-Za-z]:/.test(location) || parts.includes('..') || /[\u0000-\u001f]/.test(location)) {
      throw new UserError(`${where} has external data location ${describe(location)}; it must be a relative path inside the model's directory (no absolute path, no "..")`);
    }
    const dir = resolve(dirname(this.modelPath));
    const path = resolve(dir, location);
    const rel = relative(dir, path);
    if (rel.startsWith('..') || isAbsolute(rel) || rel === '') throw new UserError(`${where} has external data location ${describe(location)} outside the model's directory`);
    const known = this.handles.get(path);
    if (known) return known;
    if (!existsSync(path) || !statSync(path).isFile()) throw new UserError(`${where}: external data file ${join(dirname(this.modelPath), location)} does not exist`);
    // A symbolic link inside the directory must not lead out of it either.
    const real = relative(realpathSync(dir), realpathSync(path));
    if (real.startsWith('..') || isAbsolute(real)) throw new UserError(`${where} has external data location ${describe(location)}, a link that leads outside the model's directory`);
    const h = new FileHandle(path, statSync(path).size);
    this.handles.set(path, h);
    return h;
  }

  get paths(): string[] {
    return [...this.handles.keys()];
  }

  close(): void {
    for (const h of this.handles.values()) h.close();
  }
}

const MAX_DIMS = 8;

/** Validates an initializer's record and locates its bytes (nothing is read from external files). */
export function locateInitializer(t: OnnxTensorProto, files: ExternalFiles): OnnxInitializer {
  const name = t.name ?? '';
  const where = `${files.modelPath}: initializer ${nameText(name)}`;
  const dims = t.dims ?? [];
  if (dims.length > MAX_DIMS || dims.some((d) => !Number.isSafeInteger(d) || d < 0)) throw new UserError(`${where} has dims ${describe(dims)}`);
  const dataType = t.dataType ?? 0;
  const elems = elementCount(dims);
  const elemBytes = ELEM_BYTES.get(dataType);
  const want = elemBytes === undefined ? undefined : elems * elemBytes;
  if (t.dataLocation === EXTERNAL) {
    const kv = new Map((t.externalData ?? []).map((e) => [e.key ?? '', e.value ?? '']));
    const location = kv.get('location');
    if (location === undefined) throw new UserError(`${where} has external data with no location`);
    const num = (key: string): number | undefined => {
      const v = kv.get(key);
      if (v === undefined) return undefined;
      if (!/^\d{1,15}$/.test(v)) throw new UserError(`${where} has external data ${key} ${describe(v)}, expected a byte count`);
      return Number(v);
    };
    const offset = num('offset') ?? 0;
    const file = files.open(location, name);
    const length = num('length') ?? file.size - offset;
    if (want === undefined) throw new UserError(`${where} has ONNX data type ${dataType}, which mocc does not read`);
    if (offset + length > file.size) {
      throw new UserError(`${where}: external data offset ${offset} + length ${length} goes past the end of ${file.path} (${file.size} bytes)`);
    }
    if (length !== want) throw new UserError(`${where}: external data length ${length} disagrees with dims [${dims}] × ${elemBytes} bytes = ${want}`);
    return { name, dataType, dims, data: { kind: 'file', file, offset } };
  }
  if (t.rawData && t.rawData.length > 0) {
    if (want === undefined) throw new UserError(`${where} has ONNX data type ${dataType}, which mocc does not read`);
    if (t.rawData.length !== want) throw new UserError(`${where}: raw data of ${t.rawData.length} bytes disagrees with dims [${dims}] × ${elemBytes} bytes = ${want}`);
    return { name, dataType, dims, data: { kind: 'raw', bytes: t.rawData } };
  }
  const values = t.floatData ?? t.int64Data ?? t.int32Data ?? t.doubleData ?? [];
  if (values.length !== elems) throw new UserError(`${where} holds ${values.length} values for dims [${dims}]`);
  return { name, dataType, dims, data: { kind: 'values', values } };
}

/** A tensor whose stored bytes are in memory (an initializer's raw_data). */
class BytesTensor implements TensorSource {
  readonly byteLength: number;
  constructor(readonly name: string, readonly dtype: StorageDType, readonly shape: readonly number[], private readonly bytes: Uint8Array) {
    this.byteLength = bytes.length;
  }
  readBytes(start: number, end: number): Uint8Array {
    return this.bytes.slice(start, end);
  }
  readRowsF32(r0: number, r1: number): Float32Array {
    const row = this.shape.length <= 1 ? 1 : elementCount(this.shape.slice(1));
    return decodeToF32(this.dtype, this.readBytes(bytesFor(this.dtype, r0 * row), bytesFor(this.dtype, r1 * row)), (r1 - r0) * row);
  }
  toFloat32(): Float32Array {
    return decodeToF32(this.dtype, this.bytes, elementCount(this.shape));
  }
}

/** The initializer as a weight tensor in its stored layout; float types only. */
export function initializerTensor(init: OnnxInitializer, where: string): TensorSource {
  const dtype = WEIGHT_DTYPE.get(init.dataType);
  if (!dtype) throw new UserError(`${where}: weight ${nameText(init.name)} has ONNX data type ${init.dataType}; mocc imports float, float16 and bfloat16 weights`);
  const d = init.data;
  switch (d.kind) {
    case 'file': return new FileTensor(d.file, init.name, dtype, init.dims, d.offset);
    case 'raw': return new BytesTensor(init.name, dtype, init.dims, d.bytes);
    case 'values': {
      const f = new Float32Array(d.values);
      return new BytesTensor(init.name, 'f32', init.dims, new Uint8Array(f.buffer));
    }
  }
}

/** Numbers of a small initializer (for constant folding); int64 beyond 2^53 saturates, which only Slice's "to the end" uses. */
export function initializerValues(init: OnnxInitializer): number[] | undefined {
  const d = init.data;
  if (d.kind === 'values') return d.values;
  const bytes = d.kind === 'raw' ? d.bytes : d.file.read(d.offset, elementCount(init.dims) * (ELEM_BYTES.get(init.dataType) ?? 0));
  const dv = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const n = elementCount(init.dims);
  const out = new Array<number>(n);
  switch (init.dataType) {
    case ONNX_DTYPE.FLOAT: for (let i = 0; i < n; i++) out[i] = dv.getFloat32(i * 4, true); break;
    case ONNX_DTYPE.DOUBLE: for (let i = 0; i < n; i++) out[i] = dv.getFloat64(i * 8, true); break;
    case ONNX_DTYPE.INT64: for (let i = 0; i < n; i++) out[i] = Number(dv.getBigInt64(i * 8, true)); break;
    case ONNX_DTYPE.INT32: for (let i = 0; i < n; i++) out[i] = dv.getInt32(i * 4, true); break;
    case ONNX_DTYPE.INT8: for (let i = 0; i < n; i++) out[i] = dv.getInt8(i); break;
    case ONNX_DTYPE.UINT8: case ONNX_DTYPE.BOOL: for (let i = 0; i < n; i++) out[i] = dv.getUint8(i); break;
    case ONNX_DTYPE.FLOAT16: case ONNX_DTYPE.BFLOAT16:
      return [...decodeToF32(init.dataType === ONNX_DTYPE.FLOAT16 ? 'f16' : 'bf16', bytes, n)];
    default: return undefined;
  }
  return out;
}

export const isFloatType = (t: number): boolean => WEIGHT_DTYPE.has(t) || t === ONNX_DTYPE.DOUBLE;
