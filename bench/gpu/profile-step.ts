// One decode step of a model, graphs off, so a profiler sees each launch:
//   ncu --launch-skip <step launches> --launch-count <step launches> node dist/bench/gpu/profile-step.js DIR [K|dense] [CONTEXT]
// The context (default 16 tokens) is filled first by the decode steps with T rows (as many launches
// as one step: hence --launch-skip), then one step runs.
// Prints the number of launches a step makes first (for --launch-skip / --launch-count).
import { loadModel } from '../../driver/load.js';
import { createCudaSession } from '../../targets/cuda/index.js';

const [dir, k, context] = process.argv.slice(2);
const m = loadModel(dir!, { selection: k && k !== 'dense' ? { k: Number(k) } : 'dense' });
const s = createCudaSession(m);
s.useGraphs = false;
s.usePrefill = false;
console.log(`launches per step: ${s.m.program.steps.filter((x) => x.kind === 'launch').length}`);
s.forward(Array.from({ length: Number(context ?? 16) }, (_, i) => (i * 7919 + 13) % m.spec.vocabSize), { lastOnly: true });
s.forward([7]);
m.close();
