// The attention backward (targets/cuda/ptx/flash-attention-backward.ts) against the ref target's
// attentionGrad (targets/ref/train-kernels.ts, the oracle):
// - Everywhere (ptxas): every spec assembles for sm_80 and sm_90 with no local memory.
// - Everywhere (CPU, test/helpers/ptx-sim.ts): the SIMT preprocess D = rowsum(dO ∘ O) with f32 dO and
//   O (the sim has no 16-bit instructions; the bf16/f16 unpacking is load.ts's, run on the GPU below),
//   O from the ref's seqAttention, awkward T and heads.
// - On a CUDA device (skipped elsewhere): random bf16/f16 q, k, v, dO, packed sequences in `seq` with
//   awkward lengths (1, tails of every tile, sequences crossing tiles), GQA, T from 1 to 200; lse from a
//   float64 log-sum-exp of the same rounded inputs (what the forward saves), D from the preprocess
//   kernel over the ref's O; NaN-poisoned dq, dk, dv with one extra row that must stay NaN.
import test from 'ava';
import {
  FAB_PRE_THREADS, FAB_THREADS, flashAttentionBackwardDkdv, flashAttentionBackwardDkdvGrid, flashAttentionBackwardDkdvSharedBytes,
  flashAttentionBackwardDq, flashAttentionBackwardDqGrid, flashAttentionBackwardDqSharedBytes, flashAttentionBackwardPre,
  flashAttentionBackwardPreGrid, type FlashAttentionBackwardSpec,
} from '../../targets/cuda/ptx/flash-attention-backward.js';
import { ptxModule } from '../../targets/cuda/ptx/builder.js';
import { seqAttention } from '../../targets/ref/kernels.js';
import { attentionGrad } from '../../targets/ref/train-kernels.js';
import { download, freeAll, launch, pad8, padF32, poisoned, randomF32, rng, upload, weight } from '../helpers/cuda.js';
import { PtxSim } from '../helpers/ptx-sim.js';
import { logSumExp, magnitudes, seqOf } from '../helpers/attention-check.js';
import { cudaDeviceRequirement, findPtxas, ptxasRequirement, testsNeeding } from '../helpers/requires.js';
import { assertEachAssembles } from '../helpers/ptxas.js';

const ptxas = findPtxas();
const ptxasTest = testsNeeding(ptxasRequirement(ptxas));

/** (heads, kvHeads, hd): stories260K (hd 8), 1B preset heads (hd 64), MHA, hd 128 with GQA 3, padded hd 40, hd 96. */
const SHAPES: [number, number, number][] = [[8, 4, 8], [4, 4, 64], [32, 32, 64], [6, 2, 128], [4, 2, 40], [4, 2, 96]];
const DTYPES = ['bf16', 'f16'] as const;

// ---- ptxas ----
ptxasTest('flash attention backward: every kernel assembles for sm_80 and sm_90 with no local memory', (t) => {
  for (const [heads, kvHeads, hd] of SHAPES) {
    for (const dtype of DTYPES) {
      const s: FlashAttentionBackwardSpec = { heads, kvHeads, hd, dtype };
      const kernels = [flashAttentionBackwardDkdv(s), flashAttentionBackwardDq(s), ...(['f32', 'bf16'] as const).map((o) => flashAttentionBackwardPre({ heads, hd, dtype, o }))];
      assertEachAssembles(t, kernels);
    }
  }
});

test('flash attention backward: text is deterministic, uses the tensor-core path, fits 48 KB of static shared memory', (t) => {
  for (let hd = 8; hd <= 128; hd += 8) {
    for (const dtype of DTYPES) {
      const s: FlashAttentionBackwardSpec = { heads: 4, kvHeads: 2, hd, dtype };
      for (const [gen, bytes] of [[flashAttentionBackwardDkdv, flashAttentionBackwardDkdvSharedBytes], [flashAttentionBackwardDq, flashAttentionBackwardDqSharedBytes]] as const) {
        const a = gen(s);
        t.is(a.text, gen(s).text);
        t.true(bytes(s) <= 48 * 1024, `${a.name}: ${bytes(s)} bytes`);
        t.regex(a.text, new RegExp(`mma\\.sync\\.aligned\\.m16n8k16\\.row\\.col\\.f32\\.${dtype}\\.${dtype}\\.f32`));
        t.regex(a.text, /ldmatrix\.sync\.aligned\.m8n8\.x4\.trans\.shared\.b16/);
        t.regex(a.text, /cp\.async\.cg\.shared\.global/);
        t.notRegex(a.text, /atom\./, 'deterministic: no atomics');
      }
    }
  }
  const s: FlashAttentionBackwardSpec = { heads: 6, kvHeads: 2, hd: 128, dtype: 'bf16' };
  t.deepEqual(flashAttentionBackwardDkdvGrid(s, 130), [3, 2, 1]);
  t.deepEqual(flashAttentionBackwardDqGrid(s, 130), [3, 6, 1]);
  t.deepEqual(flashAttentionBackwardPreGrid({ heads: 6, hd: 128, dtype: 'bf16', o: 'f32' }, 130), [7, 1, 1]);
});

