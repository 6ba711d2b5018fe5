// Benchmark (not a test): what MoC conversion costs stories260K and how much data-free recovery wins
// back, on the ref target (this machine's CPU) or with --target cuda on the GPU.
//   - eval NLL (nats, mean over every next-token prediction) on held-out TinyStories validation text:
//     every 8th blank-line-separated block of fixtures/tinystories/validation-part1.txt (blocks 7, 15,
//     …), each cut into pieces of at most --seq-eval tokens (driver/evaluate.ts);
//   - for dense, and for direct conversion at K = 16, 32, 64, 128;
//   - for K=32 recovered with `mocc recover`'s method (driver/teacher-text.ts + KL to the dense
//     teacher, policy moc-gcp), evaluated after 0 and each of --at steps of one run whose cosine
//     schedule spans the last of them, as far as --minutes of training allow.
//
//   node --import tsx bench/recovery.ts [--minutes 30] [--at 100,300,1000,3000] [--batch 8] [--seq 64]
//        [--sequences 2048] [--lr 2e-3] [--mix] [--target ref|cuda] [--save | --out DIR]
//
// --target cuda: everything on the GPU — the teacher's text (a CUDA inference session: its logits
// differ from ref's in the last bits, so the sampled text can too), the training step (the CUDA
// training executor and device AdamW), the teacher's logits and every eval (the model's forward graph
// on the training executor, driver/gradient-backend.ts batchLogits). On the GPU machine, from dist:
//   node dist/bench/recovery.js --target cuda --at 1500,5000,15000 --minutes 9 --out OUT/recovery-gpu
//
// --mix adds the validation blocks that are not evaluated (7 of every 8) to the teacher's text.
// Results: recovery.json and recovery.md in the output folder (bench/results/recovery/ with --save,
// else the temp dir); bench/plot_recovery.py draws recovery.png from the JSON.
import { mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { evaluate } from '../driver/evaluate.js';
import { loadModel, type LoadedModel } from '../driver/load.js';
import { teacherText } from '../driver/teacher-text.js';
import { Trainer } from '../driver/trainer.js';
import { plainTextDocuments } from '../src/train/text-formats.js';
import { tokenDataFromDocuments, type TokenData } from '../src/train/data.js';
import { projectRoot } from '../src/util/project-root.js';
import { trainTarget } from '../driver/gradient-backend.js';
import { getTarget } from '../targets/index.js';
import type { RunnableModel } from '../src/model/runnable.js';
import { resultsFile } from './results-file.js';

const ROOT = projectRoot();
const arg = (name: string, def: string) => {
  const i = process.argv.indexOf(`--${name}`);
  return i > 0 ? process.argv[i + 1]! : def;
};
const flag = (name: string) => process.argv.includes(`--${name}`);
const minutes = Number(arg('minutes', '30'));
const at = arg('at', '100,300,1000,3000').split(',').map(Number);
const batch = Number(arg('batch', '8'));
const seq = Number(arg('seq', '64'));
const seqEval = Number(arg('seq-eval', '256'));
const sequences = Number(arg('sequences', '2048'));
const lr = Number(arg('lr', '2e-3'));
const seed = Number(arg('seed', '0'));
const mix = flag('mix');
const target = trainTarget(arg('target', 'ref'));
const outDir = resultsFile({ save: flag('save'), ...(process.argv.includes('--out') ? { out: arg('out', '') } : {}) }, ROOT, 'recovery');

const HF = join(ROOT, 'fixtures/stories260K/hf');
const TOKENIZER = join(ROOT, 'fixtures/stories260K/llama2c/tok512.bin');
const TEXT = join(ROOT, 'fixtures/tinystories/validation-part1.txt');

const log = (s: string) => process.stderr.write(`${s}\n`);
const open = (selection: { k: number } | 'dense'): LoadedModel => loadModel(HF, { selection, tokenizer: TOKENIZER });

const dense = open('dense');
const blocks = plainTextDocuments(readFileSync(TEXT, 'utf8'));
const encode = (texts: string[]) => texts.map((t) => Int32Array.from(dense.tokenizer!.encode(t, { bos: true })));
const evalData: TokenData = tokenDataFromDocuments(encode(blocks.filter((_, i) => i % 8 === 7)), 'every 8th block of validation-part1.txt');
const restData = mix ? encode(blocks.filter((_, i) => i % 8 !== 7)) : [];
const evalTokens = evalData.documents.reduce((s, d) => s + d.length - 1, 0);
log(`eval text: ${evalData.documents.length} blocks, ${evalTokens} predictions`);

interface Row { model: string; k: number | null; steps: number | null; nll: number; kl?: number; top1?: number; seconds: number }
const rows: Row[] = [];
const timed = <T>(f: () => T): [T, number] => {
  const t0 = performance.now();
  const v = f();
  return [v, (performance.now() - t0) / 1000];
};
const record = (r: Row) => {
  rows.push(r);
  log(`${r.model}: NLL ${r.nll.toFixed(4)}${r.kl !== undefined ? `, KL ${r.kl.toFixed(4)}, top-1 ${(100 * r.top1!).toFixed(1)}%` : ''} (${r.seconds.toFixed(0)} s)`);
};

/** eval NLL (and KL, top-1 against the dense teacher) with every logit from the target. */
const denseLogits = target.batchLogits(dense);
const evalOn = (m: RunnableModel, weights?: ReadonlyMap<string, Float32Array>, withTeacher = true) => {
  const l = target.batchLogits(m, weights);
  try {
    return evaluate(m, evalData, { seq: seqEval, logits: l.logits, ...(withTeacher ? { teacher: dense, teacherLogits: denseLogits.logits } : {}) });
  } finally {
    l.dispose();
  }
};
const [d, ds] = timed(() => evalOn(dense, undefined, false));
record({ model: 'dense', k: null, steps: null, nll: d.nll, seconds: ds });
for (const k of [16, 32, 64, 128]) {
  const m = open({ k });
  const [r, s] = timed(() => evalOn(m));
  record({ model: `direct MoC K=${k}`, k, steps: 0, nll: r.nll, kl: r.kl!, top1: r.top1!, seconds: s });
  m.close();
}

// Recovery of K=32.
const student = open({ k: 32 });
const session = await getTarget(target.name).createSession(dense); // the teacher writes on the same target
const [generated, genSeconds] = timed(() => teacherText(dense, { sequences, length: seq + 1, seed, session }));
const genTokens = generated.reduce((s, x) => s + x.length, 0);
log(`teacher text: ${sequences} sequences, ${genTokens} tokens (${genSeconds.toFixed(0)} s)`);
const data = tokenDataFromDocuments([...generated, ...restData], mix ? 'teacher text + validation blocks not evaluated' : 'teacher text');
const totalSteps = Math.max(...at);
const trainer = new Trainer(student, data, {
  steps: totalSteps, batch, seq, lr, minLr: lr / 10, warmup: Math.min(100, Math.floor(totalSteps / 10)), weightDecay: 0, clip: 1,
  policy: 'moc-gcp', trainable: 'all', seed, loss: { kind: 'kl_div', temperature: 1 },
}, denseLogits.logits, target);
const budget = minutes * 60 * 1000;
let trainMs = 0;
const losses: { step: number; loss: number }[] = [];
let stoppedAt: number | null = null;
while (trainer.step < totalSteps) {
  if (trainMs > budget) {
    stoppedAt = trainer.step;
    log(`time budget of ${minutes} min reached at step ${trainer.step}`);
    break;
  }
  const t0 = performance.now();
  const r = trainer.trainStep();
  trainMs += performance.now() - t0;
  losses.push({ step: r.step, loss: r.loss });
  if (r.step % 50 === 0) log(`step ${r.step}: KL ${r.loss.toFixed(4)} (${(trainMs / 1000).toFixed(0)} s of training)`);
  if (at.includes(r.step)) {
    const [e, s] = timed(() => evalOn(student, trainer.weights));
    record({ model: `recovered K=32, ${r.step} steps`, k: 32, steps: r.step, nll: e.nll, kl: e.kl!, top1: e.top1!, seconds: s });
  }
}
if (stoppedAt !== null && !at.includes(stoppedAt) && stoppedAt > 0) {
  const [e, s] = timed(() => evalOn(student, trainer.weights));
  record({ model: `recovered K=32, ${stoppedAt} steps (budget)`, k: 32, steps: stoppedAt, nll: e.nll, kl: e.kl!, top1: e.top1!, seconds: s });
}

const denseNll = rows[0]!.nll;
const result = {
  what: 'stories260K eval NLL on held-out TinyStories validation text: dense, direct MoC, and K=32 after data-free recovery (KL to the dense teacher)',
  command: `node --import tsx bench/recovery.ts ${process.argv.slice(2).join(' ')}`.trim(),
  date: new Date().toISOString(),
  evalText: { file: 'fixtures/tinystories/validation-part1.txt', blocks: 'every 8th (index % 8 == 7)', documents: evalData.documents.length, predictions: evalTokens, seqEval },
  recovery: {
    sequences, generatedTokens: genTokens, generationSeconds: genSeconds, mix, batch, seq, lr, minLr: lr / 10, scheduleSteps: totalSteps,
    policy: 'moc-gcp', temperature: 1, seed, target: target.name, trainingSeconds: trainMs / 1000, stoppedAt, tokensPerSecond: (trainer.step * batch * seq) / (trainMs / 1000),
  },
  rows: rows.map((r) => ({ ...r, vsDense: r.nll / denseNll - 1 })),
  losses,
};
mkdirSync(outDir, { recursive: true });
writeFileSync(join(outDir, 'recovery.json'), JSON.stringify(result, null, 1) + '\n');
const md = [
  `# stories260K: direct MoC conversion and ${mix ? 'recovery on teacher text mixed with TinyStories text' : 'data-free recovery'} (${target.name === 'ref' ? "ref target, this machine's CPU" : `${target.name} target`})`,
  '',
  `Command: \`${result.command}\` (${result.date}). Eval: ${evalTokens} next-token predictions of held-out TinyStories validation text (${result.evalText.blocks} block of validation-part1.txt, pieces of ≤ ${seqEval} tokens).`,
  `Recovery: ${sequences} teacher sequences (${genTokens} tokens${mix ? ' + the validation blocks not evaluated' : ''}), batch ${batch}×${seq}, AdamW lr ${lr} → ${lr / 10} (cosine over ${totalSteps} steps), τ = 1, policy moc-gcp; ${(trainMs / 60000).toFixed(1)} min of training at ${result.recovery.tokensPerSecond.toFixed(0)} tok/s${stoppedAt !== null ? `, stopped by the time budget at step ${stoppedAt}` : ''}.`,
  '',
  '| model | eval NLL | vs dense | KL(dense ‖ model) | top-1 agreement |',
  '|---|---|---|---|---|',
  ...result.rows.map((r) => `| ${r.model} | ${r.nll.toFixed(4)} | ${r.model === 'dense' ? '—' : `${(100 * r.vsDense).toFixed(1)}%`} | ${r.kl !== undefined ? r.kl.toFixed(4) : '—'} | ${r.top1 !== undefined ? `${(100 * r.top1).toFixed(1)}%` : '—'} |`),
  '',
].join('\n');
writeFileSync(join(outDir, 'recovery.md'), md);
log(`wrote ${outDir}/recovery.json and recovery.md`);
