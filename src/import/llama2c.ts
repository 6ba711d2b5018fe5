// llama2.c v0 checkpoints (.bin): a 7 × int32 header, then f32 tensors back to back (fixtures/README.md).
import { statSync } from 'node:fs';
import type { Checkpoint, ModelSpec } from './spec.js';
import { checkWeights, UserError } from './spec.js';
import type { TensorSource } from './tensor.js';
import { FileHandle, FileTensor } from './tensor.js';

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
    if (![dim, hidden, nLayers, nHeads, nKv, vocab, seqLen].every(sane) || dim % nHeads !== 0 || nHeads % nKv !== 0) {
      throw new UserError(`${path}: not a llama2.c v0 checkpoint (header dim=${dim} hidden=${hidden} layers=${nLayers} heads=${nHeads} kv_heads=${nKv} vocab=${rawVocab} seq_len=${seqLen})`);
    }
    const hd = dim / nHeads;
    const spec: ModelSpec = {
      arch: 'llama', dim, nLayers, nHeads, nKvHeads: nKv, headDim: hd, dFfn: hidden, vocabSize: vocab,
      normEps: 1e-5, maxSeqLen: seqLen, rope: { theta: 10000, style: 'interleaved' },
      tiedEmbeddings: rawVocab > 0, bosId: 1, eosId: 2,
    };
    // The file's tensor order; each stacked tensor [L, ...] is split into one tensor per layer.
    const weights = new Map<string, TensorSource>();
    let offset = HEADER_BYTES;
    const take = (name: string, shape: number[]) => {
      const t = new FileTensor(file, name, 'f32', shape, offset);
      offset += t.byteLength;
      return t;
    };
    const perLayer = (canon: string, shape: number[]) => {
      for (let l = 0; l < nLayers; l++) weights.set(`layers.${l}.${canon}`, take(`${canon}[${l}]`, shape));
    };
    weights.set('tok_embeddings', take('token_embedding', [vocab, dim]));
    perLayer('attn_norm', [dim]);
    perLayer('wq', [dim, dim]);
    perLayer('wk', [nKv * hd, dim]);
    perLayer('wv', [nKv * hd, dim]);
    perLayer('wo', [dim, dim]);
    perLayer('ffn_norm', [dim]);
    perLayer('w_gate', [hidden, dim]);
    perLayer('w_down', [dim, hidden]);
    perLayer('w_up', [hidden, dim]);
    weights.set('norm', take('rms_final', [dim]));
    offset += seqLen * hd * 4; // freq_cis_real and freq_cis_imag: [seq_len, hd/2] each, unused
    if (rawVocab < 0) weights.set('output', take('wcls', [vocab, dim]));
    if (offset > size) throw new UserError(`${path}: truncated llama2.c checkpoint: the header implies ${offset} bytes, the file has ${size}`);
    checkWeights(spec, weights, path);
    return { format: 'llama2c', path, files: [path], spec, weights, close: () => file.close() };
  } catch (e) {
    file.close();
    throw e;
  }
}
