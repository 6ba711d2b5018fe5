// The gradient-rule table sits beside the op table: it names only ops of that table, and lists
// which ops still lack a rule (the training work fills it in).
import test from 'ava';
import { GRAD_RULES, opsWithoutGradRule } from '../../src/ir/grad.js';
import { OPS } from '../../src/ir/ops.js';

test('the gradient table names only known ops', (t) => {
  for (const op of GRAD_RULES.keys()) t.true(OPS.has(op), `gradient rule for unknown op '${op}'`);
  t.pass();
});

test('the ops without a gradient rule are listed (today: all of them)', (t) => {
  const missing = opsWithoutGradRule();
  t.deepEqual(missing, [...OPS.keys()].filter((op) => !GRAD_RULES.has(op)));
  t.deepEqual([...missing].sort(), [
    'add', 'attention', 'embedding', 'kv_attention', 'kv_write', 'linear', 'logits', 'moc_down', 'moc_gather', 'moc_select', 'moc_up', 'mul', 'rmsnorm', 'rope', 'sigmoid', 'silu', 'split', 'transpose',
  ]);
  t.log(`ops without a gradient rule: ${missing.join(', ')}`);
});

test('every rule says which forward inputs and outputs its backward reads, within the op’s arity', (t) => {
  for (const [op, rule] of GRAD_RULES) {
    const def = OPS.get(op)!;
    t.true(rule.needs.inputs.every((i) => i >= 0 && i < def.inputs.length), op);
    t.true(rule.needs.outputs.every((i) => i >= 0), op);
  }
  t.pass();
});
