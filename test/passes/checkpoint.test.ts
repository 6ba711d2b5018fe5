// checkpoint: before/after IR text, written out and checked by hand (house rule 1: one pass, one
// text test). The pass runs inside trainingGraph (freeze → add-loss → autodiff → checkpoint); the
// text below is the whole training graph of a one-layer MoC FFN model under moc-gcp.
import test from 'ava';
import { parseGraph } from '../../src/ir/parse.js';
import { printGraph } from '../../src/ir/print.js';
import { trainingGraph } from '../../driver/training-graph.js';
import type { CheckpointPolicy } from '../../passes/checkpoint.js';
import { UserError } from '../../src/util/errors.js';
import { checkpointGraph } from '../../driver/load.js';
import { TINY } from '../helpers/train-tiny-model.js';

// Rows of width 4 → RMSNorm → MoC FFN (5 channels, K=2) → residual add → logits over 6 tokens.
const MOC = `graph tiny
  input %x : f32[T,4]
  param @ffn_norm : f32[4]
  param @w_gate : f32[5,4]
  param @w_up : f32[5,4]
  param @w_down : f32[5,4] {transposed}
  param @head : f32[6,4]
  %h = rmsnorm(%x, @ffn_norm) {eps=0.00001} : f32[T,4]
  %g = linear(%h, @w_gate) : f32[T,5]
  %idx = moc_select(%g) {k=2} : i32[T,2]
  %gk = moc_gather(%g, %idx) : f32[T,2]
  %uk = moc_up(%h, @w_up, %idx) : f32[T,2]
  %s = silu(%gk) : f32[T,2]
  %z = mul(%s, %uk) : f32[T,2]
  %y = moc_down(%z, @w_down, %idx) : f32[T,4]
  %r = add(%x, %y) : f32[T,4]
  %logits = logits(%r, @head) : f32[T,6]
  output %logits
end
`;

// MoC+GCP as the paper has it: saved per token are x (here %h, the FFN input: dW_gate and dW_up
// read it), G⊙M (%gk: silu_grad reads it), U⊙M (%uk) and M as u16 (%idx.u16, narrowed right after
// moc_select; the i32 %idx dies with its last forward reader, moc_down). SiLU and the product are
// recomputed (%s.re, %z.re) just before their first backward reader (dW_down's moc_rows_grad, which
// follows d.y: the gradient of %z is W_down's kept rows · dy, a moc_up). The full gate %g is not
// saved: moc_gather's gradient is a scatter into F channels. %r is saved for d@head, %logits for
// cross_entropy_grad, %loss for fill_like's shape. Gradients: %x is an input, so d%r flows straight
// into %y (no add); the fan-out of %h sums moc_up's then linear's part (reverse node order); the
// outputs follow the params' declaration order.
const MOC_GCP = `graph tiny
  input %x : f32[T,4]
  input %targets : i32[T]
  param @ffn_norm : f32[4]
  param @w_gate : f32[5,4]
  param @w_up : f32[5,4]
  param @w_down : f32[5,4] {transposed}
  param @head : f32[6,4]
  %h = rmsnorm(%x, @ffn_norm) {eps=0.00001} : f32[T,4] [ckpt=save]
  %g = linear(%h, @w_gate) : f32[T,5]
  %idx = moc_select(%g) {k=2} : i32[T,2]
  %idx.u16 = index_narrow(%idx) : u16[T,2] [ckpt=save]
  %gk = moc_gather(%g, %idx) : f32[T,2] [ckpt=save]
  %uk = moc_up(%h, @w_up, %idx) : f32[T,2] [ckpt=save]
  %s = silu(%gk) : f32[T,2] [ckpt=recompute]
  %z = mul(%s, %uk) : f32[T,2] [ckpt=recompute]
  %y = moc_down(%z, @w_down, %idx) : f32[T,4]
  %r = add(%x, %y) : f32[T,4] [ckpt=save]
  %logits = logits(%r, @head) : f32[T,6] [ckpt=save]
  %loss = cross_entropy(%logits, %targets) : f32[1] [ckpt=save]
  %d.loss = fill_like(%loss) {value=1} : f32[1]
  %d.loss.1 = cross_entropy_grad(%logits, %targets, %d.loss) : f32[T,6]
  %d.logits = matmul(%d.loss.1, @head) : f32[T,4]
  %d.logits.1 = matmul_tn(%d.loss.1, %r) : f32[6,4]
  %idx.w = index_widen(%idx.u16) : i32[T,2]
  %d.y = moc_up(%d.logits, @w_down, %idx.w) : f32[T,2]
  %s.re = silu(%gk) : f32[T,2]
  %z.re = mul(%s.re, %uk) : f32[T,2]
  %d.y.1 = moc_rows_grad(%z.re, %d.logits, %idx.w) {rows=5} : f32[5,4]
  %d.z = mul(%d.y, %uk) : f32[T,2]
  %d.z.1 = mul(%d.y, %s.re) : f32[T,2]
  %d.s = silu_grad(%gk, %d.z) : f32[T,2]
  %d.uk = moc_down(%d.z.1, @w_up, %idx.w) : f32[T,4]
  %d.uk.1 = moc_rows_grad(%d.z.1, %h, %idx.w) {rows=5} : f32[5,4]
  %d.gk = moc_scatter(%d.s, %idx.w) {channels=5} : f32[T,5]
  %d.g = matmul(%d.gk, @w_gate) : f32[T,4]
  %d.g.1 = matmul_tn(%d.gk, %h) : f32[5,4]
  %d.g.2 = add(%d.uk, %d.g) : f32[T,4]
  %d.h, %d.h.1 = rmsnorm_grad(%x, @ffn_norm, %d.g.2) {eps=0.00001} : f32[T,4], f32[4]
  output %loss
  output %d.h.1
  output %d.g.1
  output %d.uk.1
  output %d.y.1
  output %d.logits.1
end
`;

