// The optimizer step on the device (targets/cuda/train/optimizer.ts): CudaTrainingExecutor.launch +
// CudaOptimizer (clip + AdamW kernels over the executor's own param and gradient buffers) for a few
// steps, against driver/trainer.ts's host step (runTrainingGraph, clipGlobalNorm, AdamW.step) from
// the same weights on the same batches and learning rates.
//
// Two comparisons a run:
// - the end-to-end one (the host loop with its own gradients): losses and gradient norms within 1e-4
//   relative, as the executor's gradients are (cuda-train-executor.test.ts: f32 both sides, the
//   kernels' f32 sums and ex2/lg2.approx against the ref's f64 sums, ~1e-6). The weights then
//   differ by more than the gradients do, by AdamW's nature: its first steps move each weight by about
//   lr·g/|g|, whatever |g|, so an element whose gradient is below the gradients' error (~1e-6 of the
//   tensor's largest) moves by up to lr on either side with a sign set by rounding noise. So the final
//   weights are held within 1e-2·Σlr in all but 0.1% of the elements (E2E_TOLERANCE), and every one
//   within 2·Σlr (Adam's bound). (The tiny model measured: none past 1e-4·Σlr.)
// - the tight one (a host AdamW + clipGlobalNorm fed the device's own gradients, downloaded after the
//   step): isolates the optimizer. The host updates in f64 rounded to f32 and sums the norm in f64, the
//   kernels in f32 throughout (IEEE-rounded, fixed tree): after k steps the weights within
//   k·(1e-4·lr + 2 ulps of the weight) — each step's update (about lr) agrees to a few f32 ulps, and
//   the f32 roundings of p·keep and p − u may each differ by an ulp of p (measured: ≤ 2.4e-5·lr) —
//   and the moments within 1e-5 relative to a tensor's largest |entry|.
// Plus: clipping active (max norm below every step's norm), and state() → load() into a fresh
// executor + optimizer mid-run continuing bit for bit as the run that never stopped.
//
// On the interpreter: the tiny LLaMA with 1 layer, T = 8 (a step costs seconds there); on a GPU
// (skipped without one): stories260K, 5 layers, T = 32; ptxas (skipped without it): the optimizer's
// kernels assemble for sm_80 and sm_90 without local memory.
import test, { type ExecutionContext } from 'ava';
import { checkpointGraph } from '../../driver/load.js';
import { trainingGraph } from '../../driver/training-graph.js';
import { gradOutputs } from '../../passes/autodiff.js';
import type { Graph } from '../../src/ir/types.js';
import { AdamW, type AdamWState } from '../../src/train/adamw.js';
import { clipGlobalNorm } from '../../src/train/clip-grad.js';
import { runTrainingGraph } from '../../targets/ref/train.js';
import { cudaTrainDevice } from '../../targets/cuda/train/cuda-device.js';
import type { TrainDevice } from '../../targets/cuda/train/device.js';
import { CudaTrainingExecutor } from '../../targets/cuda/train/executor.js';
import { CudaOptimizer } from '../../targets/cuda/train/optimizer.js';
import { storiesTraining } from '../helpers/stories-training.js';
import { assertEachAssembles } from '../helpers/ptxas.js';
import { cudaDeviceRequirement, findPtxas, ptxasRequirement, testsNeeding } from '../helpers/requires.js';
import { batch, POISON, randomWeights, TINY } from '../helpers/train-tiny-model.js';
import { simTrainDevice } from '../helpers/train-sim-device.js';

const LRS = [1e-2, 8e-3, 5e-3];
const WEIGHT_DECAY = 0.1;
/** End to end: the fraction of all weights allowed past ofLrSum·Σlr from the host's (see the header). */
const E2E_TOLERANCE = { ofLrSum: 1e-2, fraction: 1e-3 };

type Batch = Record<string, Int32Array>;

