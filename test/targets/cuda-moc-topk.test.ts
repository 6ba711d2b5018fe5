// MoC's Top-K in the gate GEMV's last block of each row (LowerOptions.mocTopk 'gate',
// MOCC_CUDA_MOC_TOPK=1; gate-topk.ts gemvTopk). On the CPU: the launches a decode step has with and
// without it (one moc_topk fewer per MoC layer, alone and with the up·down tail reduce), the idx
// buffer the up·down kernel reads being the one the gate kernel writes, the switch read in one place,
// the fused kernel's synchronization in its text, and the kernels assembling for sm_80 / sm_90 with
// no local memory. The shared Top-K body runs on the PTX interpreter in moc_topk
// (cuda-topk-sim.test.ts); the fused kernel's grid-wide arrival (global atomics with memory order,
// bar.red) does not: its GPU tests are below (they skip without a CUDA device): against the ref kernels
// and bit for bit moc_topk on the same G, counters back at zero; stories260K logits against HF and
// bit for bit the switch off, the same greedy text.
import test, { type ExecutionContext } from 'ava';
import { buildLlamaGraph } from '../../src/import/llama-graph.js';
import { loadModel } from '../../driver/load.js';
import { generate } from '../../src/run/generate.js';
import { swigluToMoc } from '../../passes/swiglu-to-moc.js';
import { lowerToCuda, type LowerOptions } from '../../targets/cuda/lower.js';
import { createCudaSession, optInLowering, sessionLowerOptions } from '../../targets/cuda/index.js';
import type { Program } from '../../targets/cuda/program.js';
import * as D from '../../targets/cuda/ptx/dense.js';
import * as G from '../../targets/cuda/ptx/gate-topk.js';
import * as M from '../../targets/cuda/ptx/moc.js';
import * as R from '../../targets/ref/kernels.js';
import { PRESET_1B } from '../../src/model/presets.js';
import { CHECKPOINTS, REF, maxAbsDiff, referenceLogits } from '../helpers/fixtures.js';
import { download, freeAll, launch, pad8, padF32, poisoned, randomF32, relErr, rng, unpadF32, upload, weight } from '../helpers/cuda.js';
import { assertEachAssembles } from '../helpers/ptxas.js';
import { stepwiseLogits } from '../helpers/cuda-decode.js';
import { cudaDeviceRequirement, ptxasRequirement, testsNeeding } from '../helpers/requires.js';

const ptxasTest = testsNeeding(ptxasRequirement());
const cudaTest = testsNeeding(cudaDeviceRequirement());

type LaunchStep = Extract<Program['steps'][number], { kind: 'launch' }>;
const launches = (p: Program) => p.steps.filter((s): s is LaunchStep => s.kind === 'launch');
const count = (p: Program, prefix: string) => launches(p).filter((s) => s.kernel.startsWith(prefix)).length;

/** The decode program as a session lowers it (attention merged in its last block), with the given MoC switches. */
function decodeProgram(graph: Parameters<typeof lowerToCuda>[0], spec: Parameters<typeof lowerToCuda>[1], o: Pick<LowerOptions, 'mocTopk' | 'mocMerge'>): Program {
  const base = sessionLowerOptions({ warm: true, wgmma: false, optIn: { decodeMerge: 'last-block' } });
  return lowerToCuda(graph, spec, { ...base, prefill: false, ...o });
}

/** off → on removes exactly the moc_topk launches (one a layer), the gate GEMVs become gemvTopk, every other launch the same kernel in the same order; returns the launch counts. */
function checkCounts(t: ExecutionContext, off: Program, on: Program, layers: number): [number, number] {
  const offN = launches(off).length, onN = launches(on).length;
  t.is(count(off, 'moc_topk'), layers);
  t.is(count(on, 'moc_topk'), 0);
  t.is(launches(on).filter((s) => /^gemv_.*_topk_k\d+(_tau)?$/.test(s.kernel)).length, layers);
  t.is(onN, offN - layers, `launches a decode step: ${offN} → ${onN}`);
  const strip = (p: Program) => launches(p).map((s) => s.kernel.replace(/_topk_k\d+(_tau)?$/, '')).filter((k) => !k.startsWith('moc_topk'));
  t.deepEqual(strip(on), strip(off));
  t.is(on.counters?.topk, G.gateTopkCounters(on.kvCache.capacity));
  t.is(off.counters?.topk, undefined);
  // the first launch after each gate kernel to read the idx it writes is the up projection's (up·down or gathered up)
  const ls = launches(on);
  ls.forEach((s, i) => {
    if (!/^gemv_.*_topk_/.test(s.kernel)) return;
    const ci = s.args.findIndex((a) => a.kind === 'counters');
    const idx = s.args[ci - (s.args.some((a) => a.kind === 'tau') ? 2 : 1)]!;
    const reader = ls.slice(i + 1).find((l) => l.args.some((a) => a.kind === 'buf' && idx.kind === 'buf' && a.id === idx.id));
    t.true(idx.kind === 'buf' && reader !== undefined && (reader.kernel.startsWith('moc_updown') || reader.kernel.includes('_silu_gate')), `${s.node}: idx read next by ${reader?.kernel}`);
  });
  return [offN, onN];
}

