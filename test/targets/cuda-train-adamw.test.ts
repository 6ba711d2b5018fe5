// The optimizer kernels: fused AdamW (targets/cuda/ptx/train-adamw.ts) and global-norm clipping
// (train-clip.ts), against src/train/adamw.ts and src/train/clip-grad.ts (the oracle; themselves
// checked against PyTorch by test/train/adamw-reference.test.ts), and against that PyTorch fixture
// directly (fixtures/train/adamw-reference.json: 12 steps of clip_grad_norm_ + torch.optim.AdamW):
// - without a GPU: every kernel variant assembles for sm_80 and sm_90 with no local memory; the PTX
//   interpreter runs them on awkward sizes (1, tails of the 256-thread block, exact zeros in g, m,
//   v, a clip scale below 1, a NaN or an infinite gradient for the clip);
// - on the GPU machine: the same checks on tensors of the 1B preset's sizes.
// Outputs are NaN-poisoned where the kernel writes them whole (the bf16 copy, the partials, the
// clip's result). Tolerances, f32 (every kernel operation is an IEEE-rounded f32 one; the oracle rounds
// once from f64): m within 2^-21·(|m0| + |g|) and v within 2^-21·(v0 + g²) (a couple of roundings of
// their inputs' scale), the parameter within 2^-20·|p| + 2^-19·|update| + 1e-5·stepSize (its update,
// often a few stepSize and sometimes many, a few roundings off); bf16 state: the oracle's state is rounded to bf16 after each step as
// the kernel's is, and each value may differ by a bf16 ulp more (2^-7 of the value: a rounding tie or a
// near-tie that the f32 and f64 results fall on opposite sides of), times the steps taken. The norm
// within 1e-5 relative (f32 sums of squares against f64).
import test from 'ava';
import { readAdamWFixture } from '../helpers/adamw-fixture.js';
import { ADAMW_HYPER, ADAMW_THREADS, adamw, adamwGrid, adamwHyper, type AdamWKernelSpec } from '../../targets/cuda/ptx/train-adamw.js';
import { clipBlocks, clipPlan, clipScale, CLIP_THREADS, gradSumSquares } from '../../targets/cuda/ptx/train-clip.js';
import { AdamW, ADAMW_DEFAULTS } from '../../src/train/adamw.js';
import { clipFactor, globalNorm } from '../../src/train/clip-grad.js';
import { bf16ToF32, f32ToBf16 } from '../../src/util/dtype.js';
import { rng, randomFrom } from '../helpers/random.js';
import { assertEachAssembles } from '../helpers/ptxas.js';
import { cudaDeviceRequirement, findPtxas, ptxasRequirement, testsNeeding } from '../helpers/requires.js';
import { gpuDev, simDev, type Dev, type Ptr } from '../helpers/train-dev.js';

const SPECS: AdamWKernelSpec[] = [];
// state 'bf16' (param, m, v bf16) is checked against its own oracle, adamw.ts 'bf16-params', in
// cuda-train-adamw-bf16-params.test.ts: its update reads the rounded moments, which this file's f32 oracle does not model.
for (const state of ['f32'] as const) for (const grad of ['f32', 'bf16'] as const) for (const decays of [true, false]) for (const bf16Copy of [false, true]) SPECS.push({ state, grad, decays, bf16Copy });
const ALL = () => [...SPECS.map(adamw), gradSumSquares('f32'), gradSumSquares('bf16'), clipScale()];

const ptxasTest = testsNeeding(ptxasRequirement(findPtxas()));
ptxasTest('AdamW and clip kernels assemble for sm_80 and sm_90, no local memory', (t) => {
  assertEachAssembles(t, ALL());
});

