// The cuda target on the real stories260K model: logits against the Hugging Face references
// (fixtures/stories260K/reference) within 1e-3, by prefill and by one-token steps through the captured
// decode graph, from the GGUF and the HF checkpoints, dense and MoC K=32/128, with programmatic
// dependent launch (Hopper's default) and without; with a bf16 KV cache against HF with bf16-rounded
// keys and values; with the decode attention merged in its split kernel, and the MoC reduce in the
// up·down kernel (alone and with it); then the exact greedy text
// through the device-side greedy loop. They need a CUDA device (the GPU machine: bash
// bench/gpu/run.sh check); elsewhere, CI included, they skip with one line saying why.
import type { ExecutionContext } from 'ava';
import { loadModel } from '../../driver/load.js';
import { generate } from '../../src/run/generate.js';
import { createCudaSession } from '../../targets/cuda/index.js';
import { readFileSync } from 'node:fs';
import { CHECKPOINTS, FIX, REF, maxAbsDiff, meanAbsDiff, referenceLogits } from '../helpers/fixtures.js';
import { freeAll } from '../helpers/cuda.js';
import { stepwiseLogits } from '../helpers/cuda-decode.js';
import { cudaDeviceRequirement, testsNeeding } from '../helpers/requires.js';

const cudaTest = testsNeeding(cudaDeviceRequirement());

/** Both reference sequences through s, whole (one forward) and token by token through the captured graph: each within 1e-3 of HF's `label` logits. */
function matchesHf(t: ExecutionContext, s: ReturnType<typeof createCudaSession>, label: 'dense' | 'moc_k32' | 'moc_k128', whole: string): void {
  for (const seq of ['greedy_once_upon', 'sample0']) {
    const toks = REF.sequences[seq]!.tokens;
    const want = referenceLogits(seq, label);
    s.reset();
    const dp = maxAbsDiff(s.forward(toks), want);
    const dd = maxAbsDiff(stepwiseLogits(s, toks), want);
    t.true(dp <= 1e-3 && dd <= 1e-3, `${seq}: max|Δ| ${whole} ${dp.toExponential(2)}, graph decode ${dd.toExponential(2)}`);
  }
}

const RUNS = [
  ['dense', 'dense', 'gguf', '1'], ['dense', 'dense', 'hf', '1'], ['moc_k32', { k: 32 }, 'gguf', '1'], ['moc_k32', { k: 32 }, 'hf', '1'],
  ['moc_k128', { k: 128 }, 'gguf', '1'], ['moc_k128', { k: 128 }, 'hf', '1'], ['moc_k32', { k: 32 }, 'gguf', '0'], ['dense', 'dense', 'hf', '0'],
] as const;

// Each run as sessions lower by default (here: the split decode attention; f32 weights keep an f32
// cache and have no prefill program) and with the baseline lowering of before issue 16 (targets/cuda/
// index.ts sessionLowerOptions: the one-block-per-head attention), which benchmarks compare with.
for (const [[label, selection, format, pdl], baseline] of RUNS.flatMap((r) => [[r, false], [r, true]] as const)) {
  cudaTest.serial(`stories260K ${format} ${label}${pdl === '0' ? ' (no PDL)' : ''}${baseline ? ' (baseline lowering)' : ''}: logits match HF within 1e-3 (prefill and graph decode)`, (t) => {
    process.env.MOCC_CUDA_PDL = pdl;
    const m = loadModel(CHECKPOINTS[format], { selection });
    t.teardown(() => {
      m.close();
      freeAll();
    });
    const s = createCudaSession(m, { baseline });
    matchesHf(t, s, label, 'prefill');
  });
}

// Sessions merge the decode attention in the split kernel's last block (the tests above run it);
// the combine kernel (LowerOptions.decodeMerge 'combine-kernel', MOCC_CUDA_ATTN_MERGE=0) must give
// the same logits through the T-row decode steps and the captured graph at every position.
for (const [label, selection] of [['dense', 'dense'], ['moc_k32', { k: 32 }]] as const) {
  cudaTest.serial(`stories260K gguf ${label}, attention merged by the combine kernel: logits match HF within 1e-3 (T-row steps and graph decode)`, (t) => {
    process.env.MOCC_CUDA_PDL = '1'; // with programmatic launch where the device has it: layers' kernels overlap, the counters must not mind
    const m = loadModel(CHECKPOINTS.gguf, { selection });
    t.teardown(() => {
      m.close();
      freeAll();
    });
    const s = createCudaSession(m, { decodeMerge: 'combine-kernel' });
    t.true(s.m.program.steps.some((st) => st.kind === 'launch' && st.kernel.startsWith('attention_combine_')));
    t.false(s.m.program.steps.some((st) => st.kind === 'launch' && st.kernel.startsWith('attention_split_merge_')));
    matchesHf(t, s, label, 'T-row steps');
  });
}

