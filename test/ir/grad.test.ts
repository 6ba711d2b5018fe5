// The gradient-rule table sits beside the op table: it names only ops of that table, and lists
// which ops still lack a rule (the training work fills it in).
import test from 'ava';
import { checkGradRules, GRAD_RULES, opsWithoutGradRule, type GradRule } from '../../src/ir/grad.js';
import { OPS } from '../../src/ir/ops.js';

test('the gradient table passes checkGradRules, and the check refuses unknown ops and out-of-arity needs', (t) => {
  t.notThrows(() => checkGradRules(GRAD_RULES));
  const rule = (inputs: number[], outputs: number[] = []): GradRule => ({ needs: { inputs, outputs }, backward: () => [] });
  t.notThrows(() => checkGradRules(new Map([['linear', rule([0, 1], [0])]])));
  t.throws(() => checkGradRules(new Map([['conv2d', rule([0])]])), { message: /unknown op 'conv2d'/ });
  t.throws(() => checkGradRules(new Map([['linear', rule([2])]])), { message: /'linear' needs input 2, but linear takes 2/ });
  t.throws(() => checkGradRules(new Map([['silu', rule([0], [-1])]])), { message: /'silu' needs output -1/ });
});

test('every op of a model graph has a gradient rule; the decode-only ops and the backward ops have none', (t) => {
  const missing = opsWithoutGradRule();
  t.deepEqual(missing, [...OPS.keys()].filter((op) => !GRAD_RULES.has(op)));
  // kv_* appear only in decode graphs (training runs the model graph); the ops gradient rules emit
  // are not differentiated again (no second-order gradients); cast, matmul_acc and rmsnorm_grad_acc are added after
  // autodiff, by a target's lowering (passes/bf16-gemm-operands.ts, passes/matmul-accumulate.ts).
  t.deepEqual([...missing].sort(), [
    'attention_grad', 'cast', 'concat', 'cross_entropy_grad', 'embedding_grad', 'fill_like', 'index_narrow', 'index_widen', 'kl_div_grad', 'kv_attention', 'kv_write', 'lm_head_loss_grad',
    'matmul', 'matmul_acc', 'matmul_tn', 'moc_rows_grad', 'moc_scatter', 'rmsnorm_grad', 'rmsnorm_grad_acc', 'rope_grad', 'sigmoid_grad', 'silu_grad',
  ]);
  t.log(`ops without a gradient rule: ${missing.join(', ')}`);
});
