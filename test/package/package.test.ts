// Package contents, checked INDEPENDENTLY of the project's package reader: manifest.json and the
// safetensors header are parsed by hand here, weights are compared bit for bit with the HF fixture's
// tensors (also read by hand), and bf16/f16 rounding is recomputed here. Plus `mocc inspect`'s
// memory table against the paper's formulas, and a bf16 package still runs.
import test, { type ExecutionContext } from 'ava';
import { createHash } from 'node:crypto';
import { cpSync, existsSync, mkdtempSync, readdirSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseGraph } from '../../src/ir/parse.js';
import { verifyGraph } from '../../src/ir/verify.js';
import { mocc } from '../helpers/cli.js';
import { CHECKPOINTS } from '../helpers/fixtures.js';

const D = 64, F = 172, L = 5, V = 512;

// ---------- independent readers ----------

interface StEntry {
  dtype: string;
  shape: number[];
  data_offsets: [number, number];
}
interface St {
  header: Record<string, StEntry>;
  metadata?: Record<string, string>;
  data: Buffer;
  headerLen: number;
  fileSize: number;
}

function readSt(path: string): St {
  const b = readFileSync(path);
  const headerLen = Number(b.readBigUInt64LE(0));
  const all = JSON.parse(b.subarray(8, 8 + headerLen).toString('utf8')) as Record<string, unknown>;
  const { __metadata__: metadata, ...header } = all;
  return { header: header as Record<string, StEntry>, ...(metadata ? { metadata: metadata as Record<string, string> } : {}), data: b.subarray(8 + headerLen), headerLen, fileSize: b.length };
}

function bytesOf(st: St, name: string): Buffer {
  const e = st.header[name];
  if (!e) throw new Error(`no tensor ${name}`);
  return st.data.subarray(e.data_offsets[0], e.data_offsets[1]);
}

function f32Of(st: St, name: string): Float32Array {
  const b = bytesOf(st, name);
  const out = new Float32Array(b.length / 4);
  for (let i = 0; i < out.length; i++) out[i] = b.readFloatLE(i * 4);
  return out;
}

function u16Of(st: St, name: string): Uint16Array {
  const b = bytesOf(st, name);
  const out = new Uint16Array(b.length / 2);
  for (let i = 0; i < out.length; i++) out[i] = b.readUInt16LE(i * 2);
  return out;
}

function f32Bits(x: number): number {
  const b = Buffer.alloc(4);
  b.writeFloatLE(x);
  return b.readUInt32LE(0);
}

/** bfloat16 bits of a (non-NaN) float32, round to nearest, ties to even: the top 16 bits, rounded on the low 16. */
function bf16RNE(x: number): number {
  const bits = f32Bits(x);
  let hi = bits >>> 16;
  const lo = bits & 0xffff;
  if (lo > 0x8000 || (lo === 0x8000 && (hi & 1) === 1)) hi += 1;
  return hi & 0xffff;
}

/** IEEE half bits of a finite float32, round to nearest even, computed arithmetically (no bit tricks on the float). */
function f16RNE(x: number): number {
  const sign = x < 0 || Object.is(x, -0) ? 0x8000 : 0;
  const a = Math.abs(x);
  if (a === 0) return sign;
  let e = Math.floor(Math.log2(a));
  if (2 ** e > a) e -= 1;
  if (2 ** (e + 1) <= a) e += 1;
  e = Math.max(e, -14); // subnormals share the smallest exponent
  const q = 2 ** (e - 10); // spacing of halves in this binade
  const m = a / q; // exact: q is a power of two
  let r = Math.floor(m);
  const frac = m - r;
  if (frac > 0.5 || (frac === 0.5 && r % 2 === 1)) r += 1;
  if (r === 2048) {
    r = 1024;
    e += 1;
  }
  if (e > 15) return sign | 0x7c00;
  if (r < 1024) return sign | r; // subnormal (e === -14)
  return sign | ((e + 15) << 10) | (r - 1024);
}

function sha256(path: string): string {
  return createHash('sha256').update(readFileSync(path)).digest('hex');
}

