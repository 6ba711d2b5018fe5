// Checks of the host AdamW (src/train/adamw.ts) against PyTorch by a committed python script: record
// five steps over random tensors (the state before and after each), write them as JSON, run the script
// on them. Shared by the bf16-moment and bf16-param checks (test/bench/torch-adamw-*.test.ts); needs
// python3 with torch, and the tests skip without it.
import type { ExecutionContext } from 'ava';
import { spawnSync } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { ADAMW_DEFAULTS, type AdamW } from '../../src/train/adamw.js';
import { ROOT } from './fixtures.js';
import { randomFrom } from './random.js';
import { testsNeeding } from './requires.js';

function torchRequirement() {
  const r = spawnSync('python3', ['-c', 'import torch'], { encoding: 'utf8' });
  return { missing: r.status === 0 ? null : 'python3 with torch not found (pip install torch)', optionalInCi: true };
}

/** ava's test, skipped where python3 has no torch. */
export const torchTest = testsNeeding(torchRequirement());

/** The tensors the checks step: a matrix of awkward size, a vector, a 1×1. */
export const ADAMW_CHECK_PARAMS = [{ name: 'w', shape: [33, 61] }, { name: 'norm', shape: [9] }, { name: 'one', shape: [1, 1] }];
export const elements = (s: number[]) => s.reduce((a, b) => a * b, 1);

/**
 * Five steps of `opt` over `weights` with random gradients (every 11th zero, magnitudes over six
 * decades), each recorded with the state before and after; `extra` adds fields per tensor (e.g. which
 * are stored bf16). Then `script` (under bench/gpu/) checks them and must print "<name>: all checks passed".
 */
export function checkStepsWithTorch(t: ExecutionContext, r: () => number, opt: AdamW, weights: Map<string, Float32Array>, script: string, extra: (name: string) => Record<string, unknown> = () => ({})): void {
  const decays = new Map(opt.params().map((p) => [p.name, p.decays]));
  const steps = [];
  for (const [i, lr] of [3e-3, 1e-2, 1e-3, 2e-2, 5e-4].entries()) {
    const grads = new Map(ADAMW_CHECK_PARAMS.map((p) => [p.name, Float32Array.from(randomFrom(elements(p.shape), r, 1), (x, j) => (j % 11 === 0 ? 0 : x * 10 ** (2 * Math.abs(x) - 3)))]));
    const before = opt.state(), p0 = new Map([...weights].map(([k, w]) => [k, Array.from(w)]));
    opt.step(weights, grads, lr);
    const after = opt.state();
    steps.push({
      t: i + 1, lr,
      tensors: Object.fromEntries(ADAMW_CHECK_PARAMS.map((p) => [p.name, {
        decays: decays.get(p.name), ...extra(p.name), p0: p0.get(p.name), m0: Array.from(before.m.get(p.name)!), v0: Array.from(before.v.get(p.name)!), g: Array.from(grads.get(p.name)!),
        p1: Array.from(weights.get(p.name)!), m1: Array.from(after.m.get(p.name)!), v1: Array.from(after.v.get(p.name)!),
      }])),
    });
  }
  const dir = mkdtempSync(join(tmpdir(), 'mocc-adamw-torch-'));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  const file = join(dir, 'steps.json');
  writeFileSync(file, JSON.stringify({ ...ADAMW_DEFAULTS, steps }));
  const p = spawnSync('python3', [join(ROOT, 'bench/gpu', script), file], { encoding: 'utf8', env: { ...process.env, OMP_NUM_THREADS: '1' } });
  t.is(p.status, 0, p.stdout + p.stderr);
  t.log(p.stdout.trim());
  t.regex(p.stdout, new RegExp(`${script.replace(/\.py$/, '')}: all checks passed`));
}
