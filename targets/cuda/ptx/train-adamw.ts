// AdamW fused: one elementwise kernel a parameter tensor updates the parameter and both moments in
// one pass, the update of src/train/adamw.ts (the oracle; torch.optim.AdamW's, decoupled weight decay
// and bias correction), per element i:
//   g = grad[i] · clip                          (clip: the scale train-clip.ts left on the device)
//   p = param[i] · keep                         (keep = 1 − lr·wd; only for a tensor that decays)
//   m = m + (g − m)·(1 − β1);  v = β2·v + (1 − β2)·g²
//   param[i] = p − stepSize · m / (√v / bc2Sqrt + ε),  stepSize = lr / (1 − β1^t), bc2Sqrt = √(1 − β2^t)
// Every operation is an IEEE-rounded f32 one (.rn: ptxas may not contract or approximate it), on the
// f32 values adamw.ts computes each step's scalars from (adamwHyper, in f64 like adamw.ts, then f32).
//
// Modes (AdamWKernelSpec.state):
//   'f32'  f32 master weights: param, m, v f32; with bf16Copy the new parameter is also written as
//          bf16 to `copy` (the forward's weight for the tensor-core GEMMs).
//   'bf16' param, m, v stored bf16: src/train/adamw.ts's stateDType 'bf16-params' for a bf16 param,
//          its oracle. Loaded to f32, updated in f32; m and v rounded to bf16 and stored, and the
//          update reads those ROUNDED values (as in the mode below: one rule for bf16 moments); the
//          new parameter, an f32 value, stored rounded to nearest even (cvt.rn.bf16.f32).
//   'f32' with moments 'bf16': f32 master weights, m and v stored bf16 (half their memory; the
//          paper's measurement setup keeps AdamW state in bf16): src/train/adamw.ts's stateDType
//          'bf16', its oracle. m and v are loaded from bf16, updated in f32, rounded to bf16 (RNE,
//          cvt.rn.bf16.f32) and stored, and the parameter's update reads those ROUNDED values (widened
//          back exactly), as adamw.ts's reads its stored moments.
// The gradient is f32 or bf16 (AdamWKernelSpec.grad), independently.
//
// Params: param, m, v, grad, copy (read only with bf16Copy; else may be 0), hyper (ADAMW_HYPER f32
// words, see adamwHyper), clip (one f32), n (elements). The step's scalars live in device memory, not
// in kernel parameters, so one captured CUDA graph serves every step: the host writes the 32 bytes of
// adamwHyper before a step. Grid adamwGrid(n), ADAMW_THREADS threads, one element a thread.
import { KernelBuilder } from './builder.js';
import type { Kernel } from './dense.js';
import { loadF32, storeF32 } from './train-reduce.js';

export const ADAMW_THREADS = 256;

export interface AdamWKernelSpec {
  state: 'f32' | 'bf16';
  grad: 'f32' | 'bf16';
  /** Takes weight decay (adamw.ts: tensors of two or more dimensions by default). */
  decays: boolean;
  /** state 'f32' only: also write the new parameter as bf16 to `copy`. */
  bf16Copy?: boolean;
  /** state 'f32' only: how m and v are stored (default f32; state 'bf16' stores them bf16 always). */
  moments?: 'f32' | 'bf16';
}

/** The dtype the kernel for `s` stores m and v in. */
export const adamwMomentDType = (s: AdamWKernelSpec): 'f32' | 'bf16' => (s.state === 'bf16' ? 'bf16' : s.moments ?? 'f32');

export const adamwGrid = (n: number): [number, number, number] => [Math.ceil(n / ADAMW_THREADS), 1, 1];

/** The hyper buffer's words, in order. */
export const ADAMW_HYPER = ['stepSize', 'bc2Sqrt', 'oneMinusBeta1', 'beta2', 'oneMinusBeta2', 'eps', 'keep', 'unused'] as const;

/**
 * The f32 words of the hyper buffer for step `t` (1 on the first) at learning rate `lr`: the scalars
 * src/train/adamw.ts's step computes in f64 (as torch does, from Python floats), rounded to f32.
 */
export function adamwHyper(o: { beta1: number; beta2: number; eps: number; weightDecay: number }, lr: number, t: number): Float32Array {
  if (!(Number.isInteger(t) && t >= 1)) throw new Error(`adamwHyper: step ${t} must be an integer ≥ 1`);
  const words: Record<(typeof ADAMW_HYPER)[number], number> = {
    stepSize: lr / (1 - o.beta1 ** t),
    bc2Sqrt: Math.sqrt(1 - o.beta2 ** t),
    oneMinusBeta1: 1 - o.beta1,
    beta2: o.beta2,
    oneMinusBeta2: 1 - o.beta2,
    eps: o.eps,
    keep: 1 - lr * o.weightDecay,
    unused: 0,
  };
  return Float32Array.from(ADAMW_HYPER, (k) => words[k]);
}

