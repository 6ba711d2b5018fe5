// llama2.c v0 checkpoints (.bin): a 7 × int32 header, then f32 tensors back to back (fixtures/README.md).
import { statSync } from 'node:fs';
import type { Checkpoint, ModelSpec } from './spec.js';
import { checkWeights, UserError } from './spec.js';
import type { TensorSource } from './tensor.js';
import { elementCount, FileHandle, FileTensor } from './tensor.js';

const HEADER_BYTES = 28;

export function importLlama2c(path: string): Checkpoint {
  const size = statSync(path).size;
  if (size < HEADER_BYTES) throw new UserError(`${path}: too short for a llama2.c checkpoint (${size} bytes; the header alone is 28)`);
  const file = new FileHandle(path, size);
  try {
    const hdr = new DataView(file.read(0, HEADER_BYTES).buffer);
    const [dim, hidden, nLayers, nHeads, nKv, rawVocab, seqLen] = Array.from({ length: 7 }, (_, i) => hdr.getInt32(i * 4, true)) as [number, number, number, number, number, number, number];
    const vocab = Math.abs(rawVocab);
    const sane = (v: number) => v > 0 && v < 1 << 24;
    if (![dim, hidden, nLayers, nHeads, nKv, vocab, seqLen].every(sane) || dim % nHeads !== 0 || nHeads % nKv !== 0 || (dim / nHeads) % 2 !== 0) {
      throw new UserError(`${path}: not a llama2.c v0 checkpoint (header dim=${dim} hidden=${hidden} layers=${nLayers} heads=${nHeads} kv_heads=${nKv} vocab=${rawVocab} seq_len=${seqLen})`);
    }
    const hd = dim / nHeads;
    // The file's tensor order (fixtures/README.md); a stacked tensor [L, ...] is one tensor per layer.
    const layout: Array<{ file: string; canon: string; shape: number[]; perLayer?: true }> = [
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
      ...(rawVocab < 0 ? [{ file: 'wcls', canon: 'output', shape: [vocab, dim] }] : []),
    ];
    // The header fixes the file's size exactly. Checked before any per-layer list is built, so a corrupt
    // layer count is refused at once, and weights are never read from shifted offsets.
    const implied = HEADER_BYTES + 4 * layout.reduce((sum, e) => sum + elementCount(e.shape) * (e.perLayer ? nLayers : 1), 0);
    if (implied !== size) {
      throw new UserError(`${path}: ${implied > size ? 'truncated llama2.c checkpoint' : 'not a llama2.c v0 checkpoint'}: the header (dim=${dim} hidden=${hidden} layers=${nLayers} heads=${nHeads} kv_heads=${nKv} vocab=${rawVocab} seq_len=${seqLen}) implies ${implied} bytes, the file has ${size}`);
    }
    const spec: ModelSpec = {
      arch: 'llama', dim, nLayers, nHeads, nKvHeads: nKv, headDim: hd, dFfn: hidden, vocabSize: vocab,
      normEps: 1e-5, maxSeqLen: seqLen, rope: { theta: 10000, style: 'interleaved' },
      tiedEmbeddings: rawVocab > 0, bosId: 1, eosId: 2,
    };
    const weights = new Map<string, TensorSource>();
    let offset = HEADER_BYTES;
    for (const e of layout) {
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
