// The cuda target's prefill program (Program.prefill: tensor-core GEMMs for every linear of a call of
// many tokens) on the real stories260K model with 16-bit weights: its Q8_0 GGUF dequantized to bf16
// and to f16 (W_down, whose rows of 172 are no whole Q8_0 blocks, is stored f16 in that file: so the
// bf16 model mixes bf16 and f16 GEMMs, and its MoC form cannot be lowered, as W_up and W_down differ). The oracle is the `ref` target on the very same weights (f32 arithmetic over the
// decoded 16-bit values), so what differs is only what the prefill program rounds on purpose: each
// GEMM's input activations to the weights' 16-bit type (2⁻⁹ relative for bf16, 2⁻¹² for f16).
// Without a GPU: the lowering has a prefill program exactly when some linear has 16-bit weights.
// On the GPU machine (bash bench/gpu/run.sh check) it also checks that the decode steps (GEMVs, f32
// activations) of the same session still agree with ref within 1e-3 after a GEMM prefill.
// On a Hopper GPU (compute capability 9.0): the prefill with MOCC_CUDA_WGMMA=1 (its X·Wᵀ
// linears on gemm-sm90.ts's wgmma GEMM) against the same model's prefill on gemm.ts's GEMMs: the
// same 16-bit inputs, only the f32 accumulation order differs.
import test from 'ava';
import { loadModel } from '../../driver/load.js';
import { lowerToCuda } from '../../targets/cuda/lower.js';
import { buildLlamaGraph } from '../../src/import/llama-graph.js';
import { PRESET_1B } from '../../src/model/presets.js';
import { swigluToMoc } from '../../passes/swiglu-to-moc.js';
import { createCudaSession } from '../../targets/cuda/index.js';
import { refTarget } from '../../targets/ref/index.js';
import { CHECKPOINTS, REF, maxAbsDiff } from '../helpers/fixtures.js';
import { freeAll } from '../helpers/cuda.js';
import { cudaDeviceRequirement, hopperDeviceRequirement, testsNeeding } from '../helpers/requires.js';

const Q8 = CHECKPOINTS.gguf.replace(/\.gguf$/, '.Q8_0.gguf');

test('a prefill program exists exactly when some linear has 16-bit weights', (t) => {
  for (const [path, dequantTo, want] of [[CHECKPOINTS.gguf, undefined, false], [Q8, 'bf16', true], [Q8, 'f16', true]] as const) {
    const m = loadModel(path, { selection: dequantTo === 'bf16' ? 'dense' : { k: 32 }, ...(dequantTo ? { dequantTo } : {}) });
    try {
      const p = lowerToCuda(m.graph, m.spec);
      t.is(p.prefill !== undefined, want, `${path} ${dequantTo ?? ''}`);
      if (p.prefill) {
        const kernels = new Set(p.prefill.steps.flatMap((s) => (s.kind === 'launch' ? [s.kernel] : [])));
        t.true([...kernels].some((k) => k.startsWith(`gemm_xwt_${dequantTo}`)), [...kernels].join(' '));
        t.true([...kernels].some((k) => k.startsWith(`cast_${dequantTo}`)));
        t.true(p.prefill.buffers.some((b) => b.dtype === dequantTo));
      }
    } finally {
      m.close();
    }
  }
});

const cudaTest = testsNeeding(cudaDeviceRequirement());

// Max |Δlogit| allowed against ref for a prefill of 8..40 tokens. Logits of stories260K are O(10);
// every GEMM input rounded to bf16 moves a logit by about 2⁻⁹ of the sums it feeds, over 5 layers
// of ~7 GEMMs: a few 1e-2 for bf16, 8× less for f16. A wrong fragment or a missed tail is O(1).
const TOL = { bf16: 8e-2, f16: 1.5e-2 } as const;

for (const dtype of ['bf16', 'f16'] as const) {
  for (const [label, selection] of dtype === 'bf16' ? [['dense', 'dense'] as const] : [['dense', 'dense'] as const, ['moc_k32', { k: 32 }] as const]) {
    cudaTest.serial(`stories260K Q8_0→${dtype} ${label}: GEMM prefill logits match ref on the same weights; decode after it within 1e-3`, async (t) => {
      const m = loadModel(Q8, { selection, dequantTo: dtype });
      t.teardown(() => {
        m.close();
        freeAll();
      });
      const s = createCudaSession(m, { experimental: true }); // the prefill program is one of MOCC_CUDA_EXPERIMENTAL's paths
      t.truthy(s.m.program.prefill, 'the session has a prefill program');
      const ref = await refTarget.createSession(m);
      for (const seq of ['greedy_once_upon', 'sample0']) {
        const toks = REF.sequences[seq]!.tokens;
        ref.reset();
        const want = await ref.forward(toks);
        s.reset();
        const got = s.forward(toks);
        const dp = maxAbsDiff(got, want);
        // the same call through the decode steps with T rows (GEMVs, f32 activations): the tolerance's baseline
        s.usePrefill = false;
        s.reset();
        const dg = maxAbsDiff(s.forward(toks), want);
        s.usePrefill = true;
        // prefill all but the last 3 tokens on the GEMMs, then decode those through the captured graph
        const cut = toks.length - 3;
        s.reset();
        ref.reset();
        s.forward(toks.slice(0, cut));
        await ref.forward(toks.slice(0, cut));
        let dd = 0;
        for (const tok of toks.slice(cut)) dd = Math.max(dd, maxAbsDiff(s.forward([tok]), await ref.forward([tok])));
        t.log(`${seq} (${toks.length} tokens): max|Δ| vs ref: GEMM prefill ${dp.toExponential(2)}, GEMV prefill ${dg.toExponential(2)}, decode after GEMM prefill ${dd.toExponential(2)}`);
        t.true(dp <= TOL[dtype], `${seq}: GEMM prefill max|Δ| ${dp.toExponential(2)} > ${TOL[dtype]}`);
        t.true(dg <= 1e-3, `${seq}: GEMV prefill max|Δ| ${dg.toExponential(2)}`);
        // the cache written by the GEMM prefill holds rounded k/v: the decode steps inherit that rounding
        t.true(dd <= TOL[dtype], `${seq}: decode after GEMM prefill max|Δ| ${dd.toExponential(2)}`);
      }
    });
  }
}

