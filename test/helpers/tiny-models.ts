// Tiny synthetic LLaMA models, written in memory in each checkpoint format (HF safetensors + config.json,
// GGUF, llama2.c): the seeds the fuzzer mutates and the base of the malformed-file regression tests.
// Each format is built from its parts (header object, metadata list, tensor list), so tests and
// mutators can change one part and serialize.
import { f32Bytes, T, writeGguf, type Kv, type WTensor } from './gguf-writer.js';

export interface TinyDims {
  dim: number;
  ffn: number;
  layers: number;
  heads: number;
  kvHeads: number;
  vocab: number;
  seqLen: number;
}

export const TINY: TinyDims = { dim: 8, ffn: 16, layers: 2, heads: 2, kvHeads: 1, vocab: 16, seqLen: 16 };

export interface TinyTensor {
  /** Canonical name (src/import/spec.ts). */
  canon: string;
  /** Row-major shape, outermost first. */
  shape: number[];
  data: Float32Array;
}

/** Deterministic small values (an LCG), so every build of the same dims is byte-identical. */
function values(n: number, seed: number): Float32Array {
  const out = new Float32Array(n);
  let x = seed >>> 0;
  for (let i = 0; i < n; i++) {
    x = (Math.imul(x, 1664525) + 1013904223) >>> 0;
    out[i] = ((x >>> 8) / 2 ** 24 - 0.5) / 4;
  }
  return out;
}

/** The model's tensors in llama2.c order (which is also a sensible order for the other formats). */
export function tinyTensors(d: TinyDims = TINY): TinyTensor[] {
  const hd = d.dim / d.heads;
  const perLayer: Array<[string, number[]]> = [
    ['attn_norm', [d.dim]], ['wq', [d.heads * hd, d.dim]], ['wk', [d.kvHeads * hd, d.dim]], ['wv', [d.kvHeads * hd, d.dim]],
    ['wo', [d.dim, d.heads * hd]], ['ffn_norm', [d.dim]], ['w_gate', [d.ffn, d.dim]], ['w_down', [d.dim, d.ffn]], ['w_up', [d.ffn, d.dim]],
  ];
  const list: Array<[string, number[]]> = [['tok_embeddings', [d.vocab, d.dim]]];
  for (const [name, shape] of perLayer) for (let l = 0; l < d.layers; l++) list.push([`layers.${l}.${name}`, shape]);
  list.push(['norm', [d.dim]]);
  return list.map(([canon, shape], i) => ({ canon, shape, data: values(shape.reduce((a, b) => a * b, 1), i + 1) }));
}

// ---------- HF: config.json + model.safetensors ----------

const HF_LAYER: Record<string, string> = {
  attn_norm: 'input_layernorm', wq: 'self_attn.q_proj', wk: 'self_attn.k_proj', wv: 'self_attn.v_proj', wo: 'self_attn.o_proj',
  ffn_norm: 'post_attention_layernorm', w_gate: 'mlp.gate_proj', w_up: 'mlp.up_proj', w_down: 'mlp.down_proj',
};

export function hfName(canon: string): string {
  if (canon === 'tok_embeddings') return 'model.embed_tokens.weight';
  if (canon === 'norm') return 'model.norm.weight';
  if (canon === 'output') return 'lm_head.weight';
  const m = /^layers\.(\d+)\.(\w+)$/.exec(canon)!;
  return `model.layers.${m[1]}.${HF_LAYER[m[2]!]}.weight`;
}

export function tinyHfConfig(d: TinyDims = TINY): Record<string, unknown> {
  return {
    architectures: ['LlamaForCausalLM'], model_type: 'llama', hidden_act: 'silu', hidden_size: d.dim, intermediate_size: d.ffn,
    num_hidden_layers: d.layers, num_attention_heads: d.heads, num_key_value_heads: d.kvHeads, head_dim: d.dim / d.heads,
    vocab_size: d.vocab, max_position_embeddings: d.seqLen, rms_norm_eps: 1e-5, rope_theta: 10000, tie_word_embeddings: true,
    bos_token_id: 1, eos_token_id: 2,
  };
}

export interface StEntry {
  dtype: string;
  shape: unknown;
  data_offsets: unknown;
}

/** A safetensors file as its parts: the header object (tensor name → entry) and the data section. */
export interface StParts {
  header: Record<string, StEntry | Record<string, string>>;
  data: Uint8Array;
}

