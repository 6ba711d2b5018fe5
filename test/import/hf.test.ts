import test from 'ava';
import { throwsUser } from '../helpers/errors.js';
import { existsSync, mkdtempSync, mkdirSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { importHf } from '../../src/import/hf.js';
import { readSafetensorsHeader, writeSafetensors, type SafetensorsEntry } from '../../src/import/safetensors.js';
import { type Checkpoint } from '../../src/import/spec.js';
import { UserError } from '../../src/util/errors.js';
import { encodeFromF32 } from '../../src/util/dtype.js';
import { withCheckpoint } from '../helpers/fixtures.js';

const HF = fileURLToPath(new URL('../../fixtures/stories260K/hf/', import.meta.url));
const L2C = fileURLToPath(new URL('../../fixtures/stories260K/llama2c/stories260K.bin', import.meta.url));
const CONFIG = JSON.parse(readFileSync(join(HF, 'config.json'), 'utf8')) as Record<string, unknown>;

const tmp = mkdtempSync(join(tmpdir(), 'mocc-hf-test-'));
test.after.always(() => rmSync(tmp, { recursive: true, force: true }));
let counter = 0;

/** The fixture's tensors, decoded once (f32), by HF name, in file order. */
const FIXTURE: Array<{ name: string; shape: number[]; data: Float32Array }> = (() => {
  const st = readSafetensorsHeader(join(HF, 'model.safetensors'));
  try {
    return [...st.tensors.values()].map((t) => ({ name: t.name, shape: [...t.shape], data: t.toFloat32() }));
  } finally {
    st.file.close();
  }
})();

function entry(name: string, shape: number[], data: Float32Array, dtype: 'f32' | 'f16' | 'bf16' = 'f32'): SafetensorsEntry {
  return { name, dtype, shape, write: (emit) => emit(encodeFromF32(dtype, data)) };
}

/** A checkpoint dir in tmp: config.json (fixture's, patched) and the given safetensors files. */
async function makeDir(configPatch: Record<string, unknown>, files: Record<string, SafetensorsEntry[]> = { 'model.safetensors': FIXTURE.map((t) => entry(t.name, t.shape, t.data)) }, extra: Record<string, string> = {}): Promise<string> {
  const dir = join(tmp, `ckpt-${counter++}`);
  mkdirSync(dir);
  const cfg: Record<string, unknown> = { ...CONFIG };
  for (const [k, v] of Object.entries(configPatch)) {
    if (v === undefined) delete cfg[k];
    else cfg[k] = v;
  }
  writeFileSync(join(dir, 'config.json'), JSON.stringify(cfg, null, 2));
  for (const [f, entries] of Object.entries(files)) await writeSafetensors(join(dir, f), entries);
  for (const [f, text] of Object.entries(extra)) writeFileSync(join(dir, f), text);
  return dir;
}


const withCkpt = <T>(dir: string, fn: (c: Checkpoint) => T): T => withCheckpoint(() => importHf(dir), fn);

/** llama2.c's stories260K.bin read by hand: 7 int32, then f32 tensors in the documented order. */
function readLlama2c() {
  const buf = readFileSync(L2C);
  const [dim, hidden, nLayers, nHeads, nKv, vocab] = [0, 1, 2, 3, 4, 5].map((i) => buf.readInt32LE(i * 4)) as [number, number, number, number, number, number];
  const hd = dim / nHeads;
  let off = 28;
  const take = (n: number) => {
    const a = new Float32Array(n);
    for (let i = 0; i < n; i++) a[i] = buf.readFloatLE(off + i * 4);
    off += n * 4;
    return a;
  };
  const perLayer = (n: number) => {
    const all = take(nLayers * n);
    return Array.from({ length: nLayers }, (_, l) => all.slice(l * n, (l + 1) * n));
  };
  const V = Math.abs(vocab);
  return {
    dim, hidden, nLayers, nHeads, nKv, vocab, hd,
    tok: take(V * dim),
    rmsAtt: perLayer(dim),
    wq: perLayer(dim * dim),
    wk: perLayer(nKv * hd * dim),
    wv: perLayer(nKv * hd * dim),
    wo: perLayer(dim * dim),
    rmsFfn: perLayer(dim),
    w1: perLayer(hidden * dim),
    w2: perLayer(dim * hidden),
    w3: perLayer(hidden * dim),
    rmsFinal: take(dim),
  };
}

/** Interleaved-RoPE rows (llama2.c) → half-split rows (HF): HF row h·hd+j is llama2.c row h·hd+2j (j<hd/2) or h·hd+2(j−hd/2)+1. */
function permuteToHalf(w: Float32Array, heads: number, hd: number, cols: number): Float32Array {
  const out = new Float32Array(w.length);
  for (let h = 0; h < heads; h++) {
    for (let j = 0; j < hd; j++) {
      const src = h * hd + (j < hd / 2 ? 2 * j : 2 * (j - hd / 2) + 1);
      out.set(w.subarray(src * cols, (src + 1) * cols), (h * hd + j) * cols);
    }
  }
  return out;
}

test('fixture: spec from config.json', async (t) => {
  withCkpt(HF, (c) => {
    t.is(c.format, 'hf');
    t.is(c.path, HF);
    t.deepEqual(c.spec, {
      arch: 'llama', dim: 64, nLayers: 5, nHeads: 8, nKvHeads: 4, headDim: 8, dFfn: 172, vocabSize: 512,
      normEps: 1e-5, maxSeqLen: 512, rope: { theta: 10000, style: 'half' }, tiedEmbeddings: true, bosId: 1, eosId: 2,
    });
    t.deepEqual(c.files, [join(HF, 'config.json'), join(HF, 'model.safetensors')]);
    t.is(c.tokenizer, undefined);
    t.is(c.weights.size, 1 + 5 * 9 + 1);
    t.false(c.weights.has('output'), 'tied: no output tensor');
    t.deepEqual([...c.weights.get('layers.4.w_down')!.shape], [64, 172]);
    t.deepEqual([...c.weights.get('layers.0.wk')!.shape], [32, 64]);
  });
});

test('fixture: weights equal llama2.c stories260K.bin (independent reading)', async (t) => {
  const ref = readLlama2c();
  t.deepEqual([ref.dim, ref.hidden, ref.nLayers, ref.nHeads, ref.nKv, ref.vocab], [64, 172, 5, 8, 4, 512]);
  withCkpt(HF, (c) => {
    const w = (n: string) => c.weights.get(n)!.toFloat32();
    // The brief's headline check: gate is not permuted, so identical values.
    t.deepEqual(w('layers.0.w_gate'), ref.w1[0]!);
    t.deepEqual(w('tok_embeddings'), ref.tok);
    t.deepEqual(w('norm'), ref.rmsFinal);
    for (let l = 0; l < 5; l++) {
      t.deepEqual(w(`layers.${l}.attn_norm`), ref.rmsAtt[l]!, `attn_norm ${l}`);
      t.deepEqual(w(`layers.${l}.ffn_norm`), ref.rmsFfn[l]!, `ffn_norm ${l}`);
      t.deepEqual(w(`layers.${l}.w_gate`), ref.w1[l]!, `w_gate ${l}`);
      t.deepEqual(w(`layers.${l}.w_down`), ref.w2[l]!, `w_down ${l}`);
      t.deepEqual(w(`layers.${l}.w_up`), ref.w3[l]!, `w_up ${l}`);
      t.deepEqual(w(`layers.${l}.wv`), ref.wv[l]!, `wv ${l}`);
      t.deepEqual(w(`layers.${l}.wo`), ref.wo[l]!, `wo ${l}`);
      // Q/K are stored permuted for half-split RoPE (HF convention).
      t.deepEqual(w(`layers.${l}.wq`), permuteToHalf(ref.wq[l]!, 8, 8, 64), `wq ${l}`);
      t.deepEqual(w(`layers.${l}.wk`), permuteToHalf(ref.wk[l]!, 4, 8, 64), `wk ${l}`);
    }
    // Row reads agree with whole reads.
    t.deepEqual(c.weights.get('layers.2.w_up')!.readRowsF32(10, 12), ref.w3[2]!.slice(10 * 64, 12 * 64));
  });
});

/** Independent float32 → bfloat16 → float32 rounding (nearest, ties to even) on the raw bits. */
function bf16Round(v: Float32Array): Float32Array {
  const bits = new Uint32Array(v.slice().buffer);
  for (let i = 0; i < bits.length; i++) {
    const x = bits[i]!;
    let hi = x >>> 16;
    const lo = x & 0xffff;
    if (lo > 0x8000 || (lo === 0x8000 && (hi & 1) === 1)) hi += 1;
    bits[i] = (hi << 16) >>> 0;
  }
  return new Float32Array(bits.buffer);
}

async function shardedBf16(configPatch: Record<string, unknown> = {}, mutateIndex?: (wm: Record<string, string>) => void, dropShard?: string): Promise<string> {
  const half = Math.ceil(FIXTURE.length / 2);
  const shards = ['model-00001-of-00002.safetensors', 'model-00002-of-00002.safetensors'];
  const files: Record<string, SafetensorsEntry[]> = {
    [shards[0]!]: FIXTURE.slice(0, half).map((t) => entry(t.name, t.shape, t.data, 'bf16')),
    [shards[1]!]: FIXTURE.slice(half).map((t) => entry(t.name, t.shape, t.data, 'bf16')),
  };
  const weightMap: Record<string, string> = {};
  FIXTURE.forEach((t, i) => { weightMap[t.name] = shards[i < half ? 0 : 1]!; });
  mutateIndex?.(weightMap);
  if (dropShard) delete files[dropShard];
  const index = JSON.stringify({ metadata: { total_size: 0 }, weight_map: weightMap });
  return await makeDir({ ...configPatch, dtype: 'bfloat16' }, files, { 'model.safetensors.index.json': index });
}

test('sharded bf16 checkpoint (2 shards + index) imports with bf16-rounded fixture values', async (t) => {
  const dir = await shardedBf16();
  withCkpt(dir, (c) => {
    t.is(c.spec.dim, 64);
    t.deepEqual(c.files, [join(dir, 'config.json'), join(dir, 'model.safetensors.index.json'), join(dir, 'model-00001-of-00002.safetensors'), join(dir, 'model-00002-of-00002.safetensors')]);
    t.is(c.weights.size, 47);
    for (const ft of FIXTURE) {
      if (ft.name.includes('rotary')) continue;
      const canon = ft.name
        .replace('model.embed_tokens.weight', 'tok_embeddings').replace('model.norm.weight', 'norm')
        .replace(/^model\.layers\.(\d+)\./, 'layers.$1.').replace('.input_layernorm.weight', '.attn_norm')
        .replace('.post_attention_layernorm.weight', '.ffn_norm').replace(/\.self_attn\.([qkvo])_proj\.weight/, '.w$1')
        .replace(/\.mlp\.(gate|up|down)_proj\.weight/, '.w_$1');
      const src = c.weights.get(canon);
      t.truthy(src, `${ft.name} → ${canon}`);
      t.is(src!.dtype, 'bf16');
      t.deepEqual(src!.toFloat32(), bf16Round(ft.data), canon);
    }
    // bf16 rounding did change something (the check would be vacuous otherwise).
    t.notDeepEqual(bf16Round(FIXTURE[0]!.data), FIXTURE[0]!.data);
  });
});

test('bad: config with model_type gpt2', async (t) => {
  const dir = await makeDir({ model_type: 'gpt2', architectures: ['GPT2LMHeadModel'] });
  throwsUser(t, () => importHf(dir), /model_type "gpt2".*GPT2LMHeadModel/);
});

test('model_type llama with another llama-family architecture name is accepted', async (t) => {
  const dir = await makeDir({ architectures: ['MistralForCausalLM'] });
  withCkpt(dir, (c) => t.is(c.spec.nLayers, 5));
});

test('bad: a tensor whose shape disagrees with config.json', async (t) => {
  const files = { 'model.safetensors': FIXTURE.map((f) => f.name === 'model.layers.2.self_attn.k_proj.weight'
    ? entry(f.name, [16, 64], f.data.slice(0, 16 * 64)) : entry(f.name, f.shape, f.data)) };
  throwsUser(t, importHf.bind(null, await makeDir({}, files)), 'tensor model.layers.2.self_attn.k_proj.weight has shape [16,64] but the config implies [32,64]');
  // And the other way: the config disagrees with the (correct) tensors.
  throwsUser(t, importHf.bind(null, await makeDir({ intermediate_size: 128 })), /mlp\.\w+_proj\.weight has shape \[\d+,\d+\] but the config implies/);
});

test('bad: a missing tensor', async (t) => {
  const files = { 'model.safetensors': FIXTURE.filter((f) => f.name !== 'model.layers.3.mlp.up_proj.weight').map((f) => entry(f.name, f.shape, f.data)) };
  throwsUser(t, importHf.bind(null, await makeDir({}, files)), 'missing tensor for layers.3.w_up (expected shape [172,64])');
});

test('bad: untied config without lm_head', async (t) => {
  throwsUser(t, importHf.bind(null, await makeDir({ tie_word_embeddings: false })), 'missing tensor for output');
});

test('untied config with lm_head maps it to output; tied ignores lm_head', async (t) => {
  const emb = FIXTURE.find((f) => f.name === 'model.embed_tokens.weight')!;
  const head = emb.data.map((x) => x * 2);
  const files = { 'model.safetensors': [...FIXTURE.map((f) => entry(f.name, f.shape, f.data)), entry('lm_head.weight', emb.shape, head)] };
  withCkpt(await makeDir({ tie_word_embeddings: false }, files), (c) => {
    t.false(c.spec.tiedEmbeddings);
    t.deepEqual(c.weights.get('output')!.toFloat32(), head);
  });
  withCkpt(await makeDir({}, files), (c) => t.false(c.weights.has('output')));
});

test('bad: a shard named in the index is missing', async (t) => {
  const dir = await shardedBf16({}, undefined, 'model-00002-of-00002.safetensors');
  throwsUser(t, () => importHf(dir), /shard model-00002-of-00002\.safetensors is named in the index but .* does not exist/);
});

test('bad: a tensor listed in the index is absent from its shard', async (t) => {
  const dir = await shardedBf16({}, (wm) => { wm['model.layers.0.mlp.gate_proj.weight'] = 'model-00002-of-00002.safetensors'; });
  throwsUser(t, () => importHf(dir), 'tensor model.layers.0.mlp.gate_proj.weight is listed in the index for shard model-00002-of-00002.safetensors but is not in that file');
});

test('bad: corrupt safetensors inside a checkpoint names the file', async (t) => {
  const dir = await makeDir({}, {}, { 'model.safetensors': 'abc' });
  throwsUser(t, () => importHf(dir), /model\.safetensors: truncated/);
});

test('bad: no weights / no config', async (t) => {
  throwsUser(t, importHf.bind(null, await makeDir({}, {})), 'no model.safetensors or model.safetensors.index.json');
  const empty = join(tmp, 'empty');
  mkdirSync(empty);
  throwsUser(t, () => importHf(empty), 'no config.json');
  throwsUser(t, importHf.bind(null, await makeDir({}, {}, { 'config.json': '{"model_type": "llama",' })), 'config.json is not valid JSON');
});

test('bad: unsupported features', async (t) => {
  throwsUser(t, importHf.bind(null, await makeDir({ mlp_bias: true })), 'mlp_bias');
  throwsUser(t, importHf.bind(null, await makeDir({ attention_bias: true })), 'attention_bias');
  throwsUser(t, importHf.bind(null, await makeDir({ hidden_act: 'gelu' })), 'hidden_act "gelu" is not supported');
  throwsUser(t, importHf.bind(null, await makeDir({ rope_parameters: { rope_theta: 10000, rope_type: 'yarn', factor: 4 } })), 'rope type "yarn" is not supported');
  throwsUser(t, importHf.bind(null, await makeDir({ rope_parameters: undefined, rope_scaling: { type: 'linear', factor: 2 } })), 'rope type "linear"');
  throwsUser(t, importHf.bind(null, await makeDir({ num_hidden_layers: undefined })), 'missing num_hidden_layers');
  throwsUser(t, importHf.bind(null, await makeDir({ hidden_size: 64.5 })), 'hidden_size is 64.5');
});

test('config variants: top-level rope_theta, llama3 scaling (both spellings), eos list, defaults', async (t) => {
  withCkpt(await makeDir({ rope_parameters: undefined, rope_theta: 500000, eos_token_id: [2, 7], bos_token_id: undefined, head_dim: undefined, num_key_value_heads: 4 }), (c) => {
    t.is(c.spec.rope.theta, 500000);
    t.is(c.spec.rope.scaling, undefined);
    t.is(c.spec.eosId, 2);
    t.is(c.spec.bosId, 1);
    t.is(c.spec.headDim, 8);
  });
  const llama3 = { factor: 8, low_freq_factor: 1, high_freq_factor: 4, original_max_position_embeddings: 8192 };
  const expected = { type: 'llama3', factor: 8, lowFreqFactor: 1, highFreqFactor: 4, originalMaxPositionEmbeddings: 8192 };
  withCkpt(await makeDir({ rope_parameters: undefined, rope_theta: 500000, rope_scaling: { rope_type: 'llama3', ...llama3 } }), (c) => {
    t.deepEqual(c.spec.rope, { theta: 500000, style: 'half', scaling: expected });
  });
  withCkpt(await makeDir({ rope_parameters: { rope_theta: 123, rope_type: 'llama3', ...llama3 } }), (c) => {
    t.deepEqual(c.spec.rope, { theta: 123, style: 'half', scaling: expected });
  });
  withCkpt(await makeDir({ rope_parameters: undefined }), (c) => t.is(c.spec.rope.theta, 10000));
  // GQA default: num_key_value_heads absent → heads; then k_proj [32,64] disagrees with [64,64].
  throwsUser(t, importHf.bind(null, await makeDir({ num_key_value_heads: undefined })), 'but the config implies [64,64]');
});

test('close() releases every file and reads afterwards fail', async (t) => {
  const c = importHf(await shardedBf16());
  const w = c.weights.get('layers.4.w_down')!;
  t.is(w.toFloat32().length, 64 * 172);
  c.close();
  t.throws(() => w.toFloat32(), { message: /closed/ });
});

test('failed imports close the files they opened', async (t) => {
  if (!existsSync('/proc/self/fd')) return t.pass('no /proc on this platform');
  const bad = [
    await shardedBf16({}, (wm) => { wm['model.layers.0.mlp.gate_proj.weight'] = 'model-00002-of-00002.safetensors'; }),
    await shardedBf16({ intermediate_size: 128 }),
    await shardedBf16({}, undefined, 'model-00002-of-00002.safetensors'),
  ];
  const before = readdirSync('/proc/self/fd').length;
  for (let i = 0; i < 10; i++) for (const d of bad) t.throws(() => importHf(d), { instanceOf: UserError });
  t.is(readdirSync('/proc/self/fd').length, before);
});
