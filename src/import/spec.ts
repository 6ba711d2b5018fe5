// What an importer produces: the model's hyper-parameters and its weights under canonical names.
import type { Tokenizer } from '../tokenizer/tokenizer.js';
import type { TensorSource } from './tensor.js';
import type { MocSelection } from '../model/selection.js';
import { describe, nameText, UserError } from '../util/errors.js';


/** llama3-style rope_scaling (rope_type "llama3"). */
export interface Llama3RopeScaling {
  type: 'llama3';
  factor: number;
  lowFreqFactor: number;
  highFreqFactor: number;
  originalMaxPositionEmbeddings: number;
}

export interface ModelSpec {
  arch: 'llama';
  dim: number;
  nLayers: number;
  nHeads: number;
  nKvHeads: number;
  headDim: number;
  dFfn: number;
  vocabSize: number;
  normEps: number;
  maxSeqLen: number;
  rope: {
    theta: number;
    /** 'half': HF's rotate_half (pairs i, i+hd/2); 'interleaved': llama2.c / GGUF (pairs 2i, 2i+1). */
    style: 'half' | 'interleaved';
    scaling?: Llama3RopeScaling;
  };
  tiedEmbeddings: boolean;
  bosId: number;
  eosId: number;
}

/**
 * Canonical weight names, all matrices [out, in] row-major (HF layout):
 *   tok_embeddings [V, d]
 *   layers.N.attn_norm [d]   layers.N.wq [H·hd, d]  layers.N.wk [KV·hd, d]  layers.N.wv [KV·hd, d]  layers.N.wo [d, H·hd]
 *   layers.N.ffn_norm [d]    layers.N.w_gate [F, d]  layers.N.w_up [F, d]   layers.N.w_down [d, F]
 *   norm [d]                 output [V, d]  (absent when tiedEmbeddings)
 */
export function expectedWeightShapes(spec: ModelSpec): Map<string, number[]> {
  const { dim: d, headDim: hd, nHeads: h, nKvHeads: kv, dFfn: f, vocabSize: v } = spec;
  const m = new Map<string, number[]>();
  m.set('tok_embeddings', [v, d]);
  for (let i = 0; i < spec.nLayers; i++) {
    const p = `layers.${i}.`;
    m.set(p + 'attn_norm', [d]);
    m.set(p + 'wq', [h * hd, d]);
    m.set(p + 'wk', [kv * hd, d]);
    m.set(p + 'wv', [kv * hd, d]);
    m.set(p + 'wo', [d, h * hd]);
    m.set(p + 'ffn_norm', [d]);
    m.set(p + 'w_gate', [f, d]);
    m.set(p + 'w_up', [f, d]);
    m.set(p + 'w_down', [d, f]);
  }
  m.set('norm', [d]);
  if (!spec.tiedEmbeddings) m.set('output', [v, d]);
  return m;
}

export type CheckpointFormat = 'hf' | 'llama2c' | 'gguf' | 'onnx';

export interface Checkpoint {
  format: CheckpointFormat;
  /** The path the user gave (file or directory). */
  path: string;
  /** Every file the weights and config came from (for the package's source checksum). */
  files: string[];
  spec: ModelSpec;
  /** Canonical name → tensor, see expectedWeightShapes. */
  weights: Map<string, TensorSource>;
  /** The tokenizer found beside or inside the checkpoint, if any. */
  tokenizer?: Tokenizer;
  /** The tokenizer file read (given or found beside the checkpoint); absent when it came from inside it or there is none. */
  tokenizerFile?: string;
  /**
   * The MoC selection the checkpoint itself computes (an ONNX export of a MoC model: TopK on G), with
   * the dense weights in `weights`. Absent for dense checkpoints. Conversion keeps it unless told
   * otherwise, and a different --k/--k-ratio/--pattern/--dense is an error (driver/load.ts).
   */
  moc?: MocSelection;
  close(): void;
}

/** Every file or directory a checkpoint was read from: outputs must stay clear of them (src/util/atomic-output.ts). */
export function checkpointInputs(ck: Pick<Checkpoint, 'path' | 'files' | 'tokenizerFile'>): string[] {
  return [ck.path, ...ck.files, ...(ck.tokenizerFile ? [ck.tokenizerFile] : [])];
}

/**
 * The first layer index in 0..nLayers-1 that has no tensor at all, if any. Work is O(weights), not
 * O(nLayers): a header's layer count is checked with this before anything is allocated per layer.
 */
export function firstMissingLayer(nLayers: number, weights: Map<string, TensorSource>): number | undefined {
  const present = new Set<number>();
  for (const name of weights.keys()) {
    const m = /^layers\.(\d+)\./.exec(name);
    if (m) present.add(Number(m[1]));
  }
  // Some index in 0..present.size is absent from `present`; the loop finds the smallest.
  for (let l = 0; l < nLayers; l++) if (!present.has(l)) return l;
  return undefined;
}

/** Checks that the weight map has exactly the tensors the spec implies, with the right shapes. */
export function checkWeights(spec: ModelSpec, weights: Map<string, TensorSource>, where: string): void {
  const missing = firstMissingLayer(spec.nLayers, weights);
  if (missing !== undefined) {
    throw new UserError(`${where}: the config says ${spec.nLayers} layers but there are no tensors for layer ${missing} (missing tensor for layers.${missing}.attn_norm)`);
  }
  for (const [name, shape] of expectedWeightShapes(spec)) {
    const t = weights.get(name);
    if (!t) throw new UserError(`${where}: missing tensor for ${name} (expected shape [${shape}])`);
    if (t.shape.length !== shape.length || t.shape.some((s, i) => s !== shape[i])) {
      throw new UserError(`${where}: tensor ${nameText(t.name)} has shape ${describe(t.shape)} but the config implies [${shape}]`);
    }
  }
}