/** driver/trainer.ts's step on the host: runTrainingGraph, clipGlobalNorm (when maxNorm > 0), AdamW.step. */
class HostLoop {
  readonly weights: Map<string, Float32Array>;
  readonly adamw: AdamW;
  constructor(private readonly g: Graph, weights: ReadonlyMap<string, Float32Array>, private readonly maxNorm: number) {
    this.weights = new Map([...weights].map(([k, v]) => [k, v.slice()]));
    this.adamw = new AdamW(gradOutputs(g).map(({ param }) => ({ name: param, size: this.weights.get(param)!.length, shape: g.params.find((p) => p.name === param)!.type.shape as number[] })), { weightDecay: WEIGHT_DECAY });
  }
  /** The Trainer's step on gradients `grads` (the host's own, or given); returns the norm (NaN without clipping). */
  apply(grads: Map<string, Float32Array>, lr: number): number {
    const norm = this.maxNorm > 0 ? clipGlobalNorm(grads, this.maxNorm) : NaN;
    this.adamw.step(this.weights, grads, lr);
    return norm;
  }
  step(inputs: Batch, T: number, lr: number): { loss: number; norm: number } {
    const out = runTrainingGraph(this.g, this.weights, inputs, T).outputs as Float32Array[];
    return { loss: out[0]![0]!, norm: this.apply(new Map(gradOutputs(this.g).map(({ param }, i) => [param, out[i + 1]!])), lr) };
  }
}

/** The device step as the lead wires it: launch, loss, clip (norm), update. */
function deviceStep(ex: CudaTrainingExecutor, opt: CudaOptimizer, inputs: Batch, lr: number): { loss: number; norm: number } {
  ex.launch(inputs);
  const loss = ex.loss(), norm = opt.clipGradients();
  opt.update(lr);
  return { loss, norm };
}

/** The gradients the last launch left on the device, by param (downloaded; the optimizer leaves them unchanged). */
function deviceGrads(g: Graph, ex: CudaTrainingExecutor): Map<string, Float32Array> {
  const out = ex.outputs();
  return new Map(gradOutputs(g).map(({ param }, i) => [param, out[i + 1]!]));
}

const relClose = (a: number, b: number, rel: number) => Math.abs(a - b) <= rel * Math.max(Math.abs(b), 1e-30);
const ulp = (x: number) => Math.max(Math.abs(x), 1e-30) * 2 ** -23;

/** Tight, after `steps` steps: every element within steps·(1e-4·lr + 2 ulps) of the want's. */
function checkWeightsTight(t: ExecutionContext, got: Map<string, Float32Array>, want: Map<string, Float32Array>, lr: number, steps: number, what: string): void {
  let worst = 0;
  for (const [name, w] of want) {
    const a = got.get(name)!;
    let bad = 0;
    for (let i = 0; i < w.length; i++) {
      const d = Math.abs(a[i]! - w[i]!);
      worst = Math.max(worst, d / lr);
      if (!(d <= steps * (1e-4 * lr + 2 * ulp(w[i]!)))) bad++;
    }
    t.is(bad, 0, `${what}: @${name}: ${bad} of ${w.length} elements past ${steps}·(1e-4·lr + 2 ulps)`);
  }
  t.log(`${what}: worst |Δw| = ${worst.toExponential(2)}·lr`);
}

/** Moments: within 1e-5 of each tensor's largest |entry|. */
function checkMoments(t: ExecutionContext, got: AdamWState, want: AdamWState): void {
  t.is(got.step, want.step);
  for (const which of ['m', 'v'] as const) {
    for (const [name, w] of want[which]) {
      const a = got[which].get(name)!;
      t.is(a.length, w.length);
      const scale = w.reduce((a, x) => Math.max(a, Math.abs(x)), 1e-30);
      let worst = 0;
      for (let i = 0; i < w.length; i++) worst = Math.max(worst, Number.isFinite(a[i]!) ? Math.abs(a[i]! - w[i]!) / scale : Infinity);
      t.true(worst <= 1e-5, `${which} of @${name}: max |Δ| / max |want| = ${worst.toExponential(2)}`);
    }
  }
}

