// Hugging Face checkpoints: config.json mutated field by field (values, types, nesting, rope_scaling,
// duplicate keys), and model.safetensors mutated in its header (dtype, shape, data_offsets, names,
// entries, the length prefix) and its data section.
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { CHECKPOINTS } from '../../helpers/fixtures.js';
import { safetensorsBytes, tinyHfConfig, tinySafetensors, type StEntry, type StParts } from '../../helpers/tiny-models.js';
import type { Rng } from '../prng.js';
import { mutateBytes, mutateJsonText } from './bytes.js';
import { edgeNumber, jsonValue, jsonWithDeep, oddString } from './values.js';
import type { FuzzFiles } from './types.js';

const CONFIG_KEYS = [
  'architectures', 'model_type', 'hidden_act', 'hidden_size', 'intermediate_size', 'num_hidden_layers', 'num_attention_heads',
  'num_key_value_heads', 'head_dim', 'vocab_size', 'max_position_embeddings', 'rms_norm_eps', 'rope_theta', 'rope_scaling',
  'rope_parameters', 'tie_word_embeddings', 'bos_token_id', 'eos_token_id', 'mlp_bias', 'attention_bias',
];

let fixture: { config: Record<string, unknown>; st: StParts } | undefined;
/** stories260K's HF checkpoint, split into parts once per process. */
function fixtureParts(): { config: Record<string, unknown>; st: StParts } {
  if (!fixture) {
    const b = readFileSync(join(CHECKPOINTS.hf, 'model.safetensors'));
    const n = Number(b.readBigUInt64LE(0));
    fixture = {
      config: JSON.parse(readFileSync(join(CHECKPOINTS.hf, 'config.json'), 'utf8')) as Record<string, unknown>,
      st: { header: JSON.parse(b.subarray(8, 8 + n).toString('utf8')) as StParts['header'], data: new Uint8Array(b.subarray(8 + n)) },
    };
  }
  return { config: structuredClone(fixture.config), st: { header: structuredClone(fixture.st.header), data: fixture.st.data } };
}

function base(r: Rng): { config: Record<string, unknown>; st: StParts } {
  return r.chance(0.05) ? fixtureParts() : { config: tinyHfConfig(), st: tinySafetensors() };
}

function hfFiles(configText: string, st: Uint8Array): FuzzFiles {
  const enc = new TextEncoder();
  return { files: { 'ckpt/config.json': enc.encode(configText), 'ckpt/model.safetensors': st }, open: 'ckpt' };
}

function llama3Scaling(r: Rng): Record<string, unknown> {
  const s: Record<string, unknown> = { rope_type: 'llama3', factor: 8, low_freq_factor: 1, high_freq_factor: 4, original_max_position_embeddings: 8192 };
  const k = r.pick(Object.keys(s));
  if (r.chance(0.2)) delete s[k];
  else s[k] = r.chance(0.7) ? edgeNumber(r) : jsonValue(r);
  return s;
}

export function hfConfigCase(r: Rng): FuzzFiles {
  const { config, st } = base(r);
  for (let n = r.range(1, 3); n > 0; n--) {
    const key = r.chance(0.8) ? r.pick(CONFIG_KEYS) : oddString(r);
    r.weighted<void>([
      [6, () => { config[key] = r.chance(0.6) ? edgeNumber(r) : jsonValue(r); }],
      [2, () => { delete config[key]; }],
      [2, () => { config[r.pick(['rope_scaling', 'rope_parameters'])] = llama3Scaling(r); }],
      [1, () => { config['rope_scaling'] = { rope_type: r.chance(0.5) ? oddString(r) : jsonValue(r) }; }],
    ]);
  }
  let text = jsonWithDeep(r, config);
  if (r.chance(0.2)) text = mutateJsonText(r, text);
  if (r.chance(0.03)) text = JSON.stringify(jsonValue(r)) ?? 'null';
  return hfFiles(text, safetensorsBytes(JSON.stringify(st.header), st.data));
}

