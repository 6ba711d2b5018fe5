// Whole-model gradients of stories260K through our autodiff on the ref target, against PyTorch's
// (fixtures/stories260K/reference/grads, fixtures/gen/make_stories260k_grads.py): dense and MoC
// K=32, mean next-token cross-entropy of a fixed batch of two sequences. Every param's gradient
// within 1e-4 of PyTorch's, relative to the tensor's largest entry (per element, float32 itself is
// off by ~1e-3 on small entries: the fixture's README measures it). Every checkpoint policy gives
// bit-identical gradients, and the bytes the ref executor held equal the memory plan's peak.
import test from 'ava';
import { loadModel } from '../../driver/load.js';
import { trainingGraph } from '../../driver/training-graph.js';
import { gradOutputs } from '../../passes/autodiff.js';
import { CHECKPOINT_POLICIES, type CheckpointPolicy } from '../../passes/checkpoint.js';
import { planMemory } from '../../passes/memory-plan.js';
import { paramF32 } from '../../src/model/runnable.js';
import { runTrainingGraph } from '../../targets/ref/train.js';
import { CHECKPOINTS } from '../helpers/fixtures.js';
import { packedInputs } from '../helpers/train-tiny-model.js';
import { inParamLayout, referenceGrads } from '../helpers/grad-reference.js';

for (const [label, selection, which] of [['dense', 'dense', 'dense'], ['MoC K=32', { k: 32 }, 'moc_k32']] as const) {
  test(`${label}: gradients of every param equal PyTorch's, and all checkpoint policies agree bit for bit`, (t) => {
    const ref = referenceGrads(which);
    const m = loadModel(CHECKPOINTS.hf, { selection });
    try {
      const seqs = ref.batch;
      const rows = seqs.flat().length;
      const inputs = packedInputs(seqs);
      const weights = new Map(m.graph.params.map((p) => [p.name, paramF32(m.weights, p)]));
      const policies = CHECKPOINT_POLICIES.filter((p) => which === 'moc_k32' || !p.startsWith('moc'));
      let first: Map<string, Float32Array> | undefined;
      for (const policy of policies as CheckpointPolicy[]) {
        const g = trainingGraph(m.graph, { loss: { kind: 'cross_entropy' }, policy });
        const run = runTrainingGraph(g, weights, inputs, rows);
        const grads = new Map(gradOutputs(g).map(({ param }, i) => [param, run.outputs[i + 1] as Float32Array]));
        const planned = planMemory(g, { T: rows }).peakBytes;
        t.is(run.peakBytes, planned, `${policy}: bytes held by the ref executor = the plan's peak`);
        if (!first) {
          first = grads;
          const loss = (run.outputs[0] as Float32Array)[0]!;
          t.true(Math.abs(loss - ref.loss) <= 1e-5 * ref.loss, `loss ${loss} vs PyTorch ${ref.loss}`);
          const expected = inParamLayout(ref.grads, m.graph.params);
          t.is(grads.size, expected.size, 'one gradient per param');
          let worst = 0, worstName = '';
          for (const [name, e] of expected) {
            const mine = grads.get(name)!;
            t.is(mine.length, e.data.length, name);
            let maxRef = 0, maxDiff = 0;
            for (let i = 0; i < e.data.length; i++) {
              maxRef = Math.max(maxRef, Math.abs(e.data[i]!));
              maxDiff = Math.max(maxDiff, Math.abs(mine[i]! - e.data[i]!));
            }
            const rel = maxDiff / maxRef;
            if (rel > worst) [worst, worstName] = [rel, name];
            t.true(rel <= 1e-4, `${name}: max |Δ| / max |ref| = ${rel.toExponential(2)}`);
          }
          t.log(`${label}: loss ${loss} (PyTorch ${ref.loss.toFixed(8)}), worst param ${worstName} at ${worst.toExponential(2)} of its largest gradient`);
        } else {
          for (const [name, gr] of first) t.deepEqual(grads.get(name), gr, `${policy}: ${name} bit-identical to ${policies[0]}`);
        }
        t.log(`${policy}: peak activation bytes ${planned}`);
      }
    } finally {
      m.close();
    }
  });
}
