// A LLaMA-shaped, sharded, bf16 Hugging Face checkpoint with deterministic pseudo-random weights,
// written in a streaming way (memory use independent of the model size) for benchmarks.
import { mkdirSync, statSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { writeSafetensors, type SafetensorsEntry } from '../src/import/safetensors.js';

export interface SyntheticLlamaOptions {
  dim: number;
  nLayers: number;
  nHeads: number;
  nKvHeads: number;
  dFfn: number;
  vocab: number;
  /** Target bytes per shard: tensors are packed in order until the next one would go past this (a tensor larger than it gets a shard of its own). */
  shardBytes: number;
  seed: number;
  /** Default false (untied: an lm_head.weight is written). */
  tiedEmbeddings?: boolean;
  /** Default 2048. */
  maxPositionEmbeddings?: number;
}

export interface SyntheticLlamaResult {
  dir: string;
  /** config.json, the shards, the index. */
  files: string[];
  shards: string[];
  /** Number of weights (elements). */
  params: number;
  /** Bytes of tensor data (the index's metadata.total_size). */
  tensorBytes: number;
  /** Bytes of all the files written. */
  fileBytes: number;
}

/**
 * A TinyLlama-1.1B-shaped model: 1,100,048,384 parameters → 2,200,096,768 bytes in bf16 (≈ 2.05 GiB).
 *   embed 32000·2048 = 65,536,000; lm_head (untied) 65,536,000; final norm 2048;
 *   per layer: q 2048·2048 + k,v 2·256·2048 + o 2048·2048 + gate,up,down 3·5632·2048 + 2 norms·2048
 *            = 4,194,304 + 1,048,576 + 4,194,304 + 34,603,008 + 4,096 = 44,044,288; × 22 = 968,974,336.
 * Tied, it would be 1.93 GiB: under 2 GiB, hence untied.
 */
export const SYNTHETIC_2GIB_PRESET: SyntheticLlamaOptions = {
  dim: 2048, nLayers: 22, nHeads: 32, nKvHeads: 4, dFfn: 5632, vocab: 32000,
  shardBytes: 512 * 1024 * 1024, seed: 1234, tiedEmbeddings: false,
};

interface PlannedTensor {
  name: string;
  shape: number[];
  /** 'normal': N(0, 0.02)-like values; 'ones': RMSNorm weights around 1. */
  init: 'normal' | 'ones';
}

export function syntheticTensorPlan(o: SyntheticLlamaOptions): PlannedTensor[] {
  const hd = o.dim / o.nHeads;
  const t: PlannedTensor[] = [{ name: 'model.embed_tokens.weight', shape: [o.vocab, o.dim], init: 'normal' }];
  for (let l = 0; l < o.nLayers; l++) {
    const p = `model.layers.${l}.`;
    t.push(
      { name: p + 'input_layernorm.weight', shape: [o.dim], init: 'ones' },
      { name: p + 'self_attn.q_proj.weight', shape: [o.nHeads * hd, o.dim], init: 'normal' },
      { name: p + 'self_attn.k_proj.weight', shape: [o.nKvHeads * hd, o.dim], init: 'normal' },
      { name: p + 'self_attn.v_proj.weight', shape: [o.nKvHeads * hd, o.dim], init: 'normal' },
      { name: p + 'self_attn.o_proj.weight', shape: [o.dim, o.nHeads * hd], init: 'normal' },
      { name: p + 'post_attention_layernorm.weight', shape: [o.dim], init: 'ones' },
      { name: p + 'mlp.gate_proj.weight', shape: [o.dFfn, o.dim], init: 'normal' },
      { name: p + 'mlp.up_proj.weight', shape: [o.dFfn, o.dim], init: 'normal' },
      { name: p + 'mlp.down_proj.weight', shape: [o.dim, o.dFfn], init: 'normal' },
    );
  }
  t.push({ name: 'model.norm.weight', shape: [o.dim], init: 'ones' });
  if (!o.tiedEmbeddings) t.push({ name: 'lm_head.weight', shape: [o.vocab, o.dim], init: 'normal' });
  return t;
}

const count = (shape: number[]): number => shape.reduce((a, b) => a * b, 1);

/** Bytes of tensor data the checkpoint will hold (bf16). */
export function syntheticCheckpointBytes(o: SyntheticLlamaOptions): number {
  return syntheticTensorPlan(o).reduce((s, t) => s + 2 * count(t.shape), 0);
}

/** FNV-1a of the name mixed with the seed: each tensor's stream depends only on (seed, name). */
function tensorSeed(seed: number, name: string): number {
  let h = (0x811c9dc5 ^ seed) >>> 0;
  for (let i = 0; i < name.length; i++) h = Math.imul(h ^ name.charCodeAt(i), 0x01000193) >>> 0;
  return h || 1;
}

const CHUNK_ELEMS = 1 << 20;

/** Emits `n` bf16 values in chunks of at most CHUNK_ELEMS (2 MiB), from a seeded xorshift32 + Box–Muller. */
function emitBf16(n: number, seed: number, init: 'normal' | 'ones', emit: (c: Uint8Array) => void): void {
  const f32 = new Float32Array(Math.min(n, CHUNK_ELEMS));
  const u32 = new Uint32Array(f32.buffer);
  const out = new Uint16Array(f32.length);
  const bytes = new Uint8Array(out.buffer);
  let s = seed >>> 0;
  const next = (): number => {
    s ^= s << 13; s >>>= 0;
    s ^= s >>> 17;
    s ^= s << 5; s >>>= 0;
    return s;
  };
  const std = init === 'ones' ? 0.01 : 0.02;
  const mean = init === 'ones' ? 1 : 0;
  for (let done = 0; done < n;) {
    const m = Math.min(f32.length, n - done);
    for (let i = 0; i < m; i += 2) {
      const u1 = (next() + 1) / 4294967297; // (0, 1)
      const u2 = next() / 4294967296;
      const r = std * Math.sqrt(-2 * Math.log(u1));
      const a = 2 * Math.PI * u2;
      f32[i] = mean + r * Math.cos(a);
      if (i + 1 < m) f32[i + 1] = mean + r * Math.sin(a);
    }
    for (let i = 0; i < m; i++) {
      const x = u32[i]!; // finite: round to nearest even
      out[i] = (x + 0x7fff + ((x >>> 16) & 1)) >>> 16;
    }
    emit(m === f32.length ? bytes : bytes.subarray(0, 2 * m));
    done += m;
  }
}

const shardName = (i: number, total: number): string =>
  `model-${String(i + 1).padStart(5, '0')}-of-${String(total).padStart(5, '0')}.safetensors`;

/** Writes config.json, model-0000N-of-0000M.safetensors and model.safetensors.index.json into dir. */
export async function writeSyntheticLlama(dir: string, opts: SyntheticLlamaOptions, onProgress?: (bytesDone: number, bytesTotal: number) => void): Promise<SyntheticLlamaResult> {
  if (opts.dim % opts.nHeads !== 0) throw new Error(`dim ${opts.dim} is not a multiple of nHeads ${opts.nHeads}`);
  if (opts.nHeads % opts.nKvHeads !== 0) throw new Error(`nHeads ${opts.nHeads} is not a multiple of nKvHeads ${opts.nKvHeads}`);
  if (!(opts.shardBytes > 0)) throw new Error(`shardBytes must be positive`);
  mkdirSync(dir, { recursive: true });
  const plan = syntheticTensorPlan(opts);

  const groups: PlannedTensor[][] = [];
  let cur: PlannedTensor[] = [];
  let curBytes = 0;
  for (const t of plan) {
    const b = 2 * count(t.shape);
    if (cur.length > 0 && curBytes + b > opts.shardBytes) {
      groups.push(cur);
      cur = [];
      curBytes = 0;
    }
    cur.push(t);
    curBytes += b;
  }
  if (cur.length > 0) groups.push(cur);

  const config = {
    architectures: ['LlamaForCausalLM'],
    model_type: 'llama',
    hidden_act: 'silu',
    hidden_size: opts.dim,
    intermediate_size: opts.dFfn,
    num_hidden_layers: opts.nLayers,
    num_attention_heads: opts.nHeads,
    num_key_value_heads: opts.nKvHeads,
    head_dim: opts.dim / opts.nHeads,
    vocab_size: opts.vocab,
    max_position_embeddings: opts.maxPositionEmbeddings ?? 2048,
    rms_norm_eps: 1e-5,
    rope_theta: 10000.0,
    rope_scaling: null,
    tie_word_embeddings: opts.tiedEmbeddings ?? false,
    attention_bias: false,
    mlp_bias: false,
    bos_token_id: 1,
    eos_token_id: 2,
    torch_dtype: 'bfloat16',
    _synthetic: { generator: 'mocc bench/synthetic-checkpoint.ts', seed: opts.seed },
  };
  const configPath = join(dir, 'config.json');
  writeFileSync(configPath, JSON.stringify(config, null, 2) + '\n');

  const totalBytes = plan.reduce((s, t) => s + 2 * count(t.shape), 0);
  let doneBytes = 0;
  const weightMap: Record<string, string> = {};
  const shards: string[] = [];
  let fileBytes = 0;
  for (const [gi, g] of groups.entries()) {
    const name = shardName(gi, groups.length);
    const entries: SafetensorsEntry[] = g.map((t) => ({
      name: t.name,
      dtype: 'bf16',
      shape: t.shape,
      write: (emit) => emitBf16(count(t.shape), tensorSeed(opts.seed, t.name), t.init, (c) => {
        emit(c);
        doneBytes += c.length;
        onProgress?.(doneBytes, totalBytes);
      }),
    }));
    const path = join(dir, name);
    await writeSafetensors(path, entries, { format: 'pt' });
    for (const t of g) weightMap[t.name] = name;
    shards.push(path);
  }
  const indexPath = join(dir, 'model.safetensors.index.json');
  writeFileSync(indexPath, JSON.stringify({ metadata: { total_size: totalBytes }, weight_map: weightMap }, null, 2) + '\n');

  const files = [configPath, ...shards, indexPath];
  for (const f of files) fileBytes += statSync(f).size;
  return { dir, files, shards, params: totalBytes / 2, tensorBytes: totalBytes, fileBytes };
}
