// `mocc inspect --train`: the planned training memory per checkpoint policy. The figures printed
// are checked against planMemory run here on the same training graph, the AdamW state against the
// parameter count (260,032 values, stories260K's config), and the paper's FFN column by hand.
import test from 'ava';
import { join } from 'node:path';
import { loadModel } from '../../driver/load.js';
import { trainingGraph } from '../../driver/training-graph.js';
import type { CheckpointPolicy } from '../../passes/checkpoint.js';
import { planMemory, type Category } from '../../passes/memory-plan.js';
import { mocc, tempDir } from '../helpers/cli.js';
import { userError } from '../helpers/cli-assert.js';
import { CHECKPOINTS } from '../helpers/fixtures.js';

const LABELS: [Category, string][] = [['ffn', 'FFN'], ['attention', 'attention'], ['norms', 'norms, residual'], ['logits/loss', 'logits, loss'], ['embedding', 'embedding'], ['inputs', 'inputs'], ['backward', 'backward in flight']];

/** The exact byte figures printed under `--ckpt POLICY`, by label. */
function section(stdout: string, policy: string): Map<string, number> {
  const lines = stdout.split('\n');
  const start = lines.indexOf(`  --ckpt ${policy}`);
  const out = new Map<string, number>();
  for (const l of lines.slice(start + 1)) {
    const m = /^ {4}(\S.*?)\s{2,}[\d.]+ (?:B|KiB|MiB|GiB)\s+([\d,]+) B/.exec(l);
    if (!m) break;
    out.set(m[1]!, Number(m[2]!.replace(/,/g, '')));
  }
  return out;
}

function expectPlan(t: import('ava').ExecutionContext, stdout: string, model: string, policy: CheckpointPolicy, rows: number, trainable?: string) {
  const m = loadModel(model);
  const p = planMemory(trainingGraph(m.graph, { loss: { kind: 'cross_entropy' }, policy, ...(trainable ? { trainable } : {}) }), { T: rows });
  m.close();
  const got = section(stdout, policy);
  for (const [c, label] of LABELS) t.is(got.get(label), p.atPeak[c], `${policy} ${label}`);
  t.is(got.get('peak activations'), p.peakBytes, `${policy} peak`);
  t.is(got.get('arena'), p.arenaBytes, `${policy} arena`);
  t.is(got.get('weight gradients'), p.gradientBytes, `${policy} gradients`);
  return got;
}

test('dense stories260K: none, gcp and gcp-attn, figures as planMemory gives them, paper Dense / Dense+GCP beside FFN', (t) => {
  const r = mocc('inspect', CHECKPOINTS.hf, '--train', '--batch', '2', '--seq', '64');
  t.is(r.code, 0, r.stderr);
  t.regex(r.stdout, /training memory plan: batch 2 × seq 64 = 128 rows/);
  t.false(r.stdout.includes('--ckpt moc'), 'moc policies do not apply to a dense model');
  for (const policy of ['none', 'gcp', 'gcp-attn'] as const) {
    const got = expectPlan(t, r.stdout, CHECKPOINTS.hf, policy, 128);
    t.is(got.get('AdamW state (m, v)'), 2 * 4 * 260_032);
    t.is(got.get('weight gradients'), 4 * 260_032);
  }
  // 128 rows × 5 layers × (4·172+64 | 2·172+64) f32
  t.regex(r.stdout, /paper Dense 4·d_ffn\+d: 1,925,120 B \(bf16: 962,560 B\)/);
  t.regex(r.stdout, /paper Dense\+GCP 2·d_ffn\+d: 1,044,480 B \(bf16: 522,240 B\)/);
  t.regex(r.stdout, /FFN\s+1\.84 MiB\s+1,925,120 B/);
  // gcp-attn: x recomputed, 128 rows × 5 layers × 2·172 f32; no attention value saved
  t.regex(r.stdout, /paper Dense\+GCP 2·d_ffn\+d − d \(x recomputed\): 880,640 B \(bf16: 440,320 B\)/);
  t.is(section(r.stdout, 'gcp-attn').get('attention'), 0);
});

test('MoC package: all six policies, or the one --ckpt names; --trainable ffn shrinks gradients and AdamW state', (t) => {
  const pkg = join(tempDir(t), 'pkg');
  t.is(mocc('convert', CHECKPOINTS.hf, '--k', '32', '-o', pkg).code, 0);
  const all = mocc('inspect', pkg, '--train', '--batch', '1', '--seq', '100');
  t.is(all.code, 0, all.stderr);
  for (const policy of ['none', 'gcp', 'moc', 'moc-gcp', 'gcp-attn', 'moc-gcp-attn'] as const) expectPlan(t, all.stdout, pkg, policy, 100);
  // 100 rows × 5 layers × ((2·32+64)·4 + 32·2)
  t.regex(all.stdout, /paper MoC\+GCP 2·K\+d \+ K×2 B indices: 288,000 B/);
  // 100 rows × 5 layers × (2·32·4 + 32·2)
  t.regex(all.stdout, /paper MoC\+GCP 2·K\+d − d \(x recomputed\) \+ K×2 B indices: 160,000 B/);
  const one = mocc('inspect', pkg, '--train', '--batch', '1', '--seq', '100', '--ckpt', 'moc-gcp', '--trainable', 'ffn');
  t.is(one.code, 0, one.stderr);
  t.is(one.stdout.match(/--ckpt /g)?.length, 1);
  const got = expectPlan(t, one.stdout, pkg, 'moc-gcp', 100, 'ffn');
  // FFN weights: 5 layers × 3 × 172·64 = 165,120 values
  t.is(got.get('weight gradients'), 4 * 165_120);
  t.is(got.get('AdamW state (m, v)'), 8 * 165_120);
});

test('bad --train input: one line, exit 1', (t) => {
  const ck = CHECKPOINTS.hf;
  userError(t, mocc('inspect', ck, '--train', '--batch', '0', '--seq', '8'), /--batch must be a whole number ≥ 1/);
  userError(t, mocc('inspect', ck, '--train', '--batch', '2.5', '--seq', '8'), /--batch must be a whole number ≥ 1/);
  userError(t, mocc('inspect', ck, '--train', '--batch', '2', '--seq', '-1'), /--seq must be a whole number ≥ 1/);
  userError(t, mocc('inspect', ck, '--train', '--batch', '2', '--seq', '513'), /--seq 513 is above the model's context of 512 tokens/);
  userError(t, mocc('inspect', ck, '--train', '--batch', '2'), /--train needs --batch B and --seq T/);
  userError(t, mocc('inspect', ck, '--batch', '2', '--seq', '8'), /--batch applies with --train/);
  userError(t, mocc('inspect', ck, '--train', '--batch', '2', '--seq', '8', '--ckpt', 'lots'), /unknown checkpoint policy 'lots': use none, gcp, moc, moc-gcp, gcp-attn, moc-gcp-attn/);
  userError(t, mocc('inspect', ck, '--train', '--batch', '2', '--seq', '8', '--ckpt', 'moc-gcp'), /checkpoint policy moc-gcp needs a MoC model/);
});

test('--help explains the categories and policies', (t) => {
  const r = mocc('inspect', '--help');
  t.is(r.code, 0);
  for (const s of ['backward in flight', 'norms, residual', 'moc-gcp', 'Dense+GCP', 'arena']) t.true(r.stdout.includes(s), s);
});
