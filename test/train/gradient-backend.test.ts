// The Trainer's gradient backends (driver/gradient-backend.ts): the same Trainer (data order,
// schedule, divergence check, checkpoints) over the ref target's runTrainingGraph with clipping and
// AdamW on the host, and over the CUDA training executor with clipping and AdamW on the device (the
// cuda backend's step runner, targets/cuda/train/step-runner.ts), here on the CPU PTX interpreter
// (test/helpers/train-sim-device.ts), so it runs on any machine. A tiny synthetic LLaMA (1 layer, dim 24, GQA 4:2 heads of 6, FFN 36, vocabulary 40:
// widths not multiples of 8, so padded rows are exercised), 2 sequences of 4 tokens a step.
//
// Tolerance: the two backends compute the same f32 graph (the executor's kernels are checked against
// runTrainingGraph within 1e-4 of each tensor's scale in test/targets/cuda-train-executor.test.ts; the
// differences are ~1e-6, f32 sums against the ref's float64 ones; the device AdamW computes in f32 where
// the host's rounds f64 to f32, a few ulps of each update: cuda-train-optimizer.test.ts). Losses and
// gradient norms: within 1e-4 relative. Weights after k AdamW steps: each tensor's change from its start (w − w0) within 1e-4 relative to that
// change's largest |entry|, plus a term for AdamW's first steps: its update is lr·m/(√v + ε), about
// lr·sign(g) for every entry with |g| ≫ ε, so an entry whose gradient is ~0 (below the backends'
// ~1e-6 difference) can move by up to ±lr on one and not the other. Such entries are counted, and
// must be few (≤ 1% of a tensor); everything else must agree.
//
// The interpreted tests are serial: each takes a minute or more of synchronous interpretation, and
// ava's 5-minute timeout counts from the last test reported done, which concurrent synchronous tests
// only do all together at the end.
import test, { type ExecutionContext } from 'ava';
import { checkpointGraph } from '../../driver/load.js';
import { cudaGradients, refGradients, trainTarget, type GradientTarget } from '../../driver/gradient-backend.js';
import { Trainer, type TrainConfig } from '../../driver/trainer.js';
import { trainingGraph } from '../../driver/training-graph.js';
import type { ModelSpec } from '../../src/import/spec.js';
import { MemoryTensor } from '../../src/import/tensor.js';
import type { RunnableModel } from '../../src/model/runnable.js';
import { tokenDataFromDocuments } from '../../src/train/data.js';
import { UserError } from '../../src/util/errors.js';
import type { TrainDevice } from '../../targets/cuda/train/device.js';
import { rng } from '../helpers/random.js';
import { simTrainDevice } from '../helpers/train-sim-device.js';
import { recordingDevice } from '../helpers/recording-device.js';
import { CudaStepRunner } from '../../targets/cuda/train/step-runner.js';
import { executorPlan } from '../../targets/cuda/train/executor.js';
import { gradOutputs } from '../../passes/autodiff.js';

const SPEC: ModelSpec = {
  arch: 'llama', dim: 24, nLayers: 1, nHeads: 4, nKvHeads: 2, headDim: 6, dFfn: 36, vocabSize: 40, normEps: 1e-5, maxSeqLen: 64,
  rope: { theta: 10000, style: 'half' }, tiedEmbeddings: true, bosId: 1, eosId: 2,
};

const LR = 1e-3;
/** clip 1: below every step's gradient norm (~6), so clipping is active (asserted). */
const CONFIG: TrainConfig = {
  steps: 3, batch: 2, seq: 4, lr: LR, minLr: LR / 10, warmup: 0, weightDecay: 0.1, clip: 1, policy: 'none', trainable: 'all', seed: 3,
  loss: { kind: 'cross_entropy' },
};

/** The tiny model with random weights: norms near 1, matrices ±0.3 (params typed `dtype` in the graph, as a bf16 checkpoint's are). */
function tinyModel(dtype: 'f32' | 'bf16' = 'f32'): RunnableModel {
  const graph = checkpointGraph(SPEC, () => dtype, 'dense');
  const r = rng(7);
  const weights = new Map(graph.params.map((p) => {
    const shape = p.type.shape as number[];
    const n = shape.reduce((a, d) => a * d, 1);
    const norm = shape.length === 1;
    return [p.name, new MemoryTensor(p.name, shape, Float32Array.from({ length: n }, () => (norm ? 1 + 0.2 * r() : 0.3 * r())))];
  }));
  return { graph, weights, spec: SPEC };
}

