// Issue 13 item 4, "small things users notice": a llama2.c tokenizer under another name, a --k-ratio
// that rounds to 0, the demo's default K and its memory figure, `run | head`, compile's model options,
// the benchmark that rewrote a tracked results file.
import test from 'ava';
import { spawnSync } from 'node:child_process';
import { copyFileSync, existsSync, mkdirSync, readFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { resultsFile } from '../../bench/results-file.js';
import { mocc, tempDir } from '../helpers/cli.js';
import { userError } from '../helpers/cli-assert.js';
import { CHECKPOINTS, LLAMA2C_TOKENIZER, REF, ROOT } from '../helpers/fixtures.js';

test('a llama2.c checkpoint finds tok512.bin beside it (the one llama2.c tokenizer there)', (t) => {
  const r = mocc('run', CHECKPOINTS.llama2c, '--prompt', REF.prompt, '--max-tokens', '20');
  t.is(r.code, 0, r.stderr);
  const text = r.stdout.trimEnd();
  t.true(text.length > REF.prompt.length + 20, text);
  t.true(REF.greedy_text.startsWith(text), `${JSON.stringify(text)} is a prefix of the HF greedy text`);
});

test('without a usable tokenizer beside it, the message says which names were tried', (t) => {
  const dir = join(tempDir(t), 'l2c');
  mkdirSync(dir);
  copyFileSync(CHECKPOINTS.llama2c, join(dir, 'model.bin'));
  const what = /model\.bin has no tokenizer \(no tokenizer\.bin, nor a single llama2\.c tokenizer \.bin with 512 tokens, beside model\.bin\): give --tokenizer FILE, or the prompt as --tokens/;
  userError(t, mocc('run', join(dir, 'model.bin'), '--prompt', 'Once'), what);
  // two candidates: neither is guessed
  copyFileSync(LLAMA2C_TOKENIZER, join(dir, 'a.bin'));
  copyFileSync(LLAMA2C_TOKENIZER, join(dir, 'b.bin'));
  userError(t, mocc('run', join(dir, 'model.bin'), '--prompt', 'Once'), what);
  // tokenizer.bin wins over other names
  copyFileSync(LLAMA2C_TOKENIZER, join(dir, 'tokenizer.bin'));
  t.is(mocc('run', join(dir, 'model.bin'), '--prompt', 'Once', '--max-tokens', '2').code, 0);
});

test('--k-ratio that rounds to 0 channels says it keeps K = 1 (a note, not an error)', (t) => {
  const r = mocc('run', CHECKPOINTS.gguf, '--tokens', '1,403', '--k-ratio', '0.001', '--max-tokens', '2');
  t.is(r.code, 0, r.stderr);
  t.regex(r.stderr, /^mocc: note: --k-ratio 0\.001 × d_ffn 172 = 0\.172 channels rounds to 0; keeping K = 1/m);
  const pkg = join(tempDir(t), 'pkg');
  const c = mocc('convert', CHECKPOINTS.gguf, '-o', pkg, '--k-ratio', '0.002');
  t.is(c.code, 0, c.stderr);
  t.regex(c.stderr, /mocc: note: --k-ratio 0\.002 .* keeping K = 1/);
  t.regex(c.stderr, /K 1 of d_ffn 172/);
  t.notRegex(mocc('run', CHECKPOINTS.gguf, '--tokens', '1,403', '--k-ratio', '0.19', '--max-tokens', '2').stderr, /note/);
});

test('demo: the default K shows MoC storing less than dense, and says how the figure is made', (t) => {
  const r = mocc('demo', '--max-tokens', '5');
  t.is(r.code, 0, r.stderr);
  // The paper's accounting by hand for d = 64, d_ffn = 172, K = 32 (bf16 values, int32 indices):
  // dense (4·172+64)·2 = 1504 B; MoC (4·32+64)·2 + 32·4 = 512 B; with GCP (2·172+64)·2 = 816 B vs (2·32+64)·2 + 32·4 = 384 B;
  // MoC < dense while 12·K + 128 < 1504, i.e. K ≤ 114.
  t.regex(r.stdout, /== MoC K=32 \(greedy, \d+ tokens; FFN activations per training token per layer: 512 B vs 1504 B dense\)/);
  t.regex(r.stdout, /dense 4·d_ffn\+d values = 1504 B, MoC 4·K\+d values \+ K indices = 512 B, 34% of dense; with gradient checkpointing 816 B vs 384 B\. MoC stores less than dense while K ≤ 114\./);
});

test('run | head: stops when the reader goes away, without finishing the generation', (t) => {
  const cli = JSON.stringify(join(ROOT, 'dist/cli/mocc.js'));
  const r = spawnSync('bash', ['-c', `node ${cli} run ${JSON.stringify(CHECKPOINTS.gguf)} --prompt "Once upon a time" --max-tokens 400 | head -c 20; exit \${PIPESTATUS[0]}`], { encoding: 'utf8', timeout: 120_000 });
  t.is(r.status, 0, r.stderr);
  t.true(r.stdout.startsWith('Once upon a time'), r.stdout);
  t.is(r.stdout.length, 20);
  // run prints "[N tokens in …]" after the last token: it must not get there.
  t.notRegex(r.stderr, /tokens in/);
  t.notRegex(r.stderr, /EPIPE|Unhandled/);
});

test('compile takes --tokenizer and --k on a checkpoint, like run and logits', (t) => {
  const out = join(tempDir(t), 'web');
  // The HF fixture holds no tokenizer; the web bundle needs one.
  const r = mocc('compile', CHECKPOINTS.hf, '--target', 'wgsl', '--tokenizer', LLAMA2C_TOKENIZER, '--k', '16', '-o', out);
  t.is(r.code, 0, r.stderr);
  t.regex(readFileSync(join(out, 'index.html'), 'utf8'), /<p id="model">hf: 5-layer LLaMA \(d 64, d_ffn 172, vocabulary 512\), MoC, K = 16 of 172 channels \(9%\)<\/p>/);
  const c = join(tempDir(t), 'ptx');
  t.is(mocc('compile', CHECKPOINTS.gguf, '--target', 'cuda', '--pattern', '2:8', '-o', c).code, 0);
  t.true(existsSync(join(c, 'launch.json')));
});

test('the memory benchmark writes its results to bench/results/ only with --save', (t) => {
  t.is(resultsFile({ save: false }, ROOT, 'convert-memory.json'), join(tmpdir(), 'convert-memory.json'));
  t.is(resultsFile({ save: true }, ROOT, 'convert-memory.json'), join(ROOT, 'bench/results/convert-memory.json'));
  t.is(resultsFile({ save: false, out: '/x/y.json' }, ROOT, 'convert-memory.json'), '/x/y.json');
});
