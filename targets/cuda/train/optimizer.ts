// The optimizer step on the device: global-norm clipping and AdamW over the CUDA training executor's
// params and gradients where they live (executor.ts), so a training step copies neither weights nor
// gradients to the host — only the loss and the gradient norm (one f32 each) come back.
//
// Semantics are driver/trainer.ts's host step: clipGlobalNorm (src/train/clip-grad.ts) over every
// gradient, then AdamW.step (src/train/adamw.ts) at the schedule's learning rate, t counting steps.
// The kernels: train-clip.ts (gradSumSquares per gradient, then clipScale: the scale stays on the
// device and AdamW multiplies each gradient element by it as it reads it; the gradients are not
// changed) and train-adamw.ts (the weights are the executor's param buffers, updated in place; m and
// v zeroed once, stored by opts.stateDType (src/train/adamw.ts): 'f32' f32 weights and moments;
// 'bf16' f32 weights, bf16 moments (2 bytes an element); 'bf16-params' the params the executor stores
// bf16 (executor.ts bf16Params, built with the same optimizerState) on the all-bf16 kernel, state
// 'bf16': param, m, v bf16, the gradient f32, the others as in 'bf16'). Which params decay is
// adamw.ts's rule (adamwParams), the step's scalars adamwHyper's (one 32-byte upload a step into the
// hyper buffer).
//
// Padding: every tensor is rows of pad8(width) (values.ts). The kernels take it as one flat vector
// of rows · pad8(width) elements; the gradient's padding (never written by the training kernels) is
// zeroed first (train-pad-zero.ts), so it adds nothing to the norm, and the zero padding of the param
// and of m, v stays zero (AdamW of g = m = v = p = 0 is 0).
//
// Numerics against the host: the host computes AdamW's element update in f64 and rounds to f32, sums
// the norm in f64; the kernels do every operation in f32 (IEEE-rounded) and sum the norm as a fixed
// tree. Both are deterministic: the same gradients give the same bits on every run of either.
//
// Use, per training step (the Trainer's order, so a diverged step changes nothing):
//   ex.launch(inputs); loss = ex.loss(); norm = opt.clipGradients();
//   (check loss and norm are finite) opt.update(lr)
// or opt.step(lr) for the last two. state()/load() carry t and the moments (AdamWState, as
// src/train/train-state.ts saves them: f32 arrays in either mode; bf16 moments are widened exactly on
// download and rounded to nearest even on upload, as adamw.ts's load() rounds them); the weights are
// ex.weights() / ex.setWeights().
import { adamwHyperParams, adamwMomentDType as modeMomentDType, adamwParams, adamwStoresBf16Params, checkAdamWState, type AdamWOptions, type AdamWState, type AdamWStateDType } from '../../../src/train/adamw.js';
import { bf16ToF32, f32ToBf16 } from '../../../src/util/dtype.js';
import { gradOutputs } from '../../../passes/autodiff.js';
import type { Kernel } from '../ptx/dense.js';
import { pad8 } from '../ptx/layout.js';
import { adamw, ADAMW_HYPER, ADAMW_THREADS, adamwGrid, adamwHyper, adamwMomentDType, type AdamWKernelSpec } from '../ptx/train-adamw.js';
import { CLIP_THREADS, clipPlan, clipScale, gradSumSquares } from '../ptx/train-clip.js';
import { hasPadding, PAD_ZERO_THREADS, padZero, padZeroGrid } from '../ptx/train-pad-zero.js';
import { ptrAdd, type DevPtr, type TrainDevice } from './device.js';
import type { CudaTrainingExecutor, DeviceTensor } from './executor.js';
import { padRows, unpadRows } from './values.js';

export interface CudaOptimizerOptions extends AdamWOptions {
  /** Global gradient-norm limit, as the Trainer's `clip`: 0 turns clipping off (the norm is then not computed: NaN). */
  maxNorm: number;
}

interface Slot {
  name: string;
  /** Elements in the host layout (AdamWState's arrays). */
  size: number;
  decays: boolean;
  param: DeviceTensor;
  grad: DeviceTensor;
  m: DevPtr;
  v: DevPtr;
  /** Elements on the device, padding included: what the kernels run over. */
  n: number;
  /** How m and v are stored: the AdamW kernel's (train-adamw.ts adamwMomentDType of its spec). */
  moments: 'f32' | 'bf16';
  /** This gradient's first slot in the clip partials. */
  first: number;
  blocks: number;
  /** Its AdamW kernel (decaying or not), and the kernel zeroing its gradient's padding (none without padding). */
  adamw: Kernel;
  padZero?: Kernel;
}

const F32_ONE = 0x3f800000, F32_NAN = 0x7fc00000;

