// --optimizer-state bf16-params on the CUDA training executor (executor.ts optimizerState: the params
// src/train/bf16-params.ts picks stored bf16; ops-bf16.ts bf16Operand: the bf16 GEMMs read them
// without a cast; optimizer.ts: the all-bf16 AdamW kernel on them). Oracle: src/train/adamw.ts's
// 'bf16-params' rule (itself checked bit-exact against an f64 computation and against torch).
//
// Without a GPU:
// - launch lists (recording device, mma.sync) of stories260K under bf16 — dense (policy none), MoC
//   K = 32 with dense MoC GEMMs (moc-gcp-attn), and the fused LM head — built for 'bf16-params' are
//   those built for 'bf16' with every cast whose source is a bf16 param removed, and every GEMM
//   operand that was that cast's copy replaced by the param's own pointer (operands classified by
//   which param they are, as pointers differ between the two executors); no cast reads a bf16 param;
//   the scratch shrinks; the bf16 params take 2 bytes an element;
// - refusals before allocating: matmul f32; a MoC graph without dense MoC GEMMs; an optimizer in
//   another mode than the executor's;
// - on the interpreter (the tiny LLaMA, untied head so the output matrix is stored bf16 too; the
//   GEMMs are tensor-core kernels the interpreter cannot run, so the executor is built but not
//   launched): setWeights → weights() gives the bf16 params rounded RNE (adamw.ts roundBf16) and the
//   others exactly; then 3 optimizer steps on random gradients written into the executor's gradient
//   buffers (clipping on), each against adamw.ts 'bf16-params' from the device's state before the
//   step: p, m, v equal but rare bf16 flips (cuda-train-adamw-bf16-params.test.ts says why: two f32
//   values a few ulps apart straddling a bf16 rounding midpoint), at most 2 + n·2^-12 a step, each
//   within 2^-7 of the value (one bf16 ulp); f32 params within the f32 optimizer test's bound.
// The GPU end-to-end (`mocc train --target cuda --optimizer-state bf16-params` against ref) is
// test/cli/train-bf16-params-cuda.test.ts.
import test, { type ExecutionContext } from 'ava';
import { checkpointGraph, loadModel } from '../../driver/load.js';
import { modelWeights } from '../../driver/evaluate.js';
import { trainingGraph } from '../../driver/training-graph.js';
import { gradOutputs } from '../../passes/autodiff.js';
import type { CheckpointPolicy } from '../../passes/checkpoint.js';
import type { Graph } from '../../src/ir/types.js';
import { AdamW, roundBf16 } from '../../src/train/adamw.js';
import { bf16StoredParams } from '../../src/train/bf16-params.js';
import { clipGlobalNorm } from '../../src/train/clip-grad.js';
import type { LaunchArg } from '../../targets/cuda/train/device.js';
import { CudaTrainingExecutor, type TrainingExecutorOptions } from '../../targets/cuda/train/executor.js';
import { CudaOptimizer } from '../../targets/cuda/train/optimizer.js';
import type { Launch } from '../../targets/cuda/train/ops.js';
import { pad8 } from '../../targets/cuda/ptx/layout.js';
import { padRows } from '../../targets/cuda/train/values.js';
import { CHECKPOINTS } from '../helpers/fixtures.js';
import { recordingDevice } from '../helpers/recording-device.js';
import { simTrainDevice } from '../helpers/train-sim-device.js';
import { randomWeights, TINY } from '../helpers/train-tiny-model.js';
import { rng } from '../helpers/random.js';

const BF16: TrainingExecutorOptions = { matmul: 'bf16' };
const CAST = /^cast_bf16_w\d+$/;
const GEMM = /^gemm(90)?_(xwt|xw|xtw)_bf16_/;
const ptrOf = (a: LaunchArg) => ('ptr' in a ? Number(a.ptr) : undefined);

function stories(selection: 'dense' | { k: number }, policy: CheckpointPolicy, fuseLmHead?: number) {
  const m = loadModel(CHECKPOINTS.hf, { selection });
  const g = trainingGraph(m.graph, { loss: { kind: 'cross_entropy' }, policy, ...(fuseLmHead ? { fuseLmHead } : {}) });
  return { m, g, weights: modelWeights(m) };
}

