// The f32 prefill program (LowerOptions.prefillF32; createCudaSession's default, MOCC_CUDA_PREFILL_F32=0 off): for
// a model whose linears all have f32 weights, its linears as gemm-f32.ts's SIMT GEMMs on the f32
// activations and its attention as the split decode attention with T rows, so nothing is rounded
// below f32 and its logits can match the HF references as the decode steps' do.
// Without a GPU: which kernels it lowers to, with the switch on; that with the switch off, or on a
// model with 16-bit linears, the lowering is what it was.
// On the GPU machine: stories260K f32 (GGUF and HF checkpoints), dense and MoC K=32, prefill logits
// within 1e-3 of the HF references, and decoding after a prefill.
import test from 'ava';
import { loadModel } from '../../driver/load.js';
import { F32_PREFILL_MIN_TOKENS, lowerToCuda } from '../../targets/cuda/lower.js';
import { buildLlamaGraph } from '../../src/import/llama-graph.js';
import { PRESET_1B } from '../../src/model/presets.js';
import { swigluToMoc } from '../../passes/swiglu-to-moc.js';
import { createCudaSession, optInLowering, prefillF32Wanted, sessionLowerOptions } from '../../targets/cuda/index.js';
import { CHECKPOINTS, REF, maxAbsDiff, referenceLogits } from '../helpers/fixtures.js';
import { freeAll } from '../helpers/cuda.js';
import { cudaDeviceRequirement, testsNeeding } from '../helpers/requires.js';

const Q8 = CHECKPOINTS.gguf.replace(/\.gguf$/, '.Q8_0.gguf');
/** A kernel's family: its name without dtype and shape suffixes (as cuda-prefill.test.ts reads them). */
const family = (k: string) => k.replace(/_(?:bf16|f16|f32|half|interleaved|h\d|w\d|f\d|d\d|m\d).*?(_acc)?$/, '$1');
const launches = (steps: { kind: string; kernel?: string }[]) => steps.map((s) => (s.kind === 'launch' ? family(s.kernel!) : 'zero')).join(' ');

test('sessions get the f32 prefill by default, MOCC_CUDA_PREFILL_F32=0 turns it off, and sessionLowerOptions passes it on (off: no prefillF32 key, as lowerToCuda\'s default)', (t) => {
  t.true(prefillF32Wanted({ MOCC_CUDA_PREFILL_F32: '1' }));
  t.true(prefillF32Wanted({}));
  t.false(prefillF32Wanted({ MOCC_CUDA_PREFILL_F32: '0' }));
  t.is(sessionLowerOptions({ warm: true, wgmma: false, optIn: optInLowering({}) }).prefillF32, true);
  t.false('prefillF32' in sessionLowerOptions({ warm: true, wgmma: false, optIn: optInLowering({ MOCC_CUDA_PREFILL_F32: '0' }) }));
  t.is(sessionLowerOptions({ baseline: true, warm: true, wgmma: false, optIn: { prefillF32: true } }).prefill, false, 'the baseline has no prefill program at all');
});

test('the environment switches are read in one place, and only when set', (t) => {
  t.deepEqual(optInLowering({}), { decodeMerge: 'last-block', prefillF32: true });
  t.deepEqual(optInLowering({ MOCC_CUDA_SPLIT_BLOCKS: '1024', MOCC_CUDA_ATTN_MERGE: '1', MOCC_CUDA_ATTN_EARLY: '1', MOCC_CUDA_PREFILL_F32: '1' }),
    { decodeBlocks: 1024, decodeMerge: 'last-block', decodeEarly: true, prefillF32: true });
  t.deepEqual(optInLowering({ MOCC_CUDA_SPLIT_BLOCKS: 'x', MOCC_CUDA_ATTN_MERGE: '0', MOCC_CUDA_PREFILL_F32: '0' }), { decodeMerge: 'combine-kernel' });
});

// One layer of the 1B preset with f32 weights, in order: GEMMs on CUDA cores for every linear (no
// casts), the split attention, dense FFN as two GEMMs and SiLU·mul, MoC as the decode steps' Top-K,
// fused up·down and reduction with T rows.
test('1B preset f32, one layer, prefillF32: f32 GEMMs for every linear, split attention, MoC on the decode kernels', (t) => {
  const spec = { ...PRESET_1B, nLayers: 1 };
  for (const [sel, want] of [
    [null, 'embedding rmsnorm gemm_xwt gemm_xwt gemm_xwt rope_store attention_split attention_combine gemm_xwt_acc rmsnorm gemm_xwt gemm_xwt silu_mul gemm_xwt_acc rmsnorm gemm_xwt'],
    [{ k: 1024 }, 'embedding rmsnorm gemm_xwt gemm_xwt gemm_xwt rope_store attention_split attention_combine gemm_xwt_acc rmsnorm gemm_xwt moc_topk moc_updown moc_reduce rmsnorm gemm_xwt'],
  ] as const) {
    let g = buildLlamaGraph(spec, () => 'f32');
    if (sel) g = swigluToMoc.run(g, sel);
    t.is(lowerToCuda(g, spec).prefill, undefined, 'switch off: no prefill program');
    const p = lowerToCuda(g, spec, { prefillF32: true });
    t.is(launches(p.prefill!.steps), want);
    const kernels = p.prefill!.steps.flatMap((s) => (s.kind === 'launch' ? [s.kernel] : []));
    t.true(kernels.filter((k) => k.startsWith('gemm')).every((k) => k.startsWith('gemm_xwt_f32_')), kernels.join(' '));
    t.true(p.prefill!.buffers.every((b) => b.dtype === 'f32' || b.dtype === 'i32'), 'no 16-bit activations');
    t.is(p.kvCache.dtype, 'f32');
    // the decode steps are the same as without the switch
    const off = lowerToCuda(g, spec);
    t.deepEqual(p.steps, off.steps);
    t.deepEqual([...off.kernels.keys()].filter((k) => !p.kernels.has(k)), []);
  }
});

