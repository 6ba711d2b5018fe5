// Acceptance: greedy decoding of "Once upon a time" reproduces HF transformers' greedy text exactly
// (120 new tokens), from every checkpoint format and from a converted package.
import test from 'ava';
import { join } from 'node:path';
import { mocc, tempDir } from '../helpers/cli.js';
import { CHECKPOINTS, LLAMA2C_TOKENIZER, REF } from '../helpers/fixtures.js';

for (const [format, path] of Object.entries(CHECKPOINTS)) {
  test(`${format}: greedy text equals the HF reference`, (t) => {
    const tok = format === 'gguf' ? [] : ['--tokenizer', LLAMA2C_TOKENIZER];
    const r = mocc('run', path, '--prompt', REF.prompt, '--max-tokens', '120', ...tok);
    t.is(r.code, 0, r.stderr);
    t.is(r.stdout, REF.greedy_text + '\n');
  });
}

test('package converted with K = d_ffn decodes the dense greedy text', (t) => {
  const pkg = join(tempDir(t), 'pkg');
  t.is(mocc('convert', CHECKPOINTS.gguf, '-o', pkg, '--k', '172').code, 0);
  const r = mocc('run', pkg, '--prompt', REF.prompt, '--max-tokens', '120');
  t.is(r.code, 0, r.stderr);
  t.is(r.stdout, REF.greedy_text + '\n');
});

test('sampling is reproducible with a seed and differs across seeds', (t) => {
  const run = (seed: string) => mocc('run', CHECKPOINTS.gguf, '--prompt', REF.prompt, '--max-tokens', '40', '--temperature', '1', '--top-p', '0.9', '--seed', seed).stdout;
  const a = run('1');
  t.is(a, run('1'));
  t.not(a, run('2'));
  t.true(a.startsWith(REF.prompt));
});