// The MoC reduce in the up·down kernel's tail blocks (LowerOptions.mocMerge 'tail', MOCC_CUDA_MOC_TAIL=1),
// with programmatic launch (layers' kernels overlap; every layer and the captured graph reuse the same
// counters): logits within 1e-3 of HF through the T-row steps (T up to the prompt: several rows' tails
// at once) and the graph decode; the same logits bit for bit as the switch off (the tail sums in
// moc_reduce's order), and the same greedy text.
for (const [label, selection] of [['moc_k32', { k: 32 }], ['moc_k128', { k: 128 }]] as const) {
  cudaTest.serial(`stories260K gguf ${label}, MoC reduce in the up·down kernel's tail blocks: logits match HF within 1e-3, equal the switch off bit for bit, same greedy text`, async (t) => {
    process.env.MOCC_CUDA_PDL = '1';
    const m = loadModel(CHECKPOINTS.gguf, { selection });
    t.teardown(() => {
      m.close();
      freeAll();
    });
    const on = createCudaSession(m, { mocMerge: 'tail' });
    const kernels = on.m.program.steps.flatMap((st) => (st.kind === 'launch' ? [st.kernel] : []));
    t.true(kernels.some((k) => k.startsWith('moc_updown') && k.endsWith('_tail')) && !kernels.some((k) => k.startsWith('moc_reduce')), kernels.join(', '));
    matchesHf(t, on, label, 'T-row steps');
    const off = createCudaSession(m, { mocMerge: 'reduce-kernel' });
    for (const seq of ['greedy_once_upon', 'sample0']) {
      const toks = REF.sequences[seq]!.tokens;
      on.reset();
      off.reset();
      const a = on.forward(toks), b = off.forward(toks);
      t.is(a.filter((v, i) => !Object.is(v, b[i])).length, 0, `${seq}: T-row logits differ from the switch off`);
      const sa = stepwiseLogits(on, toks), sb = stepwiseLogits(off, toks);
      t.is(sa.filter((v, i) => !Object.is(v, sb[i])).length, 0, `${seq}: graph-decode logits differ from the switch off`);
    }
    const prompt = REF.sequences.greedy_once_upon!.tokens.slice(0, 4);
    on.reset();
    off.reset();
    const textOn = await generate(on, prompt, { maxTokens: 60, eosId: m.spec.eosId });
    const textOff = await generate(off, prompt, { maxTokens: 60, eosId: m.spec.eosId });
    t.deepEqual(textOn, textOff);
  });
}

// A bf16 KV cache, forced (the weights are f32, so 'auto' keeps the cache f32: checked above by the
// 1e-3 runs, and here by the program). The reference is HF with every key (after RoPE) and value
// rounded to bf16 (fixtures/gen/make_stories260k_bf16kv_reference.py): that rounding moves the logits
// from the f32 reference by max 0.149 / mean 0.0171 (greedy_once_upon) and 0.265 / 0.0210 (sample0).
// What still differs: a key or value whose f32 value lies within our summation-order difference
// (~1e-6 relative) of a bf16 rounding boundary rounds the other way here, one bf16 step (2⁻⁸) on
// that element. With ~4·10⁴ cached elements a sequence, some dozens do, and a max over the logits is
// set by the most sensitive position: the H100 (session 12) measured max 3.58e-2 on greedy_once_upon
// (24% of the move) and 0.259 on sample0 (98% of it), where this test had guessed 2e-2; the means
// were 1.19e-3 and 2.96e-3, 7% and 14% of the move. So the check is on the mean, relative to the move
// the rounding itself makes: the cache must land far nearer the bf16-rounded reference than the f32
// one. A truncating or mis-packed cache lands about as far from it as the f32 reference does.
const BF16_KV_MEAN_SHARE = 0.3;
cudaTest.serial(`stories260K hf dense with a bf16 KV cache: logits lie within ${BF16_KV_MEAN_SHARE} (mean) of the bf16 rounding's own move from HF with bf16-rounded keys and values (prefill and graph decode)`, (t) => {
  process.env.MOCC_CUDA_PDL = '1';
  const m = loadModel(CHECKPOINTS.hf, { selection: 'dense' });
  t.teardown(() => {
    m.close();
    freeAll();
  });
  t.is(createCudaSession(m).m.program.kvCache.dtype, 'f32', 'auto keeps an f32 model\'s cache f32');
  const s = createCudaSession(m, { kvCache: 'bf16' });
  t.is(s.m.program.kvCache.dtype, 'bf16');
  for (const seq of ['greedy_once_upon', 'sample0']) {
    const toks = REF.sequences[seq]!.tokens;
    const want = bf16KvLogits(seq), f32 = referenceLogits(seq, 'dense');
    s.reset();
    const prefill = s.forward(toks);
    const step = stepwiseLogits(s, toks);
    const [dp, dd, moved] = [maxAbsDiff(prefill, want), maxAbsDiff(step, want), maxAbsDiff(step, f32)];
    const [mp, md, refMoved, refMovedMean] = [meanAbsDiff(prefill, want), meanAbsDiff(step, want), maxAbsDiff(want, f32), meanAbsDiff(want, f32)];
    const msg = `${seq}: max|Δ| prefill ${dp.toExponential(2)}, graph decode ${dd.toExponential(2)} (rounding's move ${refMoved.toExponential(2)}); mean ${mp.toExponential(2)}, ${md.toExponential(2)} (move ${refMovedMean.toExponential(2)}); from the f32 reference ${moved.toExponential(2)}`;
    t.log(msg);
    t.true(Math.max(mp, md) <= BF16_KV_MEAN_SHARE * refMovedMean && moved > 0.05, msg);
  }
});


function bf16KvLogits(seq: string): Float32Array {
  const b = readFileSync(`${FIX}reference/${seq}.dense-bf16kv.logits.f32`);
  return new Float32Array(b.buffer.slice(b.byteOffset, b.byteOffset + b.byteLength));
}

cudaTest.serial('greedy text equals the HF reference (device-side greedy loop)', async (t) => {
  process.env.MOCC_CUDA_PDL = '1';
  const m = loadModel(CHECKPOINTS.gguf);
  t.teardown(() => {
    m.close();
    freeAll();
  });
  const tok = m.tokenizer!;
  const prompt = tok.encode(REF.prompt);
  const out = await generate(createCudaSession(m), prompt, { maxTokens: 120, eosId: m.spec.eosId });
  t.is(tok.decode([...prompt, ...out]), REF.greedy_text);
});
