// One prefill and one decode step of stories260K (MoC K=32) on the cuda target, graphs off and on:
// the program compute-sanitizer runs (run.sh), so every kernel of a step is checked for memory errors.
import { projectRoot } from '../../src/util/project-root.js';
import { loadModel } from '../../src/model/load.js';
import { createCudaSession } from '../../targets/cuda/index.js';

const m = loadModel(`${projectRoot()}/fixtures/stories260K/gguf/stories260K.gguf`, { selection: { k: 32 } });
const s = createCudaSession(m);
s.useGraphs = false;
s.forward([1, 403, 407, 261, 378]);
const a = s.forward([432]);
s.reset();
s.useGraphs = true;
s.forward([1, 403, 407, 261, 378]);
const b = s.forward([432]);
const same = a.every((v, i) => v === b[i]);
console.log(`one decode step: graphs off and on ${same ? 'agree exactly' : 'DIFFER'}; greedy next token ${a.indexOf(Math.max(...a))}`);
s.greedy(432, 3);
m.close();
process.exitCode = same ? 0 : 1;
