// stories260K requantized to Q8_0 and Q4_0 (fixtures/gen/requantize_stories260k.py): every tensor
// dequantizes to gguf-py's values, both files convert and run through the CLI, and their logits stay near
// the F32 model's (Hugging Face reference), Q8_0 much nearer than Q4_0.
//
// Tolerances come from what was measured on the greedy_once_upon sequence (125 tokens), default f16
// dequantization, ref target: Q8_0 max |Δlogit| 0.29, mean 0.045; Q4_0 max 8.7, mean 0.72 (over 100
// TinyStories documents, bench/results/quant-nll.json: max 0.48 and 9.5). The bounds allow about 2×.
import test from 'ava';
import { createHash } from 'node:crypto';
import { readFileSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { ggufTensorSource, readGgufHeader } from '../../src/import/gguf.js';
import { FileHandle } from '../../src/import/tensor.js';
import { openPackage } from '../../src/package/read.js';
import { mocc, tempDir } from '../helpers/cli.js';
import { FIX, REF, maxAbsDiff, referenceLogits } from '../helpers/fixtures.js';

const DIR = `${FIX}gguf/`;
const EXPECTED = JSON.parse(readFileSync(`${DIR}stories260K.requantized.json`, 'utf8')) as Record<string, Record<string, { type: string; f32_sha256: string }>>;
const SEQ = 'greedy_once_upon';
const BOUNDS = { Q8_0: { max: 1.0, mean: 0.1 }, Q4_0: { max: 15, mean: 1.5 } } as const;

const meanAbsDiff = (a: Float32Array, b: Float32Array) => a.reduce((s, v, i) => s + Math.abs(v - b[i]!), 0) / a.length;
const readF32 = (p: string) => new Float32Array(readFileSync(p).buffer.slice(0));

for (const q of ['Q8_0', 'Q4_0'] as const) {
  const file = `stories260K.${q}.gguf`;
  const path = DIR + file;

  test(`${file}: every tensor dequantizes (f32) to gguf-py's values`, (t) => {
    const fh = new FileHandle(path, statSync(path).size);
    try {
      const h = readGgufHeader(fh, path);
      const want = EXPECTED[file]!;
      t.deepEqual(h.tensors.map((x) => x.name).sort(), Object.keys(want).sort());
      t.true(Object.values(want).filter((w) => w.type === q).length >= 26, `most weights are ${q}`);
      for (const info of h.tensors) {
        const v = ggufTensorSource(path, fh, info, 'f32').toFloat32();
        t.is(createHash('sha256').update(new Uint8Array(v.buffer, v.byteOffset, v.byteLength)).digest('hex'), want[info.name]!.f32_sha256, info.name);
      }
    } finally {
      fh.close();
    }
  });

  test(`${file}: converts, runs, and its logits stay near F32's (${q} bounds)`, (t) => {
    const dir = tempDir(t);
    const pkg = join(dir, 'pkg');
    const c = mocc('convert', path, '-o', pkg, '--dense');
    t.is(c.code, 0, c.stderr);
    const manifest = JSON.parse(readFileSync(join(pkg, 'manifest.json'), 'utf8')) as { weights: { dtypes: Record<string, string> } };
    t.is(manifest.weights.dtypes['layers.0.wq'], 'f16', 'quantized weights are stored as f16 by default');
    t.is(manifest.weights.dtypes['layers.0.attn_norm'], 'f32', 'F32 tensors keep their type');

    const tokens = REF.sequences[SEQ]!.tokens.join(',');
    const fromPkg = join(dir, 'pkg.f32'), fromGguf = join(dir, 'gguf.f32');
    for (const [src, out] of [[pkg, fromPkg], [path, fromGguf]] as const) {
      const r = mocc('logits', src, '--tokens', tokens, '--out', out);
      t.is(r.code, 0, r.stderr);
    }
    const got = readF32(fromPkg);
    // Running the .gguf converts it in memory the same way (f16), so the logits are the same bits.
    t.deepEqual(new Uint32Array(readF32(fromGguf).buffer), new Uint32Array(got.buffer));
    const f32 = referenceLogits(SEQ, 'dense');
    const max = maxAbsDiff(got, f32), mean = meanAbsDiff(got, f32);
    t.log(`${q}: max |Δlogit| ${max.toFixed(4)}, mean ${mean.toFixed(4)}`);
    t.true(max <= BOUNDS[q].max, `max |Δ| ${max}`);
    t.true(mean <= BOUNDS[q].mean, `mean |Δ| ${mean}`);

    const r = mocc('run', path, '--prompt', 'Once upon a time', '--max-tokens', '30');
    t.is(r.code, 0, r.stderr);
    t.true(r.stdout.startsWith('Once upon a time, there was a little girl named Lily.'), r.stdout);
    // Q8_0 decodes the same greedy story as the F32 model (measured: the first 60 tokens agree).
    if (q === 'Q8_0') t.true(REF.greedy_text.startsWith(r.stdout.trimEnd()), r.stdout);
  });
}

test('Q8_0 logits are nearer F32 than Q4_0 logits', (t) => {
  const dir = tempDir(t);
  const f32 = referenceLogits(SEQ, 'dense');
  const diff = (q: string) => {
    const out = join(dir, `${q}.f32`);
    const r = mocc('logits', `${DIR}stories260K.${q}.gguf`, '--tokens', REF.sequences[SEQ]!.tokens.join(','), '--out', out);
    t.is(r.code, 0, r.stderr);
    return meanAbsDiff(readF32(out), f32);
  };
  const q8 = diff('Q8_0'), q4 = diff('Q4_0');
  t.true(q8 * 5 < q4, `mean |Δ| Q8_0 ${q8} vs Q4_0 ${q4}`);
});

test('convert --dtype f32 stores the exact dequantized values; --dtype bf16 stores bf16', (t) => {
  const dir = tempDir(t);
  const file = 'stories260K.Q4_0.gguf';
  for (const dtype of ['f32', 'bf16'] as const) {
    const pkg = join(dir, dtype);
    const c = mocc('convert', DIR + file, '-o', pkg, '--dense', '--dtype', dtype);
    t.is(c.code, 0, c.stderr);
    const p = openPackage(pkg);
    try {
      const wq = p.weights.get('layers.0.wq')!;
      t.is(wq.dtype, dtype);
      if (dtype === 'f32') {
        const bytes = wq.readBytes(0, wq.byteLength);
        t.is(createHash('sha256').update(bytes).digest('hex'), EXPECTED[file]!['blk.0.attn_q.weight']!.f32_sha256);
      }
    } finally {
      p.close();
    }
  }
});
