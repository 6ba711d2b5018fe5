// CudaOptimizer with bf16 moments (stateDType 'bf16', targets/cuda/train/optimizer.ts) over the CUDA
// training executor: each step against src/train/adamw.ts with stateDType 'bf16' fed the device's own
// gradients (downloaded after the step) and clipGlobalNorm, from the device's state before the step
// (so a rare rounding disagreement does not carry). Bound (cuda-train-adamw-bf16-state.test.ts says
// why): m, v equal except rare bf16 rounding flips (≤ one bf16 ulp, at most 2 + n·2^-12 a step over
// all tensors); weights within 1e-4·lr + 2 f32 ulps (optimizer.test.ts's tight bound), plus 2^-7 of
// the update where m or v flipped. Also: the moments take 2 bytes an element (half the f32 mode's),
// state() gives bf16 values as f32, and state() → load() into a fresh executor + optimizer continues
// bit for bit. On the interpreter: the tiny 1-layer LLaMA, T = 8; on a GPU: stories260K, T = 32.
import test, { type ExecutionContext } from 'ava';
import { checkpointGraph } from '../../driver/load.js';
import { trainingGraph } from '../../driver/training-graph.js';
import { gradOutputs } from '../../passes/autodiff.js';
import type { Graph } from '../../src/ir/types.js';
import { AdamW } from '../../src/train/adamw.js';
import { clipGlobalNorm } from '../../src/train/clip-grad.js';
import { cudaTrainDevice } from '../../targets/cuda/train/cuda-device.js';
import type { TrainDevice } from '../../targets/cuda/train/device.js';
import { CudaTrainingExecutor } from '../../targets/cuda/train/executor.js';
import { CudaOptimizer } from '../../targets/cuda/train/optimizer.js';
import { storiesTraining } from '../helpers/stories-training.js';
import { cudaDeviceRequirement, testsNeeding } from '../helpers/requires.js';
import { batch, POISON, randomWeights, TINY } from '../helpers/train-tiny-model.js';
import { simTrainDevice } from '../helpers/train-sim-device.js';

const LRS = [1e-2, 8e-3, 5e-3];
const WD = 0.1;
type Batch = Record<string, Int32Array>;

