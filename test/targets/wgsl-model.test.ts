// The wgsl target on the real stories260K model, run by Dawn on whatever adapter this machine has
// (SwiftShader on the CPU in CI): logits against the Hugging Face references (fixtures/stories260K/
// reference) within 1e-3, by prefill and by one-token decode steps through the KV cache, with both
// kernel variants (the CPU one the runtime picks here, and the GPU one it picks on a real GPU,
// on fewer tokens here, where its barriers make it slow);
// then the exact greedy text, through the device-side greedy loop and through `mocc run`.
import test from 'ava';
import { loadModel } from '../../driver/load.js';
import { lowerToWgsl } from '../../targets/wgsl/lower.js';
import { modelImages } from '../../targets/wgsl/images.js';
import { WgslModel, WgslSession } from '../../targets/wgsl/runtime/session.js';
import { generate } from '../../src/run/generate.js';
import { mocc, moccWithEnv } from '../helpers/cli.js';
import { CHECKPOINTS, REF, maxAbsDiff, referenceLogits } from '../helpers/fixtures.js';
import { testDevice } from '../helpers/webgpu.js';
import type { Variant } from '../../targets/wgsl/kernel.js';
import { testsNeeding, webgpuRequirement } from '../helpers/requires.js';

/** Tests that run kernels need a WebGPU adapter (skipped without one; a failure in CI). */
const gpuTest = testsNeeding(await webgpuRequirement());

const MODES = [['dense', 'dense'], ['moc_k32', { k: 32 }], ['moc_k128', { k: 128 }]] as const;

async function session(path: string, selection: 'dense' | { k: number }, variant: Variant, maxBindingBytes?: number) {
  const dev = await testDevice();
  const model = loadModel(path, { selection });
  const program = lowerToWgsl(model.graph, model.spec, { variant, maxBindingBytes: maxBindingBytes ?? dev.device.limits.maxStorageBufferBindingSize });
  return { model, s: new WgslSession(await WgslModel.create(dev, program, modelImages(model, program))) };
}

for (const variant of ['cpu', 'gpu'] as const) {
  for (const [label, selection] of MODES) {
    gpuTest.serial(`${variant} kernels, ${label}: logits match HF within 1e-3 (prefill and decode steps)`, async (t) => {
      const { model, s } = await session(CHECKPOINTS.gguf, selection, variant);
      try {
        // the gpu kernels run a Top-K MoC FFN fused (kernels/moc-fused.ts): these logits check that path
        const fused = s.model.program.steps.filter((st) => st.kernel.startsWith('moc_select_up/')).length;
        t.is(fused, variant === 'gpu' && selection !== 'dense' ? model.spec.nLayers : 0);
        // The GPU variant on a CPU adapter, where its barriers cost most, runs the first 8 tokens
        // of one sequence only.
        const short = variant === 'gpu' && (await testDevice()).variant === 'cpu';
        for (const seq of short ? ['greedy_once_upon'] : ['greedy_once_upon', 'sample0']) {
          const upTo = short ? 8 : REF.sequences[seq]!.tokens.length;
          const toks = REF.sequences[seq]!.tokens.slice(0, upTo);
          const want = referenceLogits(seq, label).subarray(0, upTo * model.spec.vocabSize);
          s.reset();
          const prefill = await s.forward(toks);
          t.true(maxAbsDiff(prefill, want) <= 1e-3, `${seq} prefill: max |Δ| = ${maxAbsDiff(prefill, want)}`);
          // decode: 4 tokens of prefill, then one token a step
          s.reset();
          const rows = [await s.forward(toks.slice(0, 4))];
          for (const tok of toks.slice(4)) rows.push(await s.forward([tok]));
          const step = new Float32Array(want.length);
          rows.reduce((o, r) => (step.set(r, o), o + r.length), 0);
          t.true(maxAbsDiff(step, want) <= 1e-3, `${seq} decode: max |Δ| = ${maxAbsDiff(step, want)}`);
        }
      } finally {
        s.close();
        model.close();
      }
    });
  }
}

gpuTest.serial('weights bound in row ranges (a 40 KiB binding limit) give the HF logits', async (t) => {
  const { model, s } = await session(CHECKPOINTS.gguf, 'dense', 'cpu', 40 * 1024);
  try {
    const seq = REF.sequences.greedy_once_upon!;
    const got = await s.forward(seq.tokens);
    const want = referenceLogits('greedy_once_upon', 'dense');
    t.true(maxAbsDiff(got, want) <= 1e-3, `max |Δ| = ${maxAbsDiff(got, want)}`);
  } finally {
    s.close();
    model.close();
  }
});

gpuTest.serial('greedy text equals the HF reference (device-side greedy loop, tokens read back at the end)', async (t) => {
  const dev = await testDevice();
  const { model, s } = await session(CHECKPOINTS.gguf, 'dense', dev.variant);
  try {
    const tok = model.tokenizer!;
    const prompt = tok.encode(REF.prompt);
    const out = await generate(s, prompt, { maxTokens: 120, eosId: model.spec.eosId });
    t.is(tok.decode([...prompt, ...out]), REF.greedy_text);
  } finally {
    s.close();
    model.close();
  }
});

gpuTest.serial('mocc run --target wgsl streams the HF greedy text', (t) => {
  const r = mocc('run', CHECKPOINTS.gguf, '--target', 'wgsl', '--prompt', REF.prompt, '--max-tokens', '120');
  t.is(r.code, 0, r.stderr);
  t.is(r.stdout, REF.greedy_text + '\n');
  t.regex(r.stderr, /tok\/s, target wgsl/);
});

test('with no WebGPU adapter, mocc says so plainly', (t) => {
  // A Vulkan driver list naming no driver: Dawn finds no adapter (and a user's choice is not overridden).
  const r = moccWithEnv({ VK_ICD_FILENAMES: '/nonexistent/icd.json', VK_DRIVER_FILES: '/nonexistent/icd.json' }, 'run', CHECKPOINTS.gguf, '--target', 'wgsl', '--tokens', '1,2');
  t.is(r.code, 1, r.stderr);
  t.regex(r.stderr, /^mocc: wgsl target: no WebGPU adapter found/m);
});
