// One prefill and one decode step of stories260K, dense and MoC K=32, on the cuda target, graphs off
// and on: the program compute-sanitizer runs (run.sh), so every kernel of a step (with programmatic
// dependent launch on Hopper, the default) is checked for memory errors and races.
import { projectRoot } from '../../src/util/project-root.js';
import { loadModel } from '../../src/model/load.js';
import { createCudaSession } from '../../targets/cuda/index.js';

let ok = true;
for (const [label, selection] of [['MoC K=32', { k: 32 }], ['dense', 'dense']] as const) {
  const m = loadModel(`${projectRoot()}/fixtures/stories260K/gguf/stories260K.gguf`, { selection });
  const s = createCudaSession(m);
  s.useGraphs = false;
  s.forward([1, 403, 407, 261, 378]);
  const a = s.forward([432]);
  s.reset();
  s.useGraphs = true;
  s.forward([1, 403, 407, 261, 378]);
  const b = s.forward([432]);
  const same = a.every((v, i) => v === b[i]);
  console.log(`${label}: one decode step: graphs off and on ${same ? 'agree exactly' : 'DIFFER'}; greedy next token ${a.indexOf(Math.max(...a))}`);
  s.greedy(432, 3);
  m.close();
  ok &&= same;
}
process.exitCode = ok ? 0 : 1;