export function adamwName(s: AdamWKernelSpec): string {
  if (s.bf16Copy && s.state !== 'f32') throw new Error('PTX generator bug: a bf16 copy of bf16 parameters');
  if (s.moments && s.state !== 'f32') throw new Error('PTX generator bug: a moment dtype for bf16 parameters (their moments are bf16)');
  return `adamw_${s.state}${s.moments === 'bf16' ? '_mbf16' : ''}_g${s.grad}${s.decays ? '_wd' : ''}${s.bf16Copy ? '_copy' : ''}`;
}

export function adamw(s: AdamWKernelSpec): Kernel {
  const name = adamwName(s);
  const k = new KernelBuilder(name, [...['param', 'm', 'v', 'grad', 'copy', 'hyper', 'clip'].map((n) => ({ name: n, type: 'u64' as const })), { name: 'n', type: 'u32' as const }]);
  k.blockSize(ADAMW_THREADS);
  const param = k.ptrParam('param'), mP = k.ptrParam('m'), vP = k.ptrParam('v'), grad = k.ptrParam('grad'), hyper = k.ptrParam('hyper'), clip = k.ptrParam('clip');
  const n = k.u32Param('n');
  const tid = k.special('%tid.x', 'tid'), bx = k.special('%ctaid.x', 'bx');
  const i = k.reg('u32', 'i'), out = k.reg('pred', 'out'), done = k.label('done');
  k.emit(`mad.lo.u32 ${i}, ${bx}, ${ADAMW_THREADS}, ${tid}`, `setp.ge.u32 ${out}, ${i}, ${n}`, `@${out} bra ${done}`);
  const h = Object.fromEntries(ADAMW_HYPER.map((w) => [w, k.reg('f32', w)])) as Record<(typeof ADAMW_HYPER)[number], string>;
  ADAMW_HYPER.forEach((w, j) => {
    if (w !== 'unused' && (w !== 'keep' || s.decays)) k.emit(`ld.global.f32 ${h[w]}, [${hyper}+${4 * j}]`);
  });
  const md = adamwMomentDType(s), roundMoments = md === 'bf16'; // bf16 moments: the update reads the stored (rounded) values
  const pa = k.addr(param, i, s.state === 'f32' ? 4 : 2), ma = k.addr(mP, i, md === 'f32' ? 4 : 2), va = k.addr(vP, i, md === 'f32' ? 4 : 2);
  const g = k.reg('f32', 'g'), scale = k.reg('f32', 'scale'), p = k.reg('f32', 'p'), m = k.reg('f32', 'm'), v = k.reg('f32', 'v');
  loadF32(k, s.grad, k.addr(grad, i, s.grad === 'f32' ? 4 : 2), g);
  loadF32(k, s.state, pa, p);
  loadF32(k, md, ma, m);
  loadF32(k, md, va, v);
  k.emit(`ld.global.f32 ${scale}, [${clip}]`, `mul.rn.f32 ${g}, ${g}, ${scale}`);
  if (s.decays) k.emit(`mul.rn.f32 ${p}, ${p}, ${h.keep}`);
  const d = k.reg('f32', 'd'), den = k.reg('f32', 'den'), u = k.reg('f32', 'u');
  k.emit(`sub.rn.f32 ${d}, ${g}, ${m}`, `fma.rn.f32 ${m}, ${d}, ${h.oneMinusBeta1}, ${m}`);
  k.emit(`mul.rn.f32 ${d}, ${h.oneMinusBeta2}, ${g}`, `mul.rn.f32 ${d}, ${d}, ${g}`, `fma.rn.f32 ${v}, ${v}, ${h.beta2}, ${d}`);
  if (roundMoments) {
    storeRoundedBf16(k, ma, m);
    storeRoundedBf16(k, va, v);
  }
  k.emit(`sqrt.rn.f32 ${den}, ${v}`, `div.rn.f32 ${den}, ${den}, ${h.bc2Sqrt}`, `add.rn.f32 ${den}, ${den}, ${h.eps}`);
  k.emit(`mul.rn.f32 ${u}, ${h.stepSize}, ${m}`, `div.rn.f32 ${u}, ${u}, ${den}`, `sub.rn.f32 ${p}, ${p}, ${u}`);
  storeF32(k, s.state, pa, p);
  if (!roundMoments) {
    storeF32(k, md, ma, m);
    storeF32(k, md, va, v);
  }
  if (s.bf16Copy) storeF32(k, 'bf16', k.addr(k.ptrParam('copy'), i, 2), p);
  k.place(done);
  return { name, text: k.render() };
}

/**
 * Rounds the f32 register `x` to bf16 (nearest even), stores those 16 bits at `a`, and leaves `x`
 * holding the stored value exactly (the bits shifted back up; cvt.u32.u16 zero-extends the .b16
 * register, which PTX's relaxed type rules let a .u16 operand be).
 */
function storeRoundedBf16(k: KernelBuilder, a: string, x: string): void {
  const h = k.reg('b16', 'h'), w = k.reg('u32', 'w');
  k.emit(`cvt.rn.bf16.f32 ${h}, ${x}`, `st.global.b16 [${a}], ${h}`, `cvt.u32.u16 ${w}, ${h}`, `shl.b32 ${w}, ${w}, 16`, `mov.b32 ${x}, ${w}`);
}
