// Where a training step's loss and gradients are computed: the one seam between the Trainer
// (driver/trainer.ts: data, schedule, clipping, AdamW, checkpoints — one implementation for every
// target) and a target. A backend takes the master weights and one batch's inputs and returns the
// training graph's outputs in the host layout: the loss f32[1], then one gradient per trainable param
// (passes/autodiff.ts gradOutputs order).
//
// - ref: targets/ref/train.ts runTrainingGraph, exactly as the Trainer always called it (bit for bit).
// - cuda: targets/cuda/train/ CudaTrainingExecutor, built once for the step's row count (batch·seq)
//   and given the weights with setWeights before every step (lossAndGrads: the gradients alone, on
//   the host; the Trainer itself uses deviceTraining below). Its matmuls are f32, or bf16 on tensor
//   cores with the MoC products as dense bf16 GEMMs (--gemm bf16: GradientTarget.withGemm). Without
//   --gemm, the environment's switches for benchmarks and tests: MOCC_CUDA_TRAIN_MATMUL=bf16 and
//   MOCC_CUDA_TRAIN_MOC=dense (read when the backend is created: targets/cuda/train/ops-bf16.ts
//   trainMatmulFromEnv, trainMocMatmulFromEnv).
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
import { formatBytes } from '../src/util/format-bytes.js';
import { planMemory } from '../passes/memory-plan.js';
import { runTrainingGraph } from '../targets/ref/train.js';
import { bf16ParamsRefusal, CudaTrainingExecutor, executorPlan, trainingStateBytes, type StepValues, type TrainingExecutorOptions } from '../targets/cuda/train/executor.js';
import { cudaTrainDevice } from '../targets/cuda/train/cuda-device.js';
import type { TrainDevice } from '../targets/cuda/train/device.js';
import { trainOpOf } from '../targets/cuda/train/ops.js';
import { trainBf16ProducersFromEnv, trainCastOnceFromEnv, trainMatmulAccumulateFromEnv, trainMatmulFromEnv, trainMocMatmulFromEnv, type TrainMatmul, type TrainMocMatmul } from '../targets/cuda/train/ops-bf16.js';
import { checkMocMatmul } from '../targets/cuda/train/ops-moc-bf16.js';
import { CudaStepRunner } from '../targets/cuda/train/step-runner.js';
import type { StepRunner, StepRunnerInit } from './step-runner.js';
import { batchLogits, modelWeights, type BatchLogits } from './evaluate.js';
import type { RunnableModel } from '../src/model/runnable.js';
import type { AdamWStateDType } from '../src/train/adamw.js';
import { MODEL_INPUTS } from '../src/model/graph-inputs.js';

/** One batch's graph inputs by name: i32 tokens, positions, sequence ids, targets; f32 teacher logits (kl_div). */
export type StepInputs = StepValues;

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

/** A model's logits for training batches on a target, and the device memory that holds it. */
export interface TargetLogits {
  logits: BatchLogits;
  dispose(): void;
}

export interface GradientTarget {
  readonly name: string;
  /**
   * The logits [rows, V] of a model (its forward graph, as batchLogits runs it on ref) for training
   * batches on this target, with `weights` (default: the model's own): a distillation's teacher beside
   * a student trained here, or the student itself for an eval mid-run.
   */
  batchLogits(model: RunnableModel, weights?: ReadonlyMap<string, Float32Array>): TargetLogits;
  /**
   * Refuses (UserError) a training graph this target cannot run, an optimizer mode (--optimizer-state,
   * default 'f32') it cannot run it in, or a machine it cannot run on: before any data is read.
   */
  check(graph: Graph, optimizerState?: AdamWStateDType): void;
  /**
   * What one step of this training graph at `rows` rows will hold on the target, planned before
   * anything is allocated or opened (--max-memory compares it), and what that number counts (`what`,
   * read after the byte count: "of activations", "of device memory (…)").
   */
  plannedStepBytes(graph: Graph, rows: number, optimizerState?: AdamWStateDType): { bytes: number; what: string };
  /** A backend for this training graph (after check). */
  create(graph: Graph): GradientBackend;
  /**
   * This target with its GEMMs multiplying `gemm` operands (--gemm), where it has the choice: cuda
   * (f32: SIMT; bf16: tensor cores, f32 accumulation, MoC's products as dense GEMMs around the kept
   * channels). Absent: the target multiplies in f32 only (ref).
   */
  withGemm?(gemm: TrainGemm): GradientTarget;
}