/** The executor's launches (one step, zero inputs) and allocations on a recording device. */
function recorded(g: Graph, weights: Map<string, Float32Array>, T: number, opts: TrainingExecutorOptions) {
  const r = recordingDevice();
  const ex = new CudaTrainingExecutor(g, weights, T, r.dev, opts);
  const inputs = Object.fromEntries(g.inputs.map((i) => [i.name, i.type.dtype === 'f32' ? new Float32Array(T * (i.type.shape.length > 1 ? (i.type.shape[1] as number) : 1)) : new Int32Array(T)]));
  ex.launch(inputs);
  return { ex, launches: r.launches, allocs: r.allocs };
}

/**
 * The launch list as (kernel name, ptr operands classified): a GEMM's operand pointer that is param P
 * is 'P'; in the 'bf16' list the copy a cast made of param P (the latest cast into that address) is
 * 'P' too; every other argument is dropped from the comparison (its address differs between lists).
 * `dropCasts`: remove the casts of these params (in 'bf16' they exist, in 'bf16-params' they must not).
 */
function classified(ex: CudaTrainingExecutor, launches: Launch[], names: ReadonlySet<string>, dropCasts: boolean): string[] {
  const byPtr = new Map(ex.g.params.map((p) => [ex.paramTensor(p.name).ptr as number, p.name]));
  const copyOf = new Map<number, string>();
  const out: string[] = [];
  for (const l of launches) {
    if (CAST.test(l.kernel.name)) {
      const to = ptrOf(l.args[0]!)!, from = byPtr.get(ptrOf(l.args[1]!)!);
      if (from !== undefined && names.has(from)) {
        copyOf.set(to, from);
        if (dropCasts) continue;
      } else copyOf.delete(to);
    }
    // a GEMM's operands (args[1], args[2]) classified; its output y (args[0]) overwrites whatever copy was there
    const ops = GEMM.test(l.kernel.name) ? l.args.slice(1).map((a) => { const p = ptrOf(a); return p === undefined ? '' : byPtr.get(p) ?? copyOf.get(p) ?? ''; }).filter((s) => s) : [];
    if (GEMM.test(l.kernel.name)) copyOf.delete(ptrOf(l.args[0]!)!);
    out.push(`${l.kernel.name}(${ops.join(',')})`);
  }
  return out;
}

const CASES: Array<[string, 'dense' | { k: number }, CheckpointPolicy, TrainingExecutorOptions, number | undefined]> = [
  ['dense, policy none', 'dense', 'none', BF16, undefined],
  ['MoC K = 32, dense MoC GEMMs, moc-gcp-attn', { k: 32 }, 'moc-gcp-attn', { ...BF16, mocMatmul: 'dense-bf16' }, undefined],
  ['dense, fused LM head in blocks of 16', 'dense', 'none', BF16, 16],
  ['MoC K = 32, dense MoC GEMMs, moc-gcp-attn, fused LM head in blocks of 16', { k: 32 }, 'moc-gcp-attn', { ...BF16, mocMatmul: 'dense-bf16' }, 16],
];