test('AdamW and clip kernels: distinct names, deterministic text, IEEE-rounded f32 arithmetic, no shuffles or atomics', (t) => {
  const a = ALL(), b = ALL();
  t.is(new Set(a.map((k) => k.name)).size, a.length);
  a.forEach((k, i) => t.is(k.text, b[i]!.text));
  for (const k of a) t.notRegex(k.text, /shfl|vote|atom|\bred\.|approx/, k.name);
  // AdamW's update: only IEEE-rounded operations, which ptxas may not contract or reorder
  for (const k of SPECS.map(adamw)) t.notRegex(k.text, /(?:add|sub|mul|div|sqrt)\.f32/, k.name);
  t.throws(() => adamw({ state: 'bf16', grad: 'f32', decays: true, bf16Copy: true }), { message: /bf16 copy/ });
  t.deepEqual(clipPlan([5000, 0, 1, 3_000_000]), { blocks: [3, 0, 1, 1024], first: [0, 3, 3, 4], count: 1028 });
});

test('adamwHyper: the scalars adamw.ts computes for step t, in ADAMW_HYPER order', (t) => {
  const h = adamwHyper(ADAMW_DEFAULTS, 0.01, 3);
  const at = (w: (typeof ADAMW_HYPER)[number]) => h[ADAMW_HYPER.indexOf(w)]!;
  t.is(at('stepSize'), Math.fround(0.01 / (1 - 0.9 ** 3)));
  t.is(at('bc2Sqrt'), Math.fround(Math.sqrt(1 - 0.95 ** 3)));
  t.is(at('keep'), Math.fround(1 - 0.01 * 0.1));
  t.is(at('eps'), Math.fround(1e-8));
  t.throws(() => adamwHyper(ADAMW_DEFAULTS, 0.01, 0));
});

// ---- AdamW against adamw.ts ----

const bf16Round = (x: Float32Array) => Float32Array.from(x, (v) => bf16ToF32(f32ToBf16(v)));
const bytesOf = (x: Float32Array, dtype: 'f32' | 'bf16') => (dtype === 'f32' ? x : Uint16Array.from(x, f32ToBf16));
const fromDevice = (dev: Dev, p: Ptr, n: number, dtype: 'f32' | 'bf16') => (dtype === 'f32' ? dev.get(p, new Float32Array(n)) : Float32Array.from(dev.get(p, new Uint16Array(n)), bf16ToF32));

interface AdamCase { n: number; step: number; lr: number; clip: number; seed: number; steps?: number }