function tinyData() {
  const r = rng(11);
  const docs = [17, 9, 23, 12].map((len) => Int32Array.from({ length: len }, (_, i) => (i === 0 ? SPEC.bosId : Math.floor(((r() + 1) / 2) * SPEC.vocabSize) % SPEC.vocabSize)));
  return tokenDataFromDocuments(docs, 'tiny');
}

const simCuda = (): GradientTarget => cudaGradients(() => simTrainDevice(16 << 20));

/**
 * The interpreter's device, counting the copies each way (bytes), to check what a step moves. The rest
 * (launch with its options, any wgmma) is the device's own, so the wrapper never changes which kernels run.
 */
function countingDevice(): { dev: TrainDevice; copies: { up: number; down: number; downs: number } } {
  const inner = simTrainDevice(16 << 20), copies = { up: 0, down: 0, downs: 0 };
  const dev: TrainDevice = {
    ...inner, // alloc, fill, launch, free and the device's wgmma as they are
    upload: (dst, data) => ((copies.up += data.byteLength), inner.upload(dst, data)),
    download: (src, out) => ((copies.down += out.byteLength), copies.downs++, inner.download(src, out)),
  };
  return { dev, copies };
}

function relClose(t: ExecutionContext, a: number, b: number, what: string): void {
  t.true(Math.abs(a - b) <= 1e-4 * Math.abs(b), `${what}: ${a} vs ${b}`);
}

/** Each tensor's change from w0 agrees (see the header), but for at most 1% of entries that moved ≤ 2·lr·steps apart. */
function sameUpdates(t: ExecutionContext, w0: Map<string, Float32Array>, a: Map<string, Float32Array>, b: Map<string, Float32Array>, steps: number): void {
  let moved = 0, odds = 0, worst = 0;
  for (const [name, x0] of w0) {
    const x = a.get(name)!, y = b.get(name)!;
    let scale = 0;
    for (let i = 0; i < x0.length; i++) scale = Math.max(scale, Math.abs(y[i]! - x0[i]!));
    t.true(scale > 0, `${name}: the ref's update is not zero (the check can fail)`);
    let odd = 0;
    for (let i = 0; i < x0.length; i++) {
      const d = Math.abs(x[i]! - y[i]!);
      if (d <= 1e-4 * scale) worst = Math.max(worst, d / scale);
      if (!(d <= 1e-4 * scale)) {
        odd++;
        t.true(d <= 2 * LR * steps * 1.01, `${name}[${i}]: ${x[i]} vs ${y[i]} (start ${x0[i]})`);
      }
    }
    t.true(odd <= Math.max(1, x0.length / 100), `${name}: ${odd} of ${x0.length} entries differ`);
    if (scale > 0) moved++;
    odds += odd;
  }
  t.is(moved, w0.size);
  t.log(`weight updates: worst agreeing entry ${worst.toExponential(2)} of its tensor's update; ${odds} entries apart by up to 2·lr·steps`);
}

