// A small GGUF writer for tests: builds synthetic files (any tensor type, raw data) and deliberately broken headers.

export const T = { U8: 0, I8: 1, U16: 2, I16: 3, U32: 4, I32: 5, F32: 6, BOOL: 7, STRING: 8, ARRAY: 9, U64: 10, I64: 11, F64: 12 } as const;

export type KvValue = number | bigint | boolean | string | KvValue[];

export interface Kv {
  key: string;
  type: number;
  value: KvValue;
  /** Element type, for type ARRAY (nested arrays: elemType ARRAY, and `elemTypes` for the inner ones). */
  elemType?: number;
  innerElemType?: number;
}

export interface WTensor {
  name: string;
  /** ne[]: innermost first, as GGUF stores them. */
  ne: number[];
  /** ggml type id (0 F32, 1 F16, 8 Q8_0, 30 BF16, 12 Q4_K, ...). */
  type: number;
  data: Uint8Array;
}

export interface GgufWriteOptions {
  version?: number;
  kv: Kv[];
  tensors: WTensor[];
  alignment?: number;
  /** Lie about counts / offsets (for bad-file tests). */
  tensorCount?: bigint;
  kvCount?: bigint;
  offsets?: Record<string, bigint>;
}

class Buf {
  private chunks: Uint8Array[] = [];
  length = 0;
  bytes(b: Uint8Array): void { this.chunks.push(b); this.length += b.length; }
  private num(n: number, f: (dv: DataView) => void): void { const b = new Uint8Array(n); f(new DataView(b.buffer)); this.bytes(b); }
  u8(v: number): void { this.num(1, (d) => d.setUint8(0, v)); }
  i8(v: number): void { this.num(1, (d) => d.setInt8(0, v)); }
  u16(v: number): void { this.num(2, (d) => d.setUint16(0, v, true)); }
  i16(v: number): void { this.num(2, (d) => d.setInt16(0, v, true)); }
  u32(v: number): void { this.num(4, (d) => d.setUint32(0, v, true)); }
  i32(v: number): void { this.num(4, (d) => d.setInt32(0, v, true)); }
  f32(v: number): void { this.num(4, (d) => d.setFloat32(0, v, true)); }
  f64(v: number): void { this.num(8, (d) => d.setFloat64(0, v, true)); }
  u64(v: bigint | number): void { this.num(8, (d) => d.setBigUint64(0, BigInt(v), true)); }
  i64(v: bigint | number): void { this.num(8, (d) => d.setBigInt64(0, BigInt(v), true)); }
  str(s: string): void { const b = new TextEncoder().encode(s); this.u64(b.length); this.bytes(b); }
  pad(align: number): void { const n = (align - (this.length % align)) % align; if (n) this.bytes(new Uint8Array(n)); }
  concat(): Uint8Array {
    const out = new Uint8Array(this.length);
    let o = 0;
    for (const c of this.chunks) { out.set(c, o); o += c.length; }
    return out;
  }
}

function writeValue(b: Buf, type: number, v: KvValue, elemType?: number, innerElemType?: number): void {
  switch (type) {
    case T.U8: b.u8(v as number); break;
    case T.I8: b.i8(v as number); break;
    case T.U16: b.u16(v as number); break;
    case T.I16: b.i16(v as number); break;
    case T.U32: b.u32(v as number); break;
    case T.I32: b.i32(v as number); break;
    case T.F32: b.f32(v as number); break;
    case T.BOOL: b.u8(v ? 1 : 0); break;
    case T.STRING: b.str(v as string); break;
    case T.U64: b.u64(v as bigint | number); break;
    case T.I64: b.i64(v as bigint | number); break;
    case T.F64: b.f64(v as number); break;
    case T.ARRAY: {
      const arr = v as KvValue[];
      const et = elemType ?? T.U32;
      b.u32(et);
      b.u64(arr.length);
      for (const x of arr) writeValue(b, et, x, innerElemType);
      break;
    }
    default: throw new Error(`writer: unknown type ${type}`);
  }
}

export function writeGguf(o: GgufWriteOptions): Uint8Array {
  const align = o.alignment ?? 32;
  const b = new Buf();
  b.bytes(new TextEncoder().encode('GGUF'));
  const version = o.version ?? 3;
  b.u32(version);
  if (version === 1) { b.u32(o.tensors.length); b.u32(o.kv.length); } else {
    b.u64(o.tensorCount ?? BigInt(o.tensors.length));
    b.u64(o.kvCount ?? BigInt(o.kv.length));
  }
  for (const kv of o.kv) {
    b.str(kv.key);
    b.u32(kv.type);
    writeValue(b, kv.type, kv.value, kv.elemType, kv.innerElemType);
  }
  // Data layout: each tensor at the next aligned offset of the data section.
  const offsets: bigint[] = [];
  let off = 0;
  for (const t of o.tensors) {
    off = Math.ceil(off / align) * align;
    offsets.push((o.offsets && Object.hasOwn(o.offsets, t.name) ? o.offsets[t.name] : undefined) ?? BigInt(off)); // a tensor named "constructor" has no override
    off += t.data.length;
  }
  o.tensors.forEach((t, i) => {
    b.str(t.name);
    b.u32(t.ne.length);
    for (const n of t.ne) b.u64(n);
    b.u32(t.type);
    b.u64(offsets[i]!);
  });
  b.pad(align);
  const dataStart = b.length;
  for (const t of o.tensors) {
    const want = dataStart + Math.ceil((b.length - dataStart) / align) * align;
    if (want > b.length) b.bytes(new Uint8Array(want - b.length));
    b.bytes(t.data);
  }
  return b.concat();
}

/** Little-endian f32 bytes of values. */
export function f32Bytes(values: number[] | Float32Array): Uint8Array {
  return new Uint8Array(Float32Array.from(values).buffer);
}

/** Little-endian u16 bytes (raw f16 / bf16 bit patterns). */
export function u16Bytes(bits: number[]): Uint8Array {
  const b = new Uint8Array(bits.length * 2);
  const dv = new DataView(b.buffer);
  bits.forEach((v, i) => dv.setUint16(i * 2, v, true));
  return b;
}

/** Q8_0 blocks: per block of 32, the f16 scale bits then 32 int8s. */
export function q8Bytes(blocks: { scaleBits: number; qs: number[] }[]): Uint8Array {
  const b = new Uint8Array(blocks.length * 34);
  const dv = new DataView(b.buffer);
  blocks.forEach((blk, i) => {
    if (blk.qs.length !== 32) throw new Error('q8_0 block needs 32 int8s');
    dv.setUint16(i * 34, blk.scaleBits, true);
    blk.qs.forEach((q, j) => dv.setInt8(i * 34 + 2 + j, q));
  });
  return b;
}