// What one layer of the 1B preset lowers to in the prefill program, in order: the linears as GEMMs
// over one 16-bit cast of each input, flash attention, the MoC FFN as dense GEMMs around Top-K.
test('1B preset prefill program, one layer: GEMMs for every linear, flash attention, MoC as up GEMM → scatter → down GEMM', (t) => {
  const spec = { ...PRESET_1B, nLayers: 1 };
  const family = (k: string) => k.replace(/_(?:bf16|f16|f32|half|interleaved|h\d|w\d|f\d|d\d|m\d).*?(_acc)?$/, '$1');
  for (const [sel, want] of [
    [null, 'embedding rmsnorm cast gemm_xwt gemm_xwt gemm_xwt rope_store flash_attention cast gemm_xwt_acc rmsnorm cast gemm_xwt gemm_xwt silu_mul cast gemm_xwt_acc rmsnorm cast gemm_xwt'],
    [{ k: 1024 }, 'embedding rmsnorm cast gemm_xwt gemm_xwt gemm_xwt rope_store flash_attention cast gemm_xwt_acc rmsnorm cast gemm_xwt moc_topk gemm_xwt zero moc_scatter_silu gemm_xw_acc rmsnorm cast gemm_xwt'],
  ] as const) {
    let g = buildLlamaGraph(spec, (n) => (n.includes('norm') ? 'f32' : 'bf16'));
    if (sel) g = swigluToMoc.run(g, sel);
    const p = lowerToCuda(g, spec);
    t.is(p.prefill!.steps.map((s) => (s.kind === 'launch' ? family(s.kernel) : 'zero')).join(' '), want);
  }
});

const hopperTest = testsNeeding(hopperDeviceRequirement());

/** A session lowered with MOCC_CUDA_WGMMA set to `wgmma` (restored after). */
function sessionWith(m: Parameters<typeof createCudaSession>[0], wgmma: '1' | undefined) {
  const before = process.env.MOCC_CUDA_WGMMA;
  if (wgmma) process.env.MOCC_CUDA_WGMMA = wgmma;
  else delete process.env.MOCC_CUDA_WGMMA;
  try {
    return createCudaSession(m, { experimental: true });
  } finally {
    if (before === undefined) delete process.env.MOCC_CUDA_WGMMA;
    else process.env.MOCC_CUDA_WGMMA = before;
  }
}

for (const [dtype, label, selection] of [['bf16', 'dense', 'dense'], ['f16', 'dense', 'dense'], ['f16', 'moc_k32', { k: 32 }]] as const) {
  hopperTest.serial(`stories260K Q8_0→${dtype} ${label}: prefill on the Hopper GEMM (MOCC_CUDA_WGMMA=1) matches the prefill on gemm.ts's; decode after it too`, (t) => {
    const m = loadModel(Q8, { selection, dequantTo: dtype });
    t.teardown(() => {
      m.close();
      freeAll();
    });
    const base = sessionWith(m, undefined), hopper = sessionWith(m, '1');
    t.is(base.m.program.kernelsSm90a, undefined, 'the baseline has no sm_90a kernels');
    t.truthy(hopper.m.program.kernelsSm90a, `MOCC_CUDA_WGMMA=1 on ${hopper.m.cuda.device.name} (${hopper.m.cuda.device.computeCapability.join('.')}) gave no sm_90a kernels`);
    // the reference prompts, and 300 tokens (3 row tiles of 128 for the Hopper GEMM)
    const long = Array.from({ length: Math.min(300, m.spec.maxSeqLen - 4) }, (_, i) => REF.sequences.sample0!.tokens[i % REF.sequences.sample0!.tokens.length]!);
    for (const [seq, toks] of [['greedy_once_upon', REF.sequences.greedy_once_upon!.tokens], ['sample0', REF.sequences.sample0!.tokens], ['long', long]] as const) {
      base.reset();
      hopper.reset();
      const want = base.forward(toks), got = hopper.forward(toks);
      const dp = maxAbsDiff(got, want);
      // a few tokens decoded after each prefill: the KV cache the Hopper prefill wrote
      let dd = 0;
      for (const tok of toks.slice(0, 3)) dd = Math.max(dd, maxAbsDiff(hopper.forward([tok]), base.forward([tok])));
      t.log(`${seq} (${toks.length} tokens): max|Δ| wgmma vs mma.sync prefill ${dp.toExponential(2)}, decode after ${dd.toExponential(2)}`);
      t.true(dp <= TOL[dtype], `${seq}: max|Δ| ${dp.toExponential(2)} > ${TOL[dtype]}`);
      t.true(dd <= TOL[dtype], `${seq}: decode after: max|Δ| ${dd.toExponential(2)} > ${TOL[dtype]}`);
    }
  });
}
