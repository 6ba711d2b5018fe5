// GGUF (llama.cpp) importer: v2/v3, little-endian, llama architecture, read lazily. F32/F16/BF16 tensors are
// read as stored; ggml block-quantized ones (Q4_0 ... Q8_0, Q2_K ... Q6_K) are dequantized block by block as read.
import { statSync } from 'node:fs';
import { bytesFor, type StorageDType } from '../util/dtype.js';
import { GGML_BLOCK_TYPES } from './ggml-quants.js';
import { DequantizedFileTensor, type DequantDType } from './quant-tensor.js';
import { SpmTokenizer } from '../tokenizer/spm.js';
import type { Tokenizer } from '../tokenizer/tokenizer.js';
import { checkWeights, type Checkpoint, type ModelSpec } from './spec.js';
import { describe, nameText, UserError } from '../util/errors.js';
import { FileHandle, FileTensor, type TensorSource } from './tensor.js';

/** A metadata value. Integers that fit in a double are numbers; larger 64-bit ones stay bigint. */
export type GgufValue = number | bigint | boolean | string | GgufValue[];

export const GGUF_VALUE_TYPE = {
  UINT8: 0, INT8: 1, UINT16: 2, INT16: 3, UINT32: 4, INT32: 5, FLOAT32: 6, BOOL: 7,
  STRING: 8, ARRAY: 9, UINT64: 10, INT64: 11, FLOAT64: 12,
} as const;

/** ggml_type ids → names (for error messages); ids 4, 5, 31-33, 36-38 were removed from ggml. */
export const GGML_TYPE_NAMES: Record<number, string> = {
  0: 'F32', 1: 'F16', 2: 'Q4_0', 3: 'Q4_1', 6: 'Q5_0', 7: 'Q5_1', 8: 'Q8_0', 9: 'Q8_1',
  10: 'Q2_K', 11: 'Q3_K', 12: 'Q4_K', 13: 'Q5_K', 14: 'Q6_K', 15: 'Q8_K',
  16: 'IQ2_XXS', 17: 'IQ2_XS', 18: 'IQ3_XXS', 19: 'IQ1_S', 20: 'IQ4_NL', 21: 'IQ3_S', 22: 'IQ2_S', 23: 'IQ4_XS',
  24: 'I8', 25: 'I16', 26: 'I32', 27: 'I64', 28: 'F64', 29: 'IQ1_M', 30: 'BF16',
  31: 'Q4_0_4_4', 32: 'Q4_0_4_8', 33: 'Q4_0_8_8', 34: 'TQ1_0', 35: 'TQ2_0',
  36: 'IQ4_NL_4_4', 37: 'IQ4_NL_4_8', 38: 'IQ4_NL_8_8', 39: 'MXFP4',
};

/** ggml types read as stored. Block-quantized types are in GGML_BLOCK_TYPES. */
const DENSE_TYPES: Record<number, StorageDType> = { 0: 'f32', 1: 'f16', 30: 'bf16' };

/**
 * What block-quantized tensors become when nobody asks for a type: half the memory of f32, at the cost of
 * rounding each d·q once to f16 (on stories260K Q8_0 it moves the mean NLL by 4e-5 nats: bench/results/quant-nll.json).
 */
export const DEFAULT_DEQUANT_DTYPE: DequantDType = 'f16';

/** The ggml types mocc reads, for messages. */
export const SUPPORTED_GGML_TYPES = ['F32', 'F16', 'BF16', ...[...GGML_BLOCK_TYPES.values()].map((b) => b.name)].join(', ');

export function ggmlTypeName(t: number): string {
  return `${GGML_TYPE_NAMES[t] ?? 'unknown'} (${t})`;
}

/**
 * Bytes a tensor of `ggmlType` and dims `ne` takes in the file; -1 for a type mocc cannot read (its size
 * is unknown to it). A block type needs rows (ne[0]) of whole blocks, as ggml itself does.
 */
