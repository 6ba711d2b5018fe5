// AdamW over f32 master weights, with torch.optim.AdamW's update (decoupled weight decay, bias correction):
//   p ← p − lr·wd·p                       (only for parameters that decay)
//   m ← β1·m + (1−β1)·g
//   v ← β2·v + (1−β2)·g²
//   p ← p − (lr / (1−β1^t)) · m / (√v / √(1−β2^t) + ε)
// t counts the steps taken (1 on the first). Moments are Float32Array, as torch keeps them for f32
// parameters; each element is computed in f64 and rounded to f32 when stored, so results agree with
// torch's f32 arithmetic to about 1e-7 relative (test/train/adamw-reference.test.ts holds it to 1e-6).
//
// Defaults are llama2.c's train.py (which nanoGPT shares): β1 0.9, β2 0.95, weight decay 0.1 on
// parameters of two or more dimensions (matrices, embeddings) and none on 1-D ones (norm weights,
// biases), as their configure_optimizers groups them; ε 1e-8, torch's default, which neither changes.
// Only the parameters given to the constructor get state; the rest (frozen) have none.
//
// Moment storage (AdamWOptions.stateDType), the one definition the CUDA kernel (targets/cuda/ptx/
// train-adamw.ts, master weights f32 with bf16 moments) is checked against:
//   'f32'  (default) as above: m and v are each computed in f64 and stored rounded to f32.
//   'bf16' m and v take half the memory (the paper's measurement setup keeps AdamW state in bf16).
//          Each is computed exactly as in 'f32' from the stored m, v (f64 arithmetic, rounded to f32),
//          then that f32 value is rounded to bf16, round to nearest even (src/util/dtype.ts
//          f32ToBf16; NaN stays NaN) and stored. The weight update then reads the STORED (bf16)
//          m and v, as it reads the stored f32 ones in 'f32' mode; the weight itself stays f32.
//          The double rounding f64 → f32 → bf16 is deliberate: it is what a kernel computing in f32
//          and storing bf16 does, so the two differ only where their f32 values differ (≤ 1 f32 ulp)
//          and that difference straddles a bf16 rounding boundary.
//   'bf16-params'  the paper's measurement setup, as PyTorch with bf16 parameters: the parameters named
//          in AdamWOptions.bf16Params (src/train/bf16-params.ts decides which: the weight matrices
//          only bf16 GEMMs read) are STORED bf16, every moment is bf16 as in 'bf16', the other
//          parameters (norm weights, an embedding table a gather reads) stay f32 as in 'bf16'.
//          For a bf16 parameter the update is 'bf16''s, element by element, from the stored bf16 value
//          (read rounded: a no-op for a stored value), and the new value, computed in f64 and rounded
//          to f32 as everywhere, is then rounded to bf16 (RNE) and stored — again the f64 → f32 → bf16
//          double rounding of a kernel that computes in f32 and stores bf16. Against torch's fused
//          AdamW on bf16 tensors (bench/gpu/torch_train.py uses fused=True): the same f32 arithmetic
//          (in torch partly f64: its lr·wd and β products are C++ doubles) and bf16 storage; two
//          stated differences: torch's update reads the unrounded f32 moments still in registers
//          (ours the stored bf16 ones, one rule for both bf16 modes), and torch's gradient of a bf16
//          parameter is bf16 (ours f32: the executor accumulates gradients in f32).
//          bench/gpu/check_adamw_bf16_params.py checks both against torch.
//   One list of modes: ADAMW_STATE_DTYPES (the CLI's --optimizer-state choices); what a mode stores
//   is adamwMomentDType / adamwStoresBf16Params.
//   state() gives, and load() takes, f32 arrays in every mode (checkpoints keep one format); in
//   'bf16' modes they hold bf16 values, and load() rounds what it is given to bf16 (a no-op for the
//   state of a bf16 run). The weights stay f32 arrays on the host in every mode: a bf16 parameter's
//   array holds bf16 values (roundBf16Params rounds a run's initial or loaded weights).