test('stories260K MoC K=32: Top-K in the gate GEMV removes one moc_topk launch per layer from the decode step, nothing else', (t) => {
  const m = loadModel(CHECKPOINTS.gguf, { selection: { k: 32 } });
  try {
    const [a, b] = checkCounts(t, decodeProgram(m.graph, m.spec, {}), decodeProgram(m.graph, m.spec, { mocTopk: 'gate' }), m.spec.nLayers);
    const [c, d] = checkCounts(t, decodeProgram(m.graph, m.spec, { mocMerge: 'tail' }), decodeProgram(m.graph, m.spec, { mocTopk: 'gate', mocMerge: 'tail' }), m.spec.nLayers);
    t.log(`stories260K MoC K=32 decode step: ${a} launches, ${b} with Top-K in the gate; with the tail reduce ${c} → ${d}`);
  } finally {
    m.close();
  }
});

test('1B preset MoC K=1024 (bf16 graph): 170 → 146 launches a decode step with Top-K in the gate GEMV, 146 → 122 with the tail reduce too', (t) => {
  const graph = swigluToMoc.run(buildLlamaGraph(PRESET_1B, (n) => (n.includes('norm') ? 'f32' : 'bf16')), { k: 1024 });
  const [a, b] = checkCounts(t, decodeProgram(graph, PRESET_1B, {}), decodeProgram(graph, PRESET_1B, { mocTopk: 'gate' }), PRESET_1B.nLayers);
  const [c, d] = checkCounts(t, decodeProgram(graph, PRESET_1B, { mocMerge: 'tail' }), decodeProgram(graph, PRESET_1B, { mocTopk: 'gate', mocMerge: 'tail' }), PRESET_1B.nLayers);
  t.deepEqual([a, b, c, d], [170, 146, 146, 122]);
  t.is(count(decodeProgram(graph, PRESET_1B, { mocTopk: 'gate', mocMerge: 'tail' }), 'moc_reduce'), 0);
  t.log(`1B MoC K=1024 decode step: ${a} launches; Top-K in the gate ${b}; tail reduce ${c}; both ${d}`);
});

test('the switch: MOCC_CUDA_MOC_TOPK=1 only, read by optInLowering, combinable with MOCC_CUDA_MOC_TAIL; the baseline lowering ignores it', (t) => {
  t.is(optInLowering({ MOCC_CUDA_MOC_TOPK: '1' }).mocTopk, 'gate');
  t.is(optInLowering({}).mocTopk, undefined);
  t.is(optInLowering({ MOCC_CUDA_MOC_TOPK: '0' }).mocTopk, undefined);
  const both = optInLowering({ MOCC_CUDA_MOC_TOPK: '1', MOCC_CUDA_MOC_TAIL: '1' });
  t.deepEqual([both.mocTopk, both.mocMerge], ['gate', 'tail']);
  t.is(sessionLowerOptions({ baseline: true, warm: true, wgmma: false, optIn: { mocTopk: 'gate' } }).mocTopk, undefined);
  t.is(sessionLowerOptions({ warm: true, wgmma: false, optIn: { mocTopk: 'gate' } }).mocTopk, 'gate');
});

test('gateTopkFits: up to 24 channels a thread of 256 (F ≤ 6144: the 1B preset and stories260K); selectShapeFor covers F', (t) => {
  t.true(G.gateTopkFits(172) && G.gateTopkFits(5461) && G.gateTopkFits(5464) && G.gateTopkFits(6144));
  t.false(G.gateTopkFits(6145));
  t.false(G.gateTopkFits(14336));
  for (const f of [1, 4, 5, 172, 1023, 1024, 1025, 5461, 6144]) {
    const s = M.selectShapeFor(f, 256);
    t.true(s.threads * s.perThread >= f && s.perThread % 4 === 0 && s.threads * (s.perThread - 4) < f, `F ${f}: ${s.threads}×${s.perThread}`);
  }
  t.deepEqual(M.selectShapeFor(5461, 256), { threads: 256, perThread: 24 });
  t.throws(() => G.gemvTopk({ dtype: 'bf16', inDim: 64, outDim: 14336, epilogue: 'store' }, 100));
  t.throws(() => G.gemvTopk({ dtype: 'bf16', inDim: 64, outDim: 172, epilogue: 'accumulate' }, 32));
});

