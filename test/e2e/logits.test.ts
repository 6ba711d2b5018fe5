// Acceptance: `mocc logits` from each checkpoint format matches Hugging Face transformers' logits
// (fixtures/stories260K/reference, made by fixtures/gen/make_stories260k_reference.py) to 1e-4,
// dense and MoC K=32 / K=128, for both reference sequences — both through a converted package and
// straight from the checkpoint.
import test from 'ava';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { mocc, tempDir } from '../helpers/cli.js';
import { CHECKPOINTS, LLAMA2C_TOKENIZER, REF, maxAbsDiff, referenceLogits } from '../helpers/fixtures.js';

const MODES = [
  { name: 'dense', flags: ['--dense'], ref: 'dense' },
  { name: 'k32', flags: ['--k', '32'], ref: 'moc_k32' },
  { name: 'k128', flags: ['--k', '128'], ref: 'moc_k128' },
] as const;
const SEQS = ['greedy_once_upon', 'sample0'];

for (const [format, path] of Object.entries(CHECKPOINTS)) {
  for (const mode of MODES) {
    test(`${format} ${mode.name}: package logits match HF within 1e-4`, (t) => {
      const dir = tempDir(t);
      const pkg = join(dir, 'pkg');
      const tok = format === 'llama2c' ? ['--tokenizer', LLAMA2C_TOKENIZER] : [];
      const c = mocc('convert', path, '-o', pkg, ...mode.flags, ...tok);
      t.is(c.code, 0, c.stderr);
      for (const seq of SEQS) {
        const out = join(dir, `${seq}.f32`);
        const r = mocc('logits', pkg, '--tokens', REF.sequences[seq]!.tokens.join(','), '--out', out);
        t.is(r.code, 0, r.stderr);
        const got = new Float32Array(readFileSync(out).buffer.slice(0));
        const diff = maxAbsDiff(got, referenceLogits(seq, mode.ref));
        t.true(diff <= 1e-4, `${seq}: max |Δ| = ${diff}`);
      }
    });
  }
  test(`${format}: logits straight from the checkpoint (MoC K=32, --prompt) match HF`, (t) => {
    const dir = tempDir(t);
    const out = join(dir, 'l.f32');
    const tok = format === 'gguf' ? [] : ['--tokenizer', LLAMA2C_TOKENIZER]; // only GGUF holds its tokenizer
    // The prompt's tokens are the first five of greedy_once_upon, so compare those rows.
    const r = mocc('logits', path, '--prompt', REF.prompt, '--k', '32', '--out', out, ...tok);
    t.is(r.code, 0, r.stderr);
    const got = new Float32Array(readFileSync(out).buffer.slice(0));
    const ref = referenceLogits('greedy_once_upon', 'moc_k32').subarray(0, got.length);
    t.is(got.length, REF.prompt_ids.length * 512);
    t.true(maxAbsDiff(got, ref) <= 1e-4);
  });
}