test.serial('interpreted: 3 steps on the cuda backend (executor, clipping and AdamW on the PTX interpreter\'s device) give the ref backend\'s losses, norms and weights, downloading only the loss and the norm a step', (t) => {
  const model = tinyModel(), data = tinyData();
  const ref = new Trainer(model, data, CONFIG);
  const { dev, copies } = countingDevice();
  const cuda = new Trainer(model, data, CONFIG, undefined, cudaGradients(() => dev));
  t.is(ref.target, 'ref');
  t.is(cuda.target, 'cuda');
  const w0 = new Map([...ref.weights].map(([k, v]) => [k, v.slice()]));
  const weightBytes = 4 * [...w0.values()].reduce((n, w) => n + w.length, 0);
  try {
    for (let s = 0; s < CONFIG.steps; s++) {
      Object.assign(copies, { up: 0, down: 0, downs: 0 });
      const a = cuda.trainStep();
      t.deepEqual({ ...copies, up: copies.up < weightBytes / 4 }, { up: true, down: 12, downs: 2 }, `step ${s + 1}: the inputs and the AdamW scalars up (${copies.up} bytes), the loss and [clip scale, norm] down`);
      const b = ref.trainStep();
      t.is(a.step, b.step);
      t.is(a.tokens, b.tokens);
      t.is(a.lr, b.lr);
      relClose(t, a.loss, b.loss, `step ${b.step} loss`);
      relClose(t, a.gradNorm, b.gradNorm, `step ${b.step} gradient norm`);
      t.true(b.gradNorm > CONFIG.clip, `step ${b.step}: the clip is active (norm ${b.gradNorm} > ${CONFIG.clip})`);
      t.log(`step ${b.step}: loss ${a.loss} (ref ${b.loss}), |g| ${a.gradNorm} (ref ${b.gradNorm})`);
    }
    sameUpdates(t, w0, cuda.weights, ref.weights, CONFIG.steps);
    const mem = cuda.stepMemory();
    t.regex(mem.what, /arena/);
    t.true(mem.bytes > 0);
    t.is(ref.stepMemory().bytes, ref.plannedPeakBytes(), 'ref: the planned peak activations, as before');
  } finally {
    cuda.dispose();
  }
});

test.serial('interpreted: a checkpoint (state) made on one backend restores on the other, exactly, and training goes on alike', (t) => {
  const model = tinyModel(), data = tinyData();
  const config = CONFIG;
  const w0 = new Map([...new Trainer(model, data, config).weights].map(([k, v]) => [k, v.slice()]));
  const cuda = new Trainer(model, data, config, undefined, simCuda());
  const cuda2 = new Trainer(model, data, config, undefined, simCuda());
  try {
    cuda.trainStep();
    const st = cuda.state();
    // cuda → ref: the ref trainer holds exactly the state; its next step equals the cuda trainer's.
    const ref = new Trainer(model, data, config);
    ref.restore(st);
    t.deepEqual(ref.state(), st, 'restored on ref: the same state, bit for bit');
    const a = cuda.trainStep(), b = ref.trainStep();
    t.is(a.step, 2);
    relClose(t, a.loss, b.loss, 'step 2 loss after a cuda → ref resume');
    // ref → cuda: a fresh cuda trainer restored from the ref state uploads those weights and moments to the device.
    const refState = ref.state();
    cuda2.restore(refState);
    t.deepEqual(cuda2.state(), refState, 'restored on cuda: the same state, bit for bit');
    const c = cuda2.trainStep(), d = ref.trainStep();
    t.is(c.step, 3);
    relClose(t, c.loss, d.loss, 'step 3 loss after a ref → cuda resume (the restored weights and data position are the ones used)');
    relClose(t, c.gradNorm, d.gradNorm, 'step 3 gradient norm after a ref → cuda resume');
    sameUpdates(t, w0, cuda2.weights, ref.weights, config.steps);
    t.is(cuda2.state().optimizer.step, 3, 'the device optimizer took step 3 from the restored step count');
  } finally {
    cuda.dispose();
    cuda2.dispose();
  }
});

/** The trainer's weights and optimizer state (a copy), all a step may change but the data position. */
const weightsAndMoments = (tr: Trainer) => {
  const { step, weights, optimizer } = tr.state();
  return { step, weights, optimizer };
};

for (const [name, target] of [['ref', () => refGradients], ['cuda (interpreted)', simCuda]] as const) {
  test.serial(`${name}: a diverged step (a NaN weight: loss and norm NaN) throws the UserError and changes no weight nor moment`, (t) => {
    const model = tinyModel(), data = tinyData();
    const tr = new Trainer(model, data, { ...CONFIG, steps: 2 }, undefined, target());
    try {
      tr.trainStep(); // a step taken, so that the moments and the step count are not the initial zeros
      const st = tr.state();
      const norm = model.graph.params.find((p) => p.type.shape.length === 1)!.name;
      st.weights.get(norm)![0] = NaN; // a norm weight: every row's activations, so the loss, go NaN
      tr.restore(st);
      const before = weightsAndMoments(tr);
      t.true(Number.isNaN(before.weights.get(norm)![0]!) && before.optimizer.step === 1);
      t.throws(() => tr.trainStep(), { instanceOf: UserError, message: /^training diverged at step 2: loss NaN, gradient norm NaN \(lower --lr, or keep --clip on\)$/ });
      t.is(tr.step, 1);
      t.deepEqual(weightsAndMoments(tr), before, 'weights, moments and step count as before the step');
    } finally {
      tr.dispose();
    }
  });
}

