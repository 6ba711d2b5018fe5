// freeze: --trainable all | ffn | globs picks the params that train; autodiff then gives gradients
// (and the optimizer state) to those alone.
import test from 'ava';
import { loadModel } from '../../driver/load.js';
import { trainingGraph } from '../../driver/training-graph.js';
import { gradOutputs } from '../../passes/autodiff.js';
import { freeze, selectTrainable } from '../../passes/freeze.js';
import { UserError } from '../../src/util/errors.js';
import { CHECKPOINTS } from '../helpers/fixtures.js';

const FFN = (l: number) => [`layers.${l}.w_gate`, `layers.${l}.w_up`, `layers.${l}.w_down`];

for (const [label, selection] of [['dense', 'dense'], ['MoC K=32', { k: 32 }]] as const) {
  test(`${label}: ffn selects exactly each layer's gate, up and down; globs select by name`, (t) => {
    const m = loadModel(CHECKPOINTS.hf, { selection });
    try {
      const L = m.spec.nLayers;
      t.deepEqual(new Set(selectTrainable(m.graph, 'ffn')), new Set(Array.from({ length: L }, (_, l) => FFN(l)).flat()));
      t.deepEqual(selectTrainable(m.graph, 'all'), m.graph.params.map((p) => p.name));
      t.deepEqual(selectTrainable(m.graph, 'layers.1.w_up, norm'), ['layers.1.w_up', 'norm']);
      t.deepEqual(selectTrainable(m.graph, 'layers.?.attn_norm').length, L);
      const g = trainingGraph(m.graph, { loss: { kind: 'cross_entropy' }, policy: 'none', trainable: 'layers.*.w_down' });
      t.deepEqual(gradOutputs(g).map((x) => x.param), Array.from({ length: L }, (_, l) => `layers.${l}.w_down`));
      t.throws(() => freeze.run(m.graph, 'nothing.*'), { instanceOf: UserError, message: /selects no parameter/ });
    } finally {
      m.close();
    }
  });
}