/** Column-major view of a row-major [rows, cols] matrix: out[c*rows + r] = m[r*cols + c]. */
function transpose(m: Float32Array, rows: number, cols: number): Float32Array {
  const out = new Float32Array(rows * cols);
  for (let r = 0; r < rows; r++) for (let c = 0; c < cols; c++) out[c * rows + r] = m[r * cols + c]!;
  return out;
}

function sameBits(t: ExecutionContext, got: Float32Array, want: Float32Array, what: string): void {
  t.is(got.length, want.length, `${what}: length`);
  let bad = -1;
  for (let i = 0; i < want.length; i++) {
    if (f32Bits(got[i]!) !== f32Bits(want[i]!)) {
      bad = i;
      break;
    }
  }
  t.is(bad, -1, `${what}: first mismatch at ${bad} (${got[bad]} vs ${want[bad]})`);
}

interface Manifest {
  format: string;
  formatVersion: number;
  createdBy: string;
  source: { format: string; path: string; files: Array<{ name: string; bytes: number; sha256: string }> };
  config: Record<string, unknown> & { rope: { style: string; theta: number } };
  moc: { mode: string; dFfn: number; perLayerK: number[]; pattern?: string };
  ir: string;
  weights: { file: string; dtypes: Record<string, string> };
  tokenizer: { kind: string; file: string } | null;
}

// ---------- the packages, converted once ----------

const HF_DIR = CHECKPOINTS.hf;
const HF_ST = readSt(join(HF_DIR, 'model.safetensors'));
const tmp = mkdtempSync(join(tmpdir(), 'mocc-pkg-test-'));
test.after.always(() => rmSync(tmp, { recursive: true, force: true }));

const PKG = {
  f32: join(tmp, 'hf-k32-f32'),
  bf16: join(tmp, 'hf-k32-bf16'),
  f16: join(tmp, 'hf-k32-f16'),
  dense: join(tmp, 'hf-dense'),
  gguf: join(tmp, 'gguf-k32'),
  perLayer: join(tmp, 'gguf-perlayer'),
};
const CONVERTS: Array<[string, string[]]> = [
  [PKG.f32, [HF_DIR, '--k', '32']],
  [PKG.bf16, [HF_DIR, '--k', '32', '--dtype', 'bf16']],
  [PKG.f16, [HF_DIR, '--k', '32', '--dtype', 'f16']],
  [PKG.dense, [HF_DIR, '--dense']],
  [PKG.gguf, [CHECKPOINTS.gguf, '--k', '32']],
  [PKG.perLayer, [CHECKPOINTS.gguf, '--k', '8,16,32,100,172']],
];
const convertErrors: string[] = [];
test.before(() => {
  for (const [out, [input, ...flags]] of CONVERTS) {
    const r = mocc('convert', input!, '-o', out, ...flags);
    if (r.code !== 0) convertErrors.push(`convert ${input} ${flags.join(' ')}: exit ${r.code}: ${r.stderr}`);
  }
});

const manifestOf = (pkg: string) => JSON.parse(readFileSync(join(pkg, 'manifest.json'), 'utf8')) as Manifest;

test('all conversions succeed and leave only the packages', (t) => {
  t.deepEqual(convertErrors, []);
  t.deepEqual(readdirSync(tmp).sort(), Object.values(PKG).map((p) => p.slice(tmp.length + 1)).sort(), 'no .mocc-tmp-* leftovers');
});

// ---------- manifest ----------

