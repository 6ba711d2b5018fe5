// Cross-entropy chunked over the vocabulary (targets/cuda/ptx/train-loss.ts): ceFold over every slab,
// ceFinalize, ceGrad over every slab, against targets/ref/train-kernels.ts crossEntropy and
// crossEntropyGrad (the oracle) on the whole [T, V] logits:
// - without a GPU: the four kernels assemble for sm_80 and sm_90 with no local memory; the PTX
//   interpreter (test/helpers/ptx-sim.ts) runs them on small awkward shapes (V not a multiple of the
//   chunk, a chunk wider than the block, slabs of one element, a chunk wider than V, rows with
//   target −1, a batch with no counted row, slabs folded out of order, a row offset by +60 so an
//   unshifted exp would overflow);
// - on the GPU machine: the same checks at sizes of the 1B preset (V = 32000 in slabs of 8192).
// Outputs are poisoned with NaN (state, tlogit, loss; the bf16 gradient; the f32 slab's padding
// columns) so a skipped write shows. Tolerances: the GPU's ex2.approx / lg2.approx have relative
// errors near 2^-22 and the sums are f32, so lse is within about 2^-22·(|m| + log2 V) (the
// interpreter computes ex2 and lg2 exactly, well inside): loss and lse within 1e-5·(1 + |value|);
// an f32 gradient within 1e-5 relative plus 1e-7·dloss/n absolute (exp of a shifted logit with a
// lse off by that much); a bf16 gradient within one bf16 rounding more (2^-8 relative).
import test from 'ava';
import { ceFinalize, ceFinalizeGrid, ceFold, ceGrad, ceRowGrid, LOSS_THREADS } from '../../targets/cuda/ptx/train-loss.js';
import { pad8 } from '../../targets/cuda/ptx/layout.js';
import { crossEntropy, crossEntropyGrad } from '../../targets/ref/train-kernels.js';
import { bf16ToF32 } from '../../src/util/dtype.js';
import { rng, randomFrom } from '../helpers/random.js';
import { assertEachAssembles } from '../helpers/ptxas.js';
import { cudaDeviceRequirement, findPtxas, ptxasRequirement, testsNeeding } from '../helpers/requires.js';
import { gpuDev, simDev, type Dev } from '../helpers/train-dev.js';

const KERNELS = () => [ceFold(), ceFinalize(), ceGrad('f32'), ceGrad('bf16')];

const ptxasTest = testsNeeding(ptxasRequirement(findPtxas()));
ptxasTest('cross-entropy kernels assemble for sm_80 and sm_90, no local memory', (t) => {
  assertEachAssembles(t, KERNELS());
});

test('cross-entropy kernels: deterministic text, no warp shuffles or atomics (the interpreter runs them)', (t) => {
  const a = KERNELS(), b = KERNELS();
  a.forEach((k, i) => t.is(k.text, b[i]!.text));
  t.deepEqual(a.map((k) => k.name), ['ce_fold', 'ce_finalize', 'ce_grad_f32', 'ce_grad_bf16']);
  for (const k of a) t.notRegex(k.text, /shfl|vote|atom|\bred\./, k.name);
  t.deepEqual(ceRowGrid(7), [7, 1, 1]);
});

interface Case {
  T: number;
  V: number;
  chunk: number;
  seed: number;
  /** Share of rows with target −1 (1: none counted). */
  ignored?: number;
  /** Fold the slabs after the first in reverse order. */
  reversed?: boolean;
  /** Add this to row 0's logits (an exp without the max shift would overflow). */
  offset?: number;
  dloss?: number;
}

function inputs(c: Case) {
  const r = rng(c.seed);
  const logits = randomFrom(c.T * c.V, r, 4);
  if (c.offset) for (let v = 0; v < c.V; v++) logits[v]! += c.offset;
  const targets = Int32Array.from({ length: c.T }, () => ((r() + 1) / 2 < (c.ignored ?? 0.25) ? -1 : Math.min(c.V - 1, Math.floor(((r() + 1) / 2) * c.V))));
  // the first and last columns as targets where there are rows to spare
  if (c.T > 2 && c.ignored !== 1) (targets[1] = 0), (targets[2] = c.V - 1);
  return { logits, targets };
}

