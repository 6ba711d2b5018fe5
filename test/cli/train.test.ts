// `mocc train` and `mocc eval` through the built CLI (issue 15 acceptance): training stories260K
// converted to MoC K=32 lowers its NLL on held-out TinyStories text, the package's manifest records
// the run, and `--resume` after a SIGKILL gives the same weights, byte for byte, as a run never stopped.
// Sizes are tiny (a few steps of 2×32 tokens): the point is the behaviour, not the quality.
import test from 'ava';
import { spawn } from 'node:child_process';
import { createHash } from 'node:crypto';
import { existsSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { mocc, tempDir } from '../helpers/cli.js';
import { CHECKPOINTS, LLAMA2C_TOKENIZER, ROOT } from '../helpers/fixtures.js';

const TINYSTORIES = `${ROOT}fixtures/tinystories/`;
/** The first 98 blocks of validation-part1.txt (fixtures/tinystories/README.md). */
const TRAIN_TEXT = `${TINYSTORIES}validation-head.txt`;
/** stories260K converted in memory to MoC K=32, with its llama2.c tokenizer (the HF directory has none). */
const MOC_K32 = [CHECKPOINTS.hf, '--k', '32', '--tokenizer', LLAMA2C_TOKENIZER];

/** Blocks 300–329 of validation-part1.txt, far past the training head: text the training never saw. */
function heldOutFile(dir: string): string {
  const blocks = readFileSync(`${TINYSTORIES}validation-part1.txt`, 'utf8').split(/\n[ \t]*\n/);
  const head = readFileSync(TRAIN_TEXT, 'utf8').split(/\n[ \t]*\n/).filter((b) => b.trim());
  if (head.length !== 98) throw new Error(`validation-head.txt has ${head.length} blocks, expected 98`);
  const file = join(dir, 'held-out.txt');
  writeFileSync(file, blocks.slice(300, 330).join('\n\n') + '\n');
  return file;
}

interface EvalJson {
  nll: number;
  perplexity: number;
  tokens: number;
  sha256: string;
}

function evalNll(...args: string[]): EvalJson {
  const r = mocc('eval', ...args, '--json');
  if (r.code !== 0) throw new Error(`mocc eval ${args.join(' ')}: ${r.stderr}`);
  return JSON.parse(r.stdout) as EvalJson;
}

interface TrainingRecord {
  command: string;
  steps: number;
  finalLoss: number;
  policy: string;
  batch: number;
  seq: number;
  data?: { sha256: string; format: string };
  evalNll?: number;
}

test('train lowers the eval NLL of stories260K K=32 on held-out TinyStories, and the manifest records the run', (t) => {
  const dir = tempDir(t);
  const heldOut = heldOutFile(dir);
  const out = join(dir, 'trained');
  // --seq 32 in both: pieces cut as train --eval cuts them (at its --seq), so the numbers can be compared
  const before = evalNll(...MOC_K32, '--data', heldOut, '--seq', '32');

  const r = mocc('train', ...MOC_K32, '--data', TRAIN_TEXT, '--eval', heldOut, '--steps', '8', '--batch', '2', '--seq', '32', '-o', out);
  t.is(r.code, 0, r.stderr);
  t.regex(r.stderr, /step 8\/8\s+loss \d/, 'progress reaches the last step');

  const after = evalNll(out, '--data', heldOut, '--seq', '32');
  t.is(after.tokens, before.tokens, 'the same predictions are counted');
  t.true(Number.isFinite(before.nll) && Number.isFinite(after.nll));
  t.true(after.nll < before.nll, `held-out NLL before ${before.nll}, after ${after.nll}`);
  t.log(`held-out NLL (${before.tokens} predictions): before ${before.nll.toFixed(4)}, after ${after.nll.toFixed(4)}`);
  t.true(Math.abs(after.perplexity - Math.exp(after.nll)) < 1e-6 * after.perplexity, 'perplexity = e^NLL');

  const sha = createHash('sha256').update(readFileSync(TRAIN_TEXT)).digest('hex');
  const manifest = JSON.parse(readFileSync(join(out, 'manifest.json'), 'utf8')) as { training?: TrainingRecord[] };
  t.is(manifest.training?.length, 1, 'one training run recorded');
  const rec = manifest.training![0]!;
  t.is(rec.command, 'train');
  t.is(rec.steps, 8);
  t.is(rec.batch, 2);
  t.is(rec.seq, 32);
  t.is(rec.policy, 'moc-gcp', 'the default policy of a MoC model');
  t.is(rec.data?.sha256, sha, 'the data checksum is the sha256 of the data file');
  t.regex(r.stderr, new RegExp(`eval NLL before: ${before.nll.toFixed(4)} `), 'train --eval measured the same NLL before');
  t.true(Math.abs((rec.evalNll ?? NaN) - after.nll) < 1e-9, `train --eval recorded ${rec.evalNll}, mocc eval says ${after.nll}`);
  t.true(Number.isFinite(rec.finalLoss) && rec.finalLoss > 0 && rec.finalLoss < 10, `final loss ${rec.finalLoss}`);
  t.regex(r.stderr, new RegExp(`final loss ${rec.finalLoss.toFixed(4)}`), 'the recorded final loss is the one reported');
});

const RESUME_ARGS = ['--data', TRAIN_TEXT, '--steps', '8', '--batch', '2', '--seq', '48', '--save-every', '2', '--seed', '3'];

/** Starts `mocc train`, SIGKILLs it once its checkpoint directory's `latest` names step ≥ 2 (and < 8). */
function trainAndKill(out: string, ckpt: string): Promise<{ killedAt: number; outputExisted: boolean; signal: NodeJS.Signals | null; stderr: string }> {
  const child = spawn(process.execPath, [join(ROOT, 'dist/cli/mocc.js'), 'train', ...MOC_K32, ...RESUME_ARGS, '-o', out, '--checkpoint-dir', ckpt], { stdio: ['ignore', 'ignore', 'pipe'] });
  let stderr = '';
  child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
  return new Promise((resolve, reject) => {
    let killedAt = -1, outputExisted = false;
    const timer = setInterval(() => {
      const latest = join(ckpt, 'latest');
      if (killedAt >= 0 || !existsSync(latest)) return;
      const m = /step-(\d+)/.exec(readFileSync(latest, 'utf8'));
      if (!m || Number(m[1]) < 2) return;
      outputExisted = existsSync(out);
      killedAt = Number(m[1]);
      child.kill('SIGKILL');
    }, 20);
    child.on('error', reject);
    child.on('exit', (_code, signal) => {
      clearInterval(timer);
      resolve({ killedAt, outputExisted, signal, stderr });
    });
  });
}

test('--resume after SIGKILL mid-run gives weights identical to an uninterrupted run', async (t) => {
  const dir = tempDir(t);
  const whole = join(dir, 'whole');
  const r0 = mocc('train', ...MOC_K32, ...RESUME_ARGS, '-o', whole);
  t.is(r0.code, 0, r0.stderr);

  const out = join(dir, 'resumed');
  const ckpt = join(dir, 'ckpt');
  const killed = await trainAndKill(out, ckpt);
  t.is(killed.signal, 'SIGKILL', `the run was killed, not finished: ${killed.stderr}`);
  t.true(killed.killedAt >= 2 && killed.killedAt < 8, `killed after the checkpoint of step ${killed.killedAt}`);
  t.false(killed.outputExisted, 'no output package existed when it was killed');
  t.false(existsSync(out), 'the killed run wrote no package');

  const r1 = mocc('train', ...MOC_K32, ...RESUME_ARGS, '-o', out, '--checkpoint-dir', ckpt, '--resume', ckpt);
  t.is(r1.code, 0, r1.stderr);
  const m = /resumed from .* at step (\d+)/.exec(r1.stderr);
  t.truthy(m, `says where it resumed: ${r1.stderr}`);
  t.true(Number(m?.[1]) >= killed.killedAt, `resumed at step ${m?.[1]}, killed after the checkpoint of step ${killed.killedAt}`);
  const steps = [...r1.stderr.matchAll(/^step (\d+)\/8/gm)].map((x) => Number(x[1]));
  t.is(steps[0], Number(m?.[1]) + 1, 'the resumed run starts after the checkpoint, not from scratch');
  t.log(`killed after the checkpoint of step ${killed.killedAt}; resumed at step ${m?.[1]}`);

  const a = readFileSync(join(whole, 'weights.safetensors'));
  const b = readFileSync(join(out, 'weights.safetensors'));
  t.is(a.length, b.length);
  t.true(a.equals(b), 'weights.safetensors identical, byte for byte');
  // the untrained weights differ, or the comparison would prove nothing
  const base = mocc('train', ...MOC_K32, '--data', TRAIN_TEXT, '--steps', '1', '--batch', '1', '--seq', '8', '--lr', '0', '-o', join(dir, 'untrained'));
  t.is(base.code, 0, base.stderr);
  t.false(readFileSync(join(dir, 'untrained', 'weights.safetensors')).equals(a), 'training changed the weights');
});
