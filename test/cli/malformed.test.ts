// Malformed checkpoints from issue 13 (found by fuzzing), through the built CLI: each must end in ONE
// stderr line `mocc: …` and exit 1, at once (a spawn timeout catches the old hangs), within a 300 MB
// heap (the old blow-ups now crash the child instead, and exit ≠ 1), and `convert` writes nothing.
import test, { type ExecutionContext } from 'ava';
import { spawnSync } from 'node:child_process';
import { mkdirSync, readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { tempDir } from '../helpers/cli.js';
import { CHECKPOINTS, ROOT } from '../helpers/fixtures.js';
import { T, writeGguf, type Kv, type WTensor } from '../helpers/gguf-writer.js';
import {
  concat, safetensorsBytes, tinyGgufParts, tinyHfConfig, tinyLlama2c, tinySafetensors, TINY, type StEntry, type StParts, type TinyDims,
} from '../helpers/tiny-models.js';

/** Generous: CLI start-up alone takes about 2 s on a loaded 2-core machine; the old failures ran for minutes. */
const TIMEOUT_MS = 20_000;

interface Run {
  code: number | null;
  stderr: string;
}

function mocc(...args: string[]): Run {
  const r = spawnSync(process.execPath, ['--max-old-space-size=300', join(ROOT, 'dist/cli/mocc.js'), ...args], {
    encoding: 'utf8', timeout: TIMEOUT_MS, maxBuffer: 1 << 20,
  });
  if (r.error) throw new Error(`mocc ${args.join(' ')}: ${r.error.message} (timed out or killed: a hang or a blow-up)`);
  return { code: r.status, stderr: r.stderr };
}

function userError(t: ExecutionContext, r: Run, what: RegExp): void {
  t.is(r.code, 1, `exit code (stderr: ${r.stderr})`);
  t.true(r.stderr.startsWith('mocc: ') && r.stderr.endsWith('\n'), `one "mocc: " line: ${JSON.stringify(r.stderr)}`);
  t.is(r.stderr.split('\n').length, 2, `exactly one line: ${JSON.stringify(r.stderr)}`);
  t.regex(r.stderr, what);
}

/** `inspect` and `convert` both refuse the input with `what`; convert leaves its output's parent empty. */
function refused(t: ExecutionContext, input: string, what: RegExp): void {
  userError(t, mocc('inspect', input), what);
  const parent = join(tempDir(t), 'out');
  mkdirSync(parent);
  userError(t, mocc('convert', input, '-o', join(parent, 'pkg'), '--k', '4'), what);
  t.deepEqual(readdirSync(parent), [], 'nothing written');
}

// ---------- HF: config.json + model.safetensors ----------

/** An HF checkpoint directory from the tiny model, with config and safetensors header as given. */
function hfDir(t: ExecutionContext, opts: { config?: Record<string, unknown>; configText?: string; st?: StParts; headerText?: string } = {}): string {
  const dir = join(tempDir(t), 'ckpt');
  mkdirSync(dir);
  const st = opts.st ?? tinySafetensors();
  writeFileSync(join(dir, 'config.json'), opts.configText ?? JSON.stringify({ ...tinyHfConfig(), ...opts.config }));
  writeFileSync(join(dir, 'model.safetensors'), safetensorsBytes(opts.headerText ?? JSON.stringify(st.header), st.data));
  return dir;
}

/** `inner` nested in `depth` JSON arrays, as text (JSON.stringify of such a value would itself overflow). */
function deepJson(depth: number, inner: string): string {
  return '['.repeat(depth) + inner + ']'.repeat(depth);
}

function entry(st: StParts, name: string): StEntry {
  return st.header[name] as StEntry;
}

test('HF control: the tiny checkpoint converts', (t) => {
  const parent = tempDir(t);
  const r = mocc('convert', hfDir(t), '-o', join(parent, 'pkg'), '--k', '4');
  t.is(r.code, 0, r.stderr);
});

for (const layers of [1e6, 1e9]) {
  test(`HF: num_hidden_layers ${layers} is checked against the tensors before anything per layer is allocated`, (t) => {
    refused(t, hfDir(t, { config: { num_hidden_layers: layers } }), new RegExp(`config says ${layers} layers but there are no tensors for layer 2`));
  });
}

test('HF: a value nested 10,000 deep in config.json', (t) => {
  const text = JSON.stringify(tinyHfConfig()).replace('"num_hidden_layers":2', `"num_hidden_layers":${deepJson(10_000, '2')}`);
  refused(t, hfDir(t, { configText: text }), /num_hidden_layers is \[\[\[\[…\]\]\]\], expected a positive integer/);
});

test('HF: architectures nested 10,000 deep (printed in the unsupported-model message)', (t) => {
  const cfg = { ...tinyHfConfig(), model_type: 'mistral' };
  const text = JSON.stringify(cfg).replace('["LlamaForCausalLM"]', deepJson(10_000, '"x"'));
  refused(t, hfDir(t, { configText: text }), /unsupported model: model_type "mistral", architectures \[\[\[/);
});

for (const field of ['shape', 'data_offsets'] as const) {
  test(`HF: a safetensors ${field} nested 10,000 deep`, (t) => {
    const st = tinySafetensors();
    const json = JSON.stringify(st.header);
    const e = entry(st, 'model.norm.weight');
    const old = `"model.norm.weight":${JSON.stringify(e)}`;
    t.true(json.includes(old));
    const text = json.replace(old, old.replace(`"${field}":${JSON.stringify(e[field])}`, `"${field}":${deepJson(10_000, '8')}`));
    refused(t, hfDir(t, { st, headerText: text }), new RegExp(`model\\.norm\\.weight has ${field} \\[\\[\\[.*expected`));
  });
}

test('HF: llama3 rope_scaling with original_max_position_embeddings 4096.25', (t) => {
  const rope_scaling = { rope_type: 'llama3', factor: 8, low_freq_factor: 1, high_freq_factor: 4, original_max_position_embeddings: 4096.25 };
  refused(t, hfDir(t, { config: { rope_scaling } }), /rope_scaling\.original_max_position_embeddings is 4096\.25, expected a positive integer/);
});

test('HF: a tensor name with a newline and control bytes is escaped, on one line', (t) => {
  const st = tinySafetensors();
  const evil = 'model.layers.0.\nevil\u0007\u001b[31m.weight';
  st.header = { [evil]: { dtype: 'I8', shape: [0], data_offsets: [0, 0] }, ...st.header };
  refused(t, hfDir(t, { st }), /tensor "model\.layers\.0\.\\nevil\\u0007\\u001b\[31m\.weight" has dtype I8/);
});

test('HF: a zero-length tensor between two overlapping ones does not hide the overlap', (t) => {
  const st = tinySafetensors();
  const a = entry(st, 'model.layers.0.input_layernorm.weight');
  const b = entry(st, 'model.layers.1.input_layernorm.weight');
  const [a0] = a.data_offsets as [number, number];
  b.data_offsets = [a0 + 16, a0 + 16 + 4 * TINY.dim]; // same size, overlapping a's second half
  st.header['model.extra.weight'] = { dtype: 'F32', shape: [0], data_offsets: [a0 + 8, a0 + 8] };
  refused(t, hfDir(t, { st }), /tensors model\.layers\.0\.input_layernorm\.weight \[\d+, \d+\) and model\.layers\.1\.input_layernorm\.weight \[\d+, \d+\) overlap/);
});

test('HF: a key given twice in the safetensors header (JSON.parse would keep the last)', (t) => {
  const st = tinySafetensors();
  const json = JSON.stringify(st.header);
  const norm = `"model.norm.weight":${JSON.stringify(entry(st, 'model.norm.weight'))}`;
  const text = json.replace(norm, `${norm},"model.norm.weight":${JSON.stringify({ ...entry(st, 'model.norm.weight'), data_offsets: [0, 32] })}`);
  refused(t, hfDir(t, { st, headerText: text }), /safetensors header has the key "model\.norm\.weight" twice/);
});

test('HF: a key given twice in config.json', (t) => {
  const text = JSON.stringify(tinyHfConfig()).replace('"num_hidden_layers":2', '"num_hidden_layers":2,"num_hidden_layers":1');
  refused(t, hfDir(t, { configText: text }), /config\.json has the key "num_hidden_layers" twice/);
});

for (const dtype of ['constructor', '__proto__', 'toString']) {
  test(`HF: dtype "${dtype}" is not looked up through Object.prototype`, (t) => {
    const st = tinySafetensors();
    entry(st, 'model.norm.weight').dtype = dtype;
    refused(t, hfDir(t, { st }), new RegExp(`model\\.norm\\.weight has dtype ${dtype}, supported: F32, F16, BF16`));
  });
}

// ---------- GGUF ----------

function ggufFile(t: ExecutionContext, kv: Kv[], tensors: WTensor[], offsets?: Record<string, bigint>): string {
  const p = join(tempDir(t), 'model.gguf');
  writeFileSync(p, writeGguf({ kv, tensors, ...(offsets ? { offsets } : {}) }));
  return p;
}

function withKv(kv: Kv[], key: string, type: number, value: Kv['value']): Kv[] {
  return kv.map((x) => (x.key === key ? { key, type, value } : x));
}

test('GGUF control: the tiny checkpoint converts', (t) => {
  const { kv, tensors } = tinyGgufParts();
  const r = mocc('convert', ggufFile(t, kv, tensors), '-o', join(tempDir(t), 'pkg'), '--k', '4');
  t.is(r.code, 0, r.stderr);
});

test('GGUF: llama.block_count as a u64 of 12884901888', (t) => {
  const { kv, tensors } = tinyGgufParts();
  refused(t, ggufFile(t, withKv(kv, 'llama.block_count', T.U64, 12884901888n), tensors), /llama\.block_count must be a positive integer below 2\^31/);
});

test('GGUF: llama.block_count as an f32 of 1e38 (an integral float is not an integer)', (t) => {
  const { kv, tensors } = tinyGgufParts();
  refused(t, ggufFile(t, withKv(kv, 'llama.block_count', T.F32, 1e38), tensors), /llama\.block_count must be a positive integer .*integer type, got 9\.99\d*e\+37/);
});

test('GGUF: llama.block_count 1000000 with tensors for 2 layers', (t) => {
  const { kv, tensors } = tinyGgufParts();
  refused(t, ggufFile(t, withKv(kv, 'llama.block_count', T.U32, 1_000_000), tensors), /config says 1000000 layers but there are no tensors for layer 2/);
});

test('GGUF: a float key of +Infinity (RMSNorm eps)', (t) => {
  const { kv, tensors } = tinyGgufParts();
  refused(t, ggufFile(t, withKv(kv, 'llama.attention.layer_norm_rms_epsilon', T.F32, Infinity), tensors), /layer_norm_rms_epsilon must be a positive finite number, got Infinity/);
});

test('GGUF: a metadata key given twice', (t) => {
  const { kv, tensors } = tinyGgufParts();
  refused(t, ggufFile(t, [...kv, { key: 'llama.block_count', type: T.U32, value: 1 }], tensors), /metadata key llama\.block_count appears twice/);
});

test('GGUF: two tensors whose data ranges overlap', (t) => {
  const { kv, tensors } = tinyGgufParts();
  refused(t, ggufFile(t, kv, tensors, { 'blk.1.attn_norm.weight': BigInt(1024) }), /tensors blk\.\d\.\w+\.weight and blk\.1\.attn_norm\.weight overlap/);
});

test('GGUF: a tensor data offset not aligned to general.alignment', (t) => {
  const { kv, tensors } = tinyGgufParts();
  refused(t, ggufFile(t, kv, tensors, { 'output_norm.weight': BigInt(4) }), /tensor output_norm\.weight data offset 4 is not a multiple of the alignment 32/);
});

test('GGUF: a tensor name with a newline and control bytes is escaped, on one line', (t) => {
  const { kv, tensors } = tinyGgufParts();
  const evil = { name: 'blk.0.x\nmocc: fake\u0000', ne: [4], type: 0, data: new Uint8Array(16) };
  refused(t, ggufFile(t, kv, [...tensors, evil]), /unexpected tensor "blk\.0\.x\\nmocc: fake\\u0000" in a llama GGUF/);
});

/** Q8_0 bytes for one 32-element block: an f16 scale of 0.5, quants -16..15. Dequantized: 0.5·(i-16). */
function q8Block(): Uint8Array {
  const b = new Uint8Array(34);
  const dv = new DataView(b.buffer);
  dv.setUint16(0, 0x3800, true);
  for (let i = 0; i < 32; i++) dv.setInt8(2 + i, i - 16);
  return b;
}

test('GGUF: a 1-D Q8_0 norm whose length is not a multiple of the 32-element block', (t) => {
  const { kv, tensors } = tinyGgufParts();
  const swapped = tensors.map((x) => (x.name === 'blk.0.attn_norm.weight' ? { ...x, type: 8, data: q8Block() } : x));
  refused(t, ggufFile(t, kv, swapped), /Q8_0 tensor blk\.0\.attn_norm\.weight has rows of 8 elements, not a multiple of its 32-element block/);
});

test('GGUF: a 1-D Q8_0 norm of whole blocks converts, dequantized (it used to fail in bytesFor)', (t) => {
  const d: TinyDims = { dim: 32, ffn: 32, layers: 1, heads: 4, kvHeads: 2, vocab: 16, seqLen: 16 };
  const { kv, tensors } = tinyGgufParts(d);
  const swapped = tensors.map((x) => (x.name === 'blk.0.attn_norm.weight' ? { ...x, type: 8, data: q8Block() } : x));
  const out = join(tempDir(t), 'pkg');
  const r = mocc('convert', ggufFile(t, kv, swapped), '-o', out, '--dense');
  t.is(r.code, 0, r.stderr);
  // Read the stored norm from the package's safetensors by hand.
  const b = readFileSync(join(out, 'weights.safetensors'));
  const n = Number(b.readBigUInt64LE(0));
  const header = JSON.parse(b.subarray(8, 8 + n).toString('utf8')) as Record<string, { dtype: string; data_offsets: [number, number] }>;
  const e = header['layers.0.attn_norm']!;
  // Stored as f32, or as f16 where block types are dequantized to f16 by default (these values are exact in both).
  t.true(e.dtype === 'F32' || e.dtype === 'F16', e.dtype);
  const raw = b.subarray(8 + n + e.data_offsets[0], 8 + n + e.data_offsets[1]);
  const f16 = (h: number): number => (h & 0x8000 ? -1 : 1) * (((h >> 10) & 0x1f) === 0 ? (h & 0x3ff) * 2 ** -24 : (1 + (h & 0x3ff) / 1024) * 2 ** (((h >> 10) & 0x1f) - 15));
  const got = Array.from({ length: 32 }, (_, i) => (e.dtype === 'F32' ? raw.readFloatLE(i * 4) : f16(raw.readUInt16LE(i * 2))));
  t.deepEqual(got, Array.from({ length: 32 }, (_, i) => 0.5 * (i - 16)));
});

// ---------- llama2.c ----------

test('llama2.c: n_layers 10158085 (one byte changed in stories260K.bin) is checked against the file size at once', (t) => {
  const b = readFileSync(CHECKPOINTS.llama2c);
  t.is(b.readInt32LE(8), 5);
  b[10] = 0x9b; // n_layers = 0x009b0005
  t.is(b.readInt32LE(8), 10158085);
  const p = join(tempDir(t), 'model.bin');
  writeFileSync(p, b);
  refused(t, p, /truncated llama2\.c checkpoint: the header \(.*layers=10158085.*\) implies \d+ bytes, the file has 1056540/);
});

test('llama2.c: a file longer than its header accounts for (weights would be read from shifted offsets)', (t) => {
  const p = join(tempDir(t), 'model.bin');
  const ok = tinyLlama2c();
  writeFileSync(p, concat([ok, new Uint8Array(4)]));
  refused(t, p, new RegExp(`not a llama2\\.c v0 checkpoint: the header .* implies ${ok.length} bytes, the file has ${ok.length + 4}`));
});

test('llama2.c: a header whose hidden_dim disagrees with the file (one byte changed)', (t) => {
  const b = Buffer.from(readFileSync(CHECKPOINTS.llama2c));
  b.writeInt32LE(171, 4); // hidden_dim 172 → 171
  const p = join(tempDir(t), 'model.bin');
  writeFileSync(p, b);
  refused(t, p, /not a llama2\.c v0 checkpoint: the header \(dim=64 hidden=171 .*\) implies \d+ bytes, the file has 1056540/);
});

test('llama2.c control: the tiny checkpoint converts', (t) => {
  const p = join(tempDir(t), 'model.bin');
  writeFileSync(p, tinyLlama2c());
  const r = mocc('convert', p, '-o', join(tempDir(t), 'pkg'), '--k', '4');
  t.is(r.code, 0, r.stderr);
});

// ---------- a huge claimed context ----------

test('run: a context_length of 2^31-1 does not allocate the whole KV cache up front (ref target)', (t) => {
  const { kv, tensors } = tinyGgufParts();
  const r = mocc('run', ggufFile(t, withKv(kv, 'llama.context_length', T.U32, 2 ** 31 - 1), tensors), '--tokens', '1,2', '--max-tokens', '70');
  t.is(r.code, 0, r.stderr);
  t.regex(r.stderr, /\[70 tokens in /);
});