for (const [dtype, pkg] of [['f32', PKG.f32], ['bf16', PKG.bf16], ['f16', PKG.f16]] as const) {
  test(`HF --k 32 --dtype ${dtype}: manifest`, (t) => {
    const m = manifestOf(pkg);
    t.is(m.format, 'mocc-package');
    t.is(m.formatVersion, 2);
    t.regex(m.createdBy, /^mocc /);
    t.is(m.source.format, 'hf');
    const names = m.source.files.map((f) => f.name).sort();
    t.deepEqual(names, ['config.json', 'model.safetensors']);
    for (const f of m.source.files) {
      const p = join(HF_DIR, f.name);
      t.is(f.sha256, sha256(p), `sha256 of ${f.name}`);
      t.is(f.bytes, statSync(p).size, `size of ${f.name}`);
    }
    t.like(m.config, { arch: 'llama', dim: D, nLayers: L, nHeads: 8, nKvHeads: 4, headDim: 8, dFfn: F, vocabSize: V, maxSeqLen: 512, tiedEmbeddings: true, bosId: 1, eosId: 2 });
    t.is(m.config['normEps'], 1e-5);
    t.deepEqual(m.config.rope, { theta: 10000, style: 'half' });
    t.deepEqual(m.moc, { mode: 'topk', dFfn: F, perLayerK: [32, 32, 32, 32, 32] });
    t.is(m.tokenizer, null, 'the HF fixture has no tokenizer');
    t.is(m.ir, 'model.mir');
    t.is(m.weights.file, 'weights.safetensors');
    const st = readSt(join(pkg, 'weights.safetensors'));
    t.deepEqual(Object.keys(m.weights.dtypes).sort(), Object.keys(st.header).sort(), 'manifest dtypes cover exactly the stored weights');
    for (const [n, dt] of Object.entries(m.weights.dtypes)) t.is(dt, dtype, n);
    t.deepEqual(readdirSync(pkg).sort(), ['manifest.json', 'model.mir', 'weights.safetensors']);
  });
}

test('GGUF --k 32: manifest has the spm tokenizer, gguf source checksum, interleaved RoPE', (t) => {
  const m = manifestOf(PKG.gguf);
  t.is(m.format, 'mocc-package');
  t.is(m.formatVersion, 2);
  t.is(m.source.format, 'gguf');
  t.is(m.source.files.length, 1);
  t.is(m.source.files[0]!.name, 'stories260K.gguf');
  t.is(m.source.files[0]!.sha256, sha256(CHECKPOINTS.gguf));
  t.is(m.source.files[0]!.sha256, '270cba1bd5109f42d03350f60406024560464db173c0e387d91f0426d3bd256d', 'fixtures/README.md checksum');
  t.like(m.config, { dim: D, nLayers: L, dFfn: F, vocabSize: V });
  t.is(m.config.rope.style, 'interleaved');
  t.deepEqual(m.moc.perLayerK, [32, 32, 32, 32, 32]);
  t.is(m.tokenizer?.kind, 'spm');
  t.true(existsSync(join(PKG.gguf, m.tokenizer!.file)), 'the tokenizer file is in the package');
  t.true(statSync(join(PKG.gguf, m.tokenizer!.file)).size > 0);
  // f32 checkpoint, default dtype → f32.
  t.true(Object.values(m.weights.dtypes).every((d) => d === 'f32'));
});

// ---------- weights.safetensors, by hand ----------

/** Header sanity: offsets contiguous from 0, in bounds, sizes match shapes, file size adds up. */
function checkStLayout(t: ExecutionContext, st: St): void {
  const elems = (s: number[]) => s.reduce((a, b) => a * b, 1);
  const size = { F32: 4, F16: 2, BF16: 2 } as Record<string, number>;
  const entries = Object.entries(st.header).sort((a, b) => a[1].data_offsets[0] - b[1].data_offsets[0]);
  let off = 0;
  for (const [n, e] of entries) {
    t.truthy(size[e.dtype], `${n}: dtype ${e.dtype}`);
    t.is(e.data_offsets[0], off, `${n}: starts where the previous tensor ended`);
    t.is(e.data_offsets[1] - e.data_offsets[0], elems(e.shape) * size[e.dtype]!, `${n}: byte size`);
    off = e.data_offsets[1];
  }
  t.is(off, st.data.length, 'the data section holds exactly the tensors');
  t.is(st.fileSize, 8 + st.headerLen + off);
}

const ST_DTYPE = { f32: 'F32', bf16: 'BF16', f16: 'F16' } as const;

