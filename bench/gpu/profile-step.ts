// One decode step of a model, graphs off, so a profiler sees each launch:
//   ncu --launch-skip <prefill launches> --launch-count <step launches> node dist/bench/gpu/profile-step.js DIR [K]
// Prints the number of launches a step makes first (for --launch-skip / --launch-count).
import { loadModel } from '../../driver/load.js';
import { createCudaSession } from '../../targets/cuda/index.js';

const [dir, k] = process.argv.slice(2);
const m = loadModel(dir!, { selection: k ? { k: Number(k) } : 'dense' });
const s = createCudaSession(m);
s.useGraphs = false;
console.log(`launches per step: ${s.m.program.steps.filter((x) => x.kind === 'launch').length}`);
s.forward(Array.from({ length: 16 }, (_, i) => i + 5));
s.forward([7]);
m.close();
