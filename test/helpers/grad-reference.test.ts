// The PyTorch gradient fixture (test/helpers/grad-reference.ts) loads and fits our model: every
// param of the dense and the MoC K=32 graph has a gradient of its shape, the batch is the one the
// training-batch test runs, and the MoC gradients are MoC's (zero exactly at never-selected channels).
import test from 'ava';
import { loadModel } from '../../driver/load.js';
import { CHECKPOINTS, REF } from './fixtures.js';
import { GRADS_JSON, inParamLayout, mocSelectedChannels, referenceGrads, type RefGrad } from './grad-reference.js';

const BATCH = [REF.sequences['sample0']!.tokens.slice(0, 40), REF.sequences['greedy_once_upon']!.tokens.slice(0, 24)];

/** Rows (first axis) of a 2-D gradient that are all zero. */
function zeroRows(g: RefGrad): number[] {
  const [r, c] = g.shape as [number, number];
  const out: number[] = [];
  for (let i = 0; i < r; i++) if (g.data.subarray(i * c, (i + 1) * c).every((v) => v === 0)) out.push(i);
  return out;
}

for (const [which, selection] of [['dense', 'dense'], ['moc_k32', { k: 32 }]] as const) {
  test(`${which}: a gradient for every param, in its layout; the batch and loss`, (t) => {
    const ref = referenceGrads(which);
    t.deepEqual(ref.batch, BATCH);
    t.is(GRADS_JSON.loss_terms, 39 + 23);
    t.true(Number.isFinite(ref.loss) && ref.loss > 0);
    const m = loadModel(CHECKPOINTS.hf, { selection });
    try {
      t.deepEqual([...ref.grads.keys()].sort(), m.graph.params.map((p) => p.name).sort(), 'one gradient per param (tied head: none for output)');
      for (const [name, g] of ref.grads) {
        t.deepEqual(g.shape, [...m.weights.get(name)!.shape], `${name}: the checkpoint's layout`);
        t.true(g.data.every(Number.isFinite), `${name}: finite`);
      }
      const mine = inParamLayout(ref.grads, m.graph.params);
      for (const p of m.graph.params) t.deepEqual(mine.get(p.name)!.shape, [...p.type.shape], `${p.name}: the param's layout`);
    } finally {
      m.close();
    }
  });
}

test('moc_k32: W_gate/W_up rows and W_down columns have zero gradient exactly at the never-selected channels', (t) => {
  const moc = referenceGrads('moc_k32');
  const dense = referenceGrads('dense');
  const m = loadModel(CHECKPOINTS.hf, { selection: { k: 32 } });
  try {
    const inParams = inParamLayout(moc.grads, m.graph.params); // MoC's W_down is [d_ffn, d]: a channel a row
    for (let l = 0; l < m.spec.nLayers; l++) {
      const unselected = [...Array(m.spec.dFfn).keys()].filter((c) => !mocSelectedChannels(l).includes(c));
      t.true(unselected.length > 0, `layer ${l}: some channel is never selected in this batch`);
      for (const w of ['w_gate', 'w_up', 'w_down']) {
        t.deepEqual(zeroRows(inParams.get(`layers.${l}.${w}`)!), unselected, `layer ${l} ${w}`);
      }
      t.deepEqual(zeroRows(dense.grads.get(`layers.${l}.w_gate`)!), [], `layer ${l}: dense W_gate has no zero row`);
    }
  } finally {
    m.close();
  }
});
