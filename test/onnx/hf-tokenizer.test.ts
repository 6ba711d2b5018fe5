// The tokenizer.json the --kv-cache export writes for a llama2.c tokenizer (targets/onnx/hf-tokenizer.ts),
// loaded by transformers.js' AutoTokenizer: it must encode and decode as mocc's tokenizer does, on the
// reference prompt (whose ids come from Hugging Face's own tokenizer: fixtures/stories260K/reference),
// spaces, unicode with and without pieces, and characters only byte fallback can spell.
import test from 'ava';
import { readFileSync } from 'node:fs';
import { basename, dirname, join } from 'node:path';
import { AutoTokenizer, env } from '@huggingface/transformers';
import { parseLlama2cTokenizer } from '../../src/tokenizer/spm.js';
import { mocc, tempDir } from '../helpers/cli.js';
import { CHECKPOINTS, LLAMA2C_TOKENIZER, REF } from '../helpers/fixtures.js';

const STRINGS = [
  REF.prompt,
  REF.greedy_text,
  'Hello world',
  '  two leading spaces,  double  spaces and a trailing one ',
  'naïve café, Straße, 日本語, emoji 🙂🚀, Ω≈ç√',
  'line one\nline two\ttab\r\n',
  'Lily\'s mom said, "Lily, let\'s go to the park."',
  'x',
  ' ',
  'aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa',
  'The quick brown fox jumps over the lazy dog. 0123456789 !@#$%^&*()',
];

test('the exported tokenizer.json encodes and decodes as mocc does (transformers.js AutoTokenizer)', async (t) => {
  const dir = tempDir(t);
  const pkg = join(dir, 'pkg');
  t.is(mocc('convert', CHECKPOINTS.hf, '-o', pkg, '--dense', '--tokenizer', LLAMA2C_TOKENIZER).code, 0);
  const out = join(dir, 'onnx-out');
  const e = mocc('export', pkg, '--format', 'onnx', '--kv-cache', '-o', out);
  t.is(e.code, 0, e.stderr);
  t.notRegex(e.stderr, /no tokenizer\.json form/);
  env.allowRemoteModels = false;
  env.localModelPath = dirname(out) + '/';
  const hf = await AutoTokenizer.from_pretrained(basename(out), { local_files_only: true });
  const ours = parseLlama2cTokenizer(readFileSync(LLAMA2C_TOKENIZER), 512, LLAMA2C_TOKENIZER);
  t.deepEqual(hf.encode(REF.prompt), REF.prompt_ids, 'the reference prompt gives Hugging Face\'s reference ids');
  for (const s of STRINGS) {
    const ids = ours.encode(s);
    t.deepEqual(hf.encode(s), ids, JSON.stringify(s));
    t.is(hf.decode(ids, { skip_special_tokens: true }), ours.decode(ids), `decode ${JSON.stringify(s)}`);
  }
  t.true(ours.encode(STRINGS[4]!).some((id) => id >= 3 && id <= 258), 'byte fallback was exercised');
});