/** End to end: all within 2·Σlr; all but E2E_TOLERANCE.fraction within E2E_TOLERANCE.ofLrSum·Σlr. */
function checkWeightsE2E(t: ExecutionContext, got: Map<string, Float32Array>, want: Map<string, Float32Array>, lrSum: number): void {
  let far = 0, total = 0, worst = 0, beyond = '';
  for (const [name, w] of want) {
    const a = got.get(name)!;
    for (let i = 0; i < w.length; i++) {
      const d = Number.isFinite(a[i]!) ? Math.abs(a[i]! - w[i]!) : Infinity;
      worst = Math.max(worst, d / lrSum);
      if (d > E2E_TOLERANCE.ofLrSum * lrSum) far++;
      if (!(d <= 2 * lrSum) && !beyond) beyond = `@${name}[${i}]: ${a[i]} against the host's ${w[i]}`;
    }
    total += w.length;
  }
  t.is(beyond, '', 'a weight more than 2·Σlr from the host\'s');
  t.true(far <= E2E_TOLERANCE.fraction * total, `${far} of ${total} weights past ${E2E_TOLERANCE.ofLrSum}·Σlr from the host's`);
  t.log(`end to end: ${far} of ${total} weights past ${E2E_TOLERANCE.ofLrSum}·Σlr, worst ${worst.toExponential(2)}·Σlr`);
}

interface RunSpec {
  g: Graph;
  weights: Map<string, Float32Array>;
  batches: Batch[];
  maxNorm: number;
  /** Whether the clip must be active on every step (the check that the case tests what it says). */
  clips?: boolean;
  /** Also check state() → load() into a fresh executor and optimizer before the last step. */
  resume?: boolean;
  device: () => TrainDevice;
}

function compareRuns(t: ExecutionContext, s: RunSpec): void {
  const T = s.batches[0]![Object.keys(s.batches[0]!)[0]!]!.length;
  const host = new HostLoop(s.g, s.weights, s.maxNorm), mirror = new HostLoop(s.g, s.weights, s.maxNorm);
  const dev = s.device();
  const ex = new CudaTrainingExecutor(s.g, s.weights, T, dev, { poison: POISON });
  const opt = new CudaOptimizer(ex, { maxNorm: s.maxNorm, weightDecay: WEIGHT_DECAY });
  t.deepEqual(opt.params(), host.adamw.params(), 'the same params decay on the device as on the host');
  let saved: { state: AdamWState; weights: Map<string, Float32Array> } | undefined;
  try {
    s.batches.forEach((inputs, step) => {
      const lr = LRS[step]!;
      if (s.resume && step === s.batches.length - 1) saved = { state: opt.state(), weights: ex.weights() };
      const got = deviceStep(ex, opt, inputs, lr), want = host.step(inputs, T, lr);
      const mirrored = mirror.apply(deviceGrads(s.g, ex), lr);
      t.log(`step ${step + 1}: loss ${got.loss} (host ${want.loss}), norm ${got.norm} (host ${want.norm}, of the device's gradients ${mirrored})`);
      t.true(relClose(got.loss, want.loss, 1e-4), `step ${step + 1}: loss`);
      if (s.maxNorm > 0) {
        t.true(relClose(got.norm, want.norm, 1e-4), `step ${step + 1}: gradient norm against the host loop's`);
        t.true(relClose(got.norm, mirrored, 1e-5), `step ${step + 1}: gradient norm against the host's of the same gradients`);
        if (s.clips) t.true(want.norm > s.maxNorm, `step ${step + 1}: the clip is active (norm ${want.norm} > ${s.maxNorm})`);
      } else t.true(Number.isNaN(got.norm), 'no norm without clipping, as the Trainer reports');
      checkWeightsTight(t, ex.weights(), mirror.weights, lr, step + 1, `step ${step + 1}, against the host optimizer on the device's gradients`);
    });
    checkMoments(t, opt.state(), mirror.adamw.state());
    const lrSum = LRS.slice(0, s.batches.length).reduce((a, b) => a + b, 0);
    checkWeightsE2E(t, ex.weights(), host.weights, lrSum);

    if (saved) {
      // a fresh executor + optimizer from the checkpoint, the last step again: the same bits
      const ex2 = new CudaTrainingExecutor(s.g, saved.weights, T, dev, { poison: POISON });
      const opt2 = new CudaOptimizer(ex2, { maxNorm: s.maxNorm, weightDecay: WEIGHT_DECAY });
      try {
        opt2.load(saved.state);
        t.is(opt2.stepCount, s.batches.length - 1);
        const last = s.batches.length - 1;
        deviceStep(ex2, opt2, s.batches[last]!, LRS[last]!);
        t.deepEqual(ex2.weights(), ex.weights(), 'resumed: the weights are bit for bit the uninterrupted run\'s');
        t.deepEqual(opt2.state(), opt.state(), 'resumed: the moments and the step count too');
      } finally {
        opt2.dispose();
        ex2.dispose();
      }
    }
  } finally {
    opt.dispose();
    ex.dispose();
  }
}

