// The distillation loss chunked over the vocabulary (targets/cuda/ptx/train-kl.ts): klFold over every
// slab of the student's logits, klFinalize, klGrad over every slab, against targets/ref/train-kernels.ts
// klDiv and klDivGrad (the oracle) on the whole [T, V] logits:
// - without a GPU: the three kernels assemble for sm_80 and sm_90 with no local memory; the PTX
//   interpreter runs them on small awkward shapes (T = 1 and V = 1; V not a multiple of 8, of the
//   chunk or of the block; a chunk wider than the block; slabs of one column; rows with target −1;
//   a batch with no counted row; slabs folded out of order; a row offset by +60 so an unshifted exp
//   would overflow; a teacher close to the student, so the loss is a small difference), τ = 1 and 2;
// - on the GPU machine (simAndGpu): the same cases, and T = 512, V = 32000 (the 1B preset's
//   vocabulary) as the executor runs it (one slab) and in slabs of 8192.
// The teacher is the whole [T, pad8(V)] matrix, the student a [T, pad8(c)] slab; every padding column
// of both is NaN (a read of it shows), and state, loss and the gradient are poisoned with NaN (a
// skipped write shows); one case writes the gradient over the slab in place.
// Tolerances (f32 kernels vs the float64 ref): with A = max |logit|/τ, a row's terms are of size up to
// 2A + ln V, each rounded and summed in f32 and exponentiated by ex2.approx (relative ~2^-22, exact in
// the interpreter): loss within 1e-5·τ²·(1 + 2A + ln V); ls, lt within 1e-5·(1 + |value|). A gradient
// element τ·(ps − pt)·dloss/n is a difference of two probabilities, each off by its relative error,
// about that of its log-sum-exp: within (1e-5 + 1e-6·L)·τ·|dloss|/n·(ps + pt) plus 1e-5·|value|, L the
// row's largest |lse| (ps, pt from a float64 softmax here, used only to scale the tolerance); an
// uncounted row's gradient exactly 0.
import test, { type ExecutionContext } from 'ava';
import { ceFinalizeGrid, ceRowGrid, LOSS_THREADS } from '../../targets/cuda/ptx/train-loss.js';
import { klFinalize, klFold, klGrad, KL_STATE_WORDS } from '../../targets/cuda/ptx/train-kl.js';
import { pad8 } from '../../targets/cuda/ptx/layout.js';
import { crossEntropy, klDiv, klDivGrad } from '../../targets/ref/train-kernels.js';
import { rng, randomFrom } from '../helpers/random.js';
import { assertEachAssembles } from '../helpers/ptxas.js';
import { cudaDeviceRequirement, findPtxas, ptxasRequirement, testsNeeding } from '../helpers/requires.js';
import { gpuDev, simDev, type Dev } from '../helpers/train-dev.js';
import { freeAll } from '../helpers/cuda.js';
import { padRows, simAndGpu, type Where } from '../helpers/train-kernels.js';

const KERNELS = () => [klFold(), klFinalize(), klGrad()];

const ptxasTest = testsNeeding(ptxasRequirement(findPtxas()));
ptxasTest('distillation kernels assemble for sm_80 and sm_90, no local memory', (t) => {
  assertEachAssembles(t, KERNELS());
});

test('distillation kernels: deterministic text, no warp shuffles or atomics (the interpreter runs them)', (t) => {
  const a = KERNELS(), b = KERNELS();
  a.forEach((k, i) => t.is(k.text, b[i]!.text));
  t.deepEqual(a.map((k) => k.name), ['kl_fold', 'kl_finalize', 'kl_grad']);
  for (const k of a) t.notRegex(k.text, /shfl|vote|atom|\bred\./, k.name);
});

interface Case {
  T: number;
  V: number;
  chunk: number;
  tau: number;
  seed: number;
  /** Share of rows with target −1 (1: none counted). */
  ignored?: number;
  /** Fold the slabs after the first in reverse order. */
  reversed?: boolean;
  /** Add this to row 0's student and (minus 5) teacher logits. */
  offset?: number;
  /** The teacher is the student plus this much noise (a small KL). */
  close?: number;
  /** The gradient written over the student slab. */
  inPlace?: boolean;
  dloss?: number;
}

function inputs(c: Case) {
  const r = rng(c.seed);
  const student = randomFrom(c.T * c.V, r, 4);
  const teacher = c.close === undefined ? randomFrom(c.T * c.V, r, 4) : Float32Array.from(student, (x) => x + c.close! * r());
  if (c.offset) for (let v = 0; v < c.V; v++) (student[v]! += c.offset), (teacher[v]! += c.offset - 5);
  const targets = Int32Array.from({ length: c.T }, () => ((r() + 1) / 2 < (c.ignored ?? 0.25) ? -1 : Math.min(c.V - 1, Math.floor(((r() + 1) / 2) * c.V))));
  if (c.T > 1 && c.ignored !== 1) targets[0] = 0; // at least one counted row where there are rows to spare
  return { student, teacher, targets };
}