import { bf16ToF32, f32ToBf16 } from '../util/dtype.js';

/** How AdamW stores its moments m and v, and in 'bf16-params' its GEMM weights (the header says what each rounds when). */
export type AdamWStateDType = 'f32' | 'bf16' | 'bf16-params';
export const ADAMW_STATE_DTYPES: readonly AdamWStateDType[] = ['f32', 'bf16', 'bf16-params'];

/** The dtype m and v are stored in, in mode `d`. */
export const adamwMomentDType = (d: AdamWStateDType = 'f32'): 'f32' | 'bf16' => (d === 'f32' ? 'f32' : 'bf16');

/** Whether mode `d` stores the parameters of AdamWOptions.bf16Params as bf16. */
export const adamwStoresBf16Params = (d: AdamWStateDType = 'f32'): boolean => d === 'bf16-params';

/** x (an f32 value) rounded to bf16, round to nearest even, as an f32 value: what a 'bf16' moment stores. */
export const roundBf16 = (x: number): number => bf16ToF32(f32ToBf16(x));

/** Bytes one moment element takes in device memory in this mode (m and v each). */
export const adamwMomentBytes = (d: AdamWStateDType = 'f32'): number => (adamwMomentDType(d) === 'bf16' ? 2 : 4);

/** Rounds, in place, the arrays of `weights` named in `bf16Params` to bf16 (RNE): what a 'bf16-params' run stores of them. */
export function roundBf16Params(weights: ReadonlyMap<string, Float32Array>, bf16Params: ReadonlySet<string>): void {
  for (const name of bf16Params) {
    const w = weights.get(name);
    if (w) for (let i = 0; i < w.length; i++) w[i] = roundBf16(w[i]!);
  }
}

export interface AdamWParam {
  name: string;
  /** Number of f32 elements. */
  size: number;
  /** The parameter's shape; the default decay rule needs it (decay when it has ≥ 2 dimensions). */
  shape?: readonly number[];
}

export interface AdamWOptions {
  beta1?: number;
  beta2?: number;
  eps?: number;
  weightDecay?: number;
  /** Which parameters take weight decay; default: those whose shape has ≥ 2 dimensions. */
  decay?: (name: string) => boolean;
  /** How m and v are stored: 'f32' (default), 'bf16' or 'bf16-params' (see the header). */
  stateDType?: AdamWStateDType;
  /** 'bf16-params' only: the parameters stored bf16 (src/train/bf16-params.ts bf16StoredParams). */
  bf16Params?: ReadonlySet<string>;
}

/** The optimizer's state, what a checkpoint must keep to continue bit-exactly. */
export interface AdamWState {
  /** Steps taken so far (the bias correction's t after the last step). */
  step: number;
  /** First moments, by parameter name. */
  m: Map<string, Float32Array>;
  /** Second moments, by parameter name. */
  v: Map<string, Float32Array>;
}

export const ADAMW_DEFAULTS = { beta1: 0.9, beta2: 0.95, eps: 1e-8, weightDecay: 0.1 } as const;

/** β1, β2, ε and the weight decay of `opts` (defaults filled in), checked; the CUDA optimizer shares them. */
export function adamwHyperParams(opts: AdamWOptions = {}): { beta1: number; beta2: number; eps: number; weightDecay: number } {
  const beta1 = opts.beta1 ?? ADAMW_DEFAULTS.beta1;
  const beta2 = opts.beta2 ?? ADAMW_DEFAULTS.beta2;
  const eps = opts.eps ?? ADAMW_DEFAULTS.eps;
  const weightDecay = opts.weightDecay ?? ADAMW_DEFAULTS.weightDecay;
  for (const [k, x, lo, hi] of [['beta1', beta1, 0, 1], ['beta2', beta2, 0, 1]] as const) {
    if (!(x >= lo && x < hi)) throw new Error(`AdamW: ${k} ${x} is outside [${lo}, ${hi})`);
  }
  if (!(eps > 0) || !(weightDecay >= 0)) throw new Error(`AdamW: eps must be > 0 and weightDecay ≥ 0`);
  return { beta1, beta2, eps, weightDecay };
}

