// Benchmark (not a test): what GGUF quantization costs stories260K. For the F32 GGUF and its Q8_0 / Q4_0
// requantizations (fixtures/gen/requantize_stories260k.py), each dequantized to f32 and to f16 (mocc's
// default), on the ref target:
//   - mean next-token NLL (nats) on TinyStories text: the first 100 blank-line-separated documents of
//     validation-part1.txt, each encoded with BOS and cut to its first 256 tokens; the mean is over every
//     predicted position (token-weighted), each document run from an empty KV cache;
//   - the largest |logit − f32 logit| over those positions, and how often the argmax agrees with f32's;
//   - the greedy continuation of "Once upon a time" (60 tokens).
//
//   npm run build && node dist/bench/quant-nll.js [--text FILE] [--docs N] [--max-tokens N] [--save | --out FILE]
//
// Defaults: --text ../shared/fixtures/tinystories/validation-part1.txt (relative to the project root),
// --docs 100, --max-tokens 256; results go to the system's temporary directory, to
// bench/results/quant-nll.json (the committed one) with --save, or to --out FILE (bench/results-file.ts).
import { createHash } from 'node:crypto';
import { readFileSync, writeFileSync } from 'node:fs';
import { join, relative, resolve } from 'node:path';
import { loadModel } from '../driver/load.js';
import type { DequantDType } from '../src/import/quant-tensor.js';
import { generate } from '../src/run/generate.js';
import { projectRoot } from '../src/util/project-root.js';
import { getTarget } from '../targets/index.js';
import { resultsFile } from './results-file.js';

const ROOT = projectRoot();
const GGUF = join(ROOT, 'fixtures/stories260K/gguf');
const MODELS: { name: string; file: string; dequantTo: DequantDType }[] = [
  { name: 'F32', file: 'stories260K.gguf', dequantTo: 'f32' },
  { name: 'Q8_0 → f32', file: 'stories260K.Q8_0.gguf', dequantTo: 'f32' },
  { name: 'Q8_0 → f16', file: 'stories260K.Q8_0.gguf', dequantTo: 'f16' },
  { name: 'Q4_0 → f32', file: 'stories260K.Q4_0.gguf', dequantTo: 'f32' },
  { name: 'Q4_0 → f16', file: 'stories260K.Q4_0.gguf', dequantTo: 'f16' },
];
const PROMPT = 'Once upon a time';
const GREEDY_TOKENS = 60;

function arg(name: string, dflt: string): string {
  const i = process.argv.indexOf(name);
  return i >= 0 && process.argv[i + 1] !== undefined ? process.argv[i + 1]! : dflt;
}

/** log-softmax(row)[target], in float64. */
function logProb(row: Float32Array, target: number): number {
  let max = -Infinity;
  for (const v of row) max = Math.max(max, v);
  let sum = 0;
  for (const v of row) sum += Math.exp(v - max);
  return row[target]! - max - Math.log(sum);
}

function argmax(row: Float32Array): number {
  let best = 0;
  for (let i = 1; i < row.length; i++) if (row[i]! > row[best]!) best = i;
  return best;
}

async function main(): Promise<void> {
  const textPath = resolve(ROOT, arg('--text', '../shared/fixtures/tinystories/validation-part1.txt'));
  const nDocs = Number(arg('--docs', '100'));
  const maxTokens = Number(arg('--max-tokens', '256'));
  const out = arg('--out', '');
  const outPath = resultsFile({ save: process.argv.includes('--save'), ...(out ? { out } : {}) }, ROOT, 'quant-nll.json');
  const text = readFileSync(textPath, 'utf8');
  const docs = text.split(/\n\s*\n/).map((d) => d.trim()).filter((d) => d.length > 0).slice(0, nDocs);
  const ref = getTarget('ref');

  let baseLogits: Float32Array[] | undefined;
  const results = [];
  for (const m of MODELS) {
    const model = loadModel(join(GGUF, m.file), { dequantTo: m.dequantTo });
    const session = await ref.createSession(model);
    const tok = model.tokenizer!;
    const vocab = model.spec.vocabSize;
    const logits: Float32Array[] = [];
    let nll = 0, positions = 0, maxDiff = 0, agree = 0;
    for (const [d, text] of docs.entries()) {
      const ids = tok.encode(text).slice(0, maxTokens);
      session.reset();
      const l = await session.forward(ids);
      logits.push(l);
      for (let p = 0; p + 1 < ids.length; p++) {
        const row = l.subarray(p * vocab, (p + 1) * vocab);
        nll -= logProb(row, ids[p + 1]!);
        positions++;
        if (baseLogits) {
          const base = baseLogits[d]!.subarray(p * vocab, (p + 1) * vocab);
          for (let i = 0; i < vocab; i++) maxDiff = Math.max(maxDiff, Math.abs(row[i]! - base[i]!));
          if (argmax(row) === argmax(base)) agree++;
        }
      }
    }
    const prompt = tok.encode(PROMPT);
    const out = await generate(session, prompt, { maxTokens: GREEDY_TOKENS });
    const greedy = tok.decode([...prompt, ...out]);
    session.close?.();
    model.close();
    const r = {
      model: m.name, file: m.file, dequantTo: m.dequantTo, positions, meanNll: nll / positions,
      ...(baseLogits ? { maxAbsLogitDiffVsF32: maxDiff, argmaxAgreementVsF32: agree / positions } : {}),
      greedy,
    };
    results.push(r);
    baseLogits ??= logits;
    process.stderr.write(`${m.name}: NLL ${r.meanNll.toFixed(4)} over ${positions} positions${baseLogits !== logits ? `, max |Δlogit| ${maxDiff.toFixed(3)}, argmax agrees ${(100 * agree / positions).toFixed(1)}%` : ''}\n  ${JSON.stringify(greedy)}\n`);
  }
  const summary = {
    what: `mean next-token NLL (nats) of stories260K on the first ${docs.length} blank-line-separated documents of ${relative(ROOT, textPath)}, each with BOS, cut to ${maxTokens} tokens; ref target; greedy: "${PROMPT}" + ${GREEDY_TOKENS} tokens`,
    textSha256: createHash('sha256').update(text).digest('hex'),
    command: 'npm run build && node dist/bench/quant-nll.js',
    results,
  };
  writeFileSync(outPath, JSON.stringify(summary, null, 2) + '\n');
  process.stderr.write(`wrote ${outPath}\n`);
}

await main();
