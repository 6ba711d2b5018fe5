// One prefill of T tokens through the prefill program (issue 16), for a profiler: a first call
// (launches prepared, buffers allocated), then a second one; profile the second's kernels with
//   ncu --launch-skip <launches> --launch-count <launches> node dist/bench/gpu/profile-prefill.js DIR T [K]
// Prints the number of kernel launches a prefill makes first (for --launch-skip / --launch-count).
import { loadModel } from '../../driver/load.js';
import { createCudaSession } from '../../targets/cuda/index.js';

const [dir, t, k] = process.argv.slice(2);
const T = Number(t ?? 512);
const m = loadModel(dir!, { selection: k ? { k: Number(k) } : 'dense' });
const s = createCudaSession(m);
const prefill = s.m.program.prefill;
if (!prefill) throw new Error('profile-prefill: the model lowers to no prefill program (its linears are not 16-bit)');
console.log(`launches per prefill: ${prefill.steps.filter((x) => x.kind === 'launch').length}`);
const prompt = Array.from({ length: T }, (_, i) => (i * 7919 + 13) % m.spec.vocabSize);
for (let r = 0; r < 2; r++) {
  s.reset();
  s.forward(prompt, { lastOnly: true });
}
s.close();
m.close();