/** The slabs' column ranges, the first (v0 = 0) first. */
function slabs(c: Case): [number, number][] {
  const out: [number, number][] = [];
  for (let v0 = 0; v0 < c.V; v0 += c.chunk) out.push([v0, Math.min(c.chunk, c.V - v0)]);
  return c.reversed ? [out[0]!, ...out.slice(1).reverse()] : out;
}

/** Runs fold, finalize and grad over every slab; returns what the kernels left. */
function runLoss(dev: Dev, c: Case, out: 'f32' | 'bf16', logits: Float32Array, targets: Int32Array) {
  const { T, V } = c;
  const dloss = c.dloss ?? 1;
  const targetsP = dev.buf(targets), state = dev.nan(T * 8), tlogit = dev.nan(T * 4), loss = dev.nan(8), dlossP = dev.buf(Float32Array.of(dloss));
  const slabBufs = slabs(c).map(([v0, w]) => {
    const ld = pad8(w);
    // the f32 slab's padding is NaN: the fold must not read it, the f32 gradient (in place) must zero it
    const host = new Float32Array(T * ld).fill(out === 'f32' ? NaN : 0);
    for (let r = 0; r < T; r++) host.set(logits.subarray(r * V + v0, r * V + v0 + w), r * ld);
    return { v0, w, ld, p: dev.buf(host) };
  });
  for (const s of slabBufs) dev.run(ceFold(), ceRowGrid(T), LOSS_THREADS, [{ ptr: state }, { ptr: tlogit }, { ptr: s.p }, { ptr: targetsP }, { u32: s.v0 }, { u32: s.w }]);
  dev.run(ceFinalize(), ceFinalizeGrid, LOSS_THREADS, [{ ptr: loss }, { ptr: state }, { ptr: tlogit }, { ptr: targetsP }, { u32: T }]);
  const grad = new Float32Array(T * V).fill(NaN);
  let padding = 0; // padding elements not exactly +0
  for (const s of slabBufs) {
    const dst = out === 'f32' ? s.p : dev.nan(T * s.ld * 2, true);
    dev.run(ceGrad(out), ceRowGrid(T), LOSS_THREADS, [{ ptr: dst }, { ptr: s.p }, { ptr: state }, { ptr: loss }, { ptr: dlossP }, { ptr: targetsP }, { u32: s.v0 }, { u32: s.w }]);
    const raw = out === 'f32' ? dev.get(dst, new Float32Array(T * s.ld)) : Float32Array.from(dev.get(dst, new Uint16Array(T * s.ld)), bf16ToF32);
    for (let r = 0; r < T; r++) {
      for (let j = 0; j < s.ld; j++) {
        const g = raw[r * s.ld + j]!;
        if (j < s.w) grad[r * V + s.v0 + j] = g;
        else if (!Object.is(g, 0)) padding++;
      }
    }
  }
  const lossWords = dev.get(loss, new Uint32Array(2));
  return { loss: new Float32Array(lossWords.buffer)[0]!, n: lossWords[1]!, rows: dev.get(state, new Float32Array(T * 2)), tlogit: dev.get(tlogit, new Float32Array(T)), grad, padding, dloss };
}

