// ggml's quantized block types (llama.cpp ggml-common.h / ggml-quants.c), dequantized to float32.
//
// Each dequantizer mirrors, operation by operation, what the `gguf` Python package (gguf-py quants.py)
// computes in numpy float32, so the results are bit-identical to it: each product and sum is rounded to
// float32 with Math.fround where numpy rounds (a float64 product or sum of two float32s rounded once to
// float32 is the correctly rounded float32 result), and f16 scales convert to float32 exactly. (For these
// formats the products d·sc·q fit in float32's 24 bits; only the sums with a min actually round.)
// Element order within a block is ggml's: e.g. Q4_0's 16 bytes hold elements j (low nibble) and j+16 (high).
import { f16ToF32 } from '../util/dtype.js';

export interface GgmlBlockType {
  /** ggml_type id as stored in GGUF. */
  readonly id: number;
  readonly name: string;
  /** Elements per block. */
  readonly blockElems: number;
  /** Bytes per block. */
  readonly blockBytes: number;
  /** Decodes the block at bytes[o, o + blockBytes) into out[at, at + blockElems). */
  dequantize(b: Uint8Array, dv: DataView, o: number, out: Float32Array, at: number): void;
}

const f = Math.fround;
const half = (dv: DataView, o: number): number => f16ToF32(dv.getUint16(o, true));

/** block_q4_0: f16 d; u8 qs[16]. x = d·(q − 8). */
function q4_0(b: Uint8Array, dv: DataView, o: number, out: Float32Array, at: number): void {
  const d = half(dv, o);
  for (let j = 0; j < 16; j++) {
    const q = b[o + 2 + j]!;
    out[at + j] = f(d * ((q & 15) - 8));
    out[at + j + 16] = f(d * ((q >> 4) - 8));
  }
}

/** block_q4_1: f16 d, f16 m; u8 qs[16]. x = d·q + m. */
function q4_1(b: Uint8Array, dv: DataView, o: number, out: Float32Array, at: number): void {
  const d = half(dv, o), m = half(dv, o + 2);
  for (let j = 0; j < 16; j++) {
    const q = b[o + 4 + j]!;
    out[at + j] = f(f(d * (q & 15)) + m);
    out[at + j + 16] = f(f(d * (q >> 4)) + m);
  }
}

/** block_q5_0: f16 d; u32 qh (bit j = 5th bit of element j); u8 qs[16]. x = d·(q − 16). */
function q5_0(b: Uint8Array, dv: DataView, o: number, out: Float32Array, at: number): void {
  const d = half(dv, o);
  const qh = dv.getUint32(o + 2, true);
  for (let j = 0; j < 16; j++) {
    const q = b[o + 6 + j]!;
    out[at + j] = f(d * (((q & 15) | (((qh >>> j) & 1) << 4)) - 16));
    out[at + j + 16] = f(d * (((q >> 4) | (((qh >>> (j + 16)) & 1) << 4)) - 16));
  }
}

/** block_q5_1: f16 d, f16 m; u32 qh; u8 qs[16]. x = d·q + m. */
function q5_1(b: Uint8Array, dv: DataView, o: number, out: Float32Array, at: number): void {
  const d = half(dv, o), m = half(dv, o + 2);
  const qh = dv.getUint32(o + 4, true);
  for (let j = 0; j < 16; j++) {
    const q = b[o + 8 + j]!;
    out[at + j] = f(f(d * ((q & 15) | (((qh >>> j) & 1) << 4))) + m);
    out[at + j + 16] = f(f(d * ((q >> 4) | (((qh >>> (j + 16)) & 1) << 4))) + m);
  }
}

/** block_q8_0: f16 d; i8 qs[32]. x = d·q. */
function q8_0(_b: Uint8Array, dv: DataView, o: number, out: Float32Array, at: number): void {
  const d = half(dv, o);
  for (let j = 0; j < 32; j++) out[at + j] = f(dv.getInt8(o + 2 + j) * d);
}

/**
 * block_q2_K (256 elements, 16 sub-blocks of 16): u8 scales[16] (low nibble scale, high nibble min);
 * u8 qs[64] (2 bits each); f16 d; f16 dmin. Element i = 128h + 32s + l takes bits 2s of qs[32h + l].
 * x = (d·sc)·q − dmin·m.
 */
function q2_K(b: Uint8Array, dv: DataView, o: number, out: Float32Array, at: number): void {
  const d = half(dv, o + 80), dmin = half(dv, o + 82);
  for (let sb = 0; sb < 16; sb++) {
    const sc = b[o + sb]!;
    const dl = f(d * (sc & 15)), ml = f(dmin * (sc >> 4));
    for (let k = 0; k < 16; k++) {
      const i = sb * 16 + k;
      const q = (b[o + 16 + (i >> 7) * 32 + (i & 31)]! >> (2 * ((i >> 5) & 3))) & 3;
      out[at + i] = f(f(dl * q) - ml);
    }
  }
}

/**
 * block_q3_K: u8 hmask[32]; u8 qs[64] (low 2 bits, as in Q2_K); u8 scales[12] (16 six-bit scales, offset 32);
 * f16 d. Element i's high bit is bit i>>5 of hmask[i & 31]; q = low − 4 when that bit is 0. x = (d·sc)·q.
 */
