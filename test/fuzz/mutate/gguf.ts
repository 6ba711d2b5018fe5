// GGUF: metadata values and types, keys, tensor infos (dims, type, name, offset), counts and version,
// changed on the parts gguf-writer serializes; then, sometimes, the bytes themselves.
import { readFileSync } from 'node:fs';
import { CHECKPOINTS } from '../../helpers/fixtures.js';
import { T, writeGguf, type GgufWriteOptions, type Kv, type KvValue, type WTensor } from '../../helpers/gguf-writer.js';
import { tinyGgufParts } from '../../helpers/tiny-models.js';
import type { Rng } from '../prng.js';
import { mutateBytes } from './bytes.js';
import { edgeNumber, oddString } from './values.js';
import type { FuzzFiles } from './types.js';

const LLAMA_KEYS = [
  'context_length', 'embedding_length', 'block_count', 'feed_forward_length', 'attention.head_count', 'attention.head_count_kv',
  'attention.layer_norm_rms_epsilon', 'rope.freq_base', 'vocab_size', 'attention.key_length', 'attention.value_length',
  'rope.dimension_count', 'expert_count', 'rope.scaling.type',
].map((k) => `llama.${k}`);
const OTHER_KEYS = ['general.architecture', 'general.alignment', 'tokenizer.ggml.model', 'tokenizer.ggml.tokens', 'tokenizer.ggml.scores',
  'tokenizer.ggml.bos_token_id', 'tokenizer.ggml.eos_token_id', 'tokenizer.ggml.unknown_token_id'];
const SCALAR_TYPES = [T.U8, T.I8, T.U16, T.I16, T.U32, T.I32, T.F32, T.BOOL, T.STRING, T.U64, T.I64, T.F64];
const GGML_TYPES = [0, 1, 8, 30, 2, 12, 14, 4, 39, 40, 255, 2 ** 31];

/** A value the writer can store as `type` (integers wrapped into range, so the bytes are what the type holds). */
function valueOfType(r: Rng, type: number): KvValue {
  const n = edgeNumber(r);
  const int = (bits: number, signed: boolean): number => {
    const m = 2 ** bits;
    let v = Math.trunc(n) % m;
    if (!Number.isFinite(v)) v = 0;
    if (v < 0 && !signed) v += m;
    if (signed && v >= m / 2) v -= m;
    return v;
  };
  switch (type) {
    case T.U8: return int(8, false);
    case T.I8: return int(8, true);
    case T.U16: return int(16, false);
    case T.I16: return int(16, true);
    case T.U32: return int(32, false);
    case T.I32: return int(32, true);
    case T.F32: case T.F64: return r.chance(0.15) ? r.pick([Infinity, -Infinity, NaN]) : n;
    case T.BOOL: return r.chance(0.5);
    case T.STRING: return oddString(r);
    case T.U64: return r.chance(0.3) ? BigInt(r.pick(['12884901888', '18446744073709551615', '9007199254740993', '4294967296'])) : BigInt(int(32, false));
    case T.I64: return r.chance(0.3) ? BigInt(r.pick(['-9223372036854775808', '-1', '9007199254740993'])) : BigInt(int(32, true));
  }
  return 0;
}

function randomKv(r: Rng, key: string): Kv {
  if (r.chance(0.15)) {
    const elemType = r.pick([T.STRING, T.F32, T.U32, T.I32, T.U8]);
    return { key, type: T.ARRAY, elemType, value: Array.from({ length: r.pick([0, 1, 2, 16, 17, 40]) }, () => valueOfType(r, elemType)) };
  }
  const type = r.chance(0.5) ? T.U32 : r.pick(SCALAR_TYPES);
  return { key, type, value: valueOfType(r, type) };
}

/** An SPM vocabulary to embed, sometimes inconsistent (lengths, ids, odd pieces). */
function tokenizerKvs(r: Rng, vocab: number): Kv[] {
  const n = r.chance(0.7) ? vocab : r.pick([0, 1, 3, vocab + 1, vocab * 4]);
  const tokens = Array.from({ length: n }, (_, i) => (r.chance(0.1) ? oddString(r) : i < 3 ? ['<unk>', '<s>', '</s>'][i]! : `▁t${i}`));
  const scores = Array.from({ length: r.chance(0.9) ? n : n + 1 }, () => (r.chance(0.05) ? r.pick([NaN, -Infinity]) : -r.next() * 10));
  return [
    { key: 'tokenizer.ggml.model', type: T.STRING, value: r.chance(0.9) ? 'llama' : oddString(r) },
    { key: 'tokenizer.ggml.tokens', type: T.ARRAY, elemType: T.STRING, value: tokens },
    { key: 'tokenizer.ggml.scores', type: T.ARRAY, elemType: T.F32, value: scores },
    ...(r.chance(0.3) ? [{ key: 'tokenizer.ggml.bos_token_id', type: T.U32, value: r.chance(0.5) ? 1 : r.range(0, 3 * vocab) }] : []),
    ...(r.chance(0.3) ? [{ key: 'tokenizer.ggml.unknown_token_id', type: T.U32, value: r.range(0, 2 * vocab) }] : []),
  ];
}