function ggmlTensorBytes(where: string, /** already quoted for messages (nameText) */ name: string, ggmlType: number, ne: number[], elements: number): number {
  const dense = DENSE_TYPES[ggmlType];
  if (dense) return bytesFor(dense, elements);
  const block = GGML_BLOCK_TYPES.get(ggmlType);
  if (!block) return -1;
  const row = ne[0] ?? 1;
  if (row % block.blockElems !== 0) {
    throw new UserError(`${where}: ${block.name} tensor ${name} has rows of ${row} elements, not a multiple of its ${block.blockElems}-element block`);
  }
  return (elements / block.blockElems) * block.blockBytes;
}

export interface GgufTensorInfo {
  name: string;
  /** ne[] as stored: innermost dimension first. */
  ne: number[];
  /** Row-major shape, outermost first (ne reversed). */
  shape: number[];
  ggmlType: number;
  /** Offset relative to the start of the data section. */
  relOffset: number;
  /** Absolute file offset of the data. */
  offset: number;
  /** Byte size, or -1 when the type is not one mocc can read (its size is unknown to it). */
  byteLength: number;
}

export interface GgufHeader {
  version: number;
  metadata: Map<string, GgufValue>;
  /** Each metadata key's stored value type (GGUF_VALUE_TYPE), so an integer key can refuse a float. */
  metadataTypes: Map<string, number>;
  tensors: GgufTensorInfo[];
  alignment: number;
  dataOffset: number;
  fileSize: number;
}

const MAX_STRING = 256 * 1024 * 1024;
const MAX_DIMS = 4;
const CHUNK = 1 << 20;
const textDecoder = new TextDecoder('utf-8', { fatal: false });

/** Reads the header sequentially through a sliding window, so no whole-file buffer is ever made. */
class Reader {
  private buf: Uint8Array = new Uint8Array(0);
  private dv: DataView = new DataView(new ArrayBuffer(0));
  private bufStart = 0;
  pos = 0;
  constructor(private readonly file: FileHandle, readonly size: number, private readonly where: string) {}

  get remaining(): number { return this.size - this.pos; }

  /** Makes bytes [pos, pos+n) available; returns their index in buf. */
  private need(n: number, what: string): number {
    if (this.pos + n > this.size) {
      throw new UserError(`${this.where}: truncated GGUF file: reading ${what} needs ${n} bytes at byte ${this.pos}, but the file has ${this.size} bytes`);
    }
    const rel = this.pos - this.bufStart;
    if (rel >= 0 && rel + n <= this.buf.length) return rel;
    const len = Math.min(Math.max(n, CHUNK), this.size - this.pos);
    this.buf = this.file.read(this.pos, len);
    this.dv = new DataView(this.buf.buffer, this.buf.byteOffset, this.buf.byteLength);
    this.bufStart = this.pos;
    return 0;
  }

  u8(what: string): number { const i = this.need(1, what); this.pos += 1; return this.dv.getUint8(i); }
  i8(what: string): number { const i = this.need(1, what); this.pos += 1; return this.dv.getInt8(i); }
  u16(what: string): number { const i = this.need(2, what); this.pos += 2; return this.dv.getUint16(i, true); }
  i16(what: string): number { const i = this.need(2, what); this.pos += 2; return this.dv.getInt16(i, true); }
  u32(what: string): number { const i = this.need(4, what); this.pos += 4; return this.dv.getUint32(i, true); }
  i32(what: string): number { const i = this.need(4, what); this.pos += 4; return this.dv.getInt32(i, true); }
  f32(what: string): number { const i = this.need(4, what); this.pos += 4; return this.dv.getFloat32(i, true); }
  f64(what: string): number { const i = this.need(8, what); this.pos += 8; return this.dv.getFloat64(i, true); }
  u64(what: string): bigint { const i = this.need(8, what); this.pos += 8; return this.dv.getBigUint64(i, true); }
  i64(what: string): bigint { const i = this.need(8, what); this.pos += 8; return this.dv.getBigInt64(i, true); }

  /** A u64 count that must be at most `max` (e.g. what the rest of the file could hold). */
  count(what: string, minBytesEach: number): number {
    const n = this.u64(what);
    const max = BigInt(Math.floor(this.remaining / Math.max(1, minBytesEach)));
    if (n > max) {
      throw new UserError(`${this.where}: absurd ${what} ${n}: the remaining ${this.remaining} bytes of the file cannot hold that many (corrupt or not a GGUF file?)`);
    }
    return Number(n);
  }