export class CudaOptimizer {
  private readonly slots: Slot[];
  private readonly hp: ReturnType<typeof adamwHyperParams>;
  private readonly dev: TrainDevice;
  private readonly partials: DevPtr;
  private readonly partialCount: number;
  /** [scale, norm] f32: what clipScale writes and the AdamW kernel reads (scale). */
  private readonly clipOut: DevPtr;
  private readonly hyper: DevPtr;
  /** How m and v are stored on the device (adamw.ts's stateDType). */
  readonly stateDType: AdamWStateDType;
  private readonly sumsq = gradSumSquares('f32');
  private readonly scale = clipScale();
  private t = 0;
  /** Whether this step's gradients have had their padding zeroed and their clip scale computed. */
  private ready = false;

  /** State for every trainable param of ex's graph (the gradient outputs, in order), moments zero. */
  constructor(private readonly ex: CudaTrainingExecutor, readonly opts: CudaOptimizerOptions) {
    if (!(opts.maxNorm >= 0 && Number.isFinite(opts.maxNorm))) throw new Error(`CudaOptimizer: maxNorm ${opts.maxNorm} must be a finite number ≥ 0 (0: no clipping)`);
    this.hp = adamwHyperParams(opts);
    this.stateDType = opts.stateDType ?? 'f32';
    // 'bf16-params': the executor stores the params it decided (executor.ts bf16Params: bf16ParamsInMode) bf16; it must have
    // been built for the same mode, so the two agree on which.
    if (adamwStoresBf16Params(this.stateDType) !== adamwStoresBf16Params(ex.optimizerState)) {
      throw new Error(`CudaOptimizer: optimizer state '${this.stateDType}' on an executor built for '${ex.optimizerState}' (TrainingExecutorOptions.optimizerState must match)`);
    }
    this.dev = ex.dev;
    const grads = gradOutputs(ex.g);
    const shapes = new Map(ex.g.params.map((p) => [p.name, p.type.shape as number[]]));
    const decided = adamwParams(grads.map(({ param }) => ({ name: param, size: shapes.get(param)!.reduce((a, b) => a * b, 1), shape: shapes.get(param)! })), opts);
    const tensors = grads.map(({ param, output }) => ({ param: ex.paramTensor(param), grad: ex.valueTensor(output) }));
    const plan = clipPlan(tensors.map(({ param }) => param.rows * pad8(param.width)));
    this.slots = decided.map((d, i) => {
      const { param, grad } = tensors[i]!;
      if (grad.rows !== param.rows || grad.width !== param.width) throw new Error(`CudaOptimizer: gradient of @${d.name} is [${grad.rows}, ${grad.width}], the param [${param.rows}, ${param.width}]`);
      // a bf16 param: the all-bf16 kernel (param, m, v bf16); else f32 master weights with the mode's moments
      const spec: AdamWKernelSpec = param.dtype === 'bf16'
        ? { state: 'bf16', grad: 'f32', decays: d.decays }
        : { state: 'f32', grad: 'f32', decays: d.decays, ...(modeMomentDType(this.stateDType) === 'bf16' ? { moments: 'bf16' as const } : {}) };
      const moments = adamwMomentDType(spec);
      const n = param.rows * pad8(param.width), bytes = (moments === 'bf16' ? 2 : 4) * n;
      const m = this.dev.alloc(bytes), v = this.dev.alloc(bytes);
      this.dev.fill(m, bytes, 0);
      this.dev.fill(v, bytes, 0);
      const kernels = { adamw: adamw(spec), ...(hasPadding(param.width) ? { padZero: padZero(param.width) } : {}) };
      return { ...d, param, grad, m, v, n, moments, first: plan.first[i]!, blocks: plan.blocks[i]!, ...kernels };
    });
    this.partialCount = plan.count;
    this.partials = this.dev.alloc(4 * Math.max(1, plan.count));
    this.clipOut = this.dev.alloc(8);
    this.dev.fill(this.clipOut, 4, F32_ONE); // the scale without clipping, never rewritten then
    this.dev.fill(ptrAdd(this.clipOut, 4), 4, F32_NAN); // the norm without clipping
    this.hyper = this.dev.alloc(4 * ADAMW_HYPER.length);
  }

  /** Steps taken so far (AdamW's t after the last update). */
  get stepCount(): number {
    return this.t;
  }

  /** The params this optimizer updates, with whether each takes weight decay (as AdamW.params()). */
  params(): Array<{ name: string; size: number; decays: boolean }> {
    return this.slots.map(({ name, size, decays }) => ({ name, size, decays }));
  }