const train = (text: string, policy: CheckpointPolicy) => printGraph(trainingGraph(parseGraph(text), { loss: { kind: 'cross_entropy' }, policy }));

test('moc-gcp: saves x, G⊙M, U⊙M and u16 indices; recomputes SiLU and the product in the backward', (t) => {
  t.is(train(MOC, 'moc-gcp'), MOC_GCP);
});

test('moc: as moc-gcp but SiLU and the product are saved, not recomputed', (t) => {
  const expected = MOC_GCP
    .replace('[ckpt=recompute]\n  %z', '[ckpt=save]\n  %z').replace('f32[T,2] [ckpt=recompute]\n  %y', 'f32[T,2] [ckpt=save]\n  %y')
    .replace('  %s.re = silu(%gk) : f32[T,2]\n  %z.re = mul(%s.re, %uk) : f32[T,2]\n', '')
    .replace('moc_rows_grad(%z.re,', 'moc_rows_grad(%z,').replace('mul(%d.y, %s.re)', 'mul(%d.y, %s)');
  t.is(train(MOC, 'moc'), expected);
});

test('none and gcp keep the MoC indices in i32: no index_narrow, the backward reads %idx itself', (t) => {
  for (const policy of ['none', 'gcp'] as const) {
    const out = train(MOC, policy);
    t.false(out.includes('index_narrow') || out.includes('index_widen'), policy);
    t.true(out.includes('  %idx = moc_select(%g) {k=2} : i32[T,2] [ckpt=save]\n'), policy);
    t.true(out.includes('  %d.gk = moc_scatter(%d.s, %idx) {channels=5} : f32[T,5]\n'), policy);
  }
});

const DENSE = (activation: string) => `graph dense
  input %x : f32[T,4]
  param @ffn_norm : f32[4]
  param @w_gate : f32[5,4]
  param @w_up : f32[5,4]
  param @w_down : f32[4,5]
  param @head : f32[6,4]
  %h = rmsnorm(%x, @ffn_norm) {eps=0.00001} : f32[T,4]
  %g = linear(%h, @w_gate) : f32[T,5]
  %u = linear(%h, @w_up) : f32[T,5]
${activation}
  %y = linear(%z, @w_down) : f32[T,4]
  %r = add(%x, %y) : f32[T,4]
  %logits = logits(%r, @head) : f32[T,6]
  output %logits
end
`;

test('moc, moc-gcp and moc-gcp-attn on a dense graph are a one-line user error', (t) => {
  for (const policy of ['moc', 'moc-gcp', 'moc-gcp-attn'] as const) {
    const e = t.throws(() => train(DENSE('  %s = silu(%g) : f32[T,5]\n  %z = mul(%s, %u) : f32[T,5]'), policy), { instanceOf: UserError });
    t.regex(e!.message, /^checkpoint policy moc(-gcp)?(-attn)? needs a MoC model .*use none, gcp, gcp-attn$/);
    t.false(e!.message.includes('\n'));
  }
  t.throws(() => train(MOC, 'bogus' as CheckpointPolicy), { instanceOf: UserError, message: /^unknown checkpoint policy 'bogus'/ });
});

