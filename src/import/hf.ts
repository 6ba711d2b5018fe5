// Hugging Face LLaMA checkpoints: config.json + model.safetensors (or shards + model.safetensors.index.json).
import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { readSafetensorsHeader } from './safetensors.js';
import { checkWeights, type Checkpoint, type Llama3RopeScaling, type ModelSpec } from './spec.js';
import { describe, nameText, oneLine, UserError } from '../util/errors.js';
import { firstDuplicateKey } from '../util/json-duplicates.js';
import type { FileHandle, TensorSource } from './tensor.js';

type Json = Record<string, unknown>;

/** Sizes and counts above this are refused as corrupt (int32 is what every runtime indexes them with). */
const MAX_INT = 2 ** 31 - 1;

function readJson(path: string, what: string): Json {
  let text: string;
  try {
    text = readFileSync(path, 'utf8');
  } catch (e) {
    throw new UserError(`${path}: cannot read ${what} (${(e as NodeJS.ErrnoException).code ?? (e as Error).message})`);
  }
  let v: unknown;
  try {
    v = JSON.parse(text);
  } catch (e) {
    throw new UserError(`${path}: ${what} is not valid JSON (${oneLine((e as Error).message)})`);
  }
  if (typeof v !== 'object' || v === null || Array.isArray(v)) throw new UserError(`${path}: ${what} is not a JSON object`);
  const dup = firstDuplicateKey(text);
  if (dup !== undefined) throw new UserError(`${path}: ${what} has the key ${describe(dup)} twice in one object (which one applies is ambiguous)`);
  return v as Json;
}

/** HF tensor name → canonical name (undefined: not a weight we use). */
export function hfToCanonical(name: string): string | undefined {
  switch (name) {
    case 'model.embed_tokens.weight': return 'tok_embeddings';
    case 'model.norm.weight': return 'norm';
    case 'lm_head.weight': return 'output';
  }
  const m = /^model\.layers\.(\d+)\.(.+)\.weight$/.exec(name);
  if (!m) return undefined;
  const layer = `layers.${Number(m[1])}.`;
  switch (m[2]) {
    case 'input_layernorm': return layer + 'attn_norm';
    case 'self_attn.q_proj': return layer + 'wq';
    case 'self_attn.k_proj': return layer + 'wk';
    case 'self_attn.v_proj': return layer + 'wv';
    case 'self_attn.o_proj': return layer + 'wo';
    case 'post_attention_layernorm': return layer + 'ffn_norm';
    case 'mlp.gate_proj': return layer + 'w_gate';
    case 'mlp.up_proj': return layer + 'w_up';
    case 'mlp.down_proj': return layer + 'w_down';
  }
  return undefined;
}