  /** The distinct kernels a step launches (for assembling them ahead, e.g. with ptxas). */
  get kernels(): Kernel[] {
    const ks = this.slots.flatMap((s) => (s.padZero ? [s.padZero, s.adamw] : [s.adamw]));
    if (this.opts.maxNorm > 0) ks.push(this.sumsq, this.scale);
    return [...new Map(ks.map((k) => [k.name, k])).values()];
  }

  /**
   * First half of a step, after the executor's launch: zeroes the gradients' padding and, with
   * clipping on, computes the global norm and the clip scale on the device. Returns the norm before
   * clipping (one f32 downloaded), or NaN when maxNorm is 0, as the Trainer reports it.
   */
  clipGradients(): number {
    for (const s of this.slots) {
      if (s.padZero) this.dev.launch(s.padZero, padZeroGrid(s.grad.rows), PAD_ZERO_THREADS, [{ ptr: s.grad.ptr }, { u32: s.grad.rows }]);
    }
    this.ready = true;
    if (this.opts.maxNorm === 0) return NaN;
    for (const s of this.slots) this.dev.launch(this.sumsq, [s.blocks, 1, 1], CLIP_THREADS, [{ ptr: this.partials }, { ptr: s.grad.ptr }, { u32: s.n }, { u32: s.first }]);
    this.dev.launch(this.scale, [1, 1, 1], CLIP_THREADS, [{ ptr: this.clipOut }, { ptr: this.partials }, { u32: this.partialCount }, { f32: this.opts.maxNorm }]);
    return this.dev.download(this.clipOut, new Float32Array(2))[1]!;
  }

  /** Second half: AdamW step t + 1 at learning rate lr on every param, in place, each gradient times the clip scale. */
  update(lr: number): void {
    if (!Number.isFinite(lr) || lr < 0) throw new Error(`AdamW: learning rate ${lr} is not a finite number ≥ 0`);
    if (!this.ready) throw new Error('CudaOptimizer: update() before clipGradients() on this step\'s gradients');
    this.ready = false;
    this.dev.upload(this.hyper, adamwHyper(this.hp, lr, ++this.t));
    for (const s of this.slots) {
      this.dev.launch(s.adamw, adamwGrid(s.n), ADAMW_THREADS, [
        { ptr: s.param.ptr }, { ptr: s.m }, { ptr: s.v }, { ptr: s.grad.ptr }, { ptr: 0 }, { ptr: this.hyper }, { ptr: this.clipOut }, { u32: s.n },
      ]);
    }
  }

  /** clipGradients() then update(lr); returns the norm before clipping (NaN without clipping). */
  step(lr: number): number {
    const norm = this.clipGradients();
    this.update(lr);
    return norm;
  }

  /** A copy of the state (moments downloaded, host layout; the step count), for a checkpoint. */
  state(): AdamWState {
    const get = (s: Slot, p: DevPtr) => unpadRows(this.downloadMoment(s, p), s.param.rows, s.param.width);
    return { step: this.t, m: new Map(this.slots.map((s) => [s.name, get(s, s.m)])), v: new Map(this.slots.map((s) => [s.name, get(s, s.v)])) };
  }

  /** Replaces the state with `st` (from state() or a checkpoint): exactly this optimizer's params, of their sizes, or it throws. */
  load(st: AdamWState): void {
    checkAdamWState(st, this.slots);
    for (const s of this.slots) {
      this.uploadMoment(s, s.m, padRows(st.m.get(s.name)!, s.param.rows, s.param.width));
      this.uploadMoment(s, s.v, padRows(st.v.get(s.name)!, s.param.rows, s.param.width));
    }
    this.t = st.step;
    this.ready = false;
  }

  /** Slot s's moment at p (s.n elements), as f32 (bf16 ones widened, exactly). */
  private downloadMoment(s: Slot, p: DevPtr): Float32Array {
    if (s.moments === 'f32') return this.dev.download(p, new Float32Array(s.n));
    return Float32Array.from(this.dev.download(p, new Uint16Array(s.n)), bf16ToF32);
  }

  /** Uploads f32 moments to slot s's p in its dtype (bf16: rounded to nearest even). */
  private uploadMoment(s: Slot, p: DevPtr, x: Float32Array): void {
    this.dev.upload(p, s.moments === 'f32' ? x : Uint16Array.from(x, f32ToBf16));
  }

  /** Bytes of m and v together on the device (padding included; 2 or 4 an element by each slot's moment dtype). */
  get momentBytes(): number {
    return this.slots.reduce((a, s) => a + 2 * (s.moments === 'bf16' ? 2 : 4) * s.n, 0);
  }

  /** Frees the optimizer's buffers (not the executor's). */
  dispose(): void {
    for (const p of [...this.slots.flatMap((s) => [s.m, s.v]), this.partials, this.clipOut, this.hyper]) this.dev.free(p);
  }
}
