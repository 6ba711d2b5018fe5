// autodiff (with add-loss before it): before/after IR text, written out and checked by hand (house
// rule 1). The tied embedding is read twice, so its gradient is the sum of both reads' (the add at
// the end, the logits' contribution first: reverse order); the frozen norm weight gets none; the
// outputs are the loss, then one gradient per trainable param.
import test from 'ava';
import { autodiff } from '../../passes/autodiff.js';
import { runPipeline } from '../../passes/index.js';
import { addLoss } from '../../passes/loss.js';
import { parseGraph } from '../../src/ir/parse.js';
import { printGraph } from '../../src/ir/print.js';

const BEFORE = `graph tied
  input %tokens : i32[T]
  param @emb : f32[5,3]
  param @n : f32[3] {frozen}
  %x = embedding(@emb, %tokens) : f32[T,3]
  %h = rmsnorm(%x, @n) {eps=0.00001} : f32[T,3]
  %logits = logits(%h, @emb) : f32[T,5]
  output %logits
end
`;

// Backward values are named after the forward node whose rule emitted them: %d.loss is the seed 1,
// %d.loss.1 the loss's gradient for the logits, %d.logits / %d.logits.1 the logits op's for %h and @emb.
const AFTER = `graph tied
  input %tokens : i32[T]
  input %targets : i32[T]
  param @emb : f32[5,3]
  param @n : f32[3] {frozen}
  %x = embedding(@emb, %tokens) : f32[T,3]
  %h = rmsnorm(%x, @n) {eps=0.00001} : f32[T,3]
  %logits = logits(%h, @emb) : f32[T,5]
  %loss = cross_entropy(%logits, %targets) : f32[1]
  %d.loss = fill_like(%loss) {value=1} : f32[1]
  %d.loss.1 = cross_entropy_grad(%logits, %targets, %d.loss) : f32[T,5]
  %d.logits = matmul(%d.loss.1, @emb) : f32[T,3]
  %d.logits.1 = matmul_tn(%d.loss.1, %h) : f32[5,3]
  %d.h, %d.h.1 = rmsnorm_grad(%x, @n, %d.logits) {eps=0.00001} : f32[T,3], f32[3]
  %d.x = embedding_grad(%d.h, %tokens) {rows=5} : f32[5,3]
  %d.x.1 = add(%d.logits.1, %d.x) : f32[5,3]
  output %loss
  output %d.x.1
end
`;

const train = (text: string) => runPipeline(parseGraph(text), [{ pass: addLoss, options: { kind: 'cross_entropy' } }, { pass: autodiff }]);

test('forward + loss → forward + backward: fan-out summed, frozen params skipped', (t) => {
  t.is(printGraph(train(BEFORE)), AFTER);
});

test('a trainable param the loss does not depend on gets a zero gradient', (t) => {
  const g = train(BEFORE.replace('  param @n : f32[3] {frozen}\n', '  param @n : f32[3] {frozen}\n  param @unused : f32[2]\n'));
  t.regex(printGraph(g), /%d\.unused = fill_like\(@unused\) \{value=0\} : f32\[2\]\n  output %loss\n  output %d\.x\.1\n  output %d\.unused/);
});

test('an op without a gradient rule on the path to the loss is an error naming the node', (t) => {
  const g = BEFORE.replace('%logits = logits(%h, @emb) : f32[T,5]', '%hh = concat(%h, %h) : f32[T,6]\n  %logits = linear(%hh, @w) : f32[T,5]').replace('param @n', 'param @w : f32[5,6]\n  param @n');
  t.throws(() => train(g), { message: /autodiff: op concat has no gradient rule \(node %hh\)/ });
});

test('the first output must be a scalar loss', (t) => {
  t.throws(() => autodiff.run(parseGraph(BEFORE)), { message: /must be a scalar loss f32\[1\], got f32\[T,5\]/ });
});
