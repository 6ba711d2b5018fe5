// Element types and the float conversions every importer and target shares.

/**
 * Element types a stored tensor can have. GGUF block-quantized types (Q8_0, Q4_K, ...) are not among
 * them: the importer dequantizes them to one of these (src/import/ggml-quants.ts).
 */
export type StorageDType = 'f32' | 'f16' | 'bf16';
/** Element types an IR value can have (u16: channel indices saved for backward, as the MoC paper stores them). */
export type DType = 'f32' | 'f16' | 'bf16' | 'i32' | 'u16';

/** Bytes one element of an IR value takes. */
export function elementBytes(dtype: DType): number {
  switch (dtype) {
    case 'f32': case 'i32': return 4;
    case 'f16': case 'bf16': case 'u16': return 2;
  }
}

/** Bytes that `elements` elements of `dtype` take. */
export function bytesFor(dtype: StorageDType, elements: number): number {
  switch (dtype) {
    case 'f32': return elements * 4;
    case 'f16': case 'bf16': return elements * 2;
  }
}

const f32buf = new Float32Array(1);
const u32buf = new Uint32Array(f32buf.buffer);

export function f16ToF32(h: number): number {
  const s = (h & 0x8000) ? -1 : 1;
  const e = (h >> 10) & 0x1f;
  const m = h & 0x3ff;
  if (e === 0) return s * m * 2 ** -24;
  if (e === 31) return m ? NaN : s * Infinity;
  return s * (1 + m / 1024) * 2 ** (e - 15);
}

/** float32 → IEEE half, round to nearest even (what torch and numpy do). */
export function f32ToF16(v: number): number {
  f32buf[0] = v;
  const x = u32buf[0]!;
  const sign = (x >>> 16) & 0x8000;
  const exp = (x >>> 23) & 0xff;
  let mant = x & 0x7fffff;
  if (exp === 0xff) return sign | 0x7c00 | (mant ? 0x200 : 0);
  let e = exp - 127 + 15;
  if (e >= 0x1f) return sign | 0x7c00;
  if (e <= 0) {
    if (e < -10) return sign;
    mant |= 0x800000;
    const shift = 14 - e;
    let half = mant >>> shift;
    const rem = mant & ((1 << shift) - 1);
    const mid = 1 << (shift - 1);
    if (rem > mid || (rem === mid && (half & 1))) half++;
    return sign | half;
  }
  let half = (e << 10) | (mant >>> 13);
  const rem = mant & 0x1fff;
  if (rem > 0x1000 || (rem === 0x1000 && (half & 1))) half++;
  return sign | half;
}

export function bf16ToF32(b: number): number {
  u32buf[0] = b << 16;
  return f32buf[0]!;
}

/** float32 → bfloat16, round to nearest even; NaN stays NaN. */
export function f32ToBf16(v: number): number {
  f32buf[0] = v;
  const x = u32buf[0]!;
  if ((x & 0x7fffffff) > 0x7f800000) return ((x >>> 16) | 0x40) & 0xffff;
  return ((x + 0x7fff + ((x >>> 16) & 1)) >>> 16) & 0xffff;
}

/** Decodes `count` elements of `dtype` from little-endian bytes into float32. */
export function decodeToF32(dtype: StorageDType, bytes: Uint8Array, count: number, out = new Float32Array(count)): Float32Array {
  const dv = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  switch (dtype) {
    case 'f32':
      for (let i = 0; i < count; i++) out[i] = dv.getFloat32(i * 4, true);
      break;
    case 'f16':
      for (let i = 0; i < count; i++) out[i] = f16ToF32(dv.getUint16(i * 2, true));
      break;
    case 'bf16':
      for (let i = 0; i < count; i++) out[i] = bf16ToF32(dv.getUint16(i * 2, true));
      break;
  }
  return out;
}

/** Encodes float32 values as f32/f16/bf16 little-endian bytes. */
export function encodeFromF32(dtype: 'f32' | 'f16' | 'bf16', values: Float32Array): Uint8Array {
  if (dtype === 'f32') return new Uint8Array(values.buffer.slice(values.byteOffset, values.byteOffset + values.byteLength));
  const out = new Uint16Array(values.length);
  const conv = dtype === 'f16' ? f32ToF16 : f32ToBf16;
  for (let i = 0; i < values.length; i++) out[i] = conv(values[i]!);
  return new Uint8Array(out.buffer);
}