  string(what: string): string {
    const n = this.u64(`${what} length`);
    if (n > BigInt(this.remaining) || n > BigInt(MAX_STRING)) {
      throw new UserError(`${this.where}: absurd ${what} length ${n} at byte ${this.pos - 8} (file has ${this.remaining} bytes left)`);
    }
    const len = Number(n);
    const i = this.need(len, what);
    this.pos += len;
    return textDecoder.decode(this.buf.subarray(i, i + len));
  }
}

const INTEGER_TYPES: readonly number[] = [0, 1, 2, 3, 4, 5, 10, 11];

/** Whether a metadata value type is an integer one (a float that happens to be integral is not). */
export function isIntegerType(type: number): boolean {
  return INTEGER_TYPES.includes(type);
}

/** Sizes and counts above this are refused as corrupt (int32 is what every runtime indexes them with). */
const MAX_INT = 2 ** 31 - 1;

function int64ToValue(v: bigint): number | bigint {
  return v >= BigInt(Number.MIN_SAFE_INTEGER) && v <= BigInt(Number.MAX_SAFE_INTEGER) ? Number(v) : v;
}

/** The shortest decimal that rounds to the same float32 (so a stored 1e-5f reads back as 1e-5). */
export function shortestF32(v: number): number {
  if (!Number.isFinite(v)) return v;
  for (let p = 1; p <= 9; p++) {
    const d = Number(v.toPrecision(p));
    if (Math.fround(d) === v) return d;
  }
  return v;
}

const FIXED_SIZE: Record<number, number> = { 0: 1, 1: 1, 2: 2, 3: 2, 4: 4, 5: 4, 6: 4, 7: 1, 10: 8, 11: 8, 12: 8 };

function minValueBytes(type: number): number {
  if (type === GGUF_VALUE_TYPE.STRING) return 8;
  if (type === GGUF_VALUE_TYPE.ARRAY) return 12;
  return FIXED_SIZE[type] ?? 1;
}

function readValue(r: Reader, type: number, key: string, where: string, depth = 0): GgufValue {
  const what = `value of ${key}`;
  switch (type) {
    case 0: return r.u8(what);
    case 1: return r.i8(what);
    case 2: return r.u16(what);
    case 3: return r.i16(what);
    case 4: return r.u32(what);
    case 5: return r.i32(what);
    case 6: return r.f32(what);
    case 7: return r.u8(what) !== 0;
    case 8: return r.string(what);
    case 10: return int64ToValue(r.u64(what));
    case 11: return int64ToValue(r.i64(what));
    case 12: return r.f64(what);
    case 9: {
      if (depth > 8) throw new UserError(`${where}: metadata ${key}: arrays nested too deeply`);
      const elemType = r.u32(`element type of ${key}`);
      if (!(elemType in FIXED_SIZE) && elemType !== 8 && elemType !== 9) {
        throw new UserError(`${where}: metadata ${key}: unknown array element type ${elemType}`);
      }
      const n = r.count(`array length of ${key}`, minValueBytes(elemType));
      const out: GgufValue[] = new Array(n);
      for (let i = 0; i < n; i++) out[i] = readValue(r, elemType, key, where, depth + 1);
      return out;
    }
    default:
      throw new UserError(`${where}: metadata ${key} has unknown value type ${type} (corrupt file?)`);
  }
}