export function tinySafetensors(d: TinyDims = TINY): StParts {
  const header: StParts['header'] = {};
  const parts: Uint8Array[] = [];
  let off = 0;
  for (const t of tinyTensors(d)) {
    const bytes = f32Bytes(t.data);
    header[hfName(t.canon)] = { dtype: 'F32', shape: t.shape, data_offsets: [off, off + bytes.length] };
    parts.push(bytes);
    off += bytes.length;
  }
  return { header, data: concat(parts) };
}

/** Serializes a safetensors file from a header's JSON text (given as text so tests can write what JSON objects cannot). */
export function safetensorsBytes(headerJson: string, data: Uint8Array, headerLen?: bigint): Uint8Array {
  const json = new TextEncoder().encode(headerJson);
  const len = new Uint8Array(8);
  new DataView(len.buffer).setBigUint64(0, headerLen ?? BigInt(json.length), true);
  return concat([len, json, data]);
}

// ---------- GGUF ----------

const GGUF_LAYER: Record<string, string> = {
  attn_norm: 'attn_norm', wq: 'attn_q', wk: 'attn_k', wv: 'attn_v', wo: 'attn_output',
  ffn_norm: 'ffn_norm', w_gate: 'ffn_gate', w_up: 'ffn_up', w_down: 'ffn_down',
};

export function ggufName(canon: string): string {
  if (canon === 'tok_embeddings') return 'token_embd.weight';
  if (canon === 'norm') return 'output_norm.weight';
  if (canon === 'output') return 'output.weight';
  const m = /^layers\.(\d+)\.(\w+)$/.exec(canon)!;
  return `blk.${m[1]}.${GGUF_LAYER[m[2]!]}.weight`;
}

/** A GGUF file as its parts (gguf-writer's input): metadata and tensors, F32. */
export function tinyGgufParts(d: TinyDims = TINY): { kv: Kv[]; tensors: WTensor[] } {
  const kv: Kv[] = [
    { key: 'general.architecture', type: T.STRING, value: 'llama' },
    { key: 'llama.context_length', type: T.U32, value: d.seqLen },
    { key: 'llama.embedding_length', type: T.U32, value: d.dim },
    { key: 'llama.block_count', type: T.U32, value: d.layers },
    { key: 'llama.feed_forward_length', type: T.U32, value: d.ffn },
    { key: 'llama.attention.head_count', type: T.U32, value: d.heads },
    { key: 'llama.attention.head_count_kv', type: T.U32, value: d.kvHeads },
    { key: 'llama.attention.layer_norm_rms_epsilon', type: T.F32, value: 1e-5 },
    { key: 'llama.rope.freq_base', type: T.F32, value: 10000 },
  ];
  const tensors = tinyTensors(d).map((t) => ({ name: ggufName(t.canon), ne: [...t.shape].reverse(), type: 0, data: f32Bytes(t.data) }));
  return { kv, tensors };
}

export function tinyGguf(d: TinyDims = TINY): Uint8Array {
  return writeGguf(tinyGgufParts(d));
}

// ---------- llama2.c ----------

/** The 7 header ints: dim, hidden_dim, n_layers, n_heads, n_kv_heads, vocab_size (negative: separate classifier), seq_len. */
export function tinyLlama2cHeader(d: TinyDims = TINY): number[] {
  return [d.dim, d.ffn, d.layers, d.heads, d.kvHeads, d.vocab, d.seqLen];
}

/** The tensors after the header, stacked per layer, then freq_cis_real/imag (zeros). */
export function tinyLlama2cBody(d: TinyDims = TINY): Uint8Array {
  const parts = tinyTensors(d).map((t) => f32Bytes(t.data));
  parts.push(new Uint8Array(d.seqLen * (d.dim / d.heads) * 4));
  return concat(parts);
}

export function llama2cBytes(header: number[], body: Uint8Array): Uint8Array {
  const h = new Uint8Array(28);
  const dv = new DataView(h.buffer);
  header.forEach((v, i) => dv.setInt32(i * 4, v, true));
  return concat([h, body]);
}

export function tinyLlama2c(d: TinyDims = TINY): Uint8Array {
  return llama2cBytes(tinyLlama2cHeader(d), tinyLlama2cBody(d));
}

export function concat(parts: Uint8Array[]): Uint8Array {
  const out = new Uint8Array(parts.reduce((a, p) => a + p.length, 0));
  let o = 0;
  for (const p of parts) {
    out.set(p, o);
    o += p.length;
  }
  return out;
}