test('stories260K f32 (GGUF, HF; dense, MoC K=32): prefillF32 gives a prefill program of f32 GEMMs and split attention; off, none', (t) => {
  for (const format of ['gguf', 'hf'] as const) {
    for (const selection of ['dense', { k: 32 }] as const) {
      const m = loadModel(CHECKPOINTS[format], { selection });
      try {
        t.is(lowerToCuda(m.graph, m.spec).prefill, undefined);
        const p = lowerToCuda(m.graph, m.spec, { prefillF32: true });
        const fams = launches(p.prefill!.steps).split(' ');
        const count = (f: string) => fams.filter((x) => x === f).length;
        const L = m.spec.nLayers;
        // per layer: Q, K, V, the output projection (accumulating), then the FFN's linears; the logits
        t.is(count('gemm_xwt') + count('gemm_xwt_acc'), L * (selection === 'dense' ? 7 : 5) + 1, fams.join(' '));
        t.is(count('gemm_xwt_acc'), L * (selection === 'dense' ? 2 : 1));
        t.is(count('attention_split'), L);
        t.is(count('flash_attention') + count('cast'), 0);
        if (selection !== 'dense') t.is(count('moc_updown'), L);
        // shorter calls run the decode steps, which the H100 measured faster there (lower.ts)
        t.is(p.prefill!.minTokens, F32_PREFILL_MIN_TOKENS);
      } finally {
        m.close();
      }
    }
  }
});

test('prefillF32 changes nothing for a model with 16-bit linears (stories260K Q8_0 → f16, dense and MoC K=32)', (t) => {
  for (const selection of ['dense', { k: 32 }] as const) {
    const m = loadModel(Q8, { selection, dequantTo: 'f16' });
    try {
      t.deepEqual(lowerToCuda(m.graph, m.spec, { prefillF32: true }), lowerToCuda(m.graph, m.spec));
      t.is(lowerToCuda(m.graph, m.spec).prefill!.minTokens, 2, 'tensor-core prefill from 2 tokens');
    } finally {
      m.close();
    }
  }
});

// ---- on the GPU ----
const cudaTest = testsNeeding(cudaDeviceRequirement());

/** A session with the f32 prefill program (the default), which runs it from 2 tokens (the reference sequences are shorter than F32_PREFILL_MIN_TOKENS). */
function f32PrefillSession(m: Parameters<typeof createCudaSession>[0]) {
  const s = createCudaSession(m);
  s.prefillFrom = 2;
  return s;
}

const RUNS = [['dense', 'dense', 'gguf'], ['dense', 'dense', 'hf'], ['moc_k32', { k: 32 }, 'gguf'], ['moc_k32', { k: 32 }, 'hf']] as const;

for (const [label, selection, format] of RUNS) {
  cudaTest.serial(`stories260K ${format} ${label} f32: f32 prefill logits match HF within 1e-3, and decoding after it`, (t) => {
    process.env.MOCC_CUDA_PDL = '1';
    const m = loadModel(CHECKPOINTS[format], { selection });
    t.teardown(() => {
      m.close();
      freeAll();
    });
    const s = f32PrefillSession(m);
    t.truthy(s.m.program.prefill, 'the session has a prefill program');
    t.true([...s.m.program.kernels.keys()].some((k) => k.startsWith('gemm_xwt_f32_')));
    const vocab = m.spec.vocabSize;
    for (const seq of ['greedy_once_upon', 'sample0']) {
      const toks = REF.sequences[seq]!.tokens, cut = toks.length - 3;
      const want = referenceLogits(seq, label);
      s.reset();
      const dp = maxAbsDiff(s.forward(toks), want);
      // a prefill of all but 3 tokens, then those one at a time: the cache the prefill wrote
      s.reset();
      const head = s.forward(toks.slice(0, cut));
      const dh = maxAbsDiff(head, want.subarray(0, cut * vocab));
      let dd = 0;
      toks.slice(cut).forEach((tok, i) => (dd = Math.max(dd, maxAbsDiff(s.forward([tok]), want.subarray((cut + i) * vocab, (cut + i + 1) * vocab)))));
      // the same session's decode steps with T rows (the path verified before): how far the GEMMs move it
      s.usePrefill = false;
      s.reset();
      const dg = maxAbsDiff(s.forward(toks), want);
      s.usePrefill = true;
      const msg = `${seq} (${toks.length} tokens): max|Δ| vs HF: f32 prefill ${dp.toExponential(2)} (of ${cut}: ${dh.toExponential(2)}), decode after it ${dd.toExponential(2)}; decode steps with T rows ${dg.toExponential(2)}`;
      t.log(msg);
      t.true(dp <= 1e-3 && dh <= 1e-3 && dd <= 1e-3, msg);
    }
    s.close();
  });
}
