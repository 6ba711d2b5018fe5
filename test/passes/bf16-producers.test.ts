// bf16-producers (passes/bf16-producers.ts): before/after IR text written out by hand (what it folds
// and every reason it leaves a cast alone); the op table's dtype attribute checked by the verifier;
// on the stories260K training graphs after bf16-gemm-operands (dense gcp, MoC moc-gcp): the result
// verifies, folds every cast of a value only casts read whose producer is in the table, and computes
// bit-identical outputs under the bf16-GEMM oracle (test/helpers/train-bf16-oracle.ts, through the
// ref target's evalNode, which rounds a dtype="bf16" node's output as it rounds a cast's); the 1B
// preset's plan shrinks. The CUDA executor with the pass on and off: cuda-train-bf16-producers.test.ts.
import test from 'ava';
import { checkpointGraph, loadModel } from '../../driver/load.js';
import { modelWeights } from '../../driver/evaluate.js';
import { trainingGraph } from '../../driver/training-graph.js';
import { bf16GemmOperands } from '../../passes/bf16-gemm-operands.js';
import { bf16ProducerValues, bf16Producers } from '../../passes/bf16-producers.js';
import type { CheckpointPolicy } from '../../passes/checkpoint.js';
import { BF16_OUTPUT_OPS } from '../../src/ir/ops.js';
import { parseGraph } from '../../src/ir/parse.js';
import { verifyGraph } from '../../src/ir/verify.js';
import { CHECKPOINTS } from '../helpers/fixtures.js';
import { runTrainingGraphBf16Matmuls } from '../helpers/train-bf16-oracle.js';
import { batch } from '../helpers/train-tiny-model.js';
import { assertRewrite, sameBits } from '../helpers/pass-checks.js';
import { roundBf16 } from '../helpers/train-bf16-oracle.js';
import { evalNode } from '../../targets/ref/eval-node.js';
import { PRESET_1B } from '../../src/model/presets.js';
import { executorPlan } from '../../targets/cuda/train/executor.js';

/** The test graph around its body: the same inputs, params and outputs before and after. */
const block = (body: string) => `graph block
  input %x : f32[T,8]
  input %dy : f32[T,6]
  input %pos : i32[T]
  input %idx : i32[T,2]
  param @n : f32[8]
  param @wq : f32[6,8]
  param @wg : f32[5,8]
${body}
  output %y
  output %dx
  output %dwq
  output %dwg
  output %u
  output %m
end
`;

const ROPE = 'head_dim=6, heads=1, style="half", theta=10000';

// Folded: %xn (rmsnorm, read by one cast), %dq (rope_grad, read by two casts: both go), %dg
// (moc_scatter). Left alone: %h (rmsnorm, also read by add), %m (mul: not an op that writes bf16),
// %u (rope_grad, a graph output), %dr (rope_grad, read by nothing).
const BEFORE = block(`  %xn = rmsnorm(%x, @n) {eps=0.00001} : f32[T,8]
  %xn.bf16 = cast(%xn) {dtype="bf16"} : bf16[T,8]
  %q = linear(%xn.bf16, @wq) : f32[T,6]
  %h = rmsnorm(%x, @n) {eps=0.00001} : f32[T,8]
  %h.bf16 = cast(%h) {dtype="bf16"} : bf16[T,8]
  %y = add(%h, %x) : f32[T,8]
  %dq = rope_grad(%dy, %pos) {${ROPE}} : f32[T,6]
  %dq.bf16 = cast(%dq) {dtype="bf16"} : bf16[T,6]
  %dx = matmul(%dq.bf16, @wq) : f32[T,8]
  %dq.bf16.1 = cast(%dq) {dtype="bf16"} : bf16[T,6]
  %dwq = matmul_tn(%dq.bf16.1, %xn.bf16) : f32[6,8]
  %m = mul(%q, %dy) : f32[T,6]
  %m.bf16 = cast(%m) {dtype="bf16"} : bf16[T,6]
  %u = rope_grad(%q, %pos) {${ROPE}} : f32[T,6]
  %u.bf16 = cast(%u) {dtype="bf16"} : bf16[T,6]
  %dr = rope_grad(%m, %pos) {${ROPE}} : f32[T,6]
  %k = moc_gather(%m, %idx) : f32[T,2]
  %dg = moc_scatter(%k, %idx) {channels=5} : f32[T,5]
  %dg.bf16 = cast(%dg) {dtype="bf16"} : bf16[T,5]
  %dwg = matmul_tn(%dg.bf16, %h.bf16) : f32[5,8]`);

const AFTER = block(`  %xn = rmsnorm(%x, @n) {dtype="bf16", eps=0.00001} : bf16[T,8]
  %q = linear(%xn, @wq) : f32[T,6]
  %h = rmsnorm(%x, @n) {eps=0.00001} : f32[T,8]
  %h.bf16 = cast(%h) {dtype="bf16"} : bf16[T,8]
  %y = add(%h, %x) : f32[T,8]
  %dq = rope_grad(%dy, %pos) {dtype="bf16", ${ROPE}} : bf16[T,6]
  %dx = matmul(%dq, @wq) : f32[T,8]
  %dwq = matmul_tn(%dq, %xn) : f32[6,8]
  %m = mul(%q, %dy) : f32[T,6]
  %m.bf16 = cast(%m) {dtype="bf16"} : bf16[T,6]
  %u = rope_grad(%q, %pos) {${ROPE}} : f32[T,6]
  %u.bf16 = cast(%u) {dtype="bf16"} : bf16[T,6]
  %dr = rope_grad(%m, %pos) {${ROPE}} : f32[T,6]
  %k = moc_gather(%m, %idx) : f32[T,2]
  %dg = moc_scatter(%k, %idx) {channels=5, dtype="bf16"} : bf16[T,5]
  %dwg = matmul_tn(%dg, %h.bf16) : f32[5,8]`);

