// The gradient rules, one per differentiable op (the table's contract is in grad.ts). Each rule
// reads only the forward values its `needs` names (passes/autodiff.ts checks that), so the
// checkpoint pass knows exactly what the backward pass reads: the activations a policy saves or
// recomputes.
//
// MoC per the contract (shared/design/ARCHITECTURE.md): moc_select has no gradient; moc_gather's
// gradient scatters into the kept channels only, and moc_up / moc_down give W_up and W_down
// gradients in the kept rows only (moc_rows_grad). The two MoC projections are each other's
// transpose: d(moc_up)/dx is a moc_down of dy, and d(moc_down)/dz a moc_up of dy.
//
// Not here: kv_write and kv_attention (decoding only; training runs the model graph, which has
// neither), and the backward ops themselves (no second-order gradients).
import type { GradContext, GradRule } from './grad.js';
import { ATTENTION_ATTRS, ROPE_ATTRS } from './op-spec.js';
import type { Node, Operand } from './types.js';

const needs = (inputs: number[], outputs: number[] = []) => ({ inputs, outputs });
const pick = (n: Node, keys: string[]) => Object.fromEntries(keys.filter((k) => n.attrs[k] !== undefined).map((k) => [k, n.attrs[k]!]));
const one = (ctx: GradContext, op: string, inputs: Operand[], attrs = {}) => ctx.emit(op, inputs, attrs)[0]!;
const rows = (ctx: GradContext, o: Operand) => ctx.typeOf(o).shape[0] as number;

/** linear and logits: y = x·Wᵀ → dx = dy·W, dW = dyᵀ·x. */
const linearRule: GradRule = {
  needs: needs([0, 1]),
  backward(ctx, n, [dy]) {
    const [x, w] = n.inputs as [Operand, Operand];
    return [one(ctx, 'matmul', [dy!, w]), one(ctx, 'matmul_tn', [dy!, x])];
  },
};

export const RULES: [string, GradRule][] = [
  ['embedding', {
    needs: needs([1]),
    backward: (ctx, n, [dy]) => [one(ctx, 'embedding_grad', [dy!, n.inputs[1]!], { rows: rows(ctx, n.inputs[0]!) }), null],
  }],
  ['rmsnorm', {
    needs: needs([0, 1]),
    backward: (ctx, n, [dy]) => ctx.emit('rmsnorm_grad', [n.inputs[0]!, n.inputs[1]!, dy!], { eps: n.attrs.eps! }),
  }],
  ['linear', linearRule],
  ['logits', linearRule],
  ['rope', {
    needs: needs([1]),
    backward: (ctx, n, [dy]) => [one(ctx, 'rope_grad', [dy!, n.inputs[1]!], pick(n, Object.keys(ROPE_ATTRS))), null],
  }],
  ['attention', {
    needs: needs([0, 1, 2, 3]),
    backward: (ctx, n, [dy]) => [...ctx.emit('attention_grad', [...n.inputs, dy!], pick(n, Object.keys(ATTENTION_ATTRS))), null],
  }],
  ['silu', { needs: needs([0]), backward: (ctx, n, [dy]) => [one(ctx, 'silu_grad', [n.inputs[0]!, dy!])] }],
  ['sigmoid', { needs: needs([0]), backward: (ctx, n, [dy]) => [one(ctx, 'sigmoid_grad', [n.inputs[0]!, dy!])] }],
  ['mul', {
    needs: needs([0, 1]),
    backward: (ctx, n, [dy]) => [one(ctx, 'mul', [dy!, n.inputs[1]!]), one(ctx, 'mul', [dy!, n.inputs[0]!])],
  }],
  ['add', { needs: needs([]), backward: (_ctx, _n, [dy]) => [dy!, dy!] }],
  ['transpose', { needs: needs([]), backward: (ctx, _n, [dy]) => [one(ctx, 'transpose', [dy!])] }],
  ['split', {
    needs: needs([]),
    // Parts without a gradient contribute zeros (every part has the same shape as any other's gradient).
    backward(ctx, _n, ds) {
      const any = ds.find((d) => d !== null)!;
      return [one(ctx, 'concat', ds.map((d) => d ?? one(ctx, 'fill_like', [any], { value: 0 })))];
    },
  }],
  ['moc_select', { needs: needs([]), backward: () => [null] }],
  ['moc_gather', {
    needs: needs([1]),
    backward: (ctx, n, [dy]) => [one(ctx, 'moc_scatter', [dy!, n.inputs[1]!], { channels: ctx.typeOf(n.inputs[0]!).shape[1] as number }), null],
  }],
  ['moc_up', {
    needs: needs([0, 1, 2]),
    backward(ctx, n, [dy]) {
      const [x, w, idx] = n.inputs as [Operand, Operand, Operand];
      return [one(ctx, 'moc_down', [dy!, w, idx]), one(ctx, 'moc_rows_grad', [dy!, x, idx], { rows: rows(ctx, w) }), null];
    },
  }],
  ['moc_down', {
    needs: needs([0, 1, 2]),
    backward(ctx, n, [dy]) {
      const [z, w, idx] = n.inputs as [Operand, Operand, Operand];
      return [one(ctx, 'moc_up', [dy!, w, idx]), one(ctx, 'moc_rows_grad', [z, dy!, idx], { rows: rows(ctx, w) }), null];
    },
  }],
  ['cross_entropy', {
    needs: needs([0, 1]),
    backward: (ctx, n, [dl]) => [one(ctx, 'cross_entropy_grad', [n.inputs[0]!, n.inputs[1]!, dl!]), null],
  }],
  ['lm_head_loss', {
    needs: needs([0, 1, 2]),
    backward: (ctx, n, [dl]) => [...ctx.emit('lm_head_loss_grad', [...n.inputs, dl!], { chunk_rows: n.attrs.chunk_rows! }), null],
  }],
  ['kl_div', {
    needs: needs([0, 1, 2]),
    // The teacher's logits are data: no gradient flows into them.
    backward: (ctx, n, [dl]) => [one(ctx, 'kl_div_grad', [...n.inputs, dl!], { temperature: n.attrs.temperature! }), null, null],
  }],
];
