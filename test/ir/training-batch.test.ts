// One model graph serves training and decoding: a batch of two sequences of stories260K, given as
// rows with positions and sequence ids, through the model graph itself (no KV cache) on the ref
// target. Its logits equal two separate prefills (through the decode graph, passes/kv-cache.ts)
// and Hugging Face's reference logits (fixtures/stories260K/reference), row by row.
import test from 'ava';
import { loadModel } from '../../driver/load.js';
import { MODEL_INPUTS } from '../../src/model/graph-inputs.js';
import { RefSession } from '../../targets/ref/session.js';
import { CHECKPOINTS, REF, maxAbsDiff, referenceLogits } from '../helpers/fixtures.js';

// Two sequences of different lengths (prefixes: HF's logits of a prefix are its rows of the whole).
const SEQS = [{ name: 'sample0', rows: 40 }, { name: 'greedy_once_upon', rows: 24 }] as const;

for (const [label, selection, ref] of [['dense', 'dense', 'dense'], ['MoC K=32', { k: 32 }, 'moc_k32']] as const) {
  test(`${label}: a 2-sequence training batch through the model graph equals two prefills and HF's logits`, (t) => {
    const m = loadModel(CHECKPOINTS.hf, { selection });
    try {
      t.is(m.graph.states.length, 0, 'the model graph carries no KV cache');
      t.false(m.graph.nodes.some((n) => n.op === 'kv_attention' || n.op === 'kv_write'));
      const tokens = SEQS.map((s) => REF.sequences[s.name]!.tokens.slice(0, s.rows));
      const V = m.spec.vocabSize;
      const batch = new RefSession(m).evaluate({
        [MODEL_INPUTS.tokens]: Int32Array.from(tokens.flat()),
        [MODEL_INPUTS.pos]: Int32Array.from(tokens.flatMap((s) => s.map((_, i) => i))),
        [MODEL_INPUTS.seq]: Int32Array.from(tokens.flatMap((s, j) => s.map(() => j))),
      }) as Float32Array;
      t.is(batch.length, tokens.flat().length * V);
      // The boundary matters: with one sequence id for all rows, the second sequence sees the first.
      const joined = new RefSession(m).evaluate({
        [MODEL_INPUTS.tokens]: Int32Array.from(tokens.flat()),
        [MODEL_INPUTS.pos]: Int32Array.from(tokens.flatMap((s) => s.map((_, i) => i))),
        [MODEL_INPUTS.seq]: new Int32Array(tokens.flat().length),
      }) as Float32Array;
      t.true(maxAbsDiff(joined.subarray(SEQS[0].rows * V), batch.subarray(SEQS[0].rows * V)) > 1e-2, 'sequence ids change attention');
      let row = 0;
      SEQS.forEach((s, j) => {
        const mine = batch.subarray(row * V, (row + s.rows) * V);
        row += s.rows;
        const prefill = new RefSession(m).forward(tokens[j]!);
        const dPrefill = maxAbsDiff(mine, prefill);
        t.true(dPrefill <= 1e-5, `${s.name}: batch vs its own prefill, max |Δ| = ${dPrefill}`);
        const dHf = maxAbsDiff(mine, referenceLogits(s.name, ref).subarray(0, s.rows * V));
        t.true(dHf <= 1e-4, `${s.name}: batch vs HF, max |Δ| = ${dHf}`);
        t.log(`${s.name} (${s.rows} rows): max |Δ| vs prefill ${dPrefill}, vs HF ${dHf.toExponential(2)}`);
      });
    } finally {
      m.close();
    }
  });
}