test('folds the casts of values only casts read into their producers: before/after IR text', (t) => {
  assertRewrite(t, bf16Producers, BEFORE, AFTER, 'a second run finds nothing more to fold');
});

test('the dtype attribute: only on the ops of BF16_OUTPUT_OPS, only "bf16", and the declared type must follow it', (t) => {
  const one = (node: string) => () => verifyGraph(parseGraph(`graph g\n  input %x : f32[T,8]\n  param @n : f32[8]\n${node}\n  output %y\nend\n`));
  t.notThrows(one('  %y = rmsnorm(%x, @n) {dtype="bf16", eps=0.00001} : bf16[T,8]'));
  t.throws(one('  %y = rmsnorm(%x, @n) {dtype="bf16", eps=0.00001} : f32[T,8]'), { message: /declared f32\[T,8\] but the op gives bf16\[T,8\]/ });
  t.throws(one('  %y = rmsnorm(%x, @n) {dtype="f16", eps=0.00001} : f32[T,8]'), { message: /dtype must be bf16/ });
  t.throws(one('  %y = silu(%x) {dtype="bf16"} : bf16[T,8]'), { message: /unknown attribute 'dtype'/ });
  t.deepEqual([...BF16_OUTPUT_OPS].sort(), ['cross_entropy_grad', 'moc_scatter', 'rmsnorm', 'rope_grad']);
});

test('the ref target rounds a dtype="bf16" node\'s output to nearest even, as it rounds a cast', (t) => {
  const x = Float32Array.of(1, 2, 3, 4.001, -5, 6, 7, 8), w = Float32Array.of(1, 1.5, 1, 1, 1, 1, 1, 0.3);
  const node = (attrs: Record<string, string | number>) => ({ op: 'rmsnorm', inputs: [{ kind: 'value' as const, name: 'x' }, { kind: 'param' as const, name: 'n' }], attrs, outputs: [{ name: 'y', type: { dtype: 'f32' as const, shape: ['T', 8] } }] });
  const f32 = evalNode(node({ eps: 1e-5 }), [x, w], () => 8)[0] as Float32Array;
  const bf16 = evalNode(node({ eps: 1e-5, dtype: 'bf16' }), [x, w], () => 8)[0] as Float32Array;
  t.deepEqual([...bf16], [...roundBf16(f32)]);
  t.notDeepEqual([...bf16], [...f32], 'the inputs were chosen so that rounding changes something');
});

const CASES: Array<[string, 'dense' | { k: number }, CheckpointPolicy]> = [
  ['dense, gcp', 'dense', 'gcp'],
  ['MoC K = 32, moc-gcp', { k: 32 }, 'moc-gcp'],
];

for (const [what, selection, policy] of CASES) {
  test(`stories260K ${what}, after bf16-gemm-operands: verifies, folds every eligible cast, bit-identical under the bf16-GEMM oracle`, (t) => {
    const m = loadModel(CHECKPOINTS.hf, { selection });
    try {
      const g = bf16GemmOperands.run(trainingGraph(m.graph, { loss: { kind: 'cross_entropy' }, policy }));
      const folded = bf16ProducerValues(g);
      const after = bf16Producers.run(g);
      verifyGraph(after);
      const producers = after.nodes.filter((n) => n.attrs.dtype === 'bf16' && n.op !== 'cast');
      t.is(producers.length, folded.size);
      t.is(g.nodes.length - after.nodes.length, [...folded.values()].reduce((s, c) => s + c.length, 0), 'one node fewer per cast folded');
      const ops = new Set(producers.map((n) => n.op));
      t.true(ops.has('rmsnorm') && ops.has('rope_grad') && ops.has('cross_entropy_grad') && (selection === 'dense' || ops.has('moc_scatter')), [...ops].join(', '));
      t.deepEqual(bf16ProducerValues(after).size, 0, 'nothing left to fold');

      const T = 45, weights = modelWeights(m);
      const inputs = batch([20, 25], m.spec.vocabSize, 7);
      const want = runTrainingGraphBf16Matmuls(g, weights, inputs, T), got = runTrainingGraphBf16Matmuls(after, weights, inputs, T);
      sameBits(t, got, want, g.outputs);
      t.log(`${folded.size} producers write bf16 (${[...ops].join(', ')}), ${g.nodes.length - after.nodes.length} casts gone`);
    } finally {
      m.close();
    }
  });
}

test('the 1B preset at 64 × 256 rows: the folded casts plan a smaller arena (dense gcp, MoC K = 1024 moc-gcp), as bench/train-plan-1b.ts prints', (t) => {
  for (const [selection, policy] of [['dense', 'gcp'], [{ k: 1024 }, 'moc-gcp']] as const) {
    const g = trainingGraph(checkpointGraph(PRESET_1B, (n) => (n.includes('norm') ? 'f32' : 'bf16'), selection), { loss: { kind: 'cross_entropy' }, policy });
    const off = executorPlan(g, 64 * 256, { matmul: 'bf16', bf16Producers: false }).arenaBytes, on = executorPlan(g, 64 * 256, { matmul: 'bf16' }).arenaBytes;
    t.true(on < off, `${policy}: arena ${(on / 2 ** 30).toFixed(2)} GiB < ${(off / 2 ** 30).toFixed(2)}`);
    t.log(`${policy}: arena ${(off / 2 ** 30).toFixed(2)} → ${(on / 2 ** 30).toFixed(2)} GiB`);
  }
});