function mutateTensor(r: Rng, t: WTensor, all: WTensor[]): WTensor {
  return r.weighted<WTensor>([
    [3, () => {
      const ne = [...t.ne];
      r.weighted<void>([
        [3, () => { ne[r.int(ne.length)] = r.chance(0.5) ? r.pick([0, 1, 2, 31, 32, 64, 256, 2 ** 32, 2 ** 40]) : r.range(1, 40); }],
        [1, () => { ne.push(r.pick([1, 2, 0])); }],
        [1, () => { ne.pop(); }],
        [1, () => { ne.reverse(); }],
        [1, () => { while (ne.length < 5) ne.push(1); }],
      ]);
      return { ...t, ne };
    }],
    [3, () => {
      const type = r.pick(GGML_TYPES);
      const elems = t.ne.reduce((a, b) => a * b, 1);
      const fits = elems <= 1 << 20; // dims may already be absurd (2^40): then write a few bytes only
      const bytes = !fits ? r.range(0, 300) : type === 8 ? Math.ceil(elems / 32) * 34 : type === 1 || type === 30 ? elems * 2 : r.chance(0.5) ? elems * 4 : r.range(0, 300);
      return { ...t, type, data: new Uint8Array(bytes).map(() => r.int(256)) };
    }],
    [2, () => ({ ...t, name: r.weighted([
      [2, () => oddString(r)],
      [2, () => t.name.replace(/\d+/, r.pick(['07', '2', '99999999999999999999', '-1']))],
      [1, () => r.pick(all).name],
      [1, () => t.name.replace('.weight', r.pick(['.bias', '', '.weight.weight']))],
      [1, () => r.pick(['rope_freqs.weight', 'output.weight', 'blk.0.attn_rot_embd.weight', 'token_embd.weight'])],
    ]) })],
    [1, () => ({ ...t, data: t.data.slice(0, r.int(t.data.length + 1)) })],
  ]);
}

let fixtureBytes: Uint8Array | undefined;

export function ggufCase(r: Rng): FuzzFiles {
  const done = (b: Uint8Array): FuzzFiles => ({ files: { 'model.gguf': b }, open: 'model.gguf' });
  if (r.chance(0.03)) {
    // The real stories260K file (with its 512-token vocabulary): its header bytes mutated.
    fixtureBytes ??= new Uint8Array(readFileSync(CHECKPOINTS.gguf));
    return done(mutateBytes(r, fixtureBytes, 24_000));
  }
  const parts = tinyGgufParts();
  let kv: Kv[] = parts.kv;
  let tensors: WTensor[] = parts.tensors;
  if (r.chance(0.2)) kv = [...kv, ...tokenizerKvs(r, 16)];
  const opts: Partial<GgufWriteOptions> = {};
  for (let n = r.range(1, 3); n > 0; n--) {
    r.weighted<void>([
      [6, () => {
        if (kv.length === 0) return;
        const i = r.int(kv.length);
        kv[i] = r.chance(0.5) && kv[i]!.type !== T.ARRAY ? { ...kv[i]!, value: valueOfType(r, kv[i]!.type) } : randomKv(r, kv[i]!.key);
      }],
      [2, () => { kv.splice(r.int(kv.length), 1); }],
      [3, () => { kv.push(randomKv(r, r.chance(0.9) ? r.pick([...LLAMA_KEYS, ...OTHER_KEYS]) : oddString(r))); }],
      [1, () => { if (kv.length) kv.push({ ...r.pick(kv) }); }],
      [1, () => { if (kv.length) { const i = r.int(kv.length); kv[i] = { ...kv[i]!, key: r.chance(0.5) ? oddString(r) : kv[i]!.key + '\n' }; } }],
      [6, () => { if (tensors.length) { const i = r.int(tensors.length); tensors[i] = mutateTensor(r, tensors[i]!, tensors); } }],
      [1, () => { tensors.splice(r.int(tensors.length), 1); }],
      [1, () => { if (tensors.length) tensors.push({ ...r.pick(tensors) }); }],
      [3, () => {
        if (tensors.length === 0) return;
        const t = r.pick(tensors);
        const other = r.pick(tensors);
        opts.offsets = { ...opts.offsets, [t.name]: BigInt(r.weighted([
          [2, () => r.pick([0, 4, 8, 16, 31, 33, 1 << 20])],
          [2, () => r.range(0, 8000)],
          [1, () => 2 ** 53 + r.int(4)],
        ])) };
        if (r.chance(0.3)) opts.offsets[other.name] = opts.offsets[t.name]!;
      }],
      [1, () => { opts.tensorCount = BigInt(Math.max(0, tensors.length + r.pick([-1, 1, 1000]))); }],
      [1, () => { opts.kvCount = BigInt(Math.max(0, kv.length + r.pick([-1, 1, 1000]))); }],
      [1, () => { opts.version = r.pick([1, 2, 3, 4, 0x03000000]); }],
      [1, () => { const a = r.pick([1, 8, 16, 64, 3]); opts.alignment = a === 3 ? 32 : a; kv.push({ key: 'general.alignment', type: r.pick([T.U32, T.U64, T.F32]), value: a === 3 ? 3 : a }); }],
    ]);
  }
  kv = kv.map((x) => (x.type === T.U64 || x.type === T.I64) && typeof x.value === 'number' ? { ...x, value: BigInt(x.value) } : x);
  let bytes = writeGguf({ kv, tensors, ...opts });
  if (r.chance(0.15)) bytes = mutateBytes(r, bytes, Math.min(bytes.length, 2000));
  return done(bytes);
}
