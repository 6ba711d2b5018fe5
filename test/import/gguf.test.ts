import test from 'ava';
import { mkdtempSync, readFileSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { importGguf, readGgufHeader } from '../../src/import/gguf.js';
import { expectedWeightShapes } from '../../src/import/spec.js';
import { UserError } from '../../src/util/errors.js';
import { FileHandle } from '../../src/import/tensor.js';
import type { StorageDType } from '../../src/util/dtype.js';
import { SpmTokenizer } from '../../src/tokenizer/spm.js';
import { loadLlama2cTokenizer } from '../../src/tokenizer/load.js';
import { f32Bytes, q8Bytes, T, u16Bytes, writeGguf, type Kv, type WTensor } from '../helpers/gguf-writer.js';

const fixture = (p: string) => fileURLToPath(new URL(`../../fixtures/stories260K/${p}`, import.meta.url));
const GGUF = fixture('gguf/stories260K.gguf');
const LLAMA2C = fixture('llama2c/stories260K.bin');

const tmp = mkdtempSync(join(tmpdir(), 'mocc-gguf-'));
let n = 0;
function writeTmp(bytes: Uint8Array): string {
  const p = join(tmp, `t${n++}.gguf`);
  writeFileSync(p, bytes);
  return p;
}

/** Reads `count` float32s at byte `offset` of the llama2.c checkpoint (independent of the GGUF reader). */
function llama2cFloats(offset: number, count: number): Float32Array {
  const b = readFileSync(LLAMA2C);
  return new Float32Array(b.buffer.slice(b.byteOffset + offset, b.byteOffset + offset + count * 4));
}

test('stories260K.gguf: spec, tensor names and shapes', (t) => {
  const ck = importGguf(GGUF);
  try {
    t.is(ck.format, 'gguf');
    t.deepEqual(ck.files, [GGUF]);
    const s = ck.spec;
    t.is(s.arch, 'llama');
    t.is(s.dim, 64);
    t.is(s.nLayers, 5);
    t.is(s.nHeads, 8);
    t.is(s.nKvHeads, 4);
    t.is(s.headDim, 8);
    t.is(s.dFfn, 172);
    t.is(s.vocabSize, 512);
    t.true(s.tiedEmbeddings);
    t.is(s.normEps, 1e-5);
    t.is(s.rope.theta, 10000);
    t.is(s.rope.style, 'interleaved');
    t.is(s.rope.scaling, undefined);
    t.is(s.bosId, 1);
    t.is(s.eosId, 2);
    const expected = expectedWeightShapes(s);
    t.is(ck.weights.size, expected.size);
    for (const [name, shape] of expected) t.deepEqual(ck.weights.get(name)?.shape, shape, name);
    t.false(ck.weights.has('output'));
  } finally {
    ck.close();
  }
});

test('stories260K.gguf: weights are bit-identical to the llama2.c checkpoint', (t) => {
  const ck = importGguf(GGUF);
  try {
    const V = 512, D = 64, L = 5, F = 172, KVD = 4 * 8;
    // llama2.c layout (fixtures/README.md): 7 int32 header, then token_embedding, rms_att, wq, wk, wv, wo, rms_ffn, w1, w2, w3.
    let off = 28;
    const tokEmb = off; off += V * D * 4;
    const rmsAtt = off; off += L * D * 4;
    const wq = off; off += L * D * D * 4;
    const wk = off; off += L * KVD * D * 4;
    off += L * KVD * D * 4; // wv
    off += L * D * D * 4; // wo
    off += L * D * 4; // rms_ffn
    const w1 = off; off += L * F * D * 4;
    const w2 = off; off += L * D * F * 4;
    const w3 = off;
    const same = (name: string, offset: number, count: number) => {
      const got = ck.weights.get(name)!.toFloat32();
      t.is(got.length, count, name);
      t.deepEqual(new Uint32Array(got.buffer), new Uint32Array(llama2cFloats(offset, count).buffer), name);
    };
    same('tok_embeddings', tokEmb, V * D);
    same('layers.0.w_gate', w1, F * D);
    same('layers.3.w_gate', w1 + 3 * F * D * 4, F * D);
    same('layers.0.w_down', w2, D * F);
    same('layers.4.w_up', w3 + 4 * F * D * 4, F * D);
    same('layers.2.attn_norm', rmsAtt + 2 * D * 4, D);
    // Q/K as GGUF stores them are the llama2.c (interleaved-RoPE) rows, which is why rope.style is 'interleaved'.
    same('layers.0.wq', wq, D * D);
    same('layers.1.wk', wk + KVD * D * 4, KVD * D);
    // Row reads agree with the whole-tensor read.
    const rows = ck.weights.get('layers.0.w_gate')!.readRowsF32(10, 12);
    t.deepEqual([...rows], [...llama2cFloats(w1 + 10 * D * 4, 2 * D)]);
  } finally {
    ck.close();
  }
});

test('stories260K.gguf: the embedded tokenizer is the tok512 vocabulary', (t) => {
  const ck = importGguf(GGUF);
  ck.close();
  const tok = ck.tokenizer;
  t.true(tok instanceof SpmTokenizer);
  const a = tok as SpmTokenizer;
  const b = loadLlama2cTokenizer(fixture('llama2c/tok512.bin'), 512);
  t.is(a.vocabSize, 512);
  t.deepEqual([...a.scores], [...b.scores]);
  const dec = new TextDecoder();
  for (let i = 0; i < 512; i++) {
    if (i === 1 || i === 2) continue; // llama2.c writes BOS/EOS as "\n<s>\n" / "\n</s>\n"
    t.is(dec.decode(a.pieces[i]), dec.decode(b.pieces[i]), `piece ${i}`);
  }
  t.deepEqual(a.encode('Once upon a time'), [1, 403, 407, 261, 378]);
});

// ---------- synthetic files ----------

const D = 32, F = 64, V = 8, KV_DIM = 16;

/** F16 bit patterns and the values they stand for (worked out by hand). */
const F16_CASES: [number, number][] = [
  [0x3c00, 1], [0xc000, -2], [0x3800, 0.5], [0x7bff, 65504], [0x0001, 2 ** -24], [0x0000, 0],
  [0x3555, 0.333251953125], [0xfbff, -65504], [0x0400, 2 ** -14], [0x4248, 3.140625],
];
/** BF16 bit patterns: the high 16 bits of the f32. */
const BF16_CASES: [number, number][] = [
  [0x3f80, 1], [0xc060, -3.5], [0x3e20, 0.15625], [0x4049, 3.140625], [0x0000, 0], [0xbf80, -1], [0x4780, 65536],
];
const Q8_SCALES: [number, number][] = [[0x3800, 0.5], [0x3c00, 1], [0x2e66, 0.0999755859375], [0xbc00, -1]];

function f16Tensor(count: number) {
  const bits: number[] = [], vals: number[] = [];
  for (let i = 0; i < count; i++) { const [b, v] = F16_CASES[i % F16_CASES.length]!; bits.push(b); vals.push(v); }
  return { data: u16Bytes(bits), values: vals };
}
function bf16Tensor(count: number) {
  const bits: number[] = [], vals: number[] = [];
  for (let i = 0; i < count; i++) { const [b, v] = BF16_CASES[(i * 3) % BF16_CASES.length]!; bits.push(b); vals.push(v); }
  return { data: u16Bytes(bits), values: vals };
}
function q8Tensor(count: number) {
  const blocks: { scaleBits: number; qs: number[] }[] = [];
  const vals: number[] = [];
  for (let b = 0; b < count / 32; b++) {
    const [bits, scale] = Q8_SCALES[b % Q8_SCALES.length]!;
    const qs: number[] = [];
    for (let j = 0; j < 32; j++) { const q = ((j * 7 + b * 3) % 256) - 128; qs.push(q); vals.push(Math.fround(scale * q)); }
    blocks.push({ scaleBits: bits, qs });
  }
  return { data: q8Bytes(blocks), values: vals };
}
const f32Tensor = (count: number, seed: number) => {
  const vals = Array.from({ length: count }, (_, i) => ((i * 37 + seed * 11) % 97) / 64 - 0.75);
  return { data: f32Bytes(vals), values: vals.map(Math.fround) };
};

interface Tiny {
  kv: Kv[];
  tensors: WTensor[];
  values: Map<string, number[]>;
}

/** A complete one-layer llama: dim 32, 2 heads of 16, 1 KV head, FFN 64, vocab 8; Q is F16, K BF16, gate/down Q8_0. */
function tiny(): Tiny {
  const kv: Kv[] = [
    { key: 'general.architecture', type: T.STRING, value: 'llama' },
    { key: 'general.name', type: T.STRING, value: 'tiny' },
    { key: 'llama.context_length', type: T.U32, value: 128 },
    { key: 'llama.embedding_length', type: T.U32, value: D },
    { key: 'llama.block_count', type: T.U32, value: 1 },
    { key: 'llama.feed_forward_length', type: T.U32, value: F },
    { key: 'llama.attention.head_count', type: T.U32, value: 2 },
    { key: 'llama.attention.head_count_kv', type: T.U32, value: 1 },
    { key: 'llama.attention.layer_norm_rms_epsilon', type: T.F32, value: 1e-6 },
    { key: 'llama.rope.freq_base', type: T.F32, value: 500000 },
    { key: 'tokenizer.ggml.model', type: T.STRING, value: 'llama' },
    { key: 'tokenizer.ggml.tokens', type: T.ARRAY, elemType: T.STRING, value: ['<unk>', '<s>', '</s>', '▁', 'a', 'b', '▁a', 'ab'] },
    { key: 'tokenizer.ggml.scores', type: T.ARRAY, elemType: T.F32, value: [0, 0, 0, -1, -2, -3, -4, -5] },
    { key: 'tokenizer.ggml.bos_token_id', type: T.U32, value: 1 },
    { key: 'tokenizer.ggml.eos_token_id', type: T.U32, value: 2 },
  ];
  const values = new Map<string, number[]>();
  const tensors: WTensor[] = [];
  const add = (name: string, ne: number[], type: number, x: { data: Uint8Array; values: number[] }) => {
    tensors.push({ name, ne, type, data: x.data });
    values.set(name, x.values);
  };
  add('token_embd.weight', [D, V], 0, f32Tensor(D * V, 1));
  add('blk.0.attn_norm.weight', [D], 0, f32Tensor(D, 2));
  add('blk.0.attn_q.weight', [D, D], 1, f16Tensor(D * D));
  add('blk.0.attn_k.weight', [D, KV_DIM], 30, bf16Tensor(D * KV_DIM));
  add('blk.0.attn_v.weight', [D, KV_DIM], 0, f32Tensor(D * KV_DIM, 3));
  add('blk.0.attn_output.weight', [D, D], 0, f32Tensor(D * D, 4));
  add('blk.0.ffn_norm.weight', [D], 0, f32Tensor(D, 5));
  add('blk.0.ffn_gate.weight', [D, F], 8, q8Tensor(D * F));
  add('blk.0.ffn_up.weight', [D, F], 0, f32Tensor(D * F, 6));
  add('blk.0.ffn_down.weight', [F, D], 8, q8Tensor(F * D));
  add('output_norm.weight', [D], 0, f32Tensor(D, 7));
  return { kv, tensors, values };
}

const withKv = (kv: Kv[], key: string, v: Kv | null): Kv[] => {
  const out = kv.filter((k) => k.key !== key);
  if (v) out.push(v);
  return out;
};

test('synthetic GGUF: F16, BF16 and Q8_0 tensors decode to the expected values', (t) => {
  const m = tiny();
  for (const version of [2, 3]) {
    // Q8_0 dequantized to f32 is exact (d·q of an f16 d and an int8 q fits in float32).
    const ck = importGguf(writeTmp(writeGguf({ version, kv: m.kv, tensors: m.tensors })), { dequantTo: 'f32' });
    try {
      const s = ck.spec;
      t.deepEqual([s.dim, s.nLayers, s.nHeads, s.nKvHeads, s.headDim, s.dFfn, s.vocabSize, s.maxSeqLen], [D, 1, 2, 1, 16, F, V, 128]);
      t.is(s.normEps, 1e-6);
      t.is(s.rope.theta, 500000);
      t.true(s.tiedEmbeddings);
      const check = (canon: string, gguf: string, dtype: StorageDType, shape: number[]) => {
        const w = ck.weights.get(canon)!;
        t.is(w.dtype, dtype, canon);
        t.deepEqual(w.shape, shape, canon);
        t.deepEqual([...w.toFloat32()], m.values.get(gguf)!, canon);
      };
      check('layers.0.wq', 'blk.0.attn_q.weight', 'f16', [D, D]);
      check('layers.0.wk', 'blk.0.attn_k.weight', 'bf16', [KV_DIM, D]);
      check('layers.0.w_gate', 'blk.0.ffn_gate.weight', 'f32', [F, D]);
      check('layers.0.w_down', 'blk.0.ffn_down.weight', 'f32', [D, F]);
      check('layers.0.wv', 'blk.0.attn_v.weight', 'f32', [KV_DIM, D]);
      check('tok_embeddings', 'token_embd.weight', 'f32', [V, D]);
      // Rows of a Q8_0 matrix with two blocks per row.
      const rows = ck.weights.get('layers.0.w_down')!.readRowsF32(3, 5);
      t.deepEqual([...rows], m.values.get('blk.0.ffn_down.weight')!.slice(3 * F, 5 * F));
      t.deepEqual(ck.tokenizer?.encode('a'), [1, 6]);
      // " ab": pairs (▁,a)→▁a scores -4, (a,b)→ab scores -5: the better-scored ▁a wins, leaving b.
      t.deepEqual(ck.tokenizer?.encode('ab', { bos: false }), [6, 5]);
    } finally {
      ck.close();
    }
  }
});

test('synthetic GGUF: a separate output head is kept, a byte-identical copy is tied', (t) => {
  const m = tiny();
  const untied = importGguf(writeTmp(writeGguf({ kv: m.kv, tensors: [...m.tensors, { name: 'output.weight', ne: [D, V], type: 0, data: f32Tensor(D * V, 9).data }] })));
  untied.close();
  t.false(untied.spec.tiedEmbeddings);
  t.deepEqual(untied.weights.get('output')?.shape, [V, D]);
  const copy = importGguf(writeTmp(writeGguf({ kv: m.kv, tensors: [...m.tensors, { name: 'output.weight', ne: [D, V], type: 0, data: m.tensors[0]!.data }] })));
  copy.close();
  t.true(copy.spec.tiedEmbeddings);
  t.false(copy.weights.has('output'));
});

test('metadata: every value type parses', (t) => {
  const kv: Kv[] = [
    { key: 'u8', type: T.U8, value: 250 }, { key: 'i8', type: T.I8, value: -100 },
    { key: 'u16', type: T.U16, value: 65000 }, { key: 'i16', type: T.I16, value: -30000 },
    { key: 'u32', type: T.U32, value: 4000000000 }, { key: 'i32', type: T.I32, value: -2000000000 },
    { key: 'f32', type: T.F32, value: 0.25 }, { key: 'bool', type: T.BOOL, value: true },
    { key: 'str', type: T.STRING, value: 'héllo' }, { key: 'u64', type: T.U64, value: 2n ** 60n },
    { key: 'i64', type: T.I64, value: -5n }, { key: 'f64', type: T.F64, value: 1.5e300 },
    { key: 'arr', type: T.ARRAY, elemType: T.I32, value: [1, -2, 3] },
    { key: 'nested', type: T.ARRAY, elemType: T.ARRAY, innerElemType: T.STRING, value: [['a', 'b'], [], ['c']] },
    { key: 'general.alignment', type: T.U32, value: 64 },
  ];
  const p = writeTmp(writeGguf({ kv, tensors: [{ name: 'x', ne: [4], type: 0, data: f32Bytes([1, 2, 3, 4]) }], alignment: 64 }));
  const fh = new FileHandle(p, statSync(p).size);
  try {
    const h = readGgufHeader(fh, p);
    const md = h.metadata;
    t.is(h.version, 3);
    t.is(md.get('u8'), 250); t.is(md.get('i8'), -100); t.is(md.get('u16'), 65000); t.is(md.get('i16'), -30000);
    t.is(md.get('u32'), 4000000000); t.is(md.get('i32'), -2000000000); t.is(md.get('f32'), 0.25);
    t.is(md.get('bool'), true); t.is(md.get('str'), 'héllo'); t.is(md.get('u64'), 2n ** 60n); t.is(md.get('i64'), -5);
    t.is(md.get('f64'), 1.5e300);
    t.deepEqual(md.get('arr'), [1, -2, 3]);
    t.deepEqual(md.get('nested'), [['a', 'b'], [], ['c']]);
    t.is(h.alignment, 64);
    t.is(h.dataOffset % 64, 0);
    t.deepEqual(h.tensors[0]!.shape, [4]);
  } finally {
    fh.close();
  }
});

test('synthetic GGUF: Q8_0 is dequantized to f16 by default (d·q rounded once to f16)', (t) => {
  const m = tiny();
  const ck = importGguf(writeTmp(writeGguf({ kv: m.kv, tensors: m.tensors })));
  try {
    const w = ck.weights.get('layers.0.w_gate')!;
    t.is(w.dtype, 'f16');
    t.is(w.byteLength, F * D * 2);
    // Block 2 of the tensor (scale 0x2e66 = 0.0999755859375) holds q = (7j + 6) % 256 − 128 for j = 0..31;
    // element 64 (j = 0): 0.0999755859375 · −122 = −12.19702148…, whose nearest f16 is −12.1953125 (0xca19).
    t.is(new DataView(w.readBytes(128, 130).buffer).getUint16(0, true), 0xca19);
    t.is(w.readRowsF32(2, 3)[0], -12.1953125);
  } finally {
    ck.close();
  }
});

test('unsupported tensor type: UserError naming the type', (t) => {
  const m = tiny();
  const tensors = m.tensors.map((x) => (x.name === 'blk.0.ffn_gate.weight' ? { ...x, type: 19, data: new Uint8Array((D * F / 256) * 50) } : x));
  const e = t.throws(() => importGguf(writeTmp(writeGguf({ kv: m.kv, tensors }))), { instanceOf: UserError });
  t.regex(e!.message, /tensor blk\.0\.ffn_gate\.weight has/);
  t.regex(e!.message, /IQ1_S \(19\)/);
  t.regex(e!.message, /supported: F32, F16, BF16, Q4_0, Q4_1, Q5_0, Q5_1, Q8_0, Q2_K, Q3_K, Q4_K, Q5_K, Q6_K$/);
  const tensors2 = m.tensors.map((x) => (x.name === 'blk.0.ffn_up.weight' ? { ...x, type: 99 } : x));
  t.throws(() => importGguf(writeTmp(writeGguf({ kv: m.kv, tensors: tensors2 }))), { instanceOf: UserError, message: /\(99\)/ });
});

/** Hand-made header bytes: magic, version 3, counts, then `rest`. */
function rawHeader(tensorCount: bigint, kvCount: bigint, rest: number[] = []): Uint8Array {
  const b = new Uint8Array(24 + rest.length);
  const dv = new DataView(b.buffer);
  b.set([0x47, 0x47, 0x55, 0x46]);
  dv.setUint32(4, 3, true);
  dv.setBigUint64(8, tensorCount, true);
  dv.setBigUint64(16, kvCount, true);
  b.set(rest, 24);
  // Trailing zeros so that the counts themselves are plausible for the file size.
  const padded = new Uint8Array(b.length + 64);
  padded.set(b);
  return padded;
}
const le64 = (v: bigint) => { const b = new Uint8Array(8); new DataView(b.buffer).setBigUint64(0, v, true); return [...b]; };
const le32 = (v: number) => { const b = new Uint8Array(4); new DataView(b.buffer).setUint32(0, v, true); return [...b]; };

test('absurd counts and lengths: UserError at once, no huge allocation', (t) => {
  const m = tiny();
  const t0 = Date.now();
  const heap0 = process.memoryUsage().heapUsed;
  t.throws(() => importGguf(writeTmp(writeGguf({ kv: m.kv, tensors: m.tensors, tensorCount: 2n ** 40n }))), { instanceOf: UserError, message: /absurd tensor_count/ });
  t.throws(() => importGguf(writeTmp(writeGguf({ kv: m.kv, tensors: m.tensors, kvCount: 2n ** 62n }))), { instanceOf: UserError, message: /absurd kv_count/ });
  t.throws(() => importGguf(writeTmp(rawHeader(0n, 1n, le64(2n ** 50n)))), { instanceOf: UserError, message: /absurd .*length/ });
  const key = [...new TextEncoder().encode('k')];
  t.throws(() => importGguf(writeTmp(rawHeader(0n, 1n, [...le64(1n), ...key, ...le32(T.ARRAY), ...le32(T.U8), ...le64(2n ** 40n), 0, 0]))), { instanceOf: UserError, message: /absurd array length/ });
  t.throws(() => importGguf(writeTmp(rawHeader(0n, 1n, [...le64(1n), ...key, ...le32(T.ARRAY), ...le32(T.STRING), ...le64(3n), ...le64(2n ** 63n)]))), { instanceOf: UserError, message: /absurd/ });
  // An absurd tensor dimension.
  t.throws(() => importGguf(writeTmp(rawHeader(1n, 0n, [...le64(1n), ...key, ...le32(2), ...le64(2n ** 62n), ...le64(2n ** 62n), ...le32(0), ...le64(0n)]))), { instanceOf: UserError, message: /absurd/ });
  t.true(Date.now() - t0 < 2000);
  t.true(process.memoryUsage().heapUsed - heap0 < 200e6);
});

test('truncated files: UserError at every cut point', (t) => {
  const m = tiny();
  const full = writeGguf({ kv: m.kv, tensors: m.tensors });
  let cuts = 0;
  for (let len = 0; len < full.length; len += len < 1200 ? 1 : 97) {
    const p = writeTmp(full.subarray(0, len));
    const err = t.throws(() => importGguf(p), undefined, `cut at ${len}`);
    if (!(err instanceof UserError)) t.fail(`cut at ${len}: ${err?.name}: ${err?.message}`);
    cuts++;
  }
  t.true(cuts > 100);
  // Cut in the data section: the message says the tensor lies beyond the end.
  t.throws(() => importGguf(writeTmp(full.subarray(0, full.length - 10))), { instanceOf: UserError, message: /beyond the end/ });
});

test('tensor data offset beyond EOF: UserError', (t) => {
  const m = tiny();
  const bytes = writeGguf({ kv: m.kv, tensors: m.tensors, offsets: { 'blk.0.attn_v.weight': 1_000_000n } });
  t.throws(() => importGguf(writeTmp(bytes)), { instanceOf: UserError, message: /attn_v.*beyond the end/ });
  const bytes2 = writeGguf({ kv: m.kv, tensors: m.tensors, offsets: { 'blk.0.attn_v.weight': 2n ** 63n } });
  t.throws(() => importGguf(writeTmp(bytes2)), { instanceOf: UserError, message: /attn_v/ });
});

test('wrong architecture, old version, bad magic, unsupported RoPE scaling, missing keys: UserErrors', (t) => {
  const m = tiny();
  const arch = withKv(m.kv, 'general.architecture', { key: 'general.architecture', type: T.STRING, value: 'gpt2' });
  t.throws(() => importGguf(writeTmp(writeGguf({ kv: arch, tensors: m.tensors }))), { instanceOf: UserError, message: /"gpt2"/ });
  t.throws(() => importGguf(writeTmp(writeGguf({ version: 1, kv: m.kv, tensors: m.tensors }))), { instanceOf: UserError, message: /version 1/ });
  t.throws(() => importGguf(writeTmp(writeGguf({ version: 4, kv: m.kv, tensors: m.tensors }))), { instanceOf: UserError, message: /version 4/ });
  t.throws(() => importGguf(writeTmp(new TextEncoder().encode('not a gguf file at all'))), { instanceOf: UserError, message: /not a GGUF/ });
  const yarn = [...m.kv, { key: 'llama.rope.scaling.type', type: T.STRING, value: 'yarn' }];
  t.throws(() => importGguf(writeTmp(writeGguf({ kv: yarn, tensors: m.tensors }))), { instanceOf: UserError, message: /yarn/ });
  const none = [...m.kv, { key: 'llama.rope.scaling.type', type: T.STRING, value: 'none' }];
  t.notThrows(() => importGguf(writeTmp(writeGguf({ kv: none, tensors: m.tensors }))).close());
  const noDim = withKv(m.kv, 'llama.embedding_length', null);
  t.throws(() => importGguf(writeTmp(writeGguf({ kv: noDim, tensors: m.tensors }))), { instanceOf: UserError, message: /embedding_length/ });
  const missing = m.tensors.filter((x) => x.name !== 'blk.0.ffn_up.weight');
  t.throws(() => importGguf(writeTmp(writeGguf({ kv: m.kv, tensors: missing }))), { instanceOf: UserError, message: /w_up/ });
  const wrongShape = m.tensors.map((x) => (x.name === 'blk.0.ffn_up.weight' ? { ...x, ne: [D, F / 2], data: x.data.subarray(0, D * F * 2) } : x));
  t.throws(() => importGguf(writeTmp(writeGguf({ kv: m.kv, tensors: wrongShape }))), { instanceOf: UserError, message: /ffn_up/ });
  t.throws(() => importGguf(join(tmp, 'does-not-exist.gguf')), { instanceOf: UserError });
});

test('non-SPM embedded tokenizers are left undefined', (t) => {
  const m = tiny();
  const kv = withKv(m.kv, 'tokenizer.ggml.model', { key: 'tokenizer.ggml.model', type: T.STRING, value: 'gpt2' });
  const ck = importGguf(writeTmp(writeGguf({ kv, tensors: m.tensors })));
  ck.close();
  t.is(ck.tokenizer, undefined);
  t.is(ck.spec.vocabSize, V);
});