/** The slabs' column ranges, the first (v0 = 0) first. */
function slabs(c: Case): [number, number][] {
  const out: [number, number][] = [];
  for (let v0 = 0; v0 < c.V; v0 += c.chunk) out.push([v0, Math.min(c.chunk, c.V - v0)]);
  return c.reversed ? [out[0]!, ...out.slice(1).reverse()] : out;
}

/** Runs fold, finalize and grad over every slab; returns what the kernels left. */
function runKl(dev: Dev, c: Case, student: Float32Array, teacher: Float32Array, targets: Int32Array) {
  const { T, V, tau } = c;
  const dloss = c.dloss ?? 1;
  const targetsP = dev.buf(targets), teacherP = dev.buf(padRows(teacher, T, V, NaN)), dlossP = dev.buf(Float32Array.of(dloss));
  const state = dev.nan(T * 4 * KL_STATE_WORDS), loss = dev.nan(8);
  const slabBufs = slabs(c).map(([v0, w]) => {
    const host = new Float32Array(T * w);
    for (let r = 0; r < T; r++) host.set(student.subarray(r * V + v0, r * V + v0 + w), r * w);
    return { v0, w, p: dev.buf(padRows(host, T, w, NaN)) };
  });
  for (const s of slabBufs) dev.run(klFold(), ceRowGrid(T), LOSS_THREADS, [{ ptr: state }, { ptr: s.p }, { ptr: teacherP }, { ptr: targetsP }, { u32: s.v0 }, { u32: s.w }, { u32: V }, { f32: tau }]);
  dev.run(klFinalize(), ceFinalizeGrid, LOSS_THREADS, [{ ptr: loss }, { ptr: state }, { ptr: targetsP }, { u32: T }, { f32: tau }]);
  const grad = new Float32Array(T * V).fill(NaN);
  let padding = 0; // padding elements not exactly +0
  for (const s of slabBufs) {
    const ld = pad8(s.w);
    const dst = c.inPlace ? s.p : dev.nan(T * ld * 4);
    dev.run(klGrad(), ceRowGrid(T), LOSS_THREADS, [{ ptr: dst }, { ptr: s.p }, { ptr: teacherP }, { ptr: state }, { ptr: loss }, { ptr: dlossP }, { ptr: targetsP }, { u32: s.v0 }, { u32: s.w }, { u32: V }, { f32: tau }]);
    const raw = dev.get(dst, new Float32Array(T * ld));
    for (let r = 0; r < T; r++) {
      for (let j = 0; j < ld; j++) {
        const g = raw[r * ld + j]!;
        if (j < s.w) grad[r * V + s.v0 + j] = g;
        else if (!Object.is(g, 0)) padding++;
      }
    }
  }
  const lossWords = dev.get(loss, new Uint32Array(2));
  return { loss: new Float32Array(lossWords.buffer)[0]!, n: lossWords[1]!, rows: dev.get(state, new Float32Array(T * KL_STATE_WORDS)), grad, padding, dloss };
}

/** A row's log-sum-exp of x/τ from the ref's cross-entropy (τ a power of two: x/τ is exact in f32). */
function refLse(row: Float32Array, tau: number): number {
  const scaled = row.map((x) => x / tau);
  return crossEntropy(scaled, Int32Array.of(0))[0]! + scaled[0]!;
}

const maxAbs = (x: Float32Array) => x.reduce((m, v) => Math.max(m, Math.abs(v)), 0);

/** softmax(x/τ) in float64: only the gradient's tolerance scale. */
function softmax(row: Float32Array, tau: number): Float64Array {
  const m = row.reduce((a, x) => Math.max(a, x / tau), -Infinity);
  const e = Float64Array.from(row, (x) => Math.exp(x / tau - m));
  const s = e.reduce((a, b) => a + b, 0);
  return e.map((x) => x / s);
}