/**
 * The parameters `params` checked (distinct names, sizes matching shapes), each with whether it takes
 * weight decay: opts.decay's answer, else whether its shape has ≥ 2 dimensions. The CUDA optimizer
 * (targets/cuda/train/optimizer.ts) decides by this same function.
 */
export function adamwParams(params: readonly AdamWParam[], opts: AdamWOptions = {}): Array<{ name: string; size: number; decays: boolean }> {
  const seen = new Set<string>();
  return params.map((p) => {
    if (seen.has(p.name)) throw new Error(`AdamW: parameter ${p.name} given twice`);
    seen.add(p.name);
    if (!Number.isSafeInteger(p.size) || p.size < 0) throw new Error(`AdamW: parameter ${p.name} has size ${p.size}`);
    if (p.shape && p.shape.reduce((a, b) => a * b, 1) !== p.size) throw new Error(`AdamW: parameter ${p.name} has shape [${p.shape}] but size ${p.size}`);
    let decays: boolean;
    if (opts.decay) decays = opts.decay(p.name);
    else if (p.shape) decays = p.shape.length >= 2;
    else throw new Error(`AdamW: parameter ${p.name} has no shape, which the default decay rule needs; give its shape or a decay function`);
    return { name: p.name, size: p.size, decays };
  });
}

/**
 * Checks that `st` holds moments for exactly `params`, of their sizes, and a valid step count; else
 * throws an Error (a bug: the caller checks a checkpoint against its run before loading it).
 */
export function checkAdamWState(st: AdamWState, params: ReadonlyArray<{ name: string; size: number }>): void {
  if (!Number.isSafeInteger(st.step) || st.step < 0) throw new Error(`AdamW: state step ${st.step} is not an integer ≥ 0`);
  for (const [which, map] of [['m', st.m], ['v', st.v]] as const) {
    if (map.size !== params.length) throw new Error(`AdamW: state has ${which} for ${map.size} parameters, the optimizer has ${params.length}`);
    for (const s of params) {
      const a = map.get(s.name);
      if (!a || a.length !== s.size) throw new Error(`AdamW: state ${which} of ${s.name} is ${a ? `of size ${a.length}, not ${s.size}` : 'missing'}`);
    }
  }
}

interface Slot {
  name: string;
  size: number;
  decays: boolean;
  /** Stored bf16 ('bf16-params' mode, named in bf16Params). */
  bf16: boolean;
  m: Float32Array;
  v: Float32Array;
}

export class AdamW {
  readonly beta1: number;
  readonly beta2: number;
  readonly eps: number;
  readonly weightDecay: number;
  readonly stateDType: AdamWStateDType;
  private slots: Slot[];
  private t = 0;

  constructor(params: readonly AdamWParam[], opts: AdamWOptions = {}) {
    ({ beta1: this.beta1, beta2: this.beta2, eps: this.eps, weightDecay: this.weightDecay } = adamwHyperParams(opts));
    this.stateDType = opts.stateDType ?? 'f32';
    if (!ADAMW_STATE_DTYPES.includes(this.stateDType)) throw new Error(`AdamW: stateDType ${this.stateDType} is not one of ${ADAMW_STATE_DTYPES.join(', ')}`);
    const bf16Params = opts.bf16Params ?? new Set<string>();
    if (bf16Params.size && !adamwStoresBf16Params(this.stateDType)) throw new Error(`AdamW: bf16 parameters given in stateDType ${this.stateDType} (only 'bf16-params' stores them)`);
    this.slots = adamwParams(params, opts).map(({ name, size, decays }) => ({ name, size, decays, bf16: bf16Params.has(name), m: new Float32Array(size), v: new Float32Array(size) }));
    for (const n of bf16Params) if (!this.slots.some((s) => s.name === n)) throw new Error(`AdamW: bf16 parameter ${n} is not one it updates`);
  }