/** What the training GEMMs multiply (--gemm of train and recover). */
export const TRAIN_GEMMS = ['f32', 'bf16'] as const;
export type TrainGemm = (typeof TRAIN_GEMMS)[number];

/** The ref target's planned peak activation bytes of a step at `rows` rows (passes/memory-plan.ts; trainer.ts plannedPeakBytes is the same plan by batch × seq). */
const refPeakBytes = (graph: Graph, rows: number): number => planMemory(graph, { T: rows }).peakBytes;

export const refGradients: GradientTarget = {
  name: 'ref',
  check() {},
  // host arrays, no device: the activations' planned peak
  plannedStepBytes: (graph, rows) => ({ bytes: refPeakBytes(graph, rows), what: 'of activations' }),
  batchLogits(model, weights) {
    const w = weights ?? modelWeights(model);
    return { logits: (b) => batchLogits(model, w, b), dispose() {} };
  },
  create: (graph) => ({
    lossAndGrads: (weights, inputs, rows) => runTrainingGraph(graph, weights, { ...inputs }, rows).outputs as Float32Array[],
    stepMemory: (rows) => ({ bytes: refPeakBytes(graph, rows), what: 'planned activations' }),
    dispose() {},
  }),
};

/** The executor's matmul options: those given, else the environment's (read when called). */
const executorOptions = (opts: { matmul?: TrainMatmul; mocMatmul?: TrainMocMatmul }): TrainingExecutorOptions & { matmul: TrainMatmul; mocMatmul: TrainMocMatmul } => {
  const acc = trainMatmulAccumulateFromEnv();
  return { matmul: opts.matmul ?? trainMatmulFromEnv(), mocMatmul: opts.mocMatmul ?? trainMocMatmulFromEnv(), castOnce: trainCastOnceFromEnv(), bf16Producers: trainBf16ProducersFromEnv(), ...(acc === undefined ? {} : { matmulAccumulate: acc }) };
};

/** One executor of `graph` at a time, built with `weights` on first use and rebuilt when a call has other rows (built: just now). */
function executorByRows(graph: Graph, device: () => TrainDevice, options: TrainingExecutorOptions) {
  let ex: CudaTrainingExecutor | undefined;
  return {
    at(rows: number, weights: ReadonlyMap<string, Float32Array>): { ex: CudaTrainingExecutor; built: boolean } {
      if (ex?.rows === rows) return { ex, built: false };
      ex?.dispose();
      ex = undefined; // a build that throws leaves none
      ex = new CudaTrainingExecutor(graph, weights, rows, device(), options);
      return { ex, built: true };
    },
    dispose() {
      ex?.dispose();
      ex = undefined;
    },
  };
}

/**
 * The CUDA training executor as a gradient target, over `device` (opened on the first check or
 * create; the CUDA driver's in TRAIN_TARGETS, the PTX interpreter's in tests). opts.matmul,
 * opts.mocMatmul: the executor's options (default: the environment's, trainMatmulFromEnv,
 * trainMocMatmulFromEnv).
 */