const tinyGraph = () => trainingGraph(checkpointGraph({ ...TINY, nLayers: 1 }, () => 'f32', 'dense'), { loss: { kind: 'cross_entropy' }, policy: 'none' });
const tinyBatches = (n: number) => Array.from({ length: n }, (_, i) => batch([5, 3], TINY.vocabSize, 20 + i));

test('interpreted: tiny 1-layer LLaMA, no clipping: 3 device steps equal the host trainer loop\'s (loss, weights, moments)', (t) => {
  const g = tinyGraph();
  compareRuns(t, { g, weights: randomWeights(g, 3), batches: tinyBatches(3), maxNorm: 0, device: () => simTrainDevice(16 << 20) });
});

test('interpreted: tiny 1-layer LLaMA, clipping active: 3 device steps equal the host loop\'s (loss, norm, weights), and a state round trip before step 3 continues bit for bit', (t) => {
  const g = tinyGraph();
  compareRuns(t, { g, weights: randomWeights(g, 5), batches: tinyBatches(3), maxNorm: 0.05, clips: true, resume: true, device: () => simTrainDevice(16 << 20) });
});

test('the optimizer refuses an update before the clip of this step, and a state of other params', (t) => {
  const g = tinyGraph();
  const ex = new CudaTrainingExecutor(g, randomWeights(g, 1), 8, simTrainDevice(4 << 20));
  const opt = new CudaOptimizer(ex, { maxNorm: 1 });
  t.throws(() => opt.update(1e-3), { message: /before clipGradients/ });
  const st = opt.state();
  t.is(st.step, 0);
  t.true([...st.m.values()].every((m) => m.every((x) => x === 0)), 'moments start at zero');
  st.m.delete([...st.m.keys()][0]!);
  t.throws(() => opt.load(st), { message: /state has m for/ });
  t.throws(() => new CudaOptimizer(ex, { maxNorm: -1 }), { message: /maxNorm/ });
});

const ptxas = findPtxas();
testsNeeding(ptxasRequirement(ptxas))('the optimizer\'s kernels for stories260K and the tiny model (pad_zero) assemble for sm_80 and sm_90 with no local memory', (t) => {
  const { m, g, weights } = storiesTraining('none');
  try {
    const tiny = tinyGraph();
    const kernels = [new CudaOptimizer(new CudaTrainingExecutor(g, weights, 32, simTrainDevice(8 << 20)), { maxNorm: 1 }), new CudaOptimizer(new CudaTrainingExecutor(tiny, randomWeights(tiny, 1), 8, simTrainDevice(4 << 20)), { maxNorm: 1 })].flatMap((o) => o.kernels);
    t.true(kernels.some((k) => k.name.startsWith('pad_zero')) && kernels.some((k) => k.name.endsWith('_wd')) && kernels.some((k) => !k.name.endsWith('_wd')));
    assertEachAssembles(t, new Map(kernels.map((k) => [k.name, k])).values());
  } finally {
    m.close();
  }
});

for (const [maxNorm, what] of [[0, 'no clipping'], [0.5, 'clipping at 0.5']] as const) {
  testsNeeding(cudaDeviceRequirement())(`GPU: stories260K, 5 layers, T = 32, ${what}: 3 device steps equal the host trainer loop's${maxNorm ? ', and a state round trip continues bit for bit' : ''}`, (t) => {
    const { m, g, weights } = storiesTraining('none');
    try {
      const batches = Array.from({ length: 3 }, (_, i) => batch([20, 12], m.spec.vocabSize, 40 + i));
      compareRuns(t, { g, weights, batches, maxNorm, resume: maxNorm > 0, device: cudaTrainDevice });
    } finally {
      m.close();
    }
  });
}