  /** The parameters it stores bf16 ('bf16-params' mode; else none). */
  get bf16Params(): ReadonlySet<string> {
    return new Set(this.slots.filter((s) => s.bf16).map((s) => s.name));
  }

  /** The parameters this optimizer updates, with whether each takes weight decay. */
  params(): Array<{ name: string; size: number; decays: boolean }> {
    return this.slots.map(({ name, size, decays }) => ({ name, size, decays }));
  }

  /**
   * One update of every parameter given to the constructor, in place in `weights`, at learning rate
   * `lr`. Every such parameter needs a weight and a gradient of its size (a missing one is a bug in
   * the caller: torch would skip it, and then its step count would differ from the others').
   */
  step(weights: Map<string, Float32Array>, grads: Map<string, Float32Array>, lr: number): void {
    if (!Number.isFinite(lr) || lr < 0) throw new Error(`AdamW: learning rate ${lr} is not a finite number ≥ 0`);
    for (const s of this.slots) {
      const w = weights.get(s.name);
      const g = grads.get(s.name);
      if (!w || w.length !== s.size) throw new Error(`AdamW: weight ${s.name} is ${w ? `of size ${w.length}, not ${s.size}` : 'missing'}`);
      if (!g || g.length !== s.size) throw new Error(`AdamW: gradient ${s.name} is ${g ? `of size ${g.length}, not ${s.size}` : 'missing'}`);
    }
    const t = ++this.t;
    const { beta1: b1, beta2: b2, eps } = this;
    // As torch computes them: Python floats (f64), applied to each f32 element.
    const stepSize = lr / (1 - b1 ** t);
    const bc2Sqrt = Math.sqrt(1 - b2 ** t);
    const bf16 = adamwMomentDType(this.stateDType) === 'bf16';
    for (const s of this.slots) {
      const w = weights.get(s.name)!;
      const g = grads.get(s.name)!;
      const { m, v } = s;
      const keep = s.decays ? Math.fround(1 - lr * this.weightDecay) : 1;
      for (let i = 0; i < s.size; i++) {
        const gi = g[i]!;
        const p = Math.fround((s.bf16 ? roundBf16(w[i]!) : w[i]!) * keep);
        // Read back after storing: the moments are rounded to f32, as torch's are (and then, in
        // 'bf16' mode, that f32 value to bf16: the header's rule).
        m[i] = m[i]! + (gi - m[i]!) * (1 - b1);
        v[i] = v[i]! * b2 + (1 - b2) * gi * gi;
        if (bf16) {
          m[i] = roundBf16(m[i]!);
          v[i] = roundBf16(v[i]!);
        }
        const mi = m[i]!;
        const vi = v[i]!;
        w[i] = p - (stepSize * mi) / (Math.sqrt(vi) / bc2Sqrt + eps);
        if (s.bf16) w[i] = roundBf16(w[i]!);
      }
    }
  }

  /** Steps taken so far. */
  get stepCount(): number {
    return this.t;
  }

  /** A copy of the state (moments and step count), for a checkpoint. */
  state(): AdamWState {
    return {
      step: this.t,
      m: new Map(this.slots.map((s) => [s.name, s.m.slice()])),
      v: new Map(this.slots.map((s) => [s.name, s.v.slice()])),
    };
  }

  /**
   * Replaces the state with a copy of `st` (from state() or a checkpoint). It must hold moments for
   * exactly this optimizer's parameters, of their sizes; else it throws an Error (a bug: the caller
   * checks a checkpoint against its run, and says so to the user, before loading it). In 'bf16' mode
   * the moments are rounded to bf16 as they are loaded.
   */
  load(st: AdamWState): void {
    checkAdamWState(st, this.slots);
    this.t = st.step;
    for (const s of this.slots) {
      s.m.set(st.m.get(s.name)!);
      s.v.set(st.v.get(s.name)!);
      if (adamwMomentDType(this.stateDType) === 'bf16') {
        for (const a of [s.m, s.v]) for (let i = 0; i < a.length; i++) a[i] = roundBf16(a[i]!);
      }
    }
  }
}
