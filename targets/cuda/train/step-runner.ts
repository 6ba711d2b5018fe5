// The training step kept on the device: the CUDA training executor (executor.ts) computes the loss
// and the gradients in its arena, the CUDA optimizer (optimizer.ts) clips them and runs AdamW on the
// executor's own param buffers (the master weights: f32, or bf16 where optimizer state 'bf16-params'
// stores them so) with its own moments. Nothing is copied per step but the inputs up, and the loss
// and the gradient norm (one f32 each) down; weights and moments come to the host only for a
// checkpoint or the end of a run (weights(), optimizerState()).
//
// This is driver/step-runner.ts's StepRunner for `--target cuda` (driver/gradient-backend.ts builds
// it), in the Trainer's order: gradients() = launch, loss, clipGradients (the norm); the Trainer checks
// both are finite; update(lr) = the AdamW kernels. A diverged step thus never reaches update() and
// leaves weights and moments as they were.
import type { AdamWState, AdamWStateDType } from '../../../src/train/adamw.js';
import type { Graph } from '../../../src/ir/types.js';
import type { TrainDevice } from './device.js';
import { CudaTrainingExecutor, type StepValues, type TrainingExecutorOptions } from './executor.js';
import { CudaOptimizer } from './optimizer.js';

export interface CudaStepRunnerInit {
  /** Every param of g, host layout (uploaded once). */
  weights: ReadonlyMap<string, Float32Array>;
  /** Rows (T = batch·seq) the executor is built for; every step has these. */
  rows: number;
  weightDecay: number;
  /** Global gradient-norm limit (0: no clipping, the norm is NaN). */
  maxNorm: number;
  /** How AdamW stores m and v on the device: 'f32' (default), 'bf16', or 'bf16-params' (bf16 weight matrices too: the executor is built for it; optimizer.ts). */
  stateDType?: AdamWStateDType;
}

export class CudaStepRunner {
  private readonly ex: CudaTrainingExecutor;
  private readonly opt: CudaOptimizer;

  /** The executor checks each step's inputs (dtype, shape) against the graph's; `executor`: its options (matmul, mocMatmul). */
  constructor(g: Graph, init: CudaStepRunnerInit, dev: TrainDevice, executor: TrainingExecutorOptions = {}) {
    this.ex = new CudaTrainingExecutor(g, init.weights, init.rows, dev, { ...executor, optimizerState: init.stateDType ?? 'f32' });
    try {
      this.opt = new CudaOptimizer(this.ex, { weightDecay: init.weightDecay, maxNorm: init.maxNorm, stateDType: init.stateDType ?? 'f32' });
    } catch (e) {
      this.ex.dispose();
      throw e;
    }
  }

  /** Bytes of the executor's one scratch buffer (what the memory plan's arena does not hold). */
  get scratchBytes(): number {
    return this.ex.scratchBytes;
  }

  /** Bytes of AdamW's m and v on the device (2 or 4 an element by the state dtype, padding included). */
  get momentBytes(): number {
    return this.opt.momentBytes;
  }

  /** Forward and backward, then the global norm before clipping: the two f32 a step downloads. */
  gradients(inputs: StepValues, rows: number): { loss: number; gradNorm: number } {
    if (rows !== this.ex.rows) throw new Error(`CudaStepRunner: a step of ${rows} rows on an executor built for ${this.ex.rows}`);
    this.ex.launch(inputs);
    const loss = this.ex.loss();
    return { loss, gradNorm: this.opt.clipGradients() };
  }

  /** AdamW at rate lr on every trainable param, each gradient times the clip scale gradients() left on the device. */
  update(lr: number): void {
    this.opt.update(lr);
  }

  /** Every param, downloaded (host layout). */
  weights(): Map<string, Float32Array> {
    return this.ex.weights();
  }

  /** The moments, downloaded, and the step count. */
  optimizerState(): AdamWState {
    return this.opt.state();
  }

  /** Uploads the weights (every param) and the optimizer state. */
  load(weights: ReadonlyMap<string, Float32Array>, state: AdamWState): void {
    this.ex.setWeights(weights);
    this.opt.load(state);
  }

  dispose(): void {
    this.opt.dispose();
    this.ex.dispose();
  }
}
