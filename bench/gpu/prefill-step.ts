// One prefill of the 1B preset (the prefill program: GEMMs, flash attention, casts) and one decode
// step after it, dense and MoC K=1024: the program compute-sanitizer runs on a 1B prefill (run.sh
// sanitize). Prints a checksum-free summary; the sanitizer's report is the result.
//   node dist/bench/gpu/prefill-step.js --model DIR [--tokens 70]
import { loadModel } from '../../driver/load.js';
import { createCudaSession } from '../../targets/cuda/index.js';

const arg = (name: string) => { const i = process.argv.indexOf(name); return i > 0 ? process.argv[i + 1] : undefined; };
const dir = arg('--model')!, T = Number(arg('--tokens') ?? 70);
for (const [label, selection] of [['dense', 'dense'], ['MoC K=1024', { k: 1024 }]] as const) {
  const m = loadModel(dir, { selection });
  const s = createCudaSession(m);
  if (!s.m.program.prefill) throw new Error('prefill-step: the model has no prefill program (weights not bf16/f16?)');
  const prompt = Array.from({ length: T }, (_, i) => (i * 7919 + 13) % m.spec.vocabSize);
  const logits = s.forward(prompt);
  const next = s.forward([1]);
  const finite = logits.every(Number.isFinite) && next.every(Number.isFinite);
  console.log(`1B ${label}: prefill of ${T} tokens and one decode step ran; logits ${finite ? 'finite' : 'NOT FINITE'}`);
  m.close();
}