test('f32 package: the W_down param layers.N.w_down is stored [d_ffn, d], the exact transpose of HF down_proj; no second copy', (t) => {
  const st = readSt(join(PKG.f32, 'weights.safetensors'));
  checkStLayout(t, st);
  for (let l = 0; l < L; l++) {
    const src = HF_ST.header[`model.layers.${l}.mlp.down_proj.weight`]!;
    t.deepEqual(src.shape, [D, F]);
    t.is(src.dtype, 'F32');
    const e = st.header[`layers.${l}.w_down`];
    t.truthy(e, `layers.${l}.w_down stored`);
    t.is(e!.dtype, 'F32');
    t.deepEqual(e!.shape, [F, D]);
    sameBits(t, f32Of(st, `layers.${l}.w_down`), transpose(f32Of(HF_ST, `model.layers.${l}.mlp.down_proj.weight`), D, F), `layer ${l} w_down`);
    t.deepEqual(Object.keys(st.header).filter((n) => n.startsWith(`layers.${l}.w_down`)), [`layers.${l}.w_down`], `layer ${l}: one stored W_down`);
    // Gate/up stay [d_ffn, d], untouched.
    sameBits(t, f32Of(st, `layers.${l}.w_gate`), f32Of(HF_ST, `model.layers.${l}.mlp.gate_proj.weight`), `layer ${l} w_gate`);
    sameBits(t, f32Of(st, `layers.${l}.w_up`), f32Of(HF_ST, `model.layers.${l}.mlp.up_proj.weight`), `layer ${l} w_up`);
  }
  sameBits(t, f32Of(st, 'tok_embeddings'), f32Of(HF_ST, 'model.embed_tokens.weight'), 'tok_embeddings');
  t.false('output' in st.header, 'tied embeddings: no separate output head');
});

for (const [dtype, pkg, round] of [['bf16', PKG.bf16, bf16RNE], ['f16', PKG.f16, f16RNE]] as const) {
  test(`${dtype} package: every stored value is round-to-nearest-even ${dtype} of the f32 source (w_down transposed)`, (t) => {
    const st = readSt(join(pkg, 'weights.safetensors'));
    checkStLayout(t, st);
    const check = (stored: string, want: Float32Array) => {
      const e = st.header[stored]!;
      t.truthy(e, stored);
      t.is(e.dtype, ST_DTYPE[dtype], stored);
      const got = u16Of(st, stored);
      t.is(got.length, want.length, stored);
      let bad = -1;
      for (let i = 0; i < want.length; i++) {
        if (got[i] !== round(want[i]!)) {
          bad = i;
          break;
        }
      }
      t.is(bad, -1, `${stored}: first mismatch at ${bad}: got 0x${got[bad]?.toString(16)} want 0x${round(want[bad] ?? 0).toString(16)} for ${want[bad]}`);
    };
    for (let l = 0; l < L; l++) {
      t.deepEqual(st.header[`layers.${l}.w_down`]?.shape, [F, D]);
      check(`layers.${l}.w_down`, transpose(f32Of(HF_ST, `model.layers.${l}.mlp.down_proj.weight`), D, F));
      check(`layers.${l}.w_gate`, f32Of(HF_ST, `model.layers.${l}.mlp.gate_proj.weight`));
      check(`layers.${l}.wq`, f32Of(HF_ST, `model.layers.${l}.self_attn.q_proj.weight`));
    }
    check('tok_embeddings', f32Of(HF_ST, 'model.embed_tokens.weight'));
    check('norm', f32Of(HF_ST, 'model.norm.weight'));
  });
}

test('independent rounding helpers agree with known values (so the comparisons above mean something)', (t) => {
  t.is(bf16RNE(1), 0x3f80);
  t.is(bf16RNE(-2), 0xc000);
  t.is(bf16RNE(1 + 2 ** -8), 0x3f80, 'tie → even (down)');
  t.is(bf16RNE(1 + 3 * 2 ** -8), 0x3f82, 'tie → even (up)');
  t.is(bf16RNE(1 + 2 ** -8 + 2 ** -20), 0x3f81, 'above the tie → up');
  t.is(f16RNE(1), 0x3c00);
  t.is(f16RNE(-2), 0xc000);
  t.is(f16RNE(65504), 0x7bff);
  t.is(f16RNE(2 ** -24), 0x0001, 'smallest subnormal');
  t.is(f16RNE(1 + 2 ** -11), 0x3c00, 'tie → even');
  t.is(f16RNE(1 + 3 * 2 ** -11), 0x3c02, 'tie → even (up)');
  t.is(f16RNE(0.1), 0x2e66);
});

