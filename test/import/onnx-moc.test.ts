// Re-importing mocc's own ONNX export (src/import/onnx/match-moc.ts): a MoC package exported in
// either FFN form, with or without --kv-cache, imports back to the same MoC selection (K, or the a:b
// pattern) and the same logits: against the Hugging Face MoC references (an implementation independent
// of mocc) and against the original package through the ref target. A --k that contradicts the
// graph's own TopK is a one-line error.
import test from 'ava';
import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { mocc, tempDir } from '../helpers/cli.js';
import { CHECKPOINTS, LLAMA2C_TOKENIZER, REF, maxAbsDiff, referenceLogits } from '../helpers/fixtures.js';

const TOL = 1e-4;
const SEQ = 'greedy_once_upon';
const TOKENS = REF.sequences[SEQ]!.tokens;
const LAYERS = 5;

const work = tempDir({ teardown: (fn) => process.on('exit', fn) });
const made = new Map<string, string>();
let count = 0;
/** The output of `mocc <make(dir)>`, run once per key. */
function once(key: string, make: (dir: string) => string[]): string {
  let p = made.get(key);
  if (!p) {
    const dir = join(work, `m${count++}`);
    const args = make(dir);
    const r = mocc(...args);
    if (r.code !== 0) throw new Error(`${args.join(' ')}: ${r.stderr}`);
    made.set(key, (p = dir));
  }
  return p;
}
const pkg = (flags: string[]) => once(flags.join(' '), (p) => ['convert', CHECKPOINTS.hf, '-o', p, ...flags, '--tokenizer', LLAMA2C_TOKENIZER]);
const exported = (flags: string[], exportFlags: string[]) =>
  join(once(`${flags.join(' ')} → ${exportFlags.join(' ')}`, (p) => ['export', pkg(flags), '--format', 'onnx', '-o', p, ...exportFlags]), 'onnx/model.onnx');

function logits(t: { teardown(fn: () => void): void }, model: string, ...flags: string[]): Float32Array {
  const out = join(tempDir(t), 'l.f32');
  const r = mocc('logits', model, '--tokens', TOKENS.join(','), '--out', out, '--target', 'ref', ...flags);
  if (r.code !== 0) throw new Error(r.stderr);
  const b = readFileSync(out);
  return new Float32Array(b.buffer.slice(b.byteOffset, b.byteOffset + b.byteLength));
}

/** The moc section of the manifest `mocc convert <onnx>` writes with no selection flag. */
function convertedMoc(t: { teardown(fn: () => void): void }, onnx: string): { mode: string; perLayerK: number[]; pattern?: string } {
  const out = join(tempDir(t), 'pkg');
  const r = mocc('convert', onnx, '-o', out);
  if (r.code !== 0) throw new Error(r.stderr);
  return JSON.parse(readFileSync(join(out, 'manifest.json'), 'utf8')).moc;
}

const CASES = [
  { name: 'K=32', flags: ['--k', '32'], ref: 'moc_k32', k: 32 },
  { name: 'K=128', flags: ['--k', '128'], ref: 'moc_k128', k: 128 },
  // 172 = 4·43: the export writes a:b as TopK per block when b divides d_ffn.
  { name: 'pattern 4:43', flags: ['--pattern', '4:43'], ref: undefined, k: 16, pattern: '4:43' },
] as const;

for (const c of CASES) {
  for (const form of ['gather', 'masked']) {
    for (const kv of [false, true]) {
      const exportFlags = ['--form', form, ...(kv ? ['--kv-cache'] : [])];
      test(`${c.name}, ${form} form${kv ? ', --kv-cache' : ''}: re-import recovers the selection and the logits`, (t) => {
        const onnx = exported([...c.flags], exportFlags);
        const got = logits(t, onnx);
        t.true(maxAbsDiff(got, logits(t, pkg([...c.flags]))) <= TOL, 'vs the package through ref');
        if (c.ref) t.true(maxAbsDiff(got, referenceLogits(SEQ, c.ref)) <= TOL, 'vs the Hugging Face MoC reference');
        const moc = convertedMoc(t, onnx);
        t.is(moc.mode, 'pattern' in c ? 'pattern' : 'topk');
        t.deepEqual(moc.perLayerK, Array(LAYERS).fill(c.k));
        t.is(moc.pattern, 'pattern' in c ? c.pattern : undefined);
      });
    }
  }
}

test('a dense export re-imports dense (the dense reference logits), and converts like any dense checkpoint', (t) => {
  const onnx = exported(['--dense'], ['--kv-cache']);
  t.true(maxAbsDiff(logits(t, onnx), referenceLogits(SEQ, 'dense')) <= TOL);
  // No selection in the graph: convert's default --k-ratio 0.19 applies (round(0.19·172) = 33).
  t.deepEqual(convertedMoc(t, onnx).perLayerK, Array(LAYERS).fill(33));
});

test('a selection that contradicts the graph\'s TopK is a one-line error; the same K is accepted', (t) => {
  const onnx = exported(['--k', '32'], ['--form', 'masked']);
  for (const flags of [['--k', '64'], ['--dense'], ['--pattern', '1:4']]) {
    const out = join(tempDir(t), 'pkg');
    const r = mocc('convert', onnx, '-o', out, ...flags);
    t.is(r.code, 1, r.stderr);
    t.regex(r.stderr, /^mocc: .*computes MoC K 32 in its graph; the selection given \(.*\) contradicts it/);
    t.is(r.stderr.trim().split('\n').length, 1);
    t.false(existsSync(out));
  }
  // --k-ratio 0.186 rounds to the same 32 of 172 channels.
  t.true(maxAbsDiff(logits(t, onnx, '--k-ratio', '0.186'), logits(t, onnx, '--k', '32')) === 0);
});