function q3_K(b: Uint8Array, dv: DataView, o: number, out: Float32Array, at: number): void {
  const d = half(dv, o + 108);
  const s = o + 96;
  for (let sb = 0; sb < 16; sb++) {
    const low = sb < 8 ? b[s + sb]! & 15 : b[s + sb - 8]! >> 4;
    const high = (b[s + 8 + (sb & 3)]! >> (2 * (sb >> 2))) & 3;
    const dl = f(d * ((low | (high << 4)) - 32));
    for (let k = 0; k < 16; k++) {
      const i = sb * 16 + k;
      const ql = (b[o + 32 + (i >> 7) * 32 + (i & 31)]! >> (2 * ((i >> 5) & 3))) & 3;
      const hb = (b[o + (i & 31)]! >> (i >> 5)) & 1;
      out[at + i] = f(dl * (ql - (hb ? 0 : 4)));
    }
  }
}

/** The 6-bit scale and min of sub-block j (0..7) from the 12 packed bytes at s (ggml get_scale_min_k4). */
function scaleMinK4(b: Uint8Array, s: number, j: number): [number, number] {
  if (j < 4) return [b[s + j]! & 63, b[s + j + 4]! & 63];
  return [(b[s + j + 4]! & 15) | ((b[s + j - 4]! >> 6) << 4), (b[s + j + 4]! >> 4) | ((b[s + j]! >> 6) << 4)];
}

/**
 * block_q4_K: f16 d, f16 dmin; u8 scales[12] (8 six-bit scales and mins); u8 qs[128]. Sub-block j (32
 * elements) is the low (j even) or high (j odd) nibbles of qs[32·(j>>1) ..]. x = (d·sc)·q − dmin·m.
 */
function q4_K(b: Uint8Array, dv: DataView, o: number, out: Float32Array, at: number): void {
  const d = half(dv, o), dmin = half(dv, o + 2);
  for (let j = 0; j < 8; j++) {
    const [sc, m] = scaleMinK4(b, o + 4, j);
    const dl = f(d * sc), ml = f(dmin * m);
    const qs = o + 16 + (j >> 1) * 32, shift = 4 * (j & 1);
    for (let l = 0; l < 32; l++) out[at + j * 32 + l] = f(f(dl * ((b[qs + l]! >> shift) & 15)) - ml);
  }
}

/** block_q5_K: as Q4_K plus u8 qh[32] (before qs): the 5th bit of element 32j + l is bit j of qh[l]. */
function q5_K(b: Uint8Array, dv: DataView, o: number, out: Float32Array, at: number): void {
  const d = half(dv, o), dmin = half(dv, o + 2);
  for (let j = 0; j < 8; j++) {
    const [sc, m] = scaleMinK4(b, o + 4, j);
    const dl = f(d * sc), ml = f(dmin * m);
    const qs = o + 48 + (j >> 1) * 32, shift = 4 * (j & 1);
    for (let l = 0; l < 32; l++) {
      const q = ((b[qs + l]! >> shift) & 15) | (((b[o + 16 + l]! >> j) & 1) << 4);
      out[at + j * 32 + l] = f(f(dl * q) - ml);
    }
  }
}

/**
 * block_q6_K: u8 ql[128] (low 4 bits), u8 qh[64] (high 2 bits), i8 scales[16], f16 d. In half h (128
 * elements), element r takes nibble r>>6 of ql[64h + (r & 63)] and bits 2·(r>>5) of qh[32h + (r & 31)].
 * x = (d·sc)·(q − 32).
 */
function q6_K(b: Uint8Array, dv: DataView, o: number, out: Float32Array, at: number): void {
  const d = half(dv, o + 208);
  for (let sb = 0; sb < 16; sb++) {
    const dl = f(d * dv.getInt8(o + 192 + sb));
    for (let k = 0; k < 16; k++) {
      const i = sb * 16 + k;
      const h = i >> 7, r = i & 127;
      const ql = (b[o + h * 64 + (r & 63)]! >> (4 * (r >> 6))) & 15;
      const qh = (b[o + 128 + h * 32 + (r & 31)]! >> (2 * (r >> 5))) & 3;
      out[at + i] = f(dl * ((ql | (qh << 4)) - 32));
    }
  }
}

/** The block types mocc dequantizes, by ggml_type id. Sizes as in gguf-py's GGML_QUANT_SIZES. */
export const GGML_BLOCK_TYPES: ReadonlyMap<number, GgmlBlockType> = new Map(
  ([
    [2, 'Q4_0', 32, 18, q4_0],
    [3, 'Q4_1', 32, 20, q4_1],
    [6, 'Q5_0', 32, 22, q5_0],
    [7, 'Q5_1', 32, 24, q5_1],
    [8, 'Q8_0', 32, 34, q8_0],
    [10, 'Q2_K', 256, 84, q2_K],
    [11, 'Q3_K', 256, 110, q3_K],
    [12, 'Q4_K', 256, 144, q4_K],
    [13, 'Q5_K', 256, 176, q5_K],
    [14, 'Q6_K', 256, 210, q6_K],
  ] as const).map(([id, name, blockElems, blockBytes, dequantize]) => [id, { id, name, blockElems, blockBytes, dequantize }]),
);

/** Dequantizes `nBlocks` consecutive blocks of `type` from `bytes` into float32. */
export function dequantizeBlocks(type: GgmlBlockType, bytes: Uint8Array, nBlocks: number, out: Float32Array<ArrayBuffer> = new Float32Array(nBlocks * type.blockElems)): Float32Array<ArrayBuffer> {
  if (bytes.length < nBlocks * type.blockBytes) throw new Error(`${type.name}: ${bytes.length} bytes hold fewer than ${nBlocks} blocks`);
  const dv = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  for (let k = 0; k < nBlocks; k++) type.dequantize(bytes, dv, k * type.blockBytes, out, k * type.blockElems);
  return out;
}