function checkAdamW(t: import('ava').ExecutionContext, dev: Dev, spec: AdamWKernelSpec, c: AdamCase) {
  const r = rng(c.seed);
  const n = c.n;
  // values the state's dtype holds exactly; a few exact zeros of g, m and v (v = 0 with g = 0: ε alone)
  const round = (x: Float32Array, d: 'f32' | 'bf16') => (d === 'bf16' ? bf16Round(x) : x);
  const p0 = round(randomFrom(n, r, 1.5), spec.state), m0 = round(randomFrom(n, r, 0.02), spec.state);
  const v0 = round(Float32Array.from(randomFrom(n, r, 1), (x) => x * x * 4e-4), spec.state);
  for (let i = 0; i < n; i += 7) (m0[i] = 0), (v0[i] = 0);
  const steps = c.steps ?? 1;
  const grads = Array.from({ length: steps }, () => {
    const g = round(randomFrom(n, r, 0.05), spec.grad);
    for (let i = 0; i < n; i += 7) g[i] = 0;
    return g;
  });
  // the oracle: adamw.ts from the same state, gradients multiplied by the clip scale as clip-grad.ts does
  const opt = new AdamW([{ name: 'w', size: n, shape: spec.decays ? [n, 1] : [n] }]);
  opt.load({ step: c.step - 1, m: new Map([['w', m0.slice()]]), v: new Map([['w', v0.slice()]]) });
  const want = new Map([['w', p0.slice()]]);
  const param = dev.buf(bytesOf(p0, spec.state)), m = dev.buf(bytesOf(m0, spec.state)), v = dev.buf(bytesOf(v0, spec.state));
  const copy = spec.bf16Copy ? dev.nan(n * 2, true) : 0;
  const clip = dev.buf(Float32Array.of(c.clip));
  for (let s = 0; s < steps; s++) {
    const g = grads[s]!;
    opt.step(want, new Map([['w', Float32Array.from(g, (x) => (c.clip === 1 ? x : x * c.clip))]]), c.lr);
    if (spec.state === 'bf16') {
      // the state is stored as bf16 between steps: the oracle's too
      const st = opt.state();
      want.set('w', bf16Round(want.get('w')!));
      opt.load({ step: st.step, m: new Map([['w', bf16Round(st.m.get('w')!)]]), v: new Map([['w', bf16Round(st.v.get('w')!)]]) });
    }
    const hyper = dev.buf(adamwHyper(ADAMW_DEFAULTS, c.lr, c.step + s));
    dev.run(adamw(spec), adamwGrid(n), ADAMW_THREADS, [...[param, m, v, dev.buf(bytesOf(g, spec.grad)), copy, hyper, clip].map((ptr) => ({ ptr })), { u32: n }]);
  }
  const st = opt.state();
  const [wantP, wantM, wantV] = [want.get('w')!, st.m.get('w')!, st.v.get('w')!];
  const [gotP, gotM, gotV] = [param, m, v].map((p) => fromDevice(dev, p, n, spec.state)) as [Float32Array, Float32Array, Float32Array];
  const drift = steps; // each further step can add as much again
  const bf = spec.state === 'bf16' ? drift * 2 ** -7 : 0; // a bf16 ulp is 2^-8 to 2^-7 of the value
  const stepSize = c.lr / (1 - ADAMW_DEFAULTS.beta1 ** (c.step + steps - 1));
  let bad = 0;
  const why: string[] = [];
  for (let i = 0; i < n; i++) {
    const gs = grads.reduce((s, g) => s + Math.abs(g[i]! * c.clip), 0);
    const tolM = drift * 2 ** -21 * (Math.abs(m0[i]!) + gs) + bf * Math.abs(wantM[i]!);
    const tolV = drift * 2 ** -21 * (v0[i]! + gs * gs) + bf * wantV[i]!;
    // the update's own size too: where √v̂ is far below |m̂| (independent random m0 and v0) the update
    // is many stepSizes, and its half-dozen f32 roundings are relative to it (an H100 run of the 1B
    // preset's 11M-element tensor found one element 1.5e-5·stepSize off, update ≫ stepSize)
    const update = Math.abs(wantP[i]! - p0[i]!);
    const tolP = drift * (2 ** -20 * Math.abs(wantP[i]!) + 2 ** -19 * update + 1e-5 * stepSize) + bf * Math.abs(wantP[i]!);
    for (const [what, got, w, tol] of [['p', gotP[i]!, wantP[i]!, tolP], ['m', gotM[i]!, wantM[i]!, tolM], ['v', gotV[i]!, wantV[i]!, tolV]] as const) {
      if (!(Math.abs(got - w) <= tol)) {
        bad++;
        if (why.length < 3) why.push(`${what}[${i}] ${got} vs ${w} (tol ${tol.toExponential(2)})`);
      }
    }
  }
  t.is(bad, 0, why.join('; '));
  if (spec.bf16Copy) {
    // the copy is the new f32 parameter rounded to nearest even
    const got = dev.get(copy, new Uint16Array(n));
    t.deepEqual([...got], Array.from(gotP, f32ToBf16));
  }
}

const SIM_ADAM: AdamCase[] = [
  { n: 1, step: 1, lr: 0.05, clip: 1, seed: 1 },
  { n: 300, step: 1, lr: 0.05, clip: 0.37, seed: 2 }, // the first step: bias corrections 1 − β
  { n: 257, step: 5, lr: 3e-4, clip: 1, seed: 3, steps: 3 }, // three steps in a row, t = 5, 6, 7
];
for (const spec of SPECS) {
  for (const c of SIM_ADAM) {
    test(`${adamw(spec).name}, interpreted: n=${c.n} t=${c.step}${c.steps ? `..${c.step + c.steps - 1}` : ''} clip ${c.clip} vs adamw.ts`, (t) => checkAdamW(t, simDev(), spec, c));
  }
}

// ---- clipping against clip-grad.ts ----

interface ClipCase { sizes: number[]; scale: number; maxNorm: number; dtype: 'f32' | 'bf16'; seed: number; poison?: 'nan' | 'inf' }