function checkKl(t: ExecutionContext, dev: Dev, c: Case) {
  const { T, V, tau } = c;
  const { student, teacher, targets } = inputs(c);
  const got = runKl(dev, c, student, teacher, targets);
  const n = targets.filter((x) => x >= 0).length;
  t.is(got.n, n, 'counted rows');
  const A = Math.max(maxAbs(student), maxAbs(teacher)) / tau;
  const want = klDiv(student, teacher, targets, tau)[0]!;
  const lossTol = 1e-5 * tau * tau * (1 + 2 * A + Math.log(V));
  t.true(Math.abs(got.loss - want) <= lossTol, `loss ${got.loss} vs ref ${want} (tol ${lossTol.toExponential(2)})`);
  let badRows = 0, L = 0;
  for (let r = 0; r < T; r++) {
    const w = got.rows.subarray(r * KL_STATE_WORDS, (r + 1) * KL_STATE_WORDS);
    if (targets[r]! < 0) {
      if (!w.every(Number.isNaN)) badRows++; // never written
      continue;
    }
    const rs = student.subarray(r * V, (r + 1) * V), rt = teacher.subarray(r * V, (r + 1) * V);
    const [ls, lt] = [refLse(rs, tau), refLse(rt, tau)];
    L = Math.max(L, Math.abs(ls), Math.abs(lt));
    const wantRow = klDiv(rs, rt, Int32Array.of(0), tau)[0]!;
    const near = (g: number, x: number, tol: number) => Math.abs(g - x) <= tol;
    if (!(near(w[0]!, ls, 1e-5 * (1 + Math.abs(ls))) && near(w[2]!, lt, 1e-5 * (1 + Math.abs(lt))) && near(w[4]!, wantRow, lossTol))) badRows++;
  }
  t.is(badRows, 0, 'rows whose (ls, lt, loss) is off, or uncounted rows written');
  const wantG = klDivGrad(student, teacher, targets, Float32Array.of(got.dloss), tau);
  const scale = n ? (tau * Math.abs(got.dloss)) / n : 0, rel = 1e-5 + 1e-6 * L;
  let bad = 0, worst = 0;
  for (let r = 0; r < T; r++) {
    const ps = softmax(student.subarray(r * V, (r + 1) * V), tau), pt = softmax(teacher.subarray(r * V, (r + 1) * V), tau);
    for (let v = 0; v < V; v++) {
      const i = r * V + v, g = got.grad[i]!, x = wantG[i]!;
      if (targets[r]! < 0) {
        if (!Object.is(g, 0) && !Object.is(g, -0)) bad++;
        continue;
      }
      const tol = rel * scale * (ps[v]! + pt[v]!) + 1e-5 * Math.abs(x), err = Math.abs(g - x);
      if (!(err <= tol)) bad++;
      worst = Math.max(worst, err / Math.max(tol, 1e-30));
    }
  }
  t.is(bad, 0, `${bad} of ${wantG.length} gradient elements off (NaN: unwritten); worst ${worst.toExponential(2)} of the tolerance`);
  t.is(got.padding, 0, 'padding columns of the gradient not zeroed');
}

const title = (c: Case) => `distillation chunked: T=${c.T} V=${c.V} chunk ${c.chunk} tau ${c.tau}${c.reversed ? ' reversed' : ''}${c.inPlace ? ' in place' : ''}${c.ignored === 1 ? ' no counted row' : ''}${c.close !== undefined ? ' close teacher' : ''} vs ref`;
const devFor = (where: Where) => (where === 'sim' ? simDev() : gpuDev());

const CASES: Case[] = [
  { T: 5, V: 37, chunk: 16, tau: 1, seed: 1 }, // slabs 16, 16, 5 (a tail narrower than a chunk of 8)
  { T: 3, V: 300, chunk: 272, tau: 2, seed: 2, offset: 60, dloss: 0.75 }, // a slab wider than the block; a shifted row
  { T: 1, V: 1, chunk: 8, tau: 1, seed: 3, ignored: 0 }, // one logit: loss 0, gradient 0
  { T: 1, V: 13, chunk: 13, tau: 2, seed: 7, ignored: 0 }, // one row, one slab
  { T: 4, V: 20, chunk: 64, tau: 2, seed: 4, ignored: 1 }, // one slab narrower than the chunk; no counted row
  { T: 4, V: 30, chunk: 8, tau: 2, seed: 5, reversed: true, inPlace: true, dloss: -2 }, // slabs after the first out of order
  { T: 3, V: 5, chunk: 1, tau: 1, seed: 6 }, // slabs of one column
  { T: 6, V: 45, chunk: 45, tau: 1, seed: 8, close: 0.05, dloss: 3 }, // the executor's one slab; a small KL
];
for (const c of CASES) {
  simAndGpu(title(c), (where) => (t) => {
    const dev = devFor(where);
    t.teardown(() => dev.free());
    checkKl(t, dev, c);
  });
}

const cudaTest = testsNeeding(cudaDeviceRequirement());
const GPU_CASES: Case[] = [
  { T: 512, V: 32000, chunk: 32000, tau: 2, seed: 11 }, // the 1B preset's vocabulary, as the executor runs it
  { T: 512, V: 32000, chunk: 8192, tau: 1, seed: 12, reversed: true, offset: 60, dloss: 0.5 }, // slabs 8192 × 3 + 7424
];
for (const c of GPU_CASES) {
  cudaTest.serial(`${title(c)} (GPU)`, (t) => {
    t.teardown(freeAll);
    const dev = devFor('gpu');
    t.teardown(() => dev.free());
    checkKl(t, dev, c);
  });
}