test('the fused kernel waits once, counts with acq_rel and reads G around L1', (t) => {
  const spec: D.GemvSpec = { dtype: 'bf16', inDim: 2048, outDim: 5461, epilogue: 'store', norm: { dtype: 'f32', eps: 1e-5 }, ...D.gemvLayout(2048, 5461) };
  const text = G.gemvTopk(spec, 1024, { tau: true }).text;
  t.is(text.match(/griddepcontrol\.wait/g)?.length, 1);
  t.true(text.includes('atom.acq_rel.gpu.global.inc.u32') && text.includes('bar.red.or.pred') && text.includes('ld.global.cg.v4.u32'));
  t.false(text.includes('ld.global.v4.u32'), 'G is read with ld.global.cg only');
});

ptxasTest('the gate GEMV + Top-K kernels assemble for sm_80 and sm_90 with no local memory', (t) => {
  const cases = [
    ['bf16', 2048, 5461, 1024, true, true], ['bf16', 2048, 5464, 1024, true, false], ['f16', 2048, 5461, 1024, true, true], ['f32', 2048, 5461, 1024, true, true],
    ['f32', 64, 172, 32, true, true], ['f32', 64, 172, 128, true, false], ['bf16', 64, 172, 172, false, true], ['f32', 100, 300, 7, false, false],
    ['bf16', 4096, 6144, 1000, true, true], ['f16', 8, 1, 1, false, false],
  ] as const;
  assertEachAssembles(t, cases.map(([dtype, d, f, k, norm, tau]) => G.gemvTopk({ dtype, inDim: d, outDim: f, epilogue: 'store', ...(norm ? { norm: { dtype: 'f32' as const, eps: 1e-5 } } : {}), ...D.gemvLayout(d, f) }, k, { tau })));
});

// ---- GPU: the kernel ----
// G against the ref kernels (f32 accumulation of the weights' exact stored values: 2e-6, as the
// GEMV tests); idx against the ref Top-K of the G the kernel wrote (Top-K is exact on given values)
// and bit for bit against moc_topk run on that G, τ too. Rows of W are repeated so that G has exact
// ties (a repeated row gives the same sum in the same order), one row is zero (G = +0) and one NaN
// (G = NaN, ranked as −∞). Two calls on the same counters, each on NaN-poisoned G and idx; the
// counters must be back at zero after each (a count left over would make the wrong block select).
let seed = 1;
for (const dtype of ['f32', 'bf16', 'f16'] as const) {
  for (const [d, f, k, T] of [[64, 172, 32, 1], [64, 172, 128, 3], [64, 172, 172, 2], [100, 300, 7, 5], [2048, 5461, 1024, 2], [2048, 5464, 1024, 40], [4096, 6144, 1000, 1]] as const) {
    const s0 = seed++;
    cudaTest.serial(`gate GEMV + Top-K ${dtype} d${d} F${f} K${k} T=${T}: G against ref, idx and τ against ref and bitwise moc_topk, counters reset`, (t) => {
      t.teardown(freeAll);
      const r = rng(s0);
      const x = randomF32(T * d, r, 2), nwv = randomF32(d, r);
      const wv = randomF32(f * d, r, 0.05);
      for (let j = 0; j < f; j++) if (j % 3 === 2) wv.copyWithin(j * d, (j - 1) * d, j * d); // ties
      if (f > 4) {
        wv.fill(0, 2 * d, 3 * d); // G = +0 at channel 2
        wv[4 * d] = NaN; // G = NaN at channel 4
      }
      const w = weight(wv, f, d, dtype), nw = weight(nwv, 1, d, dtype);
      const spec: D.GemvSpec = { dtype, inDim: d, outDim: f, epilogue: 'store', norm: { dtype, eps: 1e-5 }, ...D.gemvLayout(d, f) };
      const kernel = G.gemvTopk(spec, k, { tau: true });
      const counters = upload(new Int32Array(G.gateTopkCounters(T)));
      const xd = upload(padF32(x, T, d));
      const report: string[] = [];
      let ok = true;
      for (const call of [1, 2]) {
        const gd = poisoned(T * pad8(f) * 4), idx = poisoned(T * pad8(k) * 4), tau = poisoned(4);
        launch(kernel, D.gemvGrid(spec, T), 256, [gd, xd, w.device, nw.device, idx, tau, counters]);
        const gPadded = download(gd, new Float32Array(T * pad8(f))), gGot = unpadF32(gPadded, T, f);
        const want = R.linear(R.rmsnorm(x, nw.exact, 1e-5), w.exact, d);
        const finite = (a: Float32Array) => a.map((v) => (Number.isNaN(v) ? 0 : v));
        const eG = relErr(finite(gGot), finite(want));
        const nanOk = gGot.every((v, i) => Number.isNaN(v) === Number.isNaN(want[i]!));
        const got = download(idx, new Int32Array(T * pad8(k))), gotTau = download(tau, new Float32Array(1))[0]!;
        const wantIdx = R.mocSelect(gGot, f, { k });
        let badRef = 0;
        for (let row = 0; row < T; row++) for (let j = 0; j < k; j++) if (got[row * pad8(k) + j] !== wantIdx[row * k + j]) badRef++;
        // moc_topk on the same G: the same K indices a row and τ, bit for bit
        const idx2 = poisoned(T * pad8(k) * 4), tau2 = poisoned(4);
        launch(M.topkSelect(f, k, { tau: true }), [1, T, 1], M.selectShape(f).threads, [idx2, gd, tau2]);
        const other = download(idx2, new Int32Array(T * pad8(k))), otherTau = download(tau2, new Float32Array(1))[0]!;
        let badTopk = 0;
        for (let row = 0; row < T; row++) for (let j = 0; j < k; j++) if (got[row * pad8(k) + j] !== other[row * pad8(k) + j]) badTopk++;
        const tauSame = Object.is(gotTau, otherTau) || (Number.isNaN(gotTau) && Number.isNaN(otherTau));
        const left = download(counters, new Int32Array(G.gateTopkCounters(T))).filter((v) => v !== 0).length;
        ok &&= eG < 2e-6 && nanOk && badRef === 0 && badTopk === 0 && tauSame && left === 0;
        report.push(`call ${call}: G rel ${eG.toExponential(2)}${nanOk ? '' : ' (NaNs misplaced)'}, ${badRef} idx differ from ref, ${badTopk} from moc_topk, τ ${gotTau} vs ${otherTau}, ${left} counters not zero`);
      }
      t.true(ok, report.join('; '));
    });
  }
}