/** Parses the GGUF header (metadata and tensor infos) through `file`, reading it in chunks. */
export function readGgufHeader(file: FileHandle, where: string): GgufHeader {
  const size = file.size;
  const r = new Reader(file, size, where);
  if (size < 8) throw new UserError(`${where}: not a GGUF file (${size} bytes)`);
  const magic = r.u32('magic');
  if (magic !== 0x46554747) throw new UserError(`${where}: not a GGUF file (magic bytes are not "GGUF")`);
  const version = r.u32('version');
  if (version === 1) throw new UserError(`${where}: GGUF version 1 is not supported (it predates 64-bit counts); re-convert the model with a current llama.cpp`);
  if (version !== 2 && version !== 3) {
    if ((version & 0xffff) === 0 && version !== 0) throw new UserError(`${where}: big-endian GGUF files are not supported`);
    throw new UserError(`${where}: unsupported GGUF version ${version} (mocc reads versions 2 and 3)`);
  }
  // Each tensor info needs at least 8 (name length) + 4 (n_dims) + 4 (type) + 8 (offset) bytes; each KV at least 8+4+1.
  const tensorCount = r.count('tensor_count', 24);
  const kvCount = r.count('kv_count', 13);
  const metadata = new Map<string, GgufValue>();
  const metadataTypes = new Map<string, number>();
  for (let i = 0; i < kvCount; i++) {
    const key = r.string(`metadata key ${i}`);
    const kn = nameText(key);
    if (metadata.has(key)) throw new UserError(`${where}: metadata key ${kn} appears twice`);
    const type = r.u32(`value type of ${kn}`);
    metadata.set(key, readValue(r, type, kn, where));
    metadataTypes.set(key, type);
  }
  let alignment = 32;
  const al = metadata.get('general.alignment');
  if (al !== undefined) {
    if (!isIntegerType(metadataTypes.get('general.alignment')!) || typeof al !== 'number' || al <= 0 || al > 2 ** 30 || (al & (al - 1)) !== 0) {
      throw new UserError(`${where}: general.alignment must be a power of two (an integer up to 2^30), got ${describe(al)}`);
    }
    alignment = al;
  }
  const tensors: GgufTensorInfo[] = [];
  const seen = new Set<string>();
  for (let i = 0; i < tensorCount; i++) {
    const rawName = r.string(`name of tensor ${i}`);
    const name = nameText(rawName); // for messages
    if (seen.has(rawName)) throw new UserError(`${where}: tensor ${name} appears twice`);
    seen.add(rawName);
    const nDims = r.u32(`n_dims of tensor ${name}`);
    if (nDims > MAX_DIMS) throw new UserError(`${where}: tensor ${name} has ${nDims} dimensions (GGUF allows at most ${MAX_DIMS})`);
    const ne: number[] = [];
    let elements = 1;
    for (let d = 0; d < nDims; d++) {
      const n = r.u64(`dimension ${d} of tensor ${name}`);
      if (n === 0n || n > BigInt(size) * 8n) {
        throw new UserError(`${where}: absurd dimension ${n} of tensor ${name}`);
      }
      ne.push(Number(n));
      elements *= Number(n);
    }
    if (elements > size * 8) throw new UserError(`${where}: absurd tensor ${name} of shape [${ne.slice().reverse()}] for a ${size}-byte file`);
    const ggmlType = r.u32(`type of tensor ${name}`);
    const relOffsetBig = r.u64(`offset of tensor ${name}`);
    if (relOffsetBig > BigInt(size)) throw new UserError(`${where}: tensor ${name} data offset ${relOffsetBig} is beyond the end of the ${size}-byte file`);
    const relOffset = Number(relOffsetBig);
    if (relOffset % alignment !== 0) {
      throw new UserError(`${where}: tensor ${name} data offset ${relOffset} is not a multiple of the alignment ${alignment}`);
    }
    const byteLength = ggmlTensorBytes(where, name, ggmlType, ne, elements);
    tensors.push({ name: rawName, ne, shape: ne.slice().reverse(), ggmlType, relOffset, offset: -1, byteLength });
  }
  const dataOffset = Math.ceil(r.pos / alignment) * alignment;
  for (const t of tensors) {
    t.offset = dataOffset + t.relOffset;
    if (t.byteLength >= 0 && t.offset + t.byteLength > size) {
      throw new UserError(`${where}: tensor ${nameText(t.name)} data [${t.offset}, ${t.offset + t.byteLength}) lies beyond the end of the file (${size} bytes): truncated file?`);
    }
  }
  checkNoOverlap(tensors, where);
  return { version, metadata, metadataTypes, tensors, alignment, dataOffset, fileSize: size };
}