test('flash attention backward rejects a head dimension it cannot tile, and heads not a multiple of kvHeads', (t) => {
  for (const hd of [0, 12, 136]) t.throws(() => flashAttentionBackwardDq({ heads: 4, kvHeads: 4, hd, dtype: 'bf16' }), { message: /hd must be/ });
  t.throws(() => flashAttentionBackwardDkdv({ heads: 6, kvHeads: 4, hd: 64, dtype: 'bf16' }), { message: /multiple of kvHeads/ });
});

// ---- inputs shared by the CPU and GPU tests ----

/** D[h, t] = Σ_i dO·O in float64 (the preprocess kernel's definition). */
function rowDots(dO: Float32Array, o: Float32Array, T: number, heads: number, hd: number): Float64Array {
  const d = new Float64Array(heads * T);
  for (let t = 0; t < T; t++) for (let h = 0; h < heads; h++) {
    let acc = 0;
    for (let i = 0; i < hd; i++) acc += dO[t * heads * hd + h * hd + i]! * o[t * heads * hd + h * hd + i]!;
    d[h * T + t] = acc;
  }
  return d;
}

// ---- the preprocess kernel on the CPU ----
for (const [T, heads, hd, lengths] of [[1, 1, 8, []], [5, 3, 8, [2]], [37, 4, 24, [1, 20]], [130, 2, 64, [64, 1]]] as const) {
  test(`flash attention backward pre (ptx-sim): D = rowsum(dO*O), T=${T} heads ${heads} hd ${hd}`, (t) => {
    const r = rng(100 + T);
    const seq = seqOf(T, [...lengths]);
    const q = randomF32(T * heads * hd, r, 2), k = randomF32(T * heads * hd, r), v = randomF32(T * heads * hd, r), dO = randomF32(T * heads * hd, r);
    const o = seqAttention(q, k, v, seq, heads, heads, hd);
    const want = rowDots(dO, o, T, heads, hd);
    const kern = flashAttentionBackwardPre({ heads, hd, dtype: 'f32', o: 'f32' });
    const qw = heads * hd, bytes = (T + 2) * pad8(qw) * 4 * 2 + (heads * T + 8) * 4 + 4096;
    const sim = new PtxSim(bytes * 2 + 65536);
    const dBuf = sim.alloc((heads * T + 4) * 4, NaN);
    sim.launch(ptxModule([kern.text], 'sm_80'), flashAttentionBackwardPreGrid({ heads, hd, dtype: 'f32', o: 'f32' }, T), FAB_PRE_THREADS, [dBuf.addr, sim.upload(padF32(dO, T, qw)).addr, sim.upload(padF32(o, T, qw)).addr, T]);
    const got = sim.download(dBuf, heads * T + 4);
    // f32 fma over hd terms in d order: within ~hd·2^-24 of Σ|dO·O|
    for (let i = 0; i < heads * T; i++) {
      let mag = 0;
      const row = i % T, h = Math.floor(i / T);
      for (let c = 0; c < hd; c++) mag += Math.abs(dO[row * qw + h * hd + c]! * o[row * qw + h * hd + c]!);
      t.true(Math.abs(got[i]! - want[i]!) <= 1e-6 * mag + 1e-30, `D[${h}, ${row}]: got ${got[i]}, want ${want[i]}`);
    }
    t.true(got.subarray(heads * T).every(Number.isNaN), 'written past heads*T');
  });
}

// ---- on the GPU ----
const cudaTest = testsNeeding(cudaDeviceRequirement());
let nextSeed = 1;