test('dense gcp: G and U saved, SiLU and the product recomputed before dW_down reads the product', (t) => {
  const out = train(DENSE('  %s = silu(%g) : f32[T,5]\n  %z = mul(%s, %u) : f32[T,5]'), 'gcp');
  t.true(out.includes(`  %g = linear(%h, @w_gate) : f32[T,5] [ckpt=save]
  %u = linear(%h, @w_up) : f32[T,5] [ckpt=save]
  %s = silu(%g) : f32[T,5] [ckpt=recompute]
  %z = mul(%s, %u) : f32[T,5] [ckpt=recompute]
  %y = linear(%z, @w_down) : f32[T,4]
`));
  t.true(out.includes(`  %d.y = matmul(%d.logits, @w_down) : f32[T,5]
  %s.re = silu(%g) : f32[T,5]
  %z.re = mul(%s.re, %u) : f32[T,5]
  %d.y.1 = matmul_tn(%d.logits, %z.re) : f32[4,5]
  %d.z = mul(%d.y, %u) : f32[T,5]
  %d.z.1 = mul(%d.y, %s.re) : f32[T,5]
  %d.s = silu_grad(%g, %d.z) : f32[T,5]
`));
  // none saves the same nodes, S and Z included, and reads them directly
  const none = train(DENSE('  %s = silu(%g) : f32[T,5]\n  %z = mul(%s, %u) : f32[T,5]'), 'none');
  t.true(none.includes('  %s = silu(%g) : f32[T,5] [ckpt=save]\n  %z = mul(%s, %u) : f32[T,5] [ckpt=save]\n'));
  t.false(none.includes('.re'));
});

test('dense gcp recomputes SiLU written as g·sigmoid(g) too (ONNX style): sigmoid, its product and Z', (t) => {
  const out = train(DENSE('  %sg = sigmoid(%g) : f32[T,5]\n  %s = mul(%g, %sg) : f32[T,5]\n  %z = mul(%u, %s) : f32[T,5]'), 'gcp');
  t.true(out.includes(`  %g = linear(%h, @w_gate) : f32[T,5] [ckpt=save]
  %u = linear(%h, @w_up) : f32[T,5] [ckpt=save]
  %sg = sigmoid(%g) : f32[T,5] [ckpt=recompute]
  %s = mul(%g, %sg) : f32[T,5] [ckpt=recompute]
  %z = mul(%u, %s) : f32[T,5] [ckpt=recompute]
`));
  t.true(out.includes(`  %sg.re = sigmoid(%g) : f32[T,5]
  %s.re = mul(%g, %sg.re) : f32[T,5]
  %z.re = mul(%u, %s.re) : f32[T,5]
  %d.y.1 = matmul_tn(%d.logits, %z.re) : f32[4,5]
`));
  // the backward reads only the clones: no forward %s, %sg or %z after the loss
  const backward = out.slice(out.indexOf('%d.loss ='));
  t.notRegex(backward, /%(s|sg|z)[,)]/);
});

// One attention block (GQA: 2 query heads of width 2 over 1 KV head), a residual add, the final norm
// and the logits: what gcp-attn recomputes.
const ATTN = `graph tiny
  input %x : f32[T,4]
  input %pos : i32[T]
  input %seq : i32[T]
  param @attn_norm : f32[4]
  param @wq : f32[4,4]
  param @wk : f32[2,4]
  param @wv : f32[2,4]
  param @wo : f32[4,4]
  param @norm : f32[4]
  param @head : f32[6,4]
  %h = rmsnorm(%x, @attn_norm) {eps=0.00001} : f32[T,4]
  %qp = linear(%h, @wq) : f32[T,4]
  %q = rope(%qp, %pos) {head_dim=2, heads=2, style="half", theta=10000} : f32[T,4]
  %kp = linear(%h, @wk) : f32[T,2]
  %k = rope(%kp, %pos) {head_dim=2, heads=1, style="half", theta=10000} : f32[T,2]
  %v = linear(%h, @wv) : f32[T,2]
  %a = attention(%q, %k, %v, %seq) {head_dim=2, heads=2, kv_heads=1} : f32[T,4]
  %o = linear(%a, @wo) : f32[T,4]
  %r = add(%x, %o) : f32[T,4]
  %f = rmsnorm(%r, @norm) {eps=0.00001} : f32[T,4]
  %logits = logits(%f, @head) : f32[T,6]
  output %logits
end
`;