/** Tensors of known size must not share bytes (sorted by offset; each compared with the one reaching furthest so far). */
function checkNoOverlap(tensors: GgufTensorInfo[], where: string): void {
  const sized = tensors.filter((t) => t.byteLength > 0).sort((a, b) => a.relOffset - b.relOffset);
  let furthest = sized[0];
  for (const t of sized.slice(1)) {
    const end = furthest!.relOffset + furthest!.byteLength;
    if (t.relOffset < end) {
      throw new UserError(`${where}: tensors ${nameText(furthest!.name)} and ${nameText(t.name)} overlap (data [${furthest!.relOffset}, ${end}) and [${t.relOffset}, ${t.relOffset + t.byteLength}) of the data section)`);
    }
    if (t.relOffset + t.byteLength > end) furthest = t;
  }
}

const LAYER_TENSORS: Record<string, string> = {
  attn_norm: 'attn_norm', attn_q: 'wq', attn_k: 'wk', attn_v: 'wv', attn_output: 'wo',
  ffn_norm: 'ffn_norm', ffn_gate: 'w_gate', ffn_up: 'w_up', ffn_down: 'w_down',
};
const GLOBAL_TENSORS: Record<string, string> = { token_embd: 'tok_embeddings', output_norm: 'norm', output: 'output' };

/** GGUF tensor name → canonical name; null for tensors mocc can ignore; undefined for unknown ones. */
function canonicalName(ggufName: string): string | null | undefined {
  const base = ggufName.endsWith('.weight') ? ggufName.slice(0, -'.weight'.length) : undefined;
  if (base === undefined) return undefined;
  if (base in GLOBAL_TENSORS) return GLOBAL_TENSORS[base];
  const m = /^blk\.(\d+)\.(\w+)$/.exec(base);
  if (!m) return undefined;
  if (m[2] === 'attn_rot_embd') return null; // old converters wrote precomputed RoPE tables; unused
  const c = LAYER_TENSORS[m[2]!];
  return c === undefined ? undefined : `layers.${Number(m[1])}.${c}`;
}

export interface GgufImportOptions {
  /** What block-quantized tensors are dequantized to (default DEFAULT_DEQUANT_DTYPE). */
  dequantTo?: DequantDType;
}

/** Imports a llama GGUF file: spec from llama.* metadata, lazily-read tensors, and the embedded SPM tokenizer. */
export function importGguf(path: string, opts: GgufImportOptions = {}): Checkpoint {
  let size: number;
  try {
    const st = statSync(path);
    if (!st.isFile()) throw new UserError(`${path}: not a file (expected a .gguf file)`);
    size = st.size;
  } catch (e) {
    if (e instanceof UserError) throw e;
    throw new UserError(`${path}: cannot read GGUF file: ${(e as Error).message}`);
  }
  let file: FileHandle;
  try {
    file = new FileHandle(path, size);
  } catch (e) {
    throw new UserError(`${path}: cannot open GGUF file: ${(e as Error).message}`);
  }
  try {
    return buildCheckpoint(path, file, readGgufHeader(file, path), opts.dequantTo ?? DEFAULT_DEQUANT_DTYPE);
  } catch (e) {
    file.close();
    throw e;
  }
}