function checkClip(t: import('ava').ExecutionContext, dev: Dev, c: ClipCase) {
  const r = rng(c.seed);
  const grads = c.sizes.map((n) => {
    const g = randomFrom(n, r, c.scale);
    return c.dtype === 'bf16' ? bf16Round(g) : g;
  });
  const big = grads.findIndex((g) => g.length > 0);
  if (c.poison) grads[big]![grads[big]!.length - 1] = c.poison === 'nan' ? NaN : -Infinity;
  const plan = clipPlan(c.sizes);
  const partials = dev.nan(plan.count * 4), out = dev.nan(8);
  grads.forEach((g, i) => dev.run(gradSumSquares(c.dtype), [clipBlocks(g.length), 1, 1], CLIP_THREADS, [{ ptr: partials }, { ptr: dev.buf(bytesOf(g, c.dtype)) }, { u32: g.length }, { u32: plan.first[i]! }]));
  dev.run(clipScale(), [1, 1, 1], CLIP_THREADS, [{ ptr: out }, { ptr: partials }, { u32: plan.count }, { f32: c.maxNorm }]);
  const [scale, norm] = dev.get(out, new Float32Array(2)) as unknown as [number, number];
  // the oracle: clip-grad.ts's norm and the factor its clipGlobalNorm multiplies by
  const wantNorm = globalNorm(grads);
  const wantScale = clipFactor(wantNorm, c.maxNorm);
  if (!Number.isFinite(wantNorm)) t.is(Number.isFinite(norm), false, `norm ${norm}`);
  else t.true(Math.abs(norm - wantNorm) <= 1e-5 * wantNorm, `norm ${norm} vs ${wantNorm}`);
  t.true(Math.abs(scale - wantScale) <= 1e-5 * wantScale, `scale ${scale} vs ${wantScale} (norm ${wantNorm}, max ${c.maxNorm})`);
  if (wantScale === 1) t.is(scale, 1);
}

const SIM_CLIP: ClipCase[] = [
  { sizes: [5000, 0, 1, 2049], scale: 0.5, maxNorm: 1, dtype: 'f32', seed: 1 }, // clips
  { sizes: [300, 7], scale: 0.01, maxNorm: 1, dtype: 'f32', seed: 2 }, // below maxNorm: scale 1
  { sizes: [4100, 33], scale: 2, maxNorm: 5, dtype: 'bf16', seed: 3 },
  { sizes: [700, 9], scale: 1, maxNorm: 1, dtype: 'f32', seed: 4, poison: 'nan' }, // not finite: scale 1
  { sizes: [3, 900], scale: 1, maxNorm: 1, dtype: 'bf16', seed: 5, poison: 'inf' },
];
for (const c of SIM_CLIP) {
  test(`clip ${c.dtype}, interpreted: sizes ${c.sizes.join(',')}${c.poison ? ` with ${c.poison}` : ''} vs clip-grad.ts`, (t) => checkClip(t, simDev(), c));
}

// ---- the PyTorch fixture: 12 steps of clip_grad_norm_ + torch.optim.AdamW, through the kernels ----

