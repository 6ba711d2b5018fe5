// Where a run's master weights, gradients and AdamW state live between steps, and the two halves of
// a step over them. The Trainer (driver/trainer.ts) drives one of these and nothing else, so its
// loop, schedule, divergence check and checkpoints are one implementation for every target:
//
//   { loss, gradNorm } = runner.gradients(inputs, rows)   forward + backward, then the global norm
//   (the Trainer: loss and norm finite, else UserError)     a diverged step changes nothing
//   runner.update(lr)                                      clip by that norm, AdamW step t + 1
//
// - host (hostStepRunner): any gradient backend's lossAndGrads (driver/gradient-backend.ts), then
//   clipGlobalNorm and AdamW on the host over the Trainer's own weight arrays, updated in place: the
//   Trainer's step as it always was, bit for bit.
// - device (a backend's deviceTraining, e.g. cuda: targets/cuda/train/step-runner.ts): weights,
//   gradients and moments stay in device memory; a step downloads only the loss and the norm.
//
// Both decide which params decay by src/train/adamw.ts adamwParams and keep the moments as AdamWState
// (host layout), so a checkpoint made on one resumes on the other: weights() / optimizerState() are
// what the Trainer's state() saves, load() what its restore() gives back.
import type { Graph } from '../src/ir/types.js';
import { AdamW, roundBf16Params, type AdamWState, type AdamWStateDType } from '../src/train/adamw.js';
import { bf16ParamsInMode } from '../src/train/bf16-params.js';
import { clipGlobalNorm } from '../src/train/clip-grad.js';
import { gradOutputs } from '../passes/autodiff.js';
import type { GradientBackend, StepInputs } from './gradient-backend.js';

/** What a runner starts from: the Trainer's master weights and its optimizer options. */
export interface StepRunnerInit {
  /** Every param of the training graph, host layout. The host runner updates these arrays in place; a device one copies them. */
  weights: Map<string, Float32Array>;
  /** Rows (batch·seq) of every step's inputs. */
  rows: number;
  /** AdamW's decoupled weight decay (which params take it: adamwParams' rule). */
  weightDecay: number;
  /** Global gradient-norm limit, the Trainer's `clip`: 0 is no clipping, and the norm is then NaN. */
  maxNorm: number;
  /** How AdamW stores m and v (src/train/adamw.ts stateDType): 'f32' (the default) or 'bf16'. */
  stateDType?: AdamWStateDType;
}

export interface StepRunner {
  /** Forward and backward on one batch: the loss and the global gradient norm before clipping (NaN when maxNorm is 0). Changes no weight. */
  gradients(inputs: StepInputs, rows: number): { loss: number; gradNorm: number };
  /** AdamW's next step at rate lr over the last gradients(), clipped to maxNorm. */
  update(lr: number): void;
  /** The current weights, host layout: at least every trainable param (the only ones a step changes). */
  weights(): ReadonlyMap<string, Float32Array>;
  /** AdamW's step count and moments (a copy, host layout), as a checkpoint stores them. */
  optimizerState(): AdamWState;
  /** Replaces the weights (every param of the graph) and the optimizer state: a checkpoint restored. */
  load(weights: ReadonlyMap<string, Float32Array>, state: AdamWState): void;
  /** Frees what the runner holds (device memory). */
  dispose(): void;
}

/** The host step over `backend`'s gradients: clipGlobalNorm, then AdamW on init.weights in place. */
export function hostStepRunner(backend: GradientBackend, graph: Graph, init: StepRunnerInit): StepRunner {
  const weights = init.weights;
  const grads = gradOutputs(graph);
  const shapes = new Map(graph.params.map((p) => [p.name, p.type.shape as number[]]));
  const stateDType = init.stateDType ?? 'f32';
  // 'bf16-params': the GEMM weight matrices are stored bf16 (adamw.ts header, bf16-params.ts's rule);
  // the host keeps them as f32 arrays of bf16 values, rounded here, on load(), and by each update.
  const bf16Params = bf16ParamsInMode(graph, stateDType);
  roundBf16Params(weights, bf16Params);
  const optimizer = new AdamW(grads.map(({ param }) => ({ name: param, size: weights.get(param)!.length, shape: shapes.get(param)! })), { weightDecay: init.weightDecay, stateDType, bf16Params });
  let last: Map<string, Float32Array> | undefined;
  return {
    gradients(inputs, rows) {
      const outputs = backend.lossAndGrads(weights, inputs, rows);
      last = new Map(grads.map(({ param }, i) => [param, outputs[i + 1]!]));
      return { loss: outputs[0]![0]!, gradNorm: init.maxNorm > 0 ? clipGlobalNorm(last, init.maxNorm) : NaN };
    },
    update(lr) {
      if (!last) throw new Error('hostStepRunner: update() without gradients()');
      optimizer.step(weights, last, lr);
      last = undefined;
    },
    weights: () => weights,
    optimizerState: () => optimizer.state(),
    load(w, state) {
      for (const [name, a] of weights) {
        const b = w.get(name);
        if (!b || b.length !== a.length) throw new Error(`hostStepRunner: load() without weight ${name} of ${a.length} values`);
        if (b !== a) a.set(b);
      }
      roundBf16Params(weights, bf16Params);
      optimizer.load(state);
      last = undefined;
    },
    dispose() {},
  };
}