function buildCheckpoint(path: string, file: FileHandle, h: GgufHeader, dequantTo: DequantDType): Checkpoint {
  const md = h.metadata;
  const arch = md.get('general.architecture');
  if (arch === undefined) throw new UserError(`${path}: GGUF file has no general.architecture`);
  if (arch !== 'llama') {
    throw new UserError(`${path}: GGUF architecture is ${describe(arch)}; mocc supports only "llama"`);
  }
  const key = (k: string): GgufValue | undefined => md.get(`llama.${k}`);
  const int = (k: string, dflt?: number): number => {
    const v = key(k);
    if (v === undefined) {
      if (dflt !== undefined) return dflt;
      throw new UserError(`${path}: GGUF metadata llama.${k} is missing`);
    }
    if (Array.isArray(v)) throw new UserError(`${path}: GGUF metadata llama.${k} is a per-layer array; mocc supports only uniform layers`);
    if (!isIntegerType(h.metadataTypes.get(`llama.${k}`)!) || typeof v !== 'number' || v <= 0 || v > MAX_INT) {
      throw new UserError(`${path}: GGUF metadata llama.${k} must be a positive integer below 2^31 stored as an integer type, got ${describe(v)}`);
    }
    return v;
  };
  const float = (k: string, dflt?: number): number => {
    const v = key(k);
    if (v === undefined) {
      if (dflt !== undefined) return dflt;
      throw new UserError(`${path}: GGUF metadata llama.${k} is missing`);
    }
    if (typeof v !== 'number' || !(v > 0) || !Number.isFinite(v)) throw new UserError(`${path}: GGUF metadata llama.${k} must be a positive finite number, got ${describe(v)}`);
    return shortestF32(v);
  };

  const expertCount = key('expert_count');
  if (typeof expertCount === 'number' && expertCount > 0) {
    throw new UserError(`${path}: GGUF is a mixture-of-experts llama (llama.expert_count = ${describe(expertCount)}); mocc supports only dense FFNs`);
  }
  const scalingType = key('rope.scaling.type');
  if (scalingType !== undefined && scalingType !== 'none') {
    throw new UserError(`${path}: GGUF uses RoPE scaling type ${describe(scalingType)}, which mocc does not support for GGUF yet`);
  }

  const dim = int('embedding_length');
  const nLayers = int('block_count');
  const nHeads = int('attention.head_count');
  const nKvHeads = int('attention.head_count_kv', nHeads);
  if (nHeads % nKvHeads !== 0) throw new UserError(`${path}: ${nHeads} attention heads is not a multiple of ${nKvHeads} KV heads`);
  if (key('attention.key_length') === undefined && dim % nHeads !== 0) {
    throw new UserError(`${path}: embedding_length ${dim} is not a multiple of head_count ${nHeads} and attention.key_length is missing`);
  }
  const headDim = int('attention.key_length', dim / nHeads);
  const valueLength = int('attention.value_length', headDim);
  if (valueLength !== headDim) throw new UserError(`${path}: attention.value_length ${valueLength} differs from key_length ${headDim}; not supported`);
  const ropeDims = int('rope.dimension_count', headDim);
  if (ropeDims !== headDim) throw new UserError(`${path}: partial RoPE (rope.dimension_count ${ropeDims} of head dim ${headDim}) is not supported`);

  const byName = new Map(h.tensors.map((t) => [t.name, t]));
  if (byName.has('rope_freqs.weight')) {
    throw new UserError(`${path}: GGUF has rope_freqs.weight (llama3-style RoPE frequency scaling), which mocc does not support for GGUF yet`);
  }
  const tokens = md.get('tokenizer.ggml.tokens');
  const embd = byName.get('token_embd.weight');
  let vocabSize: number;
  if (key('vocab_size') !== undefined) vocabSize = int('vocab_size');
  else if (embd && embd.shape.length === 2) vocabSize = embd.shape[0]!;
  else if (Array.isArray(tokens)) vocabSize = tokens.length;
  else throw new UserError(`${path}: cannot tell the vocabulary size (no token_embd.weight, no tokenizer.ggml.tokens)`);

  const idKey = (k: string, dflt: number): number => {
    const v = md.get(k);
    if (v === undefined) return dflt;
    if (!isIntegerType(h.metadataTypes.get(k)!) || typeof v !== 'number' || v < 0 || v > MAX_INT) {
      throw new UserError(`${path}: GGUF metadata ${k} must be a token id, got ${describe(v)}`);
    }
    return v;
  };
  const bosId = idKey('tokenizer.ggml.bos_token_id', 1);
  const eosId = idKey('tokenizer.ggml.eos_token_id', 2);

  const weights = new Map<string, TensorSource>();
  for (const t of h.tensors) {
    const canon = canonicalName(t.name);
    if (canon === null) continue;
    if (canon === undefined) {
      throw new UserError(`${path}: unexpected tensor ${nameText(t.name)} in a llama GGUF (mocc does not know what it does)`);
    }
    const prev = weights.get(canon);
    if (prev) throw new UserError(`${path}: tensors ${nameText(prev.name)} and ${nameText(t.name)} are both ${canon}`); // blk.07.… and blk.7.…
    weights.set(canon, ggufTensorSource(path, file, t, dequantTo));
  }
  // Converters often write the tied head out as a second copy of the embedding: treat a byte-identical copy as tied.
  const out = weights.get('output');
  const emb = weights.get('tok_embeddings');
  if (out && emb && sameBytes(out, emb)) weights.delete('output');

  const spec: ModelSpec = {
    arch: 'llama',
    dim, nLayers, nHeads, nKvHeads, headDim,
    dFfn: int('feed_forward_length'),
    vocabSize,
    normEps: float('attention.layer_norm_rms_epsilon'),
    maxSeqLen: int('context_length'),
    // GGUF llama stores Q/K for llama.cpp's "normal" RoPE, which rotates adjacent pairs (2i, 2i+1).
    rope: { theta: float('rope.freq_base', 10000), style: 'interleaved' },
    tiedEmbeddings: !weights.has('output'),
    bosId, eosId,
  };
  checkWeights(spec, weights, path);

  return {
    format: 'gguf',
    path,
    files: [path],
    spec,
    weights,
    tokenizer: embeddedTokenizer(path, md, bosId, eosId),
    close: () => file.close(),
  };
}