// gcp-attn: of the attention block only its input %x (the residual stream; here a graph input) is
// kept. The norm, the three projections, both RoPEs and the attention are [ckpt=recompute]: the
// forward copies die in the forward (%a with W_o's linear). Their clones run, in forward order, just
// before the first backward node that reads any of them: W_o's gradient (matmul_tn) reads %a.re,
// whose clone pulls in %q.re, %k.re, %v.re and through them %h.re; attention_grad and the projections'
// weight gradients then read the same clones. d.o (matmul with @wo) reads no activation, so it comes
// before them. The final norm %f feeds the logits, not a projection: saved, as under gcp. %r is
// saved for its rmsnorm_grad (the residual stream).
const ATTN_GCP_ATTN = `graph tiny
  input %x : f32[T,4]
  input %pos : i32[T]
  input %seq : i32[T]
  input %targets : i32[T]
  param @attn_norm : f32[4]
  param @wq : f32[4,4]
  param @wk : f32[2,4]
  param @wv : f32[2,4]
  param @wo : f32[4,4]
  param @norm : f32[4]
  param @head : f32[6,4]
  %h = rmsnorm(%x, @attn_norm) {eps=0.00001} : f32[T,4] [ckpt=recompute]
  %qp = linear(%h, @wq) : f32[T,4] [ckpt=recompute]
  %q = rope(%qp, %pos) {head_dim=2, heads=2, style="half", theta=10000} : f32[T,4] [ckpt=recompute]
  %kp = linear(%h, @wk) : f32[T,2] [ckpt=recompute]
  %k = rope(%kp, %pos) {head_dim=2, heads=1, style="half", theta=10000} : f32[T,2] [ckpt=recompute]
  %v = linear(%h, @wv) : f32[T,2] [ckpt=recompute]
  %a = attention(%q, %k, %v, %seq) {head_dim=2, heads=2, kv_heads=1} : f32[T,4] [ckpt=recompute]
  %o = linear(%a, @wo) : f32[T,4]
  %r = add(%x, %o) : f32[T,4] [ckpt=save]
  %f = rmsnorm(%r, @norm) {eps=0.00001} : f32[T,4] [ckpt=save]
  %logits = logits(%f, @head) : f32[T,6] [ckpt=save]
  %loss = cross_entropy(%logits, %targets) : f32[1] [ckpt=save]
  %d.loss = fill_like(%loss) {value=1} : f32[1]
  %d.loss.1 = cross_entropy_grad(%logits, %targets, %d.loss) : f32[T,6]
  %d.logits = matmul(%d.loss.1, @head) : f32[T,4]
  %d.logits.1 = matmul_tn(%d.loss.1, %f) : f32[6,4]
  %d.f, %d.f.1 = rmsnorm_grad(%r, @norm, %d.logits) {eps=0.00001} : f32[T,4], f32[4]
  %d.o = matmul(%d.f, @wo) : f32[T,4]
  %h.re = rmsnorm(%x, @attn_norm) {eps=0.00001} : f32[T,4]
  %qp.re = linear(%h.re, @wq) : f32[T,4]
  %q.re = rope(%qp.re, %pos) {head_dim=2, heads=2, style="half", theta=10000} : f32[T,4]
  %kp.re = linear(%h.re, @wk) : f32[T,2]
  %k.re = rope(%kp.re, %pos) {head_dim=2, heads=1, style="half", theta=10000} : f32[T,2]
  %v.re = linear(%h.re, @wv) : f32[T,2]
  %a.re = attention(%q.re, %k.re, %v.re, %seq) {head_dim=2, heads=2, kv_heads=1} : f32[T,4]
  %d.o.1 = matmul_tn(%d.f, %a.re) : f32[4,4]
  %d.a, %d.a.1, %d.a.2 = attention_grad(%q.re, %k.re, %v.re, %seq, %d.o) {head_dim=2, heads=2, kv_heads=1} : f32[T,4], f32[T,2], f32[T,2]
  %d.v = matmul(%d.a.2, @wv) : f32[T,4]
  %d.v.1 = matmul_tn(%d.a.2, %h.re) : f32[2,4]
  %d.k = rope_grad(%d.a.1, %pos) {head_dim=2, heads=1, style="half", theta=10000} : f32[T,2]
  %d.kp = matmul(%d.k, @wk) : f32[T,4]
  %d.kp.1 = matmul_tn(%d.k, %h.re) : f32[2,4]
  %d.kp.2 = add(%d.v, %d.kp) : f32[T,4]
  %d.q = rope_grad(%d.a, %pos) {head_dim=2, heads=2, style="half", theta=10000} : f32[T,4]
  %d.qp = matmul(%d.q, @wq) : f32[T,4]
  %d.qp.1 = matmul_tn(%d.q, %h.re) : f32[4,4]
  %d.qp.2 = add(%d.kp.2, %d.qp) : f32[T,4]
  %d.h, %d.h.1 = rmsnorm_grad(%x, @attn_norm, %d.qp.2) {eps=0.00001} : f32[T,4], f32[4]
  output %loss
  output %d.h.1
  output %d.qp.1
  output %d.kp.1
  output %d.v.1
  output %d.o.1
  output %d.f.1
  output %d.logits.1
end
`;

