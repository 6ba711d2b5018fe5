// Bad input through the built CLI: every user mistake or broken file must end in ONE stderr line
// `mocc: <what is wrong>` and exit code 1 (2 would mean an internal error leaked), and a failed
// `convert` must leave nothing behind: no output directory, no `.NAME.mocc-tmp-*` directory.
import test, { type ExecutionContext } from 'ava';
import { copyFileSync, existsSync, mkdirSync, readdirSync, readFileSync, statSync, truncateSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { spawnSync } from 'node:child_process';
import { mocc, tempDir, type CliResult } from '../helpers/cli.js';
import { CHECKPOINTS, FIX, ROOT } from '../helpers/fixtures.js';
import { f32Bytes, T, writeGguf, type Kv, type WTensor } from '../helpers/gguf-writer.js';

const HF = CHECKPOINTS.hf;
const GGUF = CHECKPOINTS.gguf;

// ---------- helpers ----------

/** Exit 1, exactly one stderr line `mocc: ...` matching `what`, no stack trace. */
function userError(t: ExecutionContext, r: CliResult, what: RegExp): void {
  t.is(r.code, 1, `exit code (stderr: ${r.stderr})`);
  t.true(r.stderr.startsWith('mocc: '), `stderr starts with "mocc: ": ${JSON.stringify(r.stderr)}`);
  t.true(r.stderr.endsWith('\n'), 'stderr ends with a newline');
  t.is(r.stderr.trimEnd().split('\n').length, 1, `one line: ${JSON.stringify(r.stderr)}`);
  t.regex(r.stderr, what);
  t.notRegex(r.stderr, /\n\s+at /, 'no stack trace');
}

/** Runs `mocc convert input -o <empty parent>/pkg ...args`; expects a user error and an untouched, empty parent. */
function convertFails(t: ExecutionContext, input: string, args: string[], what: RegExp): CliResult {
  const parent = join(tempDir(t), 'out');
  mkdirSync(parent);
  const r = mocc('convert', input, '-o', join(parent, 'pkg'), ...args);
  userError(t, r, what);
  t.deepEqual(readdirSync(parent), [], 'no output directory and no .pkg.mocc-tmp-* left behind');
  return r;
}

interface StHeaderEntry {
  dtype: string;
  shape: number[];
  data_offsets: [number, number];
}
type StHeader = Record<string, StHeaderEntry>;

/** The fixture's model.safetensors, split by hand: header JSON and data section. */
function readFixtureSt(): { header: StHeader; data: Buffer } {
  const b = readFileSync(join(HF, 'model.safetensors'));
  const n = Number(b.readBigUInt64LE(0));
  return { header: JSON.parse(b.subarray(8, 8 + n).toString('utf8')) as StHeader, data: b.subarray(8 + n) };
}

function stBytes(header: unknown, data: Uint8Array, headerLen?: bigint): Buffer {
  const json = Buffer.from(JSON.stringify(header), 'utf8');
  const len = Buffer.alloc(8);
  len.writeBigUInt64LE(headerLen ?? BigInt(json.length));
  return Buffer.concat([len, json, data]);
}

/** A copy of the HF fixture directory in a temp dir; `st` replaces model.safetensors when given. */
function hfCopy(t: ExecutionContext, st?: Uint8Array): string {
  const dir = join(tempDir(t), 'ckpt');
  mkdirSync(dir);
  for (const f of readdirSync(HF)) copyFileSync(join(HF, f), join(dir, f));
  if (st) writeFileSync(join(dir, 'model.safetensors'), st);
  return dir;
}

/** Deterministic junk bytes (an LCG), so a failure is reproducible. */
function junk(n: number, seed = 12345): Uint8Array {
  const b = new Uint8Array(n);
  let x = seed;
  for (let i = 0; i < n; i++) {
    x = (Math.imul(x, 1103515245) + 12345) >>> 0;
    b[i] = x >>> 24;
  }
  return b;
}

// ---------- broken safetensors / HF directories ----------

test('HF: truncated model.safetensors', (t) => {
  const dir = hfCopy(t);
  const p = join(dir, 'model.safetensors');
  truncateSync(p, Math.floor(statSync(p).size * 0.6));
  convertFails(t, dir, ['--k', '32'], /model\.safetensors.*(truncated|outside the data)/);
  // Cut inside the 8-byte length prefix.
  truncateSync(p, 5);
  convertFails(t, dir, ['--k', '32'], /model\.safetensors.*truncated/);
  userError(t, mocc('run', dir, '--tokens', '1,403', '--max-tokens', '2'), /truncated/);
});

test('HF: safetensors header length beyond the end of the file', (t) => {
  const { header, data } = readFixtureSt();
  const size = 8 + Buffer.byteLength(JSON.stringify(header)) + data.length;
  const dir = hfCopy(t, stBytes(header, data, BigInt(size)));
  convertFails(t, dir, ['--k', '32'], /header length \d+ goes beyond the end of the file/);
});

test('HF: tensor data_offsets outside the data section', (t) => {
  const { header, data } = readFixtureSt();
  const name = 'model.layers.4.mlp.down_proj.weight';
  const [b, e] = header[name]!.data_offsets;
  header[name]!.data_offsets = [data.length, data.length + (e - b)];
  const dir = hfCopy(t, stBytes(header, data));
  convertFails(t, dir, ['--k', '32'], /down_proj\.weight.*outside the data section/);
});

test('HF: overlapping tensors', (t) => {
  const { header, data } = readFixtureSt();
  // Two tensors of the same shape pointing at the same bytes.
  header['model.layers.1.self_attn.q_proj.weight']!.data_offsets = [...header['model.layers.0.self_attn.q_proj.weight']!.data_offsets];
  const dir = hfCopy(t, stBytes(header, data));
  convertFails(t, dir, ['--k', '32'], /q_proj\.weight.*overlap/);
});

test('HF: unknown tensor dtype (I8)', (t) => {
  const { header, data } = readFixtureSt();
  const e = header['model.norm.weight']!;
  header['model.norm.weight'] = { ...e, dtype: 'I8', shape: [e.data_offsets[1] - e.data_offsets[0]] };
  const dir = hfCopy(t, stBytes(header, data));
  convertFails(t, dir, ['--k', '32'], /model\.norm\.weight.*dtype I8/);
});

test('HF: a tensor shape that disagrees with config.json (intermediate_size)', (t) => {
  const dir = hfCopy(t);
  const cfg = JSON.parse(readFileSync(join(dir, 'config.json'), 'utf8')) as Record<string, unknown>;
  t.is(cfg['intermediate_size'], 172);
  cfg['intermediate_size'] = 160;
  writeFileSync(join(dir, 'config.json'), JSON.stringify(cfg));
  convertFails(t, dir, ['--k', '32'], /shape \[172,64\].*\[160,64\]/);
});

test('HF: a missing tensor (dropped from header and data)', (t) => {
  const { header, data } = readFixtureSt();
  const drop = 'model.layers.2.mlp.up_proj.weight';
  t.truthy(header[drop]);
  // Rebuild the data section without it, tensors in their original order.
  const kept = Object.entries(header).filter(([n]) => n !== drop && n !== '__metadata__').sort((a, b) => a[1].data_offsets[0] - b[1].data_offsets[0]);
  const out: StHeader = {};
  const parts: Buffer[] = [];
  let off = 0;
  for (const [n, e] of kept) {
    const bytes = data.subarray(e.data_offsets[0], e.data_offsets[1]);
    out[n] = { dtype: e.dtype, shape: e.shape, data_offsets: [off, off + bytes.length] };
    parts.push(bytes);
    off += bytes.length;
  }
  const dir = hfCopy(t, stBytes(out, Buffer.concat(parts)));
  convertFails(t, dir, ['--k', '32'], /missing tensor for layers\.2\.w_up/);
});

test('HF: sharded checkpoint whose index names a missing shard', (t) => {
  const dir = join(tempDir(t), 'sharded');
  mkdirSync(dir);
  copyFileSync(join(HF, 'config.json'), join(dir, 'config.json'));
  const { header, data } = readFixtureSt();
  const names = Object.keys(header).filter((n) => n !== '__metadata__');
  const half = names.slice(0, Math.floor(names.length / 2));
  const shard1: StHeader = {};
  const parts: Buffer[] = [];
  let off = 0;
  for (const n of half) {
    const e = header[n]!;
    const bytes = data.subarray(e.data_offsets[0], e.data_offsets[1]);
    shard1[n] = { dtype: e.dtype, shape: e.shape, data_offsets: [off, off + bytes.length] };
    parts.push(bytes);
    off += bytes.length;
  }
  writeFileSync(join(dir, 'model-00001-of-00002.safetensors'), stBytes(shard1, Buffer.concat(parts)));
  const weightMap = Object.fromEntries(names.map((n) => [n, half.includes(n) ? 'model-00001-of-00002.safetensors' : 'model-00002-of-00002.safetensors']));
  writeFileSync(join(dir, 'model.safetensors.index.json'), JSON.stringify({ metadata: {}, weight_map: weightMap }));
  convertFails(t, dir, ['--k', '32'], /model-00002-of-00002\.safetensors.*does not exist/);
});

test('HF: model.safetensors full of junk', (t) => {
  const dir = hfCopy(t, junk(4096, 7));
  convertFails(t, dir, ['--k', '32'], /model\.safetensors/);
});

// ---------- selection flags ----------

const SELECTION_CASES: Array<{ args: string[]; what: RegExp }> = [
  { args: ['--k', '0'], what: /K must be .*1\.\.172.*got 0/ },
  { args: ['--k', '-3'], what: /K must be .*1\.\.172.*got -3/ },
  { args: ['--k', '173'], what: /K must be .*1\.\.172.*got 173/ },
  { args: ['--k-ratio', '0'], what: /--k-ratio .*\(0, 1\].*got 0/ },
  { args: ['--k-ratio', '1.5'], what: /--k-ratio .*\(0, 1\].*got 1\.5/ },
  { args: ['--pattern', '5:3'], what: /pattern 5:3/ },
  { args: ['--pattern', 'abc'], what: /--pattern .*a:b.*'abc'/ },
  { args: ['--k', '32', '--dense'], what: /only one of --k, --k-ratio, --pattern, --dense/ },
  { args: ['--k', '16', '--k-ratio', '0.19'], what: /only one of/ },
  { args: ['--k', '32,32,32'], what: /3 per-layer K values.*5/ },
  { args: ['--k', '8,8,8,8,8,8'], what: /6 per-layer K values.*5/ },
];
for (const c of SELECTION_CASES) {
  test(`convert ${c.args.join(' ')}: refused`, (t) => {
    convertFails(t, HF, c.args, c.what);
  });
}

test('run on a checkpoint with a bad K is refused the same way', (t) => {
  userError(t, mocc('run', GGUF, '--tokens', '1,403', '--k', '173'), /K must be .*got 173/);
  userError(t, mocc('logits', GGUF, '--tokens', '1,403', '--k', '0', '--out', join(tempDir(t), 'l.f32')), /K must be .*got 0/);
});

// ---------- GGUF ----------

/** A complete 1-layer llama GGUF (all F32) with the given tensor swapped to `swapType`, or a lying tensor count. */
function tinyGguf(opts: { swap?: { name: string; type: number; bytes: number }; tensorCount?: bigint }): Uint8Array {
  const D = 8, F = 256, V = 16, KV = 4;
  const kv: Kv[] = [
    { key: 'general.architecture', type: T.STRING, value: 'llama' },
    { key: 'llama.context_length', type: T.U32, value: 64 },
    { key: 'llama.embedding_length', type: T.U32, value: D },
    { key: 'llama.block_count', type: T.U32, value: 1 },
    { key: 'llama.feed_forward_length', type: T.U32, value: F },
    { key: 'llama.attention.head_count', type: T.U32, value: 2 },
    { key: 'llama.attention.head_count_kv', type: T.U32, value: 1 },
    { key: 'llama.attention.layer_norm_rms_epsilon', type: T.F32, value: 1e-5 },
  ];
  const f32 = (n: number) => f32Bytes(Array.from({ length: n }, (_, i) => ((i % 7) - 3) / 10));
  const tensors: WTensor[] = [
    { name: 'token_embd.weight', ne: [D, V], type: 0, data: f32(D * V) },
    { name: 'blk.0.attn_norm.weight', ne: [D], type: 0, data: f32(D) },
    { name: 'blk.0.attn_q.weight', ne: [D, D], type: 0, data: f32(D * D) },
    { name: 'blk.0.attn_k.weight', ne: [D, KV], type: 0, data: f32(D * KV) },
    { name: 'blk.0.attn_v.weight', ne: [D, KV], type: 0, data: f32(D * KV) },
    { name: 'blk.0.attn_output.weight', ne: [D, D], type: 0, data: f32(D * D) },
    { name: 'blk.0.ffn_norm.weight', ne: [D], type: 0, data: f32(D) },
    { name: 'blk.0.ffn_gate.weight', ne: [D, F], type: 0, data: f32(D * F) },
    { name: 'blk.0.ffn_up.weight', ne: [D, F], type: 0, data: f32(D * F) },
    { name: 'blk.0.ffn_down.weight', ne: [F, D], type: 0, data: f32(F * D) },
    { name: 'output_norm.weight', ne: [D], type: 0, data: f32(D) },
  ].map((x) => (opts.swap && x.name === opts.swap.name ? { ...x, type: opts.swap.type, data: new Uint8Array(opts.swap.bytes) } : x));
  return writeGguf({ kv, tensors, ...(opts.tensorCount !== undefined ? { tensorCount: opts.tensorCount } : {}) });
}

test('GGUF: the tiny synthetic model itself converts (control for the broken variants)', (t) => {
  const dir = tempDir(t);
  const p = join(dir, 'ok.gguf');
  writeFileSync(p, tinyGguf({}));
  const r = mocc('convert', p, '-o', join(dir, 'pkg'), '--k', '4');
  t.is(r.code, 0, r.stderr);
});

test('GGUF: unsupported quant type (IQ2_XXS)', (t) => {
  const p = join(tempDir(t), 'iq2.gguf');
  // IQ2_XXS: 256-element blocks of 66 bytes; ffn_down is ne [256, 8] → 8 blocks.
  writeFileSync(p, tinyGguf({ swap: { name: 'blk.0.ffn_down.weight', type: 16, bytes: 8 * 66 } }));
  convertFails(t, p, ['--k', '4'], /blk\.0\.ffn_down\.weight.*IQ2_XXS \(16\).*not support.*supported: F32, F16, BF16, Q4_0, .*Q6_K/);
});

test('GGUF: quantized rows that are not whole blocks', (t) => {
  const p = join(tempDir(t), 'q4k-rows.gguf');
  // Q4_K needs rows of 256k elements; ffn_up's rows (ne[0]) have 8.
  writeFileSync(p, tinyGguf({ swap: { name: 'blk.0.ffn_up.weight', type: 12, bytes: 8 * 144 } }));
  convertFails(t, p, ['--k', '4'], /Q4_K tensor blk\.0\.ffn_up\.weight has rows of 8 elements, not a multiple of its 256-element block/);
});

test('GGUF: absurd tensor count', (t) => {
  const p = join(tempDir(t), 'absurd.gguf');
  writeFileSync(p, tinyGguf({ tensorCount: 2n ** 60n }));
  convertFails(t, p, ['--k', '4'], /absurd tensor_count/);
  userError(t, mocc('inspect', p), /absurd tensor_count/);
});

test('GGUF magic followed by junk', (t) => {
  const p = join(tempDir(t), 'junk.gguf');
  writeFileSync(p, Buffer.concat([Buffer.from('GGUF'), junk(200, 3)]));
  convertFails(t, p, [], /junk\.gguf/);
});

// ---------- existing outputs ----------

test('convert refuses an existing output directory without --force and leaves it untouched; --force replaces it', (t) => {
  const parent = tempDir(t);
  const out = join(parent, 'pkg');
  mkdirSync(out);
  writeFileSync(join(out, 'keep.txt'), 'precious');
  const r = mocc('convert', HF, '-o', out, '--k', '32');
  userError(t, r, /already exists.*--force/);
  t.deepEqual(readdirSync(parent), ['pkg'], 'no temporary directory left');
  t.deepEqual(readdirSync(out), ['keep.txt']);
  t.is(readFileSync(join(out, 'keep.txt'), 'utf8'), 'precious');

  const f = mocc('convert', HF, '-o', out, '--k', '32', '--force');
  t.is(f.code, 0, f.stderr);
  t.deepEqual(readdirSync(parent), ['pkg'], 'no temporary or -old directory left');
  t.deepEqual(readdirSync(out).sort(), ['manifest.json', 'model.mir', 'weights.safetensors']);
  const m = JSON.parse(readFileSync(join(out, 'manifest.json'), 'utf8')) as { format: string; moc: { perLayerK: number[] } };
  t.is(m.format, 'mocc-package');
  t.deepEqual(m.moc.perLayerK, [32, 32, 32, 32, 32]);
  const run = mocc('run', out, '--tokens', '1,403', '--max-tokens', '3');
  t.is(run.code, 0, run.stderr);
});

test('logits --out refuses an existing file without --force', (t) => {
  const dir = tempDir(t);
  const out = join(dir, 'logits.f32');
  writeFileSync(out, 'precious');
  userError(t, mocc('logits', GGUF, '--tokens', '1,403', '--out', out), /already exists.*--force/);
  t.is(readFileSync(out, 'utf8'), 'precious');
  t.deepEqual(readdirSync(dir), ['logits.f32']);
  const f = mocc('logits', GGUF, '--tokens', '1,403', '--out', out, '--force');
  t.is(f.code, 0, f.stderr);
  t.is(statSync(out).size, 2 * 512 * 4);
  t.deepEqual(readdirSync(dir), ['logits.f32'], 'no .mocc-tmp file left');
});

// ---------- prompts and tokens ----------

test('a prompt with characters outside the vocabulary runs through byte fallback', (t) => {
  // NUL cannot be passed in argv (execve strings end at it), so control bytes U+0001 / U+007F stand in for it.
  const prompt = 'naïve 🦙 \u0001\u007f';
  const r = mocc('run', GGUF, '--prompt', prompt, '--max-tokens', '5');
  t.is(r.code, 0, r.stderr);
  t.true(r.stdout.startsWith(prompt), `the prompt round-trips exactly: ${JSON.stringify(r.stdout)}`);
  t.regex(r.stderr, /\[\d+ tokens in /);
});

test('run without a tokenizer and --prompt: error names --tokenizer and --tokens', (t) => {
  const r = mocc('run', HF, '--prompt', 'Once upon a time', '--max-tokens', '3');
  userError(t, r, /no tokenizer/);
  t.regex(r.stderr, /--tokenizer/);
  t.regex(r.stderr, /--tokens/);
});

test('--tokens with an id outside the vocabulary names the id', (t) => {
  userError(t, mocc('run', HF, '--tokens', '1,9999', '--max-tokens', '3'), /9999.*outside the vocabulary.*511/);
  userError(t, mocc('logits', GGUF, '--tokens', '1,512', '--out', join(tempDir(t), 'l.f32')), /\b512\b.*outside the vocabulary/);
});

test('unknown --target lists the available targets', (t) => {
  userError(t, mocc('run', HF, '--tokens', '1,403', '--target', 'foo'), /unknown target 'foo'.*available: .*\bref\b/);
});

// ---------- not a checkpoint ----------

test('a nonexistent path', (t) => {
  const missing = join(tempDir(t), 'does-not-exist');
  userError(t, mocc('run', missing, '--tokens', '1'), /does-not-exist: no such file or directory/);
  userError(t, mocc('inspect', missing), /no such file or directory/);
  convertFails(t, missing, [], /does-not-exist: no such file or directory/);
});

test('random non-checkpoint files: exit 1, not 2', (t) => {
  const dir = tempDir(t);
  const cases: Array<[string, Uint8Array]> = [
    ['junk.bin', junk(100)],
    ['zeros.bin', new Uint8Array(100)],
    ['tiny.bin', junk(3, 9)],
    ['empty.bin', new Uint8Array(0)],
    ['text.txt', new TextEncoder().encode('hello, this is not a model\n'.repeat(4))],
  ];
  for (const [name, bytes] of cases) {
    const p = join(dir, name);
    writeFileSync(p, bytes);
    userError(t, mocc('run', p, '--tokens', '1'), new RegExp(name.replace('.', '\\.')));
    convertFails(t, p, [], new RegExp(name.replace('.', '\\.')));
  }
  // A directory that is neither a checkpoint nor a package.
  const empty = join(dir, 'emptydir');
  mkdirSync(empty);
  userError(t, mocc('inspect', empty), /no config\.json/);
});

// ---------- bugs found by these tests, now fixed ----------

test('convert --force with the output equal to (or holding) the input checkpoint refuses and keeps the checkpoint', (t) => {
  const dir = hfCopy(t);
  const r = mocc('convert', dir, '-o', dir, '--k', '32', '--force');
  t.true(existsSync(join(dir, 'model.safetensors')), 'the source checkpoint still exists');
  userError(t, r, /output|input|checkpoint/);
});

test('option parsing errors (commander) are printed as one "mocc: ..." line', (t) => {
  userError(t, mocc('run', HF, '--tokens', 'abc'), /--tokens/);
});

test('convert to a path under an existing regular file is a user error (exit 1)', (t) => {
  const dir = tempDir(t);
  writeFileSync(join(dir, 'afile'), 'x');
  userError(t, mocc('convert', HF, '-o', join(dir, 'afile', 'pkg'), '--k', '32'), /afile/);
});

test('output piped into a reader that closes early (| head) ends quietly, without a crash', (t) => {
  const r = spawnSync('bash', ['-c', `node ${JSON.stringify(join(ROOT, 'dist/cli/mocc.js'))} demo --max-tokens 60 | head -c 20; exit \${PIPESTATUS[0]}`], { encoding: 'utf8' });
  t.is(r.status, 0, r.stderr);
  t.notRegex(r.stderr, /EPIPE|Unhandled/);
});
