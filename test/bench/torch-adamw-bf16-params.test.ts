// src/train/adamw.ts's 'bf16-params' mode against PyTorch: bench/gpu/check_adamw_bf16_params.py
// recomputes each of our steps (1) as the rule in torch f32 ops and (2) with torch's fused AdamW on
// bf16 tensors (what bench/gpu/torch_train.py trains with); its docstring says what each computes and
// the bounds. Our host AdamW runs 5 steps over random tensors of awkward sizes (two bf16 matrices, one
// f32 vector); the script gets the state before and after each step. Needs python3 with torch; without
// it the test is skipped.
import test from 'ava';
import { spawnSync } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { AdamW, ADAMW_DEFAULTS, roundBf16Params } from '../../src/train/adamw.js';
import { ROOT } from '../helpers/fixtures.js';
import { rng, randomFrom } from '../helpers/random.js';
import { testsNeeding } from '../helpers/requires.js';

function torchRequirement() {
  const r = spawnSync('python3', ['-c', 'import torch'], { encoding: 'utf8' });
  return { missing: r.status === 0 ? null : 'python3 with torch not found (pip install torch)', optionalInCi: true };
}

const torchTest = testsNeeding(torchRequirement());

torchTest('AdamW with bf16 params: 5 host steps agree with torch f32 arithmetic + bf16 rounding and with torch fused AdamW on bf16 (check_adamw_bf16_params.py)', (t) => {
  const r = rng(7);
  const params = [{ name: 'w', shape: [33, 61] }, { name: 'norm', shape: [9] }, { name: 'one', shape: [1, 1] }];
  const size = (s: number[]) => s.reduce((a, b) => a * b, 1);
  const BF16 = new Set(['w', 'one']);
  const opt = new AdamW(params.map((p) => ({ name: p.name, size: size(p.shape), shape: p.shape })), { stateDType: 'bf16-params', bf16Params: BF16 });
  const weights = new Map(params.map((p) => [p.name, randomFrom(size(p.shape), r, 1.5)]));
  roundBf16Params(weights, BF16);
  const decays = new Map(opt.params().map((p) => [p.name, p.decays]));
  const steps = [];
  for (const [i, lr] of [3e-3, 1e-2, 1e-3, 2e-2, 5e-4].entries()) {
    const grads = new Map(params.map((p) => [p.name, Float32Array.from(randomFrom(size(p.shape), r, 1), (x, j) => (j % 11 === 0 ? 0 : x * 10 ** (2 * Math.abs(x) - 3)))]));
    const before = opt.state(), p0 = new Map([...weights].map(([k, w]) => [k, Array.from(w)]));
    opt.step(weights, grads, lr);
    const after = opt.state();
    steps.push({
      t: i + 1, lr,
      tensors: Object.fromEntries(params.map((p) => [p.name, {
        decays: decays.get(p.name), bf16: BF16.has(p.name), p0: p0.get(p.name), m0: Array.from(before.m.get(p.name)!), v0: Array.from(before.v.get(p.name)!), g: Array.from(grads.get(p.name)!),
        p1: Array.from(weights.get(p.name)!), m1: Array.from(after.m.get(p.name)!), v1: Array.from(after.v.get(p.name)!),
      }])),
    });
  }
  const dir = mkdtempSync(join(tmpdir(), 'mocc-adamw-bf16p-'));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  const file = join(dir, 'steps.json');
  writeFileSync(file, JSON.stringify({ ...ADAMW_DEFAULTS, steps }));
  const p = spawnSync('python3', [join(ROOT, 'bench/gpu/check_adamw_bf16_params.py'), file], { encoding: 'utf8', env: { ...process.env, OMP_NUM_THREADS: '1' } });
  t.is(p.status, 0, p.stdout + p.stderr);
  t.log(p.stdout.trim());
  t.regex(p.stdout, /check_adamw_bf16_params: all checks passed/);
});