test('gcp-attn: the attention block (norm, q/k/v projections, RoPE, attention) recomputed from its saved input', (t) => {
  t.is(train(ATTN, 'gcp-attn'), ATTN_GCP_ATTN);
});

test('gcp keeps the attention block saved: the normed input, q, k after RoPE, v and the attention output', (t) => {
  const expected = ATTN_GCP_ATTN
    .replace(/ \[ckpt=recompute\]\n/g, ' [ckpt=save]\n')
    .replace(/(%(qp|kp) = linear\(.*\) : f32\[T,\d\]) \[ckpt=save\]/g, '$1') // the projections before RoPE: not read by the backward
    .replace(/ {2}%\w+\.re = .*\n/g, '')
    .replace(/%(\w+)\.re\b/g, '%$1');
  t.is(train(ATTN, 'gcp'), expected);
});

// Two layers: each layer's recompute runs inside that layer's backward, not all at the backward's
// start. The forward names a layer's values l<i>.*, the backward their gradients d.l<i>.*.
for (const [selection, policy] of [['dense', 'gcp-attn'], [{ k: 12 }, 'moc-gcp-attn']] as const) {
  test(`${policy} on a 2-layer model: each layer's clones lie between the backward of the layer above and its own first reader`, (t) => {
    const g = trainingGraph(checkpointGraph(TINY, () => 'f32', selection), { loss: { kind: 'cross_entropy' }, policy });
    const names = g.nodes.map((n) => n.outputs[0]!.name);
    const at = (name: string) => names.indexOf(name);
    const backwardOf = (layer: number) => names.map((n, i) => (n.startsWith(`d.l${layer}.`) ? i : -1)).filter((i) => i >= 0);
    const clones = names.filter((n) => n.endsWith('.re'));
    const attention = ['attn_in', 'q_proj', 'q', 'k_proj', 'k', 'v', 'attn'];
    for (const layer of [0, 1]) {
      // the whole attention chain, in forward order and contiguous, just before W_o's gradient
      const chain = attention.map((v) => at(`l${layer}.${v}.re`));
      t.deepEqual(chain, attention.map((_, i) => chain[0]! + i), `layer ${layer}: ${chain}`);
      const wo = g.nodes[chain.at(-1)! + 1]!;
      t.is(wo.op, 'matmul_tn', `layer ${layer}: W_o's gradient reads the recomputed attention output`);
      t.is(wo.inputs[1]!.kind === 'value' && wo.inputs[1]!.name, `l${layer}.attn.re`);
      // the FFN norm's clone: right before its first reader (dW_up or dW_gate)
      const ffnIn = at(`l${layer}.ffn_in.re`);
      t.true(g.nodes[ffnIn + 1]!.inputs.some((i) => i.kind === 'value' && i.name === `l${layer}.ffn_in.re`));
      // every clone of this layer lies after all of the layer above's backward and before any of the layer below's
      const own = clones.filter((c) => c.startsWith(`l${layer}.`)).map(at);
      t.is(own.length, attention.length + 3, `layer ${layer}: the attention chain, the FFN norm, SiLU and the product`);
      const above = backwardOf(layer + 1), below = backwardOf(layer - 1);
      for (const i of own) {
        t.true(above.every((j) => j < i), `${names[i]} after layer ${layer + 1}'s backward`);
        t.true(below.every((j) => j > i), `${names[i]} before layer ${layer - 1}'s backward`);
        t.true(i > at('d.loss'), `${names[i]} in the backward`);
      }
    }
    // no forward value of the attention block or the FFN norm is read by the backward
    const firstBackward = at('d.loss');
    const forwardRead = new Set(g.nodes.slice(firstBackward).flatMap((n) => n.inputs.flatMap((i) => (i.kind === 'value' ? [i.name] : []))));
    for (const layer of [0, 1]) for (const v of [...attention, 'ffn_in']) t.false(forwardRead.has(`l${layer}.${v}`), `l${layer}.${v}`);
  });
}