test('the training targets by name; an unknown one is a UserError naming those there are', (t) => {
  t.is(trainTarget('ref'), refGradients);
  t.is(trainTarget('cuda').name, 'cuda');
  t.throws(() => trainTarget('tpu'), { instanceOf: UserError, message: "unknown target 'tpu' for training; available: ref, cuda" });
});

test('the cuda backend refuses a training graph with an op it has no kernel for (sigmoid), before opening the device', (t) => {
  let opened = 0;
  const target = cudaGradients(() => (opened++, simTrainDevice(1 << 20)));
  const g = trainingGraph(tinyModel().graph, { loss: { kind: 'cross_entropy' }, policy: 'none' });
  // the FFN's silu as a sigmoid: an op of NOT_YET_ON_CUDA (one input, one output of the same shape)
  const withSigmoid = { ...g, nodes: g.nodes.map((n) => (n.op === 'silu' ? { ...n, op: 'sigmoid' } : n)) };
  const e = t.throws(() => target.check(withSigmoid), { instanceOf: UserError });
  t.regex(e!.message, /--target cuda cannot train this model yet: training node %\S+ \(sigmoid\) is not yet on cuda/);
  t.is(opened, 0);
});

test("the cuda backend refuses --optimizer-state bf16-params without the bf16 GEMMs (and a MoC graph without the dense MoC GEMMs) as a UserError naming the switch, before opening the device", (t) => {
  let opened = 0;
  const device = () => (opened++, simTrainDevice(1 << 20));
  const dense = trainingGraph(tinyModel().graph, { loss: { kind: 'cross_entropy' }, policy: 'none' });
  const moc = trainingGraph(checkpointGraph(SPEC, () => 'f32', { k: 8 }), { loss: { kind: 'cross_entropy' }, policy: 'none' });
  t.true(moc.nodes.some((n) => n.op === 'moc_up'), 'the MoC graph has moc_up');
  const f32 = t.throws(() => cudaGradients(device, { matmul: 'f32' }).check(dense, 'bf16-params'), { instanceOf: UserError });
  t.regex(f32!.message, /^--target cuda --optimizer-state bf16-params: .*MOCC_CUDA_TRAIN_MATMUL=bf16/);
  const simt = t.throws(() => cudaGradients(device, { matmul: 'bf16', mocMatmul: 'simt' }).check(moc, 'bf16-params'), { instanceOf: UserError });
  t.regex(simt!.message, /^--target cuda --optimizer-state bf16-params: .*MOCC_CUDA_TRAIN_MOC=dense/);
  t.is(opened, 0);
  // the other modes, and bf16-params with the GEMMs it needs, pass the check (which then opens the device)
  cudaGradients(device, { matmul: 'f32' }).check(dense, 'bf16');
  cudaGradients(device, { matmul: 'bf16' }).check(dense, 'bf16-params');
  cudaGradients(device, { matmul: 'bf16', mocMatmul: 'dense-bf16' }).check(moc, 'bf16-params');
  t.is(opened, 3);
});

test('interpreted: distillation (kl_div, the f32 teacher logits passed through) for 2 steps on the cuda backend gives the ref backend\'s losses and weights', (t) => {
  const model = tinyModel(), data = tinyData();
  const config: TrainConfig = { ...CONFIG, loss: { kind: 'kl_div', temperature: 2 } };
  // a teacher whose logits depend on the batch's tokens (any f32 [rows, V] will do for the comparison)
  const teacher = (b: { tokens: Int32Array }) => Float32Array.from({ length: b.tokens.length * SPEC.vocabSize }, (_, i) => Math.sin(i * 0.37 + b.tokens[Math.floor(i / SPEC.vocabSize)]!) * 3);
  const ref = new Trainer(model, data, config, teacher);
  const cuda = new Trainer(model, data, config, teacher, simCuda());
  const w0 = new Map([...ref.weights].map(([k, v]) => [k, v.slice()]));
  try {
    for (let s = 0; s < config.steps; s++) {
      const a = cuda.trainStep(), b = ref.trainStep();
      relClose(t, a.loss, b.loss, `step ${b.step} loss`);
      relClose(t, a.gradNorm, b.gradNorm, `step ${b.step} gradient norm`);
      t.log(`step ${b.step}: loss ${a.loss} (ref ${b.loss}), |g| ${a.gradNorm} (ref ${b.gradNorm})`);
    }
    sameUpdates(t, w0, cuda.weights, ref.weights, config.steps);
  } finally {
    cuda.dispose();
  }
});

