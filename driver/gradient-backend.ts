// Where a training step's loss and gradients are computed: the one seam between the Trainer
// (driver/trainer.ts: data, schedule, clipping, AdamW, checkpoints — one implementation for every
// target) and a target. A backend takes the master weights and one batch's inputs and returns the
// training graph's outputs in the host layout: the loss f32[1], then one gradient per trainable param
// (passes/autodiff.ts gradOutputs order).
//
// - ref: targets/ref/train.ts runTrainingGraph, exactly as the Trainer always called it (bit for bit).
// - cuda: targets/cuda/train/ CudaTrainingExecutor, built once for the step's row count (batch·seq)
//   and given the weights with setWeights before every step (lossAndGrads: the gradients alone, on
//   the host; the Trainer itself uses deviceTraining below).
//
// A backend may also keep the whole step on its device (deviceTraining: driver/step-runner.ts's
// StepRunner, weights, gradients and AdamW state in device memory); the Trainer then uses that and
// never calls lossAndGrads. cuda does (targets/cuda/train/step-runner.ts); ref does not, and the
// Trainer runs clipping and AdamW on the host over lossAndGrads (hostStepRunner).
//
// TRAIN_TARGETS is the registry of these by name (`--target` of train, recover): code outside picks
// one here, never with if/else on names.
import type { Graph } from '../src/ir/types.js';
import { UserError } from '../src/util/errors.js';
import { planMemory } from '../passes/memory-plan.js';
import { runTrainingGraph } from '../targets/ref/train.js';
import { CudaTrainingExecutor, executorPlan } from '../targets/cuda/train/executor.js';
import { cudaTrainDevice } from '../targets/cuda/train/cuda-device.js';
import type { TrainDevice } from '../targets/cuda/train/device.js';
import { trainOpOf } from '../targets/cuda/train/ops.js';
import { CudaStepRunner, type LaunchInputs } from '../targets/cuda/train/step-runner.js';
import type { StepRunner, StepRunnerInit } from './step-runner.js';

/** One batch's graph inputs by name: i32 tokens, positions, sequence ids, targets; f32 teacher logits (kl_div). */
export type StepInputs = Readonly<Record<string, Int32Array | Float32Array>>;

export interface GradientBackend {
  /** The graph's outputs for these weights and inputs: loss f32[1], then the gradients, host layout. */
  lossAndGrads(weights: ReadonlyMap<string, Float32Array>, inputs: StepInputs, rows: number): Float32Array[];
  /** The training step kept on this backend's device, when it has one (see the header); the Trainer's host loop otherwise. */
  deviceTraining?(init: StepRunnerInit): StepRunner;
  /** The bytes one step's values take on this backend at `rows` rows, and what that number is. */
  stepMemory(rows: number): { bytes: number; what: string };
  /** Frees what the backend holds (device memory). */
  dispose(): void;
}

export interface GradientTarget {
  readonly name: string;
  /** Refuses (UserError) a training graph this target cannot run, or a machine it cannot run on: before any data is read. */
  check(graph: Graph): void;
  /** A backend for this training graph (after check). */
  create(graph: Graph): GradientBackend;
}

export const refGradients: GradientTarget = {
  name: 'ref',
  check() {},
  create: (graph) => ({
    lossAndGrads: (weights, inputs, rows) => runTrainingGraph(graph, weights, { ...inputs }, rows).outputs as Float32Array[],
    stepMemory: (rows) => ({ bytes: planMemory(graph, { T: rows }).peakBytes, what: 'planned activations' }),
    dispose() {},
  }),
};

/**
 * The CUDA training executor as a gradient target, over `device` (opened on the first check or
 * create; the CUDA driver's in TRAIN_TARGETS, the PTX interpreter's in tests).
 */
export function cudaGradients(device: () => TrainDevice): GradientTarget {
  let dev: TrainDevice | undefined;
  const opened = () => (dev ??= device());
  return {
    name: 'cuda',
    check(graph) {
      for (const n of graph.nodes) {
        try {
          trainOpOf(n);
        } catch (e) {
          throw new UserError(`--target cuda cannot train this model yet: ${(e as Error).message}; use --target ref`);
        }
      }
      opened(); // a machine without the CUDA driver is refused here, naming what is missing
    },
    create(graph) {
      let ex: CudaTrainingExecutor | undefined;
      return {
        lossAndGrads(weights, inputs, rows) {
          const ints = executorInputs(inputs);
          if (ex && ex.rows !== rows) (ex.dispose(), (ex = undefined));
          if (ex) ex.setWeights(weights);
          else ex = new CudaTrainingExecutor(graph, weights, rows, opened());
          return ex.run(ints).outputs;
        },
        deviceTraining: (init) => new CudaStepRunner(graph, init, opened(), executorInputs),
        // The executor's one arena (every activation and weight gradient, rows padded to 8): what it allocates.
        stepMemory: (rows) => ({ bytes: executorPlan(graph, rows).arenaBytes, what: 'device arena (planned activations and gradients, padded rows)' }),
        dispose() {
          ex?.dispose();
          ex = undefined;
        },
      };
    },
  };
}

/** A step's inputs as the CUDA executor takes them (int32 only, for now). */
function executorInputs(inputs: StepInputs): LaunchInputs {
  const ints: Record<string, Int32Array> = {};
  for (const [name, v] of Object.entries(inputs)) {
    if (!(v instanceof Int32Array)) throw new Error(`cuda training: input %${name} is not int32`);
    ints[name] = v;
  }
  return ints;
}

export const TRAIN_TARGETS: ReadonlyMap<string, GradientTarget> = new Map([refGradients, cudaGradients(cudaTrainDevice)].map((t) => [t.name, t]));

/** The gradient target called `name`, or a UserError naming those there are. */
export function trainTarget(name: string): GradientTarget {
  const t = TRAIN_TARGETS.get(name);
  if (!t) throw new UserError(`unknown target '${name}' for training; available: ${[...TRAIN_TARGETS.keys()].join(', ')}`);
  return t;
}