test('dense package: no .t weights; layers.N.w_down [64,172] equals down_proj exactly', (t) => {
  const m = manifestOf(PKG.dense);
  t.deepEqual(m.moc, { mode: 'dense', dFfn: F, perLayerK: [F, F, F, F, F] });
  const st = readSt(join(PKG.dense, 'weights.safetensors'));
  checkStLayout(t, st);
  t.deepEqual(Object.keys(st.header).filter((n) => n.endsWith('.t')), []);
  for (let l = 0; l < L; l++) {
    t.deepEqual(st.header[`layers.${l}.w_down`]?.shape, [D, F]);
    sameBits(t, f32Of(st, `layers.${l}.w_down`), f32Of(HF_ST, `model.layers.${l}.mlp.down_proj.weight`), `layer ${l} w_down`);
  }
  const mir = readFileSync(join(PKG.dense, 'model.mir'), 'utf8');
  t.notRegex(mir, /moc_/);
});

// ---------- model.mir ----------

for (const [label, pkg, ks] of [['HF k32 bf16', PKG.bf16, [32, 32, 32, 32, 32]], ['GGUF per-layer K', PKG.perLayer, [8, 16, 32, 100, 172]], ['HF dense', PKG.dense, []]] as const) {
  test(`${label}: model.mir parses, verifies, and declares exactly the stored weights`, (t) => {
    const text = readFileSync(join(pkg, 'model.mir'), 'utf8');
    const g = parseGraph(text);
    t.notThrows(() => verifyGraph(g));
    const st = readSt(join(pkg, 'weights.safetensors'));
    // Param declarations read off the text by hand: `param @name : dtype[dims]`.
    const decls = [...text.matchAll(/^\s*param @(\S+) : (\w+)\[([\d,]*)\]\s*$/gm)].map((x) => ({ name: x[1]!, dtype: x[2]!, shape: x[3] === '' ? [] : x[3]!.split(',').map(Number) }));
    t.deepEqual(decls.map((d) => d.name).sort(), Object.keys(st.header).sort());
    t.is(g.params.length, decls.length);
    for (const d of decls) {
      t.deepEqual(st.header[d.name]!.shape, d.shape, d.name);
      t.is(st.header[d.name]!.dtype, d.dtype.toUpperCase(), d.name);
    }
    // Top-K per FFN, in layer order.
    const sel = g.nodes.filter((n) => n.op === 'moc_select');
    t.deepEqual(sel.map((n) => n.attrs['k']), [...ks]);
    t.deepEqual(sel.map((n) => n.outputs[0]!.type.shape[1]), [...ks]);
  });
}

test('per-layer K list: manifest.moc.perLayerK follows the list, layer by layer', (t) => {
  const m = manifestOf(PKG.perLayer);
  t.deepEqual(m.moc.perLayerK, [8, 16, 32, 100, 172]);
  t.is(m.moc.mode, 'topk');
});

// ---------- inspect ----------

/** The paper's per-token, per-layer FFN activation bytes (bf16 values, int32 indices). */
function memory(k: number) {
  return { dense: (4 * F + D) * 2, denseGcp: (2 * F + D) * 2, moc: (4 * k + D) * 2 + k * 4, mocGcp: (2 * k + D) * 2 + k * 4 };
}

/** The table rows of `mocc inspect`: [layer, K, dense, dense+gcp, moc, moc+gcp] and the total row. */
function tableOf(stdout: string): { rows: number[][]; total: number[] | undefined } {
  const rows = [...stdout.matchAll(/^\s+(\d+)\s+(\d+)\s+(\d+)\s+(\d+)\s+(\d+)\s+(\d+)\s*$/gm)].map((m) => m.slice(1).map(Number));
  const tm = /^\s+total\s+(\d+)\s+(\d+)\s+(\d+)\s+(\d+)\s*$/m.exec(stdout);
  return { rows, total: tm ? tm.slice(1).map(Number) : undefined };
}

function checkTable(t: ExecutionContext, stdout: string, ks: number[]): void {
  const { rows, total } = tableOf(stdout);
  t.is(rows.length, ks.length, 'one row per layer');
  const sum = [0, 0, 0, 0];
  ks.forEach((k, l) => {
    const b = memory(k);
    const want = [l, k, b.dense, b.denseGcp, b.moc, b.mocGcp];
    t.deepEqual(rows[l], want, `layer ${l}`);
    want.slice(2).forEach((v, i) => (sum[i]! += v));
  });
  t.deepEqual(total, sum, 'total row');
}