/** The tensor `t` of an open GGUF file: read as stored (F32/F16/BF16) or dequantized to `dequantTo` as read. */
export function ggufTensorSource(path: string, file: FileHandle, t: GgufTensorInfo, dequantTo: DequantDType): TensorSource {
  const dense = DENSE_TYPES[t.ggmlType];
  if (dense) return new FileTensor(file, t.name, dense, t.shape, t.offset);
  const block = GGML_BLOCK_TYPES.get(t.ggmlType);
  if (block) return new DequantizedFileTensor(file, t.name, block, t.shape, t.offset, dequantTo);
  throw new UserError(`${path}: tensor ${nameText(t.name)} has ggml type ${ggmlTypeName(t.ggmlType)}, which mocc does not support; supported: ${SUPPORTED_GGML_TYPES}`);
}

/** Whether two tensors have the same dtype, shape and bytes (compared chunk by chunk; stops at the first difference). */
function sameBytes(a: TensorSource, b: TensorSource): boolean {
  if (a.dtype !== b.dtype || a.byteLength !== b.byteLength || a.shape.length !== b.shape.length) return false;
  if (a.shape.some((s, i) => s !== b.shape[i])) return false;
  const step = 4 << 20;
  for (let o = 0; o < a.byteLength; o += step) {
    const e = Math.min(a.byteLength, o + step);
    const x = a.readBytes(o, e), y = b.readBytes(o, e);
    for (let i = 0; i < x.length; i++) if (x[i] !== y[i]) return false;
  }
  return true;
}

/**
 * The embedded tokenizer when it is SPM-style (tokenizer.ggml.model 'llama'). Other models (e.g. 'gpt2' byte-level
 * BPE with tokenizer.ggml.merges) are left undefined: mocc has no tokenizer built from GGUF merges, so the user must
 * give a tokenizer file.
 */
function embeddedTokenizer(path: string, md: Map<string, GgufValue>, bosId: number, eosId: number): Tokenizer | undefined {
  if (md.get('tokenizer.ggml.model') !== 'llama') return undefined;
  const tokens = md.get('tokenizer.ggml.tokens');
  const scores = md.get('tokenizer.ggml.scores');
  if (!Array.isArray(tokens) || !tokens.every((t) => typeof t === 'string')) {
    throw new UserError(`${path}: tokenizer.ggml.tokens is missing or not an array of strings`);
  }
  let sc: number[];
  if (scores === undefined) sc = new Array<number>(tokens.length).fill(0);
  else if (Array.isArray(scores) && scores.length === tokens.length && scores.every((s) => typeof s === 'number')) sc = scores as number[];
  else throw new UserError(`${path}: tokenizer.ggml.scores must be ${tokens.length} numbers`);
  const unk = md.get('tokenizer.ggml.unknown_token_id');
  return SpmTokenizer.fromVocab(tokens as string[], sc, bosId, eosId, { unkId: typeof unk === 'number' ? unk : 0 });
}