function checkTorchFixture(t: import('ava').ExecutionContext, dev: Dev) {
  const FIX = readAdamWFixture();
  const s = FIX.settings;
  const ps = FIX.params.map((p) => ({ ...p, n: p.shape.reduce((a, b) => a * b, 1) }));
  const plan = clipPlan(ps.map((p) => p.n));
  const buf = (x: number[]) => dev.buf(Float32Array.from(x));
  const state = ps.map((p) => ({ param: buf(FIX.initial[p.name]!), m: buf(new Array(p.n).fill(0)), v: buf(new Array(p.n).fill(0)) }));
  const partials = dev.nan(plan.count * 4), clip = dev.nan(8);
  for (let step = 0; step < s.run_steps; step++) {
    const grads = ps.map((p) => buf(FIX.grads[step]![p.name]!));
    ps.forEach((p, i) => dev.run(gradSumSquares('f32'), [clipBlocks(p.n), 1, 1], CLIP_THREADS, [{ ptr: partials }, { ptr: grads[i]! }, { u32: p.n }, { u32: plan.first[i]! }]));
    dev.run(clipScale(), [1, 1, 1], CLIP_THREADS, [{ ptr: clip }, { ptr: partials }, { u32: plan.count }, { f32: s.maxNorm }]);
    const norm = dev.get(clip, new Float32Array(2))[1]!;
    t.true(Math.abs(norm - FIX.norms[step]!) <= 1e-5 * FIX.norms[step]!, `step ${step}: norm ${norm} vs torch ${FIX.norms[step]}`);
    const hyper = dev.buf(adamwHyper(s, FIX.lrs[step]!, step + 1));
    ps.forEach((p, i) => dev.run(adamw({ state: 'f32', grad: 'f32', decays: p.decays }), adamwGrid(p.n), ADAMW_THREADS, [...[state[i]!.param, state[i]!.m, state[i]!.v, grads[i]!, 0, hyper, clip].map((ptr) => ({ ptr })), { u32: p.n }]));
  }
  // 1e-5 of each tensor's largest magnitude (torch's own test holds the f64 oracle to 1e-6; the kernels' f32 arithmetic differs from torch's in order)
  ps.forEach((p, i) => {
    for (const [what, ptr, want] of [['param', state[i]!.param, FIX.final[p.name]!], ['exp_avg', state[i]!.m, FIX.exp_avg[p.name]!], ['exp_avg_sq', state[i]!.v, FIX.exp_avg_sq[p.name]!]] as const) {
      const got = dev.get(ptr, new Float32Array(p.n));
      const scale = Math.max(...want.map(Math.abs));
      const worst = Math.max(...want.map((w, j) => Math.abs(got[j]! - w)));
      t.true(worst <= 1e-5 * scale, `${p.name} ${what}: worst ${worst.toExponential(2)} of scale ${scale.toExponential(2)}`);
    }
  });
}

test('clip + AdamW kernels, interpreted, 12 steps vs the PyTorch fixture (clip_grad_norm_, torch.optim.AdamW)', (t) => checkTorchFixture(t, simDev()));

// ---- on the GPU ----
const cudaTest = testsNeeding(cudaDeviceRequirement());
const GPU_ADAM: AdamCase[] = [...SIM_ADAM, { n: 2048 + 3, step: 100, lr: 1e-3, clip: 1, seed: 12, steps: 2 }];
// One tensor of the 1B preset's size (a 43,690-block grid) for one kernel of each state dtype: the
// host's inputs and oracle take ~40 s a case (H100 machine, session 14), and every spec's arithmetic
// is checked on the sizes above.
const GPU_ADAM_1B: AdamCase = { n: 2048 * 5461, step: 1, lr: 3e-4, clip: 0.8, seed: 11 };
const SPECS_1B = new Set([SPECS.find((s) => s.state === 'f32' && s.bf16Copy)]); // the bf16 state's 1B case: cuda-train-adamw-bf16-params.test.ts
for (const spec of SPECS) {
  for (const c of SPECS_1B.has(spec) ? [...GPU_ADAM, GPU_ADAM_1B] : GPU_ADAM) {
    cudaTest.serial(`${adamw(spec).name} on the GPU: n=${c.n} t=${c.step} clip ${c.clip} vs adamw.ts`, (t) => {
      const dev = gpuDev();
      t.teardown(() => dev.free());
      checkAdamW(t, dev, spec, c);
    });
  }
}
const GPU_CLIP: ClipCase[] = [...SIM_CLIP, { sizes: [32000 * 2048, 2048, 5461 * 2048, 1, 0, 1_000_003], scale: 0.01, maxNorm: 1, dtype: 'f32', seed: 11 }, { sizes: [5461 * 2048, 77], scale: 0.05, maxNorm: 1, dtype: 'bf16', seed: 12 }];
for (const c of GPU_CLIP) {
  cudaTest.serial(`clip ${c.dtype} on the GPU: sizes ${c.sizes.join(',')}${c.poison ? ` with ${c.poison}` : ''} vs clip-grad.ts`, (t) => {
    const dev = gpuDev();
    t.teardown(() => dev.free());
    checkClip(t, dev, c);
  });
}
cudaTest.serial('clip + AdamW kernels on the GPU, 12 steps vs the PyTorch fixture', (t) => {
  const dev = gpuDev();
  t.teardown(() => dev.free());
  checkTorchFixture(t, dev);
});
