// llama2.c v0 checkpoints (.bin): a 7 × int32 header, then f32 tensors back to back (fixtures/README.md).
import { statSync } from 'node:fs';
import type { Checkpoint, ModelSpec } from './spec.js';
import { checkWeights } from './spec.js';
import { UserError } from '../util/errors.js';
import type { TensorSource } from './tensor.js';
import { elementCount, FileHandle, FileTensor } from './tensor.js';

export const LLAMA2C_HEADER_BYTES = 28;

/** The 7 int32 fields of a llama2.c v0 header (fixtures/README.md). */
export interface Llama2cHeader {
  dim: number; hidden: number; nLayers: number; nHeads: number; nKv: number;
  /** vocab_size as stored: negative means the file holds its own classifier (wcls). */
  rawVocab: number;
  seqLen: number;
}

/** One entry of the file's tensor order; a stacked tensor [L, ...] (perLayer) is one tensor per layer. */
interface LayoutEntry { file: string; canon: string; shape: number[]; perLayer?: true }

/**
 * The header at the start of `bytes` when it is a sane one, else undefined. Random bytes and text
 * almost never pass: every field must be a positive int32 below 2^24 (text reads as ≥ 0x20202020),
 * with dim % heads = 0, heads % kv_heads = 0 and an even head_dim (RoPE rotates pairs).
 */
export function readLlama2cHeader(bytes: Uint8Array): Llama2cHeader | undefined {
  if (bytes.length < LLAMA2C_HEADER_BYTES) return undefined;
  const dv = new DataView(bytes.buffer, bytes.byteOffset, LLAMA2C_HEADER_BYTES);
  const [dim, hidden, nLayers, nHeads, nKv, rawVocab, seqLen] = Array.from({ length: 7 }, (_, i) => dv.getInt32(i * 4, true)) as [number, number, number, number, number, number, number];
  const sane = (v: number) => v > 0 && v < 1 << 24;
  if (![dim, hidden, nLayers, nHeads, nKv, Math.abs(rawVocab), seqLen].every(sane)) return undefined;
  if (dim % nHeads !== 0 || nHeads % nKv !== 0 || (dim / nHeads) % 2 !== 0) return undefined;
  return { dim, hidden, nLayers, nHeads, nKv, rawVocab, seqLen };
}

/** The file's tensor order (fixtures/README.md). */
function layoutOf(h: Llama2cHeader): LayoutEntry[] {
  const { dim, hidden, nKv, seqLen } = h;
  const vocab = Math.abs(h.rawVocab);
  const hd = dim / h.nHeads;
  return [
    { file: 'token_embedding', canon: 'tok_embeddings', shape: [vocab, dim] },
    { file: 'rms_att', canon: 'attn_norm', shape: [dim], perLayer: true },
    { file: 'wq', canon: 'wq', shape: [dim, dim], perLayer: true },
    { file: 'wk', canon: 'wk', shape: [nKv * hd, dim], perLayer: true },
    { file: 'wv', canon: 'wv', shape: [nKv * hd, dim], perLayer: true },
    { file: 'wo', canon: 'wo', shape: [dim, dim], perLayer: true },
    { file: 'rms_ffn', canon: 'ffn_norm', shape: [dim], perLayer: true },
    { file: 'w1', canon: 'w_gate', shape: [hidden, dim], perLayer: true },
    { file: 'w2', canon: 'w_down', shape: [dim, hidden], perLayer: true },
    { file: 'w3', canon: 'w_up', shape: [hidden, dim], perLayer: true },
    { file: 'rms_final', canon: 'norm', shape: [dim] },
    // freq_cis_real and freq_cis_imag: [seq_len, hd/2] each, unused.
    { file: 'freq_cis', canon: '', shape: [seqLen, hd] },
    ...(h.rawVocab < 0 ? [{ file: 'wcls', canon: 'output', shape: [vocab, dim] }] : []),
  ];
}

/** The exact size in bytes of a llama2.c file with this header: the header fixes it. */
export function llama2cImpliedSize(h: Llama2cHeader): number {
  return LLAMA2C_HEADER_BYTES + 4 * layoutOf(h).reduce((sum, e) => sum + elementCount(e.shape) * (e.perLayer ? h.nLayers : 1), 0);
}

const headerText = (h: Llama2cHeader) => `dim=${h.dim} hidden=${h.hidden} layers=${h.nLayers} heads=${h.nHeads} kv_heads=${h.nKv} vocab=${h.rawVocab} seq_len=${h.seqLen}`;

export function importLlama2c(path: string): Checkpoint {
  const size = statSync(path).size;
  if (size < LLAMA2C_HEADER_BYTES) throw new UserError(`${path}: too short for a llama2.c checkpoint (${size} bytes; the header alone is 28)`);
  const file = new FileHandle(path, size);
  try {
    const raw = file.read(0, LLAMA2C_HEADER_BYTES);
    const h = readLlama2cHeader(raw);
    if (!h) {
      const dv = new DataView(raw.buffer, raw.byteOffset, LLAMA2C_HEADER_BYTES);
      const f = Array.from({ length: 7 }, (_, i) => dv.getInt32(i * 4, true));
      throw new UserError(`${path}: not a llama2.c v0 checkpoint (header dim=${f[0]} hidden=${f[1]} layers=${f[2]} heads=${f[3]} kv_heads=${f[4]} vocab=${f[5]} seq_len=${f[6]})`);
    }
    const { dim, hidden, nLayers, nHeads, nKv, rawVocab, seqLen } = h;
    const vocab = Math.abs(rawVocab);
    const hd = dim / nHeads;
    // Checked before any per-layer list is built, so a corrupt layer count is refused at once, and
    // weights are never read from shifted offsets.
    const implied = llama2cImpliedSize(h);
    if (implied !== size) {
      throw new UserError(`${path}: ${implied > size ? 'truncated llama2.c checkpoint' : 'not a llama2.c v0 checkpoint'}: the header (${headerText(h)}) implies ${implied} bytes, the file has ${size}`);
    }
    const spec: ModelSpec = {
      arch: 'llama', dim, nLayers, nHeads, nKvHeads: nKv, headDim: hd, dFfn: hidden, vocabSize: vocab,
      normEps: 1e-5, maxSeqLen: seqLen, rope: { theta: 10000, style: 'interleaved' },
      tiedEmbeddings: rawVocab > 0, bosId: 1, eosId: 2,
    };
    const weights = new Map<string, TensorSource>();
    let offset = LLAMA2C_HEADER_BYTES;
    for (const e of layoutOf(h)) {
      for (let l = 0; l < (e.perLayer ? nLayers : 1); l++) {
        const t = new FileTensor(file, e.perLayer ? `${e.file}[${l}]` : e.file, 'f32', e.shape, offset);
        offset += t.byteLength;
        if (e.canon) weights.set(e.perLayer ? `layers.${l}.${e.canon}` : e.canon, t);
      }
    }
    checkWeights(spec, weights, path);
    return { format: 'llama2c', path, files: [path], spec, weights, close: () => file.close() };
  } catch (e) {
    file.close();
    throw e;
  }
}
