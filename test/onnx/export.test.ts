// `mocc export --format onnx`, checked by running the exported models in onnxruntime-node (CPU), an
// implementation independent of mocc: stories260K dense and MoC K=32/128, both FFN forms, against the
// Hugging Face references (fixtures/stories260K/reference) and mocc's own ref target; K = d_ffn equals
// dense; with --kv-cache, prefill then one token at a time equals the whole sequence at once.
import test from 'ava';
import { existsSync, readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import ort from 'onnxruntime-node';
import { onnxType } from '../../src/onnx/proto.js';
import { HF_NAMES } from '../../targets/onnx/hf-names.js';
import { mocc, tempDir } from '../helpers/cli.js';
import { CHECKPOINTS, LLAMA2C_TOKENIZER, REF, maxAbsDiff, referenceLogits } from '../helpers/fixtures.js';

const SEQS = ['greedy_once_upon', 'sample0'] as const;
const VOCAB = 512, LAYERS = 5, KV_HEADS = 4, HEAD_DIM = 8;
const TOL = 1e-4;

const work = tempDir({ teardown: (fn) => process.on('exit', fn) });
const packages = new Map<string, string>();
/** A package of stories260K converted with these flags (made once per flags). */
function pkg(flags: string[]): string {
  const key = flags.join(' ');
  let p = packages.get(key);
  if (!p) {
    p = join(work, `pkg${packages.size}`);
    const r = mocc('convert', CHECKPOINTS.hf, '-o', p, ...flags, '--tokenizer', LLAMA2C_TOKENIZER);
    if (r.code !== 0) throw new Error(r.stderr);
    packages.set(key, p);
  }
  return p;
}

function exportTo(t: { teardown(fn: () => void): void }, p: string, ...flags: string[]): string {
  const out = join(tempDir(t), 'onnx-out');
  const r = mocc('export', p, '--format', 'onnx', '-o', out, ...flags);
  if (r.code !== 0) throw new Error(`export failed (${r.code}): ${r.stderr}`);
  return out;
}

const ids = (xs: readonly number[]) => new ort.Tensor('int64', BigInt64Array.from(xs.map(BigInt)), [1, xs.length]);

async function fullLogits(dir: string, tokens: readonly number[]): Promise<Float32Array> {
  const s = await ort.InferenceSession.create(join(dir, 'onnx/model.onnx'));
  try {
    const r = await s.run({ input_ids: ids(tokens) });
    return r.logits!.data as Float32Array;
  } finally {
    await s.release();
  }
}

/** The ref target's logits for the tokens (mocc logits, the oracle every mocc target meets). */
function refLogits(t: { teardown(fn: () => void): void }, p: string, tokens: readonly number[]): Float32Array {
  const out = join(tempDir(t), 'ref.f32');
  const r = mocc('logits', p, '--tokens', tokens.join(','), '--out', out, '--target', 'ref');
  if (r.code !== 0) throw new Error(r.stderr);
  const b = readFileSync(out);
  return new Float32Array(b.buffer.slice(b.byteOffset, b.byteOffset + b.byteLength));
}

function opTypes(dir: string): Set<string> {
  const M = onnxType('ModelProto');
  const m = M.toObject(M.decode(readFileSync(join(dir, 'onnx/model.onnx'))), { longs: Number }) as { graph: { node: { opType: string }[] } };
  return new Set(m.graph.node.map((n) => n.opType));
}

const MOC = [
  { name: 'K=32', flags: ['--k', '32'], ref: 'moc_k32' },
  { name: 'K=128', flags: ['--k', '128'], ref: 'moc_k128' },
] as const;

for (const mode of MOC) {
  for (const form of ['gather', 'masked'] as const) {
    test(`MoC ${mode.name}, ${form} form: onnxruntime logits match HF and the ref target within 1e-4`, async (t) => {
      const p = pkg([...mode.flags]);
      const dir = exportTo(t, p, '--form', form);
      t.true(opTypes(dir).has('TopK'));
      t.is(opTypes(dir).has('ScatterElements'), form === 'masked');
      for (const seq of SEQS) {
        const tokens = REF.sequences[seq]!.tokens;
        const got = await fullLogits(dir, tokens);
        const hf = maxAbsDiff(got, referenceLogits(seq, mode.ref));
        const ref = maxAbsDiff(got, refLogits(t, p, tokens));
        t.true(hf <= TOL, `${seq}: max |Δ| vs HF = ${hf}`);
        t.true(ref <= TOL, `${seq}: max |Δ| vs ref target = ${ref}`);
      }
    });
  }
}

test('dense package: plain ONNX (no TopK) matching the HF dense reference', async (t) => {
  const dir = exportTo(t, pkg(['--dense']));
  const ops = opTypes(dir);
  t.false(ops.has('TopK'));
  t.false(ops.has('GatherElements'));
  for (const seq of SEQS) {
    const got = await fullLogits(dir, REF.sequences[seq]!.tokens);
    const d = maxAbsDiff(got, referenceLogits(seq, 'dense'));
    t.true(d <= TOL, `${seq}: max |Δ| = ${d}`);
  }
});

test('MoC K = d_ffn (172), both forms, equals the dense reference', async (t) => {
  const p = pkg(['--k', '172']);
  for (const form of ['gather', 'masked']) {
    const dir = exportTo(t, p, '--form', form);
    t.true(opTypes(dir).has('TopK'));
    const d = maxAbsDiff(await fullLogits(dir, REF.sequences.sample0!.tokens), referenceLogits('sample0', 'dense'));
    t.true(d <= TOL, `${form}: max |Δ| = ${d}`);
  }
});

/** Runs a --kv-cache export on `tokens` in chunks (sizes `chunks`), feeding each call's present back as past. */
async function decodeInChunks(dir: string, tokens: readonly number[], chunks: number[]): Promise<Float32Array> {
  const s = await ort.InferenceSession.create(join(dir, 'onnx/model.onnx'));
  try {
    const out = new Float32Array(tokens.length * VOCAB);
    const past: Record<string, ort.Tensor> = {};
    for (let l = 0; l < LAYERS; l++) {
      for (const name of [HF_NAMES.pastKey(l), HF_NAMES.pastValue(l)]) past[name] = new ort.Tensor('float32', new Float32Array(0), [1, KV_HEADS, 0, HEAD_DIM]);
    }
    let pos = 0;
    for (const n of chunks) {
      const chunk = tokens.slice(pos, pos + n);
      const r = await s.run({
        ...past,
        [HF_NAMES.inputIds]: ids(chunk),
        [HF_NAMES.attentionMask]: new ort.Tensor('int64', new BigInt64Array(pos + n).fill(1n), [1, pos + n]),
        [HF_NAMES.positionIds]: new ort.Tensor('int64', BigInt64Array.from(chunk, (_, i) => BigInt(pos + i)), [1, n]),
      });
      out.set(r[HF_NAMES.logits]!.data as Float32Array, pos * VOCAB);
      for (let l = 0; l < LAYERS; l++) {
        past[HF_NAMES.pastKey(l)] = r[HF_NAMES.presentKey(l)]!;
        past[HF_NAMES.pastValue(l)] = r[HF_NAMES.presentValue(l)]!;
      }
      expectShape(r[HF_NAMES.presentKey(0)]!.dims, [1, KV_HEADS, pos + n, HEAD_DIM]);
      pos += n;
    }
    return out;
  } finally {
    await s.release();
  }
}
function expectShape(got: readonly number[], want: number[]): void {
  if (got.join(',') !== want.join(',')) throw new Error(`present shape [${got}], expected [${want}]`);
}

for (const form of ['gather', 'masked'] as const) {
  test(`--kv-cache (MoC K=32, ${form}): prefill then token-by-token decoding equals full-sequence logits`, async (t) => {
    const p = pkg(['--k', '32']);
    const dir = exportTo(t, p, '--kv-cache', '--form', form);
    const tokens = REF.sequences.greedy_once_upon!.tokens;
    const whole = await decodeInChunks(dir, tokens, [tokens.length]);
    const stepped = await decodeInChunks(dir, tokens, [7, ...Array<number>(tokens.length - 7).fill(1)]);
    t.true(maxAbsDiff(stepped, whole) <= TOL, `stepped vs whole: ${maxAbsDiff(stepped, whole)}`);
    t.true(maxAbsDiff(whole, referenceLogits('greedy_once_upon', 'moc_k32')) <= TOL);
    const config = JSON.parse(readFileSync(join(dir, 'config.json'), 'utf8')) as Record<string, unknown>;
    t.deepEqual(config['transformers.js_config'], { use_external_data_format: true, dtype: 'fp32' });
    t.is(config.num_key_value_heads, KV_HEADS);
    t.true(existsSync(join(dir, 'generation_config.json')));
  });
}

test('external data: every initializer over 1 KiB is in model.onnx_data at a 16-byte aligned offset, inside the file', (t) => {
  const dir = exportTo(t, pkg(['--k', '32']));
  const M = onnxType('ModelProto');
  const m = M.toObject(M.decode(readFileSync(join(dir, 'onnx/model.onnx'))), { longs: Number, arrays: true }) as {
    graph: { initializer: { name: string; dims: number[]; dataType: number; externalData: { key: string; value: string }[] }[] };
  };
  const elemBytes = (dataType: number) => (dataType === 7 ? 8 : 4); // INT64 or FLOAT
  const size = readFileSync(join(dir, 'onnx/model.onnx_data')).byteLength;
  let external = 0;
  for (const init of m.graph.initializer) {
    const bytes = init.dims.reduce((a, b) => a * b, 1) * elemBytes(init.dataType);
    t.is(init.externalData.length > 0, bytes > 1024, init.name);
    if (init.externalData.length === 0) continue;
    external++;
    const kv = Object.fromEntries(init.externalData.map((e) => [e.key, e.value]));
    t.is(kv.location, 'model.onnx_data');
    const offset = Number(kv.offset), length = Number(kv.length);
    t.is(offset % 16, 0, init.name);
    t.true(offset + length <= size, init.name);
    t.is(length, bytes, init.name);
  }
  // Every matrix of the 5 layers (7 each) and the tied embedding, at least.
  t.true(external >= 5 * 7 + 1, `${external} external initializers`);
});

test('bad input: one-line errors, exit 1, nothing written', (t) => {
  const dir = tempDir(t);
  const out = join(dir, 'out');
  const notPkg = mocc('export', CHECKPOINTS.hf, '--format', 'onnx', '-o', out);
  t.is(notPkg.code, 1, notPkg.stderr);
  t.regex(notPkg.stderr, /^mocc: .*is not a mocc package.*mocc convert/);
  t.is(notPkg.stderr.trim().split('\n').length, 1);
  const missing = mocc('export', join(dir, 'nope'), '--format', 'onnx', '-o', out);
  t.is(missing.code, 1, missing.stderr);
  const badForm = mocc('export', pkg(['--k', '32']), '--format', 'onnx', '--form', 'sparse', '-o', out);
  t.is(badForm.code, 1, badForm.stderr);
  const noFormat = mocc('export', pkg(['--k', '32']), '-o', out);
  t.is(noFormat.code, 1, noFormat.stderr);
  // A pattern whose last block is short (172 = 21·8 + 4) has no ONNX form here: refused mid-export,
  // after weights were already being written; nothing is left behind.
  const pattern = mocc('export', pkg(['--pattern', '2:8']), '--format', 'onnx', '-o', out);
  t.is(pattern.code, 1, pattern.stderr);
  t.regex(pattern.stderr, /^mocc: ONNX export: pattern 2:8/);
  t.false(existsSync(out));
  t.deepEqual(readdirSync(dir), []);
  const inside = mocc('export', pkg(['--k', '32']), '--format', 'onnx', '-o', join(pkg(['--k', '32']), 'onnx-out'));
  t.is(inside.code, 1);
  t.regex(inside.stderr, /is inside the input/);
  // An existing output is kept unless --force.
  const first = mocc('export', pkg(['--k', '32']), '--format', 'onnx', '-o', out);
  t.is(first.code, 0, first.stderr);
  const again = mocc('export', pkg(['--k', '32']), '--format', 'onnx', '-o', out);
  t.is(again.code, 1);
  t.regex(again.stderr, /already exists \(use --force/);
  t.is(mocc('export', pkg(['--k', '32']), '--format', 'onnx', '-o', out, '--force').code, 0);
});

test('pattern a:b with b dividing d_ffn (4:43): TopK per block matches the ref target', async (t) => {
  const p = pkg(['--pattern', '4:43']);
  for (const form of ['gather', 'masked']) {
    const dir = exportTo(t, p, '--form', form);
    const tokens = REF.sequences.sample0!.tokens;
    const d = maxAbsDiff(await fullLogits(dir, tokens), refLogits(t, p, tokens));
    t.true(d <= TOL, `${form}: max |Δ| = ${d}`);
  }
});
