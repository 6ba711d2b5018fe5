// AdamW + global-norm clipping + the lr schedule against PyTorch (torch.optim.AdamW, clip_grad_norm_,
// llama2.c's get_lr), from fixtures/gen/make_adamw_reference.py. The initial parameters and every
// step's gradients come from the fixture, so only the arithmetic is compared.
// Tolerance: 1e-6 relative to each tensor's largest magnitude (|ours − torch| ≤ 1e-6·max|torch| for
// every element). We compute each element in f64 and round to f32 when storing, torch computes in
// f32; after 12 steps the two differ by at most about 1 ulp of the tensor's scale (measured: 6e-8
// absolute on weights of magnitude ≤ 1.5, 4e-9 on moments ≤ 0.02). Elementwise relative error is not
// used: an element that crossed zero on the way (cancellation) shows tens of ulps of its own tiny size.
import test from 'ava';
import { readAdamWFixture } from '../helpers/adamw-fixture.js';
import { AdamW } from '../../src/train/adamw.js';
import { clipGlobalNorm } from '../../src/train/clip-grad.js';
import { learningRate, type LrSchedule } from '../../src/train/schedule.js';

const FIX = readAdamWFixture();
const REL = 1e-6;

/** max |ours − torch| / max |torch| over the tensor's elements: ≤ REL passes. */
function relErr(ours: Float32Array, ref: number[]): number {
  let worst = 0;
  for (let i = 0; i < ref.length; i++) worst = Math.max(worst, Math.abs(ours[i]! - ref[i]!));
  return worst / Math.max(...ref.map(Math.abs));
}

function run(): { weights: Map<string, Float32Array>; opt: AdamW; lrs: number[]; norms: number[] } {
  const s = FIX.settings;
  const sched: LrSchedule = { lr: s.lr, minLr: s.minLr, warmup: s.warmup, steps: s.steps };
  const opt = new AdamW(FIX.params.map((p) => ({ name: p.name, size: p.shape.reduce((a, b) => a * b, 1), shape: p.shape })), {
    beta1: s.beta1, beta2: s.beta2, eps: s.eps, weightDecay: s.weightDecay,
  });
  const weights = new Map(FIX.params.map((p) => [p.name, Float32Array.from(FIX.initial[p.name]!)]));
  const lrs: number[] = [];
  const norms: number[] = [];
  for (let step = 0; step < s.run_steps; step++) {
    const grads = new Map(FIX.params.map((p) => [p.name, Float32Array.from(FIX.grads[step]![p.name]!)]));
    norms.push(clipGlobalNorm(grads, s.maxNorm));
    const lr = learningRate(step, sched);
    lrs.push(lr);
    opt.step(weights, grads, lr);
  }
  return { weights, opt, lrs, norms };
}

test('the default decay rule matches the fixture\'s grouping (matrices decay, 1-D weights do not)', (t) => {
  const opt = new AdamW(FIX.params.map((p) => ({ name: p.name, size: p.shape.reduce((a, b) => a * b, 1), shape: p.shape })));
  t.deepEqual(opt.params().map((p) => p.decays), FIX.params.map((p) => p.decays));
  t.true(FIX.params.some((p) => p.decays) && FIX.params.some((p) => !p.decays));
});

test('learning rates match llama2.c get_lr as torch\'s script computed them', (t) => {
  const { lrs } = run();
  t.is(lrs.length, FIX.lrs.length);
  for (let i = 0; i < lrs.length; i++) t.true(Math.abs(lrs[i]! - FIX.lrs[i]!) <= 1e-15 * FIX.settings.lr, `step ${i}: ${lrs[i]} vs ${FIX.lrs[i]}`);
});

test('pre-clip global norms match clip_grad_norm_ (some steps clipped, some not)', (t) => {
  const { norms } = run();
  t.true(FIX.norms.some((n) => n > FIX.settings.maxNorm) && FIX.norms.some((n) => n < FIX.settings.maxNorm));
  for (let i = 0; i < norms.length; i++) t.true(Math.abs(norms[i]! - FIX.norms[i]!) <= REL * FIX.norms[i]!, `step ${i}: ${norms[i]} vs ${FIX.norms[i]}`);
});

test('final parameters and moments match torch.optim.AdamW within 1e-6 of each tensor\'s scale', (t) => {
  const { weights, opt } = run();
  const st = opt.state();
  t.deepEqual(FIX.step, FIX.params.map(() => st.step));
  for (const p of FIX.params) {
    const w = relErr(weights.get(p.name)!, FIX.final[p.name]!);
    const m = relErr(st.m.get(p.name)!, FIX.exp_avg[p.name]!);
    const v = relErr(st.v.get(p.name)!, FIX.exp_avg_sq[p.name]!);
    t.log(`${p.name}: weights ${w.toExponential(2)}, m ${m.toExponential(2)}, v ${v.toExponential(2)}`);
    t.true(w <= REL, `${p.name} weights off by ${w}`);
    t.true(m <= REL, `${p.name} exp_avg off by ${m}`);
    t.true(v <= REL, `${p.name} exp_avg_sq off by ${v}`);
    // And the run moved them: the comparison is not of two unchanged copies.
    t.true(relErr(weights.get(p.name)!, FIX.initial[p.name]!) > 1e-3);
  }
});