/** Parses a HF LLaMA config.json into a ModelSpec; `where` names the file in errors. */
export function specFromHfConfig(cfg: Json, where: string): ModelSpec {
  const fail = (msg: string): never => {
    throw new UserError(`${where}: ${msg}`);
  };
  const modelType = cfg['model_type'];
  const archs = Array.isArray(cfg['architectures']) ? (cfg['architectures'] as unknown[]) : [];
  if (modelType !== 'llama' && !archs.includes('LlamaForCausalLM')) {
    fail(`unsupported model: model_type ${describe(modelType ?? null)}, architectures ${describe(archs)} (only LLaMA: model_type "llama" / LlamaForCausalLM)`);
  }

  const posIntValue = (key: string, v: unknown): number => {
    if (typeof v !== 'number' || !Number.isInteger(v) || v <= 0 || v > MAX_INT) return fail(`${key} is ${describe(v)}, expected a positive integer below 2^31`);
    return v;
  };
  const posInt = (key: string, dflt?: number): number => {
    const v = cfg[key] ?? dflt;
    if (v === undefined || v === null) return fail(`missing ${key}`);
    return posIntValue(key, v);
  };
  const posNum = (key: string, v: unknown): number => {
    if (typeof v !== 'number' || !Number.isFinite(v) || v <= 0) return fail(`${key} is ${describe(v)}, expected a positive number`);
    return v;
  };
  const tokenId = (key: string, dflt: number): number => {
    let v = cfg[key];
    if (Array.isArray(v)) v = v[0];
    if (v === undefined || v === null) return dflt;
    if (typeof v !== 'number' || !Number.isInteger(v) || v < 0 || v > MAX_INT) return fail(`${key} is ${describe(cfg[key])}, expected a token id`);
    return v;
  };

  const hiddenAct = cfg['hidden_act'] ?? 'silu';
  if (hiddenAct !== 'silu') fail(`hidden_act ${describe(hiddenAct)} is not supported (only silu)`);
  if (cfg['mlp_bias'] === true) fail(`mlp_bias: true is not supported (LLaMA FFNs without bias only)`);
  if (cfg['attention_bias'] === true) fail(`attention_bias: true is not supported (attention projections without bias only)`);

  const dim = posInt('hidden_size');
  const nHeads = posInt('num_attention_heads');
  const nKvHeads = posInt('num_key_value_heads', nHeads);
  if (nHeads % nKvHeads !== 0) fail(`num_attention_heads ${nHeads} is not a multiple of num_key_value_heads ${nKvHeads}`);
  let headDim: number;
  if (cfg['head_dim'] === undefined || cfg['head_dim'] === null) {
    if (dim % nHeads !== 0) fail(`hidden_size ${dim} is not a multiple of num_attention_heads ${nHeads} and head_dim is not given`);
    headDim = dim / nHeads;
  } else {
    headDim = posInt('head_dim');
  }
  if (headDim % 2 !== 0) fail(`head_dim ${headDim} is odd; RoPE needs an even head_dim`);

  // rope: transformers >= 5 writes rope_parameters {rope_theta, rope_type, ...}; older: rope_theta + rope_scaling.
  const rp = cfg['rope_parameters'];
  const ropeParams = typeof rp === 'object' && rp !== null && !Array.isArray(rp) ? (rp as Json) : undefined;
  const thetaRaw = cfg['rope_theta'] ?? ropeParams?.['rope_theta'] ?? 10000;
  const theta = posNum('rope_theta', thetaRaw);
  const rs = cfg['rope_scaling'] ?? ropeParams;
  let scaling: Llama3RopeScaling | undefined;
  if (rs !== undefined && rs !== null) {
    if (typeof rs !== 'object' || Array.isArray(rs)) fail(`rope_scaling is ${describe(rs)}, expected an object`);
    const r = rs as Json;
    const ropeType = r['rope_type'] ?? r['type'] ?? null;
    if (ropeType === 'llama3') {
      const f = (k: string): number => posNum(`rope_scaling.${k}`, r[k]);
      scaling = {
        type: 'llama3',
        factor: f('factor'),
        lowFreqFactor: f('low_freq_factor'),
        highFreqFactor: f('high_freq_factor'),
        originalMaxPositionEmbeddings: posIntValue('rope_scaling.original_max_position_embeddings', r['original_max_position_embeddings']),
      };
      // llama3 scaling interpolates between the two wavelength bounds: equal or swapped factors divide by zero or invert it.
      if (!(scaling.highFreqFactor > scaling.lowFreqFactor)) {
        fail(`rope_scaling.high_freq_factor ${scaling.highFreqFactor} must be greater than low_freq_factor ${scaling.lowFreqFactor}`);
      }
    } else if (ropeType !== 'default' && ropeType !== null) {
      fail(`rope type ${describe(ropeType)} is not supported (only default and llama3)`);
    }
  }

  const tied = cfg['tie_word_embeddings'] ?? false;
  if (typeof tied !== 'boolean') fail(`tie_word_embeddings is ${describe(tied)}, expected true or false`);

  return {
    arch: 'llama',
    dim,
    nLayers: posInt('num_hidden_layers'),
    nHeads,
    nKvHeads,
    headDim,
    dFfn: posInt('intermediate_size'),
    vocabSize: posInt('vocab_size'),
    normEps: posNum('rms_norm_eps', cfg['rms_norm_eps'] ?? fail('missing rms_norm_eps')),
    maxSeqLen: posInt('max_position_embeddings'),
    rope: scaling ? { theta, style: 'half', scaling } : { theta, style: 'half' },
    tiedEmbeddings: tied as boolean,
    bosId: tokenId('bos_token_id', 1),
    eosId: tokenId('eos_token_id', 2),
  };
}