function run(t: ExecutionContext, g: Graph, weights: Map<string, Float32Array>, batches: Batch[], maxNorm: number, device: () => TrainDevice): void {
  const T = batches[0]![Object.keys(batches[0]!)[0]!]!.length;
  const dev = device();
  const ex = new CudaTrainingExecutor(g, weights, T, dev, { poison: POISON });
  const opt = new CudaOptimizer(ex, { maxNorm, weightDecay: WD, stateDType: 'bf16' });
  const optF32 = new CudaOptimizer(ex, { maxNorm, weightDecay: WD });
  const host = new AdamW(gradOutputs(g).map(({ param }) => ({ name: param, size: weights.get(param)!.length, shape: g.params.find((p) => p.name === param)!.type.shape as number[] })), { weightDecay: WD, stateDType: 'bf16' });
  let saved: { state: ReturnType<CudaOptimizer['state']>; weights: Map<string, Float32Array> } | undefined;
  try {
    t.is(opt.momentBytes * 2, optF32.momentBytes, 'bf16 moments take half the bytes of f32 ones');
    optF32.dispose();
    batches.forEach((inputs, step) => {
      const lr = LRS[step]!;
      const before = { state: opt.state(), weights: ex.weights() };
      if (step === batches.length - 1) saved = before;
      ex.launch(inputs);
      ex.loss();
      opt.clipGradients();
      opt.update(lr);
      // the host from the same state on the device's gradients
      const out = ex.outputs();
      const grads = new Map(gradOutputs(g).map(({ param }, i) => [param, out[i + 1]!]));
      if (maxNorm > 0) clipGlobalNorm(grads, maxNorm);
      host.load(before.state);
      const want = new Map([...before.weights].map(([k, v]) => [k, v.slice()]));
      host.step(want, grads, lr);
      const got = ex.weights(), gotState = opt.state(), wantState = host.state();
      let flips = 0, n = 0, bad = 0, notBf16 = 0;
      const why: string[] = [];
      for (const [name, w] of wantState.m) {
        const gm = gotState.m.get(name)!, gv = gotState.v.get(name)!, wv = wantState.v.get(name)!, gp = got.get(name)!, wp = want.get(name)!, p0 = before.weights.get(name)!;
        n += w.length;
        for (const a of [gm, gv]) notBf16 += new Uint32Array(a.buffer, a.byteOffset, a.length).filter((b) => (b & 0xffff) !== 0).length;
        for (let i = 0; i < w.length; i++) {
          const flip = gm[i] !== w[i] || gv[i] !== wv[i];
          if (flip) flips++;
          const ok = (!flip || (Math.abs(gm[i]! - w[i]!) <= 2 ** -7 * Math.abs(w[i]!) && Math.abs(gv[i]! - wv[i]!) <= 2 ** -7 * wv[i]!))
            && Math.abs(gp[i]! - wp[i]!) <= 1e-4 * lr + 2 * Math.abs(wp[i]!) * 2 ** -23 + (flip ? 2 ** -7 * Math.abs(wp[i]! - p0[i]!) : 0);
          if (!ok) {
            bad++;
            if (why.length < 3) why.push(`@${name}[${i}]: p ${gp[i]} vs ${wp[i]}, m ${gm[i]} vs ${w[i]}, v ${gv[i]} vs ${wv[i]}`);
          }
        }
      }
      t.is(notBf16, 0, `step ${step + 1}: state() gives bf16 values`);
      t.is(bad, 0, `step ${step + 1}: ${why.join('; ')}`);
      t.true(flips <= 2 + n * 2 ** -12, `step ${step + 1}: ${flips} of ${n} moments differ in bf16`);
      t.log(`step ${step + 1}: ${flips} of ${n} moments differ from the host's by a bf16 rounding flip`);
    });
    // a fresh executor + optimizer from the state before the last step: the same bits
    const ex2 = new CudaTrainingExecutor(g, saved!.weights, T, dev, { poison: POISON });
    const opt2 = new CudaOptimizer(ex2, { maxNorm, weightDecay: WD, stateDType: 'bf16' });
    try {
      opt2.load(saved!.state);
      ex2.launch(batches[batches.length - 1]!);
      ex2.loss();
      opt2.step(LRS[batches.length - 1]!);
      t.deepEqual(ex2.weights(), ex.weights(), 'resumed: the weights are bit for bit the uninterrupted run\'s');
      t.deepEqual(opt2.state(), opt.state(), 'resumed: the moments and the step count too');
    } finally {
      opt2.dispose();
      ex2.dispose();
    }
  } finally {
    opt.dispose();
    ex.dispose();
  }
}

const tinyGraph = () => trainingGraph(checkpointGraph({ ...TINY, nLayers: 1 }, () => 'f32', 'dense'), { loss: { kind: 'cross_entropy' }, policy: 'none' });

test('interpreted: tiny 1-layer LLaMA, clipping at 0.05: 3 steps with bf16 moments against adamw.ts bf16 state, and a state round trip', (t) => {
  const g = tinyGraph();
  run(t, g, randomWeights(g, 5), Array.from({ length: 3 }, (_, i) => batch([5, 3], TINY.vocabSize, 20 + i)), 0.05, () => simTrainDevice(16 << 20));
});

testsNeeding(cudaDeviceRequirement())('GPU: stories260K, T = 32, clipping at 0.5: 3 steps with bf16 moments against adamw.ts bf16 state, and a state round trip', (t) => {
  const { m, g, weights } = storiesTraining('none');
  try {
    run(t, g, weights, Array.from({ length: 3 }, (_, i) => batch([20, 12], m.spec.vocabSize, 40 + i)), 0.5, cudaTrainDevice);
  } finally {
    m.close();
  }
});
