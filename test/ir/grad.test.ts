// The gradient-rule table sits beside the op table: it names only ops of that table, and lists
// which ops still lack a rule (the training work fills it in).
import test from 'ava';
import { checkGradRules, GRAD_RULES, opsWithoutGradRule, type GradRule } from '../../src/ir/grad.js';
import { OPS } from '../../src/ir/ops.js';

test('the gradient table passes checkGradRules, and the check refuses unknown ops and out-of-arity needs', (t) => {
  t.notThrows(() => checkGradRules(GRAD_RULES));
  const rule = (inputs: number[], outputs: number[] = []): GradRule => ({ needs: { inputs, outputs }, backward: () => [] });
  t.notThrows(() => checkGradRules(new Map([['linear', rule([0, 1], [0])]])));
  t.throws(() => checkGradRules(new Map([['matmul', rule([0])]])), { message: /unknown op 'matmul'/ });
  t.throws(() => checkGradRules(new Map([['linear', rule([2])]])), { message: /'linear' needs input 2, but linear takes 2/ });
  t.throws(() => checkGradRules(new Map([['silu', rule([0], [-1])]])), { message: /'silu' needs output -1/ });
});

test('the ops without a gradient rule are listed (today: all of them)', (t) => {
  const missing = opsWithoutGradRule();
  t.deepEqual(missing, [...OPS.keys()].filter((op) => !GRAD_RULES.has(op)));
  t.deepEqual([...missing].sort(), [
    'add', 'attention', 'embedding', 'kv_attention', 'kv_write', 'linear', 'logits', 'moc_down', 'moc_gather', 'moc_select', 'moc_up', 'mul', 'rmsnorm', 'rope', 'sigmoid', 'silu', 'split', 'transpose',
  ]);
  t.log(`ops without a gradient rule: ${missing.join(', ')}`);
});