/** Opens a Hugging Face LLaMA checkpoint directory. Tensors are read lazily; close() releases the files. */
export function importHf(dir: string): Checkpoint {
  const configPath = join(dir, 'config.json');
  if (!existsSync(configPath)) throw new UserError(`${dir}: no config.json (not a Hugging Face checkpoint directory?)`);
  const spec = specFromHfConfig(readJson(configPath, 'config.json'), configPath);

  const handles: FileHandle[] = [];
  const files: string[] = [configPath];
  const weights = new Map<string, TensorSource>();
  const closeAll = (): void => {
    for (const h of handles) h.close();
  };
  const take = (hfName: string, t: TensorSource): void => {
    const canon = hfToCanonical(hfName);
    if (canon === undefined) return; // rotary_emb.inv_freq and the like
    if (canon === 'output' && spec.tiedEmbeddings) return;
    const prev = weights.get(canon);
    // e.g. model.layers.07.… and model.layers.7.…: both read as layer 7.
    if (prev) throw new UserError(`${dir}: tensors ${nameText(prev.name)} and ${nameText(hfName)} are both ${canon}`);
    weights.set(canon, t);
  };

  try {
    const indexPath = join(dir, 'model.safetensors.index.json');
    const singlePath = join(dir, 'model.safetensors');
    if (existsSync(indexPath)) {
      const index = readJson(indexPath, 'safetensors index');
      files.push(indexPath); // the index decides which shard holds what: it belongs in the source checksum
      const wm = index['weight_map'];
      if (typeof wm !== 'object' || wm === null || Array.isArray(wm)) throw new UserError(`${indexPath}: no weight_map object`);
      const byShard = new Map<string, string[]>();
      for (const [tensor, shard] of Object.entries(wm as Json)) {
        if (typeof shard !== 'string' || shard === '' || shard.includes('/') || shard.includes('\\') || shard === '..' || /[\u0000-\u001f\u007f]/.test(shard)) {
          throw new UserError(`${indexPath}: weight_map entry ${nameText(tensor)} names shard ${describe(shard)}, expected a file name in the same directory`);
        }
        let list = byShard.get(shard);
        if (!list) byShard.set(shard, (list = []));
        list.push(tensor);
      }
      if (byShard.size === 0) throw new UserError(`${indexPath}: weight_map is empty`);
      for (const [shard, names] of byShard) {
        const shardPath = join(dir, shard);
        if (!existsSync(shardPath)) throw new UserError(`${indexPath}: shard ${nameText(shard)} is named in the index but ${shardPath} does not exist`);
        const st = readSafetensorsHeader(shardPath);
        handles.push(st.file);
        files.push(shardPath);
        for (const name of names) {
          const t = st.tensors.get(name);
          if (!t) throw new UserError(`${shardPath}: tensor ${nameText(name)} is listed in the index for shard ${nameText(shard)} but is not in that file`);
          take(name, t);
        }
      }
    } else if (existsSync(singlePath)) {
      const st = readSafetensorsHeader(singlePath);
      handles.push(st.file);
      files.push(singlePath);
      for (const [name, t] of st.tensors) take(name, t);
    } else {
      const hasBin = existsSync(join(dir, 'pytorch_model.bin')) || existsSync(join(dir, 'pytorch_model.bin.index.json'));
      throw new UserError(`${dir}: no model.safetensors or model.safetensors.index.json` +
        (hasBin ? ' (pytorch_model.bin is not supported: convert it to safetensors first)' : ''));
    }
    checkWeights(spec, weights, dir);
  } catch (e) {
    closeAll();
    throw e;
  }

  return { format: 'hf', path: dir, files, spec, weights, close: closeAll };
}
