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
  m: Float32Array;
  v: Float32Array;
}

export class AdamW {
  readonly beta1: number;
  readonly beta2: number;
  readonly eps: number;
  readonly weightDecay: number;
  private slots: Slot[];
  private t = 0;

  constructor(params: readonly AdamWParam[], opts: AdamWOptions = {}) {
    ({ beta1: this.beta1, beta2: this.beta2, eps: this.eps, weightDecay: this.weightDecay } = adamwHyperParams(opts));
    this.slots = adamwParams(params, opts).map(({ name, size, decays }) => ({ name, size, decays, m: new Float32Array(size), v: new Float32Array(size) }));
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
    for (const s of this.slots) {
      const w = weights.get(s.name)!;
      const g = grads.get(s.name)!;
      const { m, v } = s;
      const keep = s.decays ? Math.fround(1 - lr * this.weightDecay) : 1;
      for (let i = 0; i < s.size; i++) {
        const gi = g[i]!;
        const p = Math.fround(w[i]! * keep);
        // Read back after storing: the moments are rounded to f32, as torch's are.
        m[i] = m[i]! + (gi - m[i]!) * (1 - b1);
        v[i] = v[i]! * b2 + (1 - b2) * gi * gi;
        const mi = m[i]!;
        const vi = v[i]!;
        w[i] = p - (stepSize * mi) / (Math.sqrt(vi) / bc2Sqrt + eps);
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
   * checks a checkpoint against its run, and says so to the user, before loading it).
   */
  load(st: AdamWState): void {
    checkAdamWState(st, this.slots);
    this.t = st.step;
    for (const s of this.slots) {
      s.m.set(st.m.get(s.name)!);
      s.v.set(st.v.get(s.name)!);
    }
  }
}