// ---- GPU: stories260K ----
// With programmatic launch (layers' kernels overlap; every layer and the captured graph reuse the
// same counters): logits within 1e-3 of HF through the T-row steps (several rows' Top-K at once) and
// the graph decode; bit for bit the switch off (the same idx, so the same everything), the same
// greedy text. Alone and with the up·down tail reduce (both off for the comparison).
for (const [label, selection] of [['moc_k32', { k: 32 }], ['moc_k128', { k: 128 }]] as const) {
  for (const mocMerge of ['reduce-kernel', 'tail'] as const) {
    cudaTest.serial(`stories260K gguf ${label}, Top-K in the gate GEMV${mocMerge === 'tail' ? ' + tail reduce' : ''}: logits match HF within 1e-3, equal the switches off bit for bit, same greedy text`, async (t) => {
      process.env.MOCC_CUDA_PDL = '1';
      const m = loadModel(CHECKPOINTS.gguf, { selection });
      t.teardown(() => {
        m.close();
        freeAll();
      });
      const on = createCudaSession(m, { mocTopk: 'gate', mocMerge });
      const kernels = on.m.program.steps.flatMap((st) => (st.kind === 'launch' ? [st.kernel] : []));
      t.true(kernels.some((k) => /_topk_k\d+/.test(k)) && !kernels.some((k) => k.startsWith('moc_topk')), kernels.join(', '));
      const off = createCudaSession(m, { mocTopk: 'kernel', mocMerge: 'reduce-kernel' });
      for (const seq of ['greedy_once_upon', 'sample0']) {
        const toks = REF.sequences[seq]!.tokens;
        const want = referenceLogits(seq, label);
        on.reset();
        off.reset();
        const a = on.forward(toks), b = off.forward(toks);
        const sa = stepwiseLogits(on, toks), sb = stepwiseLogits(off, toks);
        const da = maxAbsDiff(a, want), dd = maxAbsDiff(sa, want);
        t.true(da <= 1e-3 && dd <= 1e-3, `${seq}: max|Δ| T-row steps ${da.toExponential(2)}, graph decode ${dd.toExponential(2)}`);
        t.is(a.filter((v, i) => !Object.is(v, b[i])).length, 0, `${seq}: T-row logits differ from the switches off`);
        t.is(sa.filter((v, i) => !Object.is(v, sb[i])).length, 0, `${seq}: graph-decode logits differ from the switches off`);
      }
      const prompt = REF.sequences.greedy_once_upon!.tokens.slice(0, 4);
      on.reset();
      off.reset();
      const textOn = await generate(on, prompt, { maxTokens: 60, eosId: m.spec.eosId });
      const textOff = await generate(off, prompt, { maxTokens: 60, eosId: m.spec.eosId });
      t.deepEqual(textOn, textOff);
    });
  }
}