function check(spec: FlashAttentionBackwardSpec, T: number, lengths: number[]): void {
  const { heads, kvHeads, hd, dtype } = spec;
  const seed = nextSeed++;
  cudaTest.serial(`flash attention backward h${heads} kv${kvHeads} hd${hd} ${dtype}: T=${T} sequences ${JSON.stringify(lengths)} vs attentionGrad`, (t) => {
    t.teardown(freeAll);
    const r = rng(seed);
    const qw = heads * hd, kvw = kvHeads * hd;
    const seq = seqOf(T, lengths);
    // inputs as the kernels hold them (rounded to dtype); the oracle gets the same values
    const q = weight(randomF32(T * qw, r, 2), T, qw, dtype), k = weight(randomF32(T * kvw, r), T, kvw, dtype);
    const v = weight(randomF32(T * kvw, r), T, kvw, dtype), dO = weight(randomF32(T * qw, r), T, qw, dtype);
    const o = seqAttention(q.exact, k.exact, v.exact, seq, heads, kvHeads, hd);
    const lse = logSumExp(q.exact, k.exact, seq, heads, kvHeads, hd);
    const seqBuf = upload(seq), lseBuf = upload(lse);
    const dBuf = poisoned(heads * T * 4);
    const pre = { heads, hd, dtype, o: 'f32' as const };
    launch(flashAttentionBackwardPre(pre), flashAttentionBackwardPreGrid(pre, T), FAB_PRE_THREADS, [dBuf, dO.device, upload(padF32(o, T, qw)), T]);
    const dq = poisoned((T + 1) * pad8(qw) * 4), dk = poisoned((T + 1) * pad8(kvw) * 4), dv = poisoned((T + 1) * pad8(kvw) * 4);
    launch(flashAttentionBackwardDkdv(spec), flashAttentionBackwardDkdvGrid(spec, T), FAB_THREADS, [dk, dv, q.device, k.device, v.device, dO.device, lseBuf, dBuf, seqBuf, T]);
    launch(flashAttentionBackwardDq(spec), flashAttentionBackwardDqGrid(spec, T), FAB_THREADS, [dq, q.device, k.device, v.device, dO.device, lseBuf, dBuf, seqBuf, T]);

    const [wq, wk, wv] = attentionGrad(q.exact, k.exact, v.exact, seq, dO.exact, heads, kvHeads, hd);
    const mag = magnitudes(q.exact, k.exact, v.exact, seq, dO.exact, heads, kvHeads, hd);
    // P (dV) and dS (dK, dq) are rounded to dtype for their products (2^-9 bf16, 2^-11 f16 relative
    // per term), margin 2.5×, of the term scale; S, dP, D in f32 and ex2.approx add ~1e-6, 1e-5 of the
    // f32 scale. A wrong fragment, a wrong mask (one key too many or too few) or a missed GQA head is
    // O(1) of the term scale.
    const tol = 2.5 * (dtype === 'bf16' ? 2 ** -9 : 2 ** -11), tolF32 = 1e-5;
    for (const [label, buf, want, m, mF32, w] of [['dq', dq, wq, mag.term.dq, mag.f32.dq, qw], ['dk', dk, wk, mag.term.dk, mag.f32.dk, kvw], ['dv', dv, wv, mag.term.dv, mag.f32.dv, kvw]] as const) {
      const ld = pad8(w), got = download(buf, new Float32Array((T + 1) * ld));
      let bad = 0, worst = 0, first = '';
      for (let row = 0; row < T; row++) {
        for (let c = 0; c < w; c++) {
          const g = got[row * ld + c]!, x = want[row * w + c]!, s = m[row * w + c]!, sF32 = mF32[row * w + c]!;
          // the error over the bound (≤ 1 passes)
          const e = Math.abs(g - x) / Math.max(tol * s + tolF32 * sF32, 1e-30);
          if (!(e <= 1)) {
            if (!bad) first = `row ${row} col ${c}: got ${g}, want ${x} (term scale ${s.toExponential(2)}, f32 scale ${sF32.toExponential(2)})`;
            bad++;
          }
          if (Number.isFinite(e)) worst = Math.max(worst, e);
        }
      }
      t.is(bad, 0, `${label}: ${bad} of ${T * w} off (NaN = unwritten); first ${first}; worst ${worst.toExponential(2)} of the bound (${tol.toExponential(2)} × term + ${tolF32} × f32 scale)`);
      t.true(got.subarray(T * ld).every(Number.isNaN), `${label}: written past row T-1`);
    }
  });
}

// sequence layouts: one sequence; a 1-row sequence first; runs ending inside and on tile edges
const LAYOUTS = (T: number): number[][] => [[], [1, 5], [17, 47, 1], [64, 3]].filter((l) => l.reduce((a, b) => a + b, 0) < T || l.length === 0);
for (const [heads, kvHeads, hd] of SHAPES) {
  for (const dtype of DTYPES) {
    for (const T of [1, 7, 64, 65, 130, 200]) {
      for (const lengths of LAYOUTS(T)) check({ heads, kvHeads, hd, dtype }, T, lengths);
    }
  }
}