export function cudaGradients(device: () => TrainDevice, opts: { matmul?: TrainMatmul; mocMatmul?: TrainMocMatmul } = {}): GradientTarget {
  let dev: TrainDevice | undefined;
  const opened = () => (dev ??= device());
  return {
    name: 'cuda',
    // bf16 takes the MoC products along (dense-bf16): their SIMT kernels would be the step's slowest part
    withGemm: (gemm) => cudaGradients(device, { matmul: gemm, mocMatmul: gemm === 'bf16' ? 'dense-bf16' : 'simt' }),
    check(graph, optimizerState) {
      for (const n of graph.nodes) {
        try {
          trainOpOf(n);
        } catch (e) {
          throw new UserError(`--target cuda cannot train this model yet: ${(e as Error).message}; use --target ref`);
        }
      }
      // the environment's switches (UserErrors when bad or unmatched) and the executor's own refusal
      // (executor.ts bf16ParamsRefusal), raised here before anything is built
      const options = executorOptions(opts);
      checkMocMatmul(options.matmul, options.mocMatmul);
      const refusal = bf16ParamsRefusal(graph, { ...options, optimizerState });
      if (refusal) throw new UserError(`--target cuda --optimizer-state ${optimizerState}: ${refusal}; or train with another --optimizer-state`);
      opened(); // a machine without the CUDA driver is refused here, naming what is missing
    },
    // the executor's arena (its graph under these options: executor.ts executorPlan) + params and AdamW's
    // m, v (trainingStateBytes): bench/gpu/train.ts's "planned" less the scratch, which is known only
    // once the executor is built
    plannedStepBytes(graph, rows, optimizerState = 'f32') {
      const arena = executorPlan(graph, rows, executorOptions(opts)).arenaBytes;
      const { params, moments } = trainingStateBytes(graph, { T: rows }, optimizerState);
      return { bytes: arena + params + moments, what: `of device memory (arena ${formatBytes(arena)}, weights and AdamW state ${formatBytes(params + moments)}; the scratch buffer comes on top)` };
    },
    // the model's forward graph on the training executor (its outputs: the logits), rebuilt when
    // a batch has other rows; weights uploaded once
    batchLogits(model, weights) {
      const w = weights ?? modelWeights(model), executors = executorByRows(model.graph, opened, executorOptions(opts));
      return {
        logits: (b) => executors.at(b.tokens.length, w).ex.run({ [MODEL_INPUTS.tokens]: b.tokens, [MODEL_INPUTS.pos]: b.pos, [MODEL_INPUTS.seq]: b.seq }).outputs[0]!,
        dispose: () => executors.dispose(),
      };
    },
    create(graph) {
      const options = executorOptions(opts), executors = executorByRows(graph, opened, options);
      return {
        lossAndGrads(weights, inputs, rows) {
          const { ex, built } = executors.at(rows, weights);
          if (!built) ex.setWeights(weights);
          return ex.run(inputs).outputs; // the executor checks each input's dtype and shape against the graph's
        },
        deviceTraining: (init) => new CudaStepRunner(graph, init, opened(), options),
        // The executor's one arena (every activation and weight gradient, rows padded to 8): what it allocates.
        stepMemory: (rows) => ({ bytes: executorPlan(graph, rows, options).arenaBytes, what: 'device arena (planned activations and gradients, padded rows)' }),
        dispose: () => executors.dispose(),
      };
    },
  };
}

export const TRAIN_TARGETS: ReadonlyMap<string, GradientTarget> = new Map([refGradients, cudaGradients(cudaTrainDevice)].map((t) => [t.name, t]));

/**
 * The gradient target called `name`, or a UserError naming those there are; with `gemm` (--gemm), the
 * target multiplying those operands (a UserError where it has no choice).
 */
export function trainTarget(name: string, gemm?: TrainGemm): GradientTarget {
  const t = TRAIN_TARGETS.get(name);
  if (!t) throw new UserError(`unknown target '${name}' for training; available: ${[...TRAIN_TARGETS.keys()].join(', ')}`);
  if (gemm === undefined) return t;
  if (!t.withGemm) throw new UserError(`--gemm ${gemm}: --target ${name} multiplies in f32 only; --gemm chooses for ${[...TRAIN_TARGETS.values()].filter((x) => x.withGemm).map((x) => `--target ${x.name}`).join(', ')}`);
  return t.withGemm(gemm);
}