for (const [what, selection, policy, opts, fuse] of CASES) {
  test(`launch list, stories260K ${what}, T = 45: 'bf16-params' is 'bf16' without the casts of bf16 params, the GEMMs reading the params themselves`, (t) => {
    const { m, g, weights } = stories(selection, policy, fuse);
    try {
      const names = bf16StoredParams(g);
      t.true(names.size > 0, 'some params are stored bf16');
      const plain = recorded(g, weights, 45, opts), params = recorded(g, weights, 45, { ...opts, optimizerState: 'bf16-params' });
      t.deepEqual([...params.ex.bf16Params].sort(), [...names].sort(), 'the executor stores bf16StoredParams\' params bf16');
      const want = classified(plain.ex, plain.launches, names, true), got = classified(params.ex, params.launches, names, false);
      t.deepEqual(got, want);
      const casts = plain.launches.length - params.launches.length;
      t.true(casts > 0, 'casts removed');
      const readers = got.filter((s) => [...names].some((n) => s.includes(`(${n}`) || s.includes(`,${n}`))).length;
      t.true(readers >= casts, 'every removed cast fed a GEMM that now reads the param');
      t.false(params.launches.some((l) => CAST.test(l.kernel.name) && [...names].some((n) => ptrOf(l.args[1]!) === params.ex.paramTensor(n).ptr)), 'no cast reads a bf16 param');
      t.true(params.ex.scratchBytes <= plain.ex.scratchBytes, `scratch ${params.ex.scratchBytes} ≤ ${plain.ex.scratchBytes}`);
      for (const p of g.params) {
        const a = params.allocs.find((x) => x.ptr === params.ex.paramTensor(p.name).ptr)!;
        const [rows, width] = [params.ex.paramTensor(p.name).rows, params.ex.paramTensor(p.name).width];
        t.is(a.bytes, rows * pad8(width) * (names.has(p.name) ? 2 : 4), `@${p.name} bytes`);
        t.is(params.ex.paramTensor(p.name).dtype, names.has(p.name) ? 'bf16' : 'f32');
      }
      t.log(`${names.size} of ${g.params.length} params bf16 (${[...names].filter((n) => !n.startsWith('layers.')).join(' ') || 'all in layers'}); ${casts} casts fewer of ${plain.launches.length} launches; scratch ${plain.ex.scratchBytes} → ${params.ex.scratchBytes} bytes`);
    } finally {
      m.close();
    }
  });
}

test("refusals: 'bf16-params' without matmul bf16, on a MoC graph without dense MoC GEMMs, and an optimizer in another mode than its executor", (t) => {
  const dense = stories('dense', 'none'), moc = stories({ k: 32 }, 'moc-gcp-attn');
  try {
    const r = recordingDevice();
    t.throws(() => new CudaTrainingExecutor(dense.g, dense.weights, 8, r.dev, { optimizerState: 'bf16-params' }), { message: /MOCC_CUDA_TRAIN_MATMUL=bf16/ });
    t.throws(() => new CudaTrainingExecutor(moc.g, moc.weights, 8, r.dev, { ...BF16, optimizerState: 'bf16-params' }), { message: /MOCC_CUDA_TRAIN_MOC=dense/ });
    t.is(r.allocs.length, 0, 'refused before allocating');
    const ex = new CudaTrainingExecutor(dense.g, dense.weights, 8, r.dev, BF16);
    t.throws(() => new CudaOptimizer(ex, { maxNorm: 1, stateDType: 'bf16-params' }), { message: /executor built for 'f32'/ });
    const ex2 = new CudaTrainingExecutor(dense.g, dense.weights, 8, r.dev, { ...BF16, optimizerState: 'bf16-params' });
    t.throws(() => new CudaOptimizer(ex2, { maxNorm: 1, stateDType: 'bf16' }), { message: /executor built for 'bf16-params'/ });
    t.deepEqual(new CudaTrainingExecutor(dense.g, dense.weights, 8, r.dev, { ...BF16, optimizerState: 'bf16' }).bf16Params, new Set(), "no bf16 params in 'bf16' mode");
  } finally {
    dense.m.close();
    moc.m.close();
  }
});

const LRS = [5e-2, 2e-2, 1e-2];
const WD = 0.1;