function checkLoss(t: import('ava').ExecutionContext, dev: Dev, c: Case, out: 'f32' | 'bf16') {
  const { logits, targets } = inputs(c);
  const got = runLoss(dev, c, out, logits, targets);
  const n = targets.filter((x) => x >= 0).length;
  t.is(got.n, n, 'counted rows');
  const want = crossEntropy(logits, targets)[0]!;
  t.true(Math.abs(got.loss - want) <= 1e-5 * (1 + Math.abs(want)), `loss ${got.loss} vs ref ${want}`);
  let badRows = 0;
  for (let r = 0; r < c.T; r++) {
    const [lse, l] = [got.rows[2 * r]!, got.rows[2 * r + 1]!];
    if (targets[r]! < 0) {
      if (!Number.isNaN(lse) || !Number.isNaN(l) || !Number.isNaN(got.tlogit[r]!)) badRows++; // never written
      continue;
    }
    const row = logits.subarray(r * c.V, (r + 1) * c.V);
    const wantL = crossEntropy(row, Int32Array.of(targets[r]!))[0]!;
    const wantLse = wantL + row[targets[r]!]!;
    if (!(Math.abs(l - wantL) <= 1e-5 * (1 + Math.abs(wantL)) && Math.abs(lse - wantLse) <= 1e-5 * (1 + Math.abs(wantLse)))) badRows++;
  }
  t.is(badRows, 0, 'rows whose (lse, loss) is off, or uncounted rows written');
  const wantG = crossEntropyGrad(logits, targets, Float32Array.of(got.dloss));
  const abs = n ? (1e-7 * Math.abs(got.dloss)) / n : 0, rel = out === 'f32' ? 1e-5 : 2 ** -8;
  let bad = 0, worst = 0;
  for (let i = 0; i < wantG.length; i++) {
    const err = Math.abs(got.grad[i]! - wantG[i]!), tol = rel * Math.abs(wantG[i]!) + abs;
    if (!(err <= tol)) bad++;
    worst = Math.max(worst, err / Math.max(tol, 1e-30));
    if (wantG[i] === 0 && !Object.is(got.grad[i], 0) && !Object.is(got.grad[i], -0)) bad++;
  }
  t.is(bad, 0, `${bad} of ${wantG.length} gradient elements off (NaN: unwritten); worst ${worst.toExponential(2)} of the tolerance`);
  t.is(got.padding, 0, 'padding columns of the gradient not zeroed');
}

const SIM_CASES: Case[] = [
  { T: 5, V: 37, chunk: 16, seed: 1 }, // slabs 16, 16, 5 (a tail narrower than a chunk of 8)
  { T: 3, V: 300, chunk: 272, seed: 2, offset: 60, dloss: 0.75 }, // a slab wider than the block; a shifted row
  { T: 1, V: 1, chunk: 8, seed: 3, ignored: 0 }, // one logit: loss 0, gradient 0
  { T: 4, V: 20, chunk: 64, seed: 4, ignored: 1 }, // one slab narrower than the chunk; no counted row
  { T: 4, V: 30, chunk: 8, seed: 5, reversed: true, dloss: -2 }, // slabs after the first folded out of order
  { T: 3, V: 5, chunk: 1, seed: 6 }, // slabs of one column
];
for (const c of SIM_CASES) {
  for (const out of ['f32', 'bf16'] as const) {
    test(`cross-entropy chunked, interpreted: T=${c.T} V=${c.V} chunk ${c.chunk}${c.reversed ? ' reversed' : ''} ${out} gradient vs ref`, (t) => checkLoss(t, simDev(), c, out));
  }
}

const cudaTest = testsNeeding(cudaDeviceRequirement());
const GPU_CASES: Case[] = [
  { T: 64, V: 32000, chunk: 8192, seed: 11 }, // the 1B preset's vocabulary: slabs 8192 × 3 + 7424
  { T: 300, V: 5003, chunk: 1024, seed: 12, reversed: true, offset: 60, dloss: 0.5 },
  { T: 257, V: 131, chunk: 40, seed: 13 },
  { T: 33, V: 1000, chunk: 512, seed: 15, ignored: 1 },
  ...SIM_CASES,
];
for (const c of GPU_CASES) {
  for (const out of ['f32', 'bf16'] as const) {
    cudaTest.serial(`cross-entropy chunked on the GPU: T=${c.T} V=${c.V} chunk ${c.chunk}${c.reversed ? ' reversed' : ''} ${out} gradient vs ref`, (t) => {
      const dev = gpuDev();
      t.teardown(() => dev.free());
      checkLoss(t, dev, c, out);
    });
  }
}