function mutateEntry(r: Rng, e: StEntry, all: StEntry[]): void {
  r.weighted<void>([
    [3, () => { e.dtype = r.chance(0.8) ? oddString(r) : (jsonValue(r) as string); }],
    [4, () => {
      const shape = Array.isArray(e.shape) ? [...(e.shape as unknown[])] : [];
      r.weighted<void>([
        [4, () => { if (shape.length) shape[r.int(shape.length)] = edgeNumber(r); }],
        [1, () => { shape.push(r.pick([1, 0, 2, edgeNumber(r)])); }],
        [1, () => { shape.pop(); }],
        [1, () => { shape.splice(0, shape.length, ...Array(r.pick([9, 1000, 100_000])).fill(1)); }],
        [1, () => { shape.splice(0, shape.length, jsonValue(r)); }],
      ]);
      e.shape = r.chance(0.1) ? jsonValue(r) : shape;
    }],
    [4, () => {
      const offs = Array.isArray(e.data_offsets) ? [...(e.data_offsets as unknown[])] : [0, 0];
      r.weighted<void>([
        [3, () => { const i = r.int(2); offs[i] = (offs[i] as number) + r.pick([-64, -32, -4, -1, 1, 4, 32, 64]); }],
        [2, () => { offs[r.int(2)] = edgeNumber(r); }],
        [2, () => { const o = r.pick(all).data_offsets; offs.splice(0, 2, ...(Array.isArray(o) ? o : [0, 0])); }],
        [1, () => { offs.reverse(); }],
        [1, () => { offs.push(0); }],
        [1, () => { offs.splice(0, 2, jsonValue(r)); }],
      ]);
      e.data_offsets = offs;
    }],
  ]);
}

export function safetensorsCase(r: Rng): FuzzFiles {
  const { config, st } = base(r);
  const names = Object.keys(st.header).filter((n) => n !== '__metadata__');
  const entries = (): StEntry[] => Object.values(st.header).filter((e): e is StEntry => typeof e === 'object' && e !== null && 'data_offsets' in e);
  for (let n = r.range(1, 3); n > 0; n--) {
    const name = r.pick(names);
    r.weighted<void>([
      [8, () => { const e = st.header[name]; if (typeof e === 'object' && e !== null && !Array.isArray(e)) mutateEntry(r, e as StEntry, entries()); }],
      [1, () => { delete st.header[name]; }],
      [1, () => { st.header[r.pick([oddString(r), name.replace(/\d+/, r.pick(['07', '99999999999999999999', '5']))])] = { ...(st.header[name] ?? {}) } as StEntry; }],
      [1, () => { const p = r.int(st.data.length + 1); st.header[oddString(r)] = { dtype: 'F32', shape: [0], data_offsets: [p, p] }; }],
      [1, () => { (st.header as Record<string, unknown>)[name] = jsonValue(r); }],
      [1, () => { (st.header as Record<string, unknown>)['__metadata__'] = r.chance(0.5) ? { format: jsonValue(r) } : jsonValue(r); }],
    ]);
  }
  let headerText = jsonWithDeep(r, st.header);
  if (r.chance(0.15)) headerText = mutateJsonText(r, headerText);
  let data = st.data;
  if (r.chance(0.1)) data = data.slice(0, r.int(data.length + 1));
  const lenLie = r.chance(0.1) ? BigInt(Math.max(0, new TextEncoder().encode(headerText).length + r.pick([-8, -1, 1, 8, 1000]))) : r.chance(0.02) ? 2n ** BigInt(r.range(20, 63)) : undefined;
  let bytes = safetensorsBytes(headerText, data, lenLie);
  if (r.chance(0.1)) bytes = mutateBytes(r, bytes, 8 + headerText.length);
  return hfFiles(JSON.stringify(config), bytes);
}