test("interpreted: tiny LLaMA (untied head): bf16 params round-trip rounded; 3 optimizer steps on random gradients against adamw.ts 'bf16-params'", (t: ExecutionContext) => {
  const g = trainingGraph(checkpointGraph({ ...TINY, nLayers: 1, tiedEmbeddings: false }, () => 'f32', 'dense'), { loss: { kind: 'cross_entropy' }, policy: 'none' });
  const names = bf16StoredParams(g);
  t.true(names.has('output'), `the untied head is stored bf16 (${[...names].join(' ')})`);
  const weights = randomWeights(g, 7), T = 8;
  const dev = simTrainDevice(16 << 20);
  const ex = new CudaTrainingExecutor(g, weights, T, dev, { ...BF16, optimizerState: 'bf16-params' });
  const opt = new CudaOptimizer(ex, { maxNorm: 0.5, weightDecay: WD, stateDType: 'bf16-params' });
  const shapes = new Map(g.params.map((p) => [p.name, p.type.shape as number[]]));
  const host = new AdamW(gradOutputs(g).map(({ param }) => ({ name: param, size: weights.get(param)!.length, shape: shapes.get(param)! })), { weightDecay: WD, stateDType: 'bf16-params', bf16Params: names });
  try {
    const back = ex.weights();
    for (const [name, w] of weights) {
      const want = names.has(name) ? w.map(roundBf16) : w;
      t.deepEqual(back.get(name), want, `@${name}: ${names.has(name) ? 'rounded to bf16' : 'exact'}`);
    }
    const r = rng(11);
    LRS.forEach((lr, step) => {
      const before = { state: opt.state(), weights: ex.weights() };
      // random gradients (a few units, as the loss's) written where the executor's graph leaves them, padding poisoned
      const grads = new Map(gradOutputs(g).map(({ param, output }) => {
        const x = ex.valueTensor(output), v = Float32Array.from({ length: x.rows * x.width }, () => 2 * r());
        const padded = padRows(v, x.rows, x.width).slice();
        if (pad8(x.width) !== x.width) for (let row = 0; row < x.rows; row++) padded.fill(3e38, row * pad8(x.width) + x.width, (row + 1) * pad8(x.width));
        dev.upload(x.ptr, padded);
        return [param, v];
      }));
      opt.clipGradients();
      opt.update(lr);
      clipGlobalNorm(grads, 0.5);
      host.load(before.state);
      const want = new Map([...before.weights].map(([k, v]) => [k, v.slice()]));
      host.step(want, grads, lr);
      const got = ex.weights(), gotState = opt.state(), wantState = host.state();
      let flips = 0, n = 0, bad = 0;
      const why: string[] = [];
      for (const [name, wm] of wantState.m) {
        const gm = gotState.m.get(name)!, gv = gotState.v.get(name)!, wv = wantState.v.get(name)!, gp = got.get(name)!, wp = want.get(name)!;
        const bf = names.has(name);
        n += wm.length;
        for (let i = 0; i < wm.length; i++) {
          const near = (a: number, b: number) => a === b || Math.abs(a - b) <= 2 ** -7 * Math.abs(b);
          const flip = gm[i] !== wm[i] || gv[i] !== wv[i] || (bf && gp[i] !== wp[i]);
          if (flip) flips++;
          const ok = near(gm[i]!, wm[i]!) && near(gv[i]!, wv[i]!) && (bf ? near(gp[i]!, wp[i]!) && gp[i] === roundBf16(gp[i]!) : Math.abs(gp[i]! - wp[i]!) <= 1e-4 * lr + 2 * Math.abs(wp[i]!) * 2 ** -23 + (flip ? 2 ** -7 * Math.abs(wp[i]! - before.weights.get(name)![i]!) : 0));
          if (!ok && why.length < 3) why.push(`@${name}[${i}]: p ${gp[i]} vs ${wp[i]}, m ${gm[i]} vs ${wm[i]}, v ${gv[i]} vs ${wv[i]}`);
          if (!ok) bad++;
        }
      }
      t.is(bad, 0, `step ${step + 1}: ${why.join('; ')}`);
      t.true(flips <= 2 + n * 2 ** -12, `step ${step + 1}: ${flips} of ${n} elements flipped`);
      t.log(`step ${step + 1}: ${flips} of ${n} (p, m, v) elements one bf16 rounding apart from the host's`);
    });
    t.is(opt.momentBytes, gradOutputs(g).reduce((a, { param }) => { const x = ex.paramTensor(param); return a + 2 * 2 * x.rows * pad8(x.width); }, 0), 'every moment bf16');
  } finally {
    opt.dispose();
    ex.dispose();
  }
});
