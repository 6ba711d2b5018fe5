// swiglu-to-moc: before/after IR text, written out by hand (house rule 1: one pass, one text test).
import test from 'ava';
import { parseGraph } from '../../src/ir/parse.js';
import { printGraph } from '../../src/ir/print.js';
import { verifyGraph } from '../../src/ir/verify.js';
import { swigluToMoc, findSwiglu } from '../../passes/swiglu-to-moc.js';
import { UserError } from '../../src/util/errors.js';

const ffn = (silu: string) => `graph ffn
  input %x : f32[T,8]
  param @gate_w : f32[12,8]
  param @up_w : f32[12,8]
  param @down_w : f32[8,12]
  %g = linear(%x, @gate_w) : f32[T,12]
  %u = linear(%x, @up_w) : f32[T,12]
${silu}
  %y = linear(%h, @down_w) : f32[T,8]
  output %y
end
`;
const BEFORE = ffn(`  %s = silu(%g) : f32[T,12]
  %h = mul(%s, %u) : f32[T,12]`);

const AFTER_K5 = `graph ffn
  input %x : f32[T,8]
  param @gate_w : f32[12,8]
  param @up_w : f32[12,8]
  param @down_w : f32[12,8] {transposed}
  %g = linear(%x, @gate_w) : f32[T,12]
  %moc_idx = moc_select(%g) {k=5} : i32[T,5]
  %moc_gate = moc_gather(%g, %moc_idx) : f32[T,5]
  %moc_up = moc_up(%x, @up_w, %moc_idx) : f32[T,5]
  %moc_act = silu(%moc_gate) : f32[T,5]
  %moc_z = mul(%moc_act, %moc_up) : f32[T,5]
  %y = moc_down(%moc_z, @down_w, %moc_idx) : f32[T,8]
  output %y
end
`;

test('rewrites down(silu(gate(x)) ⊙ up(x)) into MoC channel ops', (t) => {
  const g = parseGraph(BEFORE);
  verifyGraph(g);
  t.is(printGraph(swigluToMoc.run(g, { k: 5 })), AFTER_K5);
});

test('matches with the operands of ⊙ swapped and SiLU decomposed as g ⊙ sigmoid(g) (ONNX style)', (t) => {
  const g = parseGraph(ffn(`  %sg = sigmoid(%g) : f32[T,12]
  %s = mul(%g, %sg) : f32[T,12]
  %h = mul(%u, %s) : f32[T,12]`));
  verifyGraph(g);
  t.is(printGraph(swigluToMoc.run(g, { k: 5 })), AFTER_K5);
});

test('a:b pattern gives a per-block selection with K = a·blocks', (t) => {
  const out = printGraph(swigluToMoc.run(parseGraph(BEFORE), { pattern: { a: 1, b: 4 } }));
  t.true(out.includes('%moc_idx = moc_select(%g) {a=1, b=4} : i32[T,3]'));
  // 12 channels in blocks of 5: 2 full blocks keep 2 each, the tail block of 2 keeps 2 → 6
  const tail = printGraph(swigluToMoc.run(parseGraph(BEFORE), { pattern: { a: 2, b: 5 } }));
  t.true(tail.includes('{a=2, b=5} : i32[T,6]'));
});

test('k-ratio rounds to the nearest channel count', (t) => {
  t.true(printGraph(swigluToMoc.run(parseGraph(BEFORE), { kRatio: 0.19 })).includes('{k=2}'));
});

test('a graph whose intermediate value is used elsewhere is left alone', (t) => {
  const g = parseGraph(BEFORE.replace('  output %y', '  output %y\n  output %s'));
  t.is(findSwiglu(g).length, 0);
  t.throws(() => swigluToMoc.run(g, { k: 5 }), { instanceOf: UserError, message: /no SwiGLU FFN/ });
});

test('gate and up must read the same x', (t) => {
  const g = parseGraph(BEFORE.replace('input %x : f32[T,8]', 'input %x : f32[T,8]\n  input %x2 : f32[T,8]').replace('%u = linear(%x,', '%u = linear(%x2,'));
  t.is(findSwiglu(g).length, 0);
});

test('K outside 1..d_ffn and bad patterns are user errors', (t) => {
  const g = parseGraph(BEFORE);
  for (const sel of [{ k: 0 }, { k: 13 }, { k: 2.5 }, { kRatio: 0 }, { kRatio: 1.2 }, { pattern: { a: 3, b: 2 } }, { pattern: { a: 1, b: 13 } }, { k: [1, 2] }]) {
    t.throws(() => swigluToMoc.run(g, sel), { instanceOf: UserError }, JSON.stringify(sel));
  }
});

test('per-layer K follows graph order', (t) => {
  const two = `graph two
  input %x : f32[T,4]
  param @g0 : f32[6,4]
  param @u0 : f32[6,4]
  param @d0 : f32[4,6]
  param @g1 : f32[6,4]
  param @u1 : f32[6,4]
  param @d1 : f32[4,6]
  %a = linear(%x, @g0) : f32[T,6]
  %b = linear(%x, @u0) : f32[T,6]
  %c = silu(%a) : f32[T,6]
  %e = mul(%c, %b) : f32[T,6]
  %y0 = linear(%e, @d0) : f32[T,4]
  %a1 = linear(%y0, @g1) : f32[T,6]
  %b1 = linear(%y0, @u1) : f32[T,6]
  %c1 = silu(%a1) : f32[T,6]
  %e1 = mul(%c1, %b1) : f32[T,6]
  %y1 = linear(%e1, @d1) : f32[T,4]
  output %y1
end
`;
  const out = printGraph(swigluToMoc.run(parseGraph(two), { k: [2, 5] }));
  t.regex(out, /moc_select\(%a\) \{k=2\} : i32\[T,2\]/);
  t.regex(out, /moc_select\(%a1\) \{k=5\} : i32\[T,5\]/);
});

test('a W_down param read elsewhere too keeps its layout and is read through a transpose', (t) => {
  const g = parseGraph(BEFORE.replace('  output %y', '  %y2 = linear(%h2, @down_w) : f32[T,8]\n  output %y\n  output %y2').replace('  input %x : f32[T,8]', '  input %x : f32[T,8]\n  input %h2 : f32[T,12]'));
  const out = printGraph(swigluToMoc.run(g, { k: 5 }));
  t.true(out.includes('  param @down_w : f32[8,12]\n'));
  t.true(out.includes('  %w_down_t = transpose(@down_w) : f32[12,8]\n  %y = moc_down(%moc_z, %w_down_t, %moc_idx) : f32[T,8]'));
});