test.serial("interpreted: a teacher's batchLogits on cuda (its forward graph on the executor) give ref's, f32- and bf16-typed params alike", (t) => {
  // two sequences (3 and 5 tokens) packed in one batch, as the Trainer's windows are
  const tokens = Int32Array.of(1, 5, 9, 1, 7, 3, 30, 12), pos = Int32Array.of(0, 1, 2, 0, 1, 2, 3, 4), seq = Int32Array.of(0, 0, 0, 1, 1, 1, 1, 1);
  const b = { tokens, pos, seq, targets: new Int32Array(8) };
  for (const dtype of ['f32', 'bf16'] as const) {
    const m = tinyModel(dtype);
    const want = refGradients.batchLogits(m).logits(b);
    const onCuda = simCuda().batchLogits(m);
    const got = onCuda.logits(b);
    onCuda.dispose();
    t.is(got.length, want.length);
    const scale = want.reduce((a, x) => Math.max(a, Math.abs(x)), 0);
    const worst = want.reduce((a, x, i) => Math.max(a, Math.abs(got[i]! - x)), 0);
    t.true(worst <= 1e-5 * scale, `${dtype}: worst ${worst} of scale ${scale}`);
  }
});

// --max-memory on --target cuda compares plannedStepBytes: the arena, the params and AdamW's m and v,
// before anything is allocated. Checked against what a step runner built on a recording device really
// allocates for them (the scratch, the RoPE tables and the optimizer's scalars are left out of the
// figure, which says so for the scratch), for each optimizer mode and both matmul modes.
for (const [matmul, state] of [['f32', 'f32'], ['f32', 'bf16'], ['bf16', 'f32'], ['bf16', 'bf16-params']] as const) {
  test(`cuda plannedStepBytes (${matmul} matmuls, ${state} optimizer state) is what the step runner allocates for params, arena, m and v`, (t) => {
    const model = tinyModel(), rows = CONFIG.batch * CONFIG.seq;
    const graph = trainingGraph(model.graph, { loss: CONFIG.loss, policy: 'gcp' });
    const r = recordingDevice();
    const target = cudaGradients(() => r.dev, { matmul });
    const plan = target.plannedStepBytes(graph, rows, state);
    const runner = new CudaStepRunner(graph, { weights: new Map(graph.params.map((p) => [p.name, model.weights.get(p.name)!.toFloat32()])), rows, weightDecay: 0.1, maxNorm: 1, stateDType: state }, r.dev, { matmul });
    try {
      // the allocations in order: the params, the RoPE tables, the arena, the scratch (the executor),
      // then m and v of each trainable param and a few scalars (the optimizer)
      const n = graph.params.length, trainable = gradOutputs(graph).length, bytes = r.allocs.map((a) => a.bytes);
      const arena = executorPlan(graph, rows, { matmul }).arenaBytes, at = bytes.findIndex((b, i) => i >= n && b === arena);
      t.true(at >= n, 'the arena is allocated after the params');
      t.true(bytes.slice(n, at).every((b) => b < 4096), `between them only the small RoPE tables: ${bytes.slice(n, at).join(' ')}`);
      t.is(bytes[at + 1], runner.scratchBytes, 'then the scratch');
      const sum = (xs: number[]) => xs.reduce((a, b) => a + b, 0);
      const params = sum(bytes.slice(0, n)), moments = sum(bytes.slice(at + 2, at + 2 + 2 * trainable));
      t.is(params + arena + moments, plan.bytes, plan.what);
      t.regex(plan.what, /^of device memory \(arena .*, weights and AdamW state .*; the scratch buffer comes on top\)$/);
    } finally {
      runner.dispose();
    }
  });
}
