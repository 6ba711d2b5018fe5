// The cuda target on the real stories260K model: logits against the Hugging Face references
// (fixtures/stories260K/reference) within 1e-3, by prefill and by one-token steps through the captured
// decode graph, from the GGUF and the HF checkpoints, dense and MoC K=32/128, with programmatic
// dependent launch (Hopper's default) and without; then the exact greedy text through the
// device-side greedy loop. They need a CUDA device (the GPU machine: bash bench/gpu/run.sh check);
// elsewhere, CI included, they skip with one line saying why.
import { loadModel } from '../../driver/load.js';
import { generate } from '../../src/run/generate.js';
import { createCudaSession } from '../../targets/cuda/index.js';
import { CHECKPOINTS, REF, maxAbsDiff, referenceLogits } from '../helpers/fixtures.js';
import { freeAll } from '../helpers/cuda.js';
import { cudaDeviceRequirement, testsNeeding } from '../helpers/requires.js';

const cudaTest = testsNeeding(cudaDeviceRequirement());

const RUNS = [
  ['dense', 'dense', 'gguf', '1'], ['dense', 'dense', 'hf', '1'], ['moc_k32', { k: 32 }, 'gguf', '1'], ['moc_k32', { k: 32 }, 'hf', '1'],
  ['moc_k128', { k: 128 }, 'gguf', '1'], ['moc_k128', { k: 128 }, 'hf', '1'], ['moc_k32', { k: 32 }, 'gguf', '0'], ['dense', 'dense', 'hf', '0'],
] as const;

for (const [label, selection, format, pdl] of RUNS) {
  cudaTest.serial(`stories260K ${format} ${label}${pdl === '0' ? ' (no PDL)' : ''}: logits match HF within 1e-3 (prefill and graph decode)`, (t) => {
    process.env.MOCC_CUDA_PDL = pdl;
    const m = loadModel(CHECKPOINTS[format], { selection });
    t.teardown(() => {
      m.close();
      freeAll();
    });
    const s = createCudaSession(m);
    for (const seq of ['greedy_once_upon', 'sample0']) {
      const toks = REF.sequences[seq]!.tokens;
      const want = referenceLogits(seq, label);
      s.reset();
      const dp = maxAbsDiff(s.forward(toks), want);
      // decode path: 4 tokens of prefill, then one token at a time through the captured graph
      s.reset();
      const rows = [s.forward(toks.slice(0, 4))];
      for (const tok of toks.slice(4)) rows.push(s.forward([tok]));
      const step = new Float32Array(want.length);
      let o = 0;
      for (const row of rows) (step.set(row, o), (o += row.length));
      const dd = maxAbsDiff(step, want);
      t.true(dp <= 1e-3 && dd <= 1e-3, `${seq}: max|Δ| prefill ${dp.toExponential(2)}, graph decode ${dd.toExponential(2)}`);
    }
  });
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