test('inspect <package k32>: per-layer K and the memory table match the formulas', (t) => {
  // Spelled-out values from the brief, as a check on the formula helper itself.
  t.deepEqual(memory(32), { dense: 1504, denseGcp: 816, moc: 512, mocGcp: 384 });
  const r = mocc('inspect', PKG.bf16);
  t.is(r.code, 0, r.stderr);
  t.regex(r.stdout, /d 64, d_ffn 172, 5 layers/);
  t.regex(r.stdout, /MoC: topk/);
  checkTable(t, r.stdout, [32, 32, 32, 32, 32]);
});

test('inspect <package with per-layer K>: each layer its own K and MoC bytes', (t) => {
  const r = mocc('inspect', PKG.perLayer);
  t.is(r.code, 0, r.stderr);
  t.regex(r.stdout, /tokenizer: spm, 512 tokens/);
  checkTable(t, r.stdout, [8, 16, 32, 100, 172]);
});

test('inspect <checkpoint>: works on the HF directory (dense, K = d_ffn)', (t) => {
  const r = mocc('inspect', HF_DIR);
  t.is(r.code, 0, r.stderr);
  t.regex(r.stdout, /hf checkpoint/);
  t.regex(r.stdout, /d 64, d_ffn 172, 5 layers, 8 heads \(4 KV, head_dim 8\), vocab 512/);
  t.regex(r.stdout, /MoC: dense/);
  checkTable(t, r.stdout, [F, F, F, F, F]);
  // Parameter count, from the fixture's own header: every tensor (embeddings tied, no lm_head).
  const params = Object.values(HF_ST.header).reduce((s, e) => s + e.shape.reduce((a, b) => a * b, 1), 0);
  t.regex(r.stdout, new RegExp(`parameters: ${params.toLocaleString('en-US')} `));
});

// ---------- converted packages still run ----------

test('bf16 and f16 packages run (greedy, 5 tokens)', (t) => {
  for (const pkg of [PKG.bf16, PKG.f16]) {
    const r = mocc('run', pkg, '--tokens', '1,403', '--max-tokens', '5');
    t.is(r.code, 0, r.stderr);
    const ids = r.stdout.trim().split(/\s+/).map(Number);
    t.deepEqual(ids.slice(0, 2), [1, 403], 'prompt echoed as ids (no tokenizer)');
    t.true(ids.length > 2 && ids.length <= 7, r.stdout);
    t.true(ids.every((i) => Number.isInteger(i) && i >= 0 && i < V), r.stdout);
  }
});

test('a version-1 package (an older mocc’s IR) is a one-line error saying to convert again', (t) => {
  const old = join(tmp, 'v1-copy');
  cpSync(PKG.dense, old, { recursive: true });
  const manifest = JSON.parse(readFileSync(join(old, 'manifest.json'), 'utf8')) as Manifest;
  writeFileSync(join(old, 'manifest.json'), JSON.stringify({ ...manifest, formatVersion: 1 }));
  const r = mocc('inspect', old);
  t.is(r.code, 1, r.stderr);
  t.regex(r.stderr, /^mocc: .*package format version 1 .*convert the checkpoint again with this mocc\n$/);
});

test('inspect --ir prints the model graph: rows with positions and sequence ids, params, W_down in its MoC layout', (t) => {
  const r = mocc('inspect', PKG.f32, '--ir');
  t.is(r.code, 0, r.stderr);
  t.regex(r.stdout, /^  input %pos : i32\[T\]$/m);
  t.regex(r.stdout, /^  param @layers\.0\.w_down : f32\[172,64\]$/m);
  t.regex(r.stdout, /= attention\(%l0\.q, %l0\.k, %l0\.v, %seq\)/);
  t.regex(r.stdout, /= moc_down\(%l0\.moc_z, @layers\.0\.w_down, %l0\.moc_idx\)/);
  t.notRegex(r.stdout, /^  weight @|\.t\b|kv_attention/m);
});
