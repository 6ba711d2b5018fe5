// autodiff: a graph whose first output is a scalar loss (add-loss.ts) → the training graph: the
// forward nodes unchanged, then the backward nodes, with outputs
//   [loss, gradient of each trainable param, in declaration order].
// Reverse mode over the node list, by the gradient-rule table (src/ir/grad.ts, grad-rules.ts).
// Invariants:
//  - A value gets a gradient only if it depends on a trainable param and is a float; integer
//    values (tokens, positions, MoC indices) never do, and frozen params get none.
//  - Fan-out is summed: a value or param read k times gets the sum of its k contributions, added
//    in reverse node order (deterministic), so the tied embedding gets both the embedding's and
//    the logits' gradient.
//  - A rule reads only the forward values its `needs` lists (checked here, naming the node): that
//    is what the checkpoint pass (checkpoint.ts) saves or recomputes.
//  - A trainable param the loss does not depend on gets a zero gradient (fill_like).
// Backward values are named d.<forward node>, made unique by the builder.
import { GraphBuilder } from '../src/ir/builder.js';
import { GRAD_RULES, type GradContext } from '../src/ir/grad.js';
import type { Graph, Node, Operand } from '../src/ir/types.js';
import { nodeName, operandToString, typeToString } from '../src/ir/types.js';
import { dce } from './dce.js';
import type { Pass } from './pass.js';

const value = (name: string): Operand => ({ kind: 'value', name });

/** The gradient output of trainable param `name`: its index among a training graph's outputs. */
export function gradOutputs(g: Graph): { param: string; output: string }[] {
  const trainable = g.params.filter((p) => p.trainable);
  if (g.outputs.length !== trainable.length + 1) throw new Error(`graph ${g.name} is not a training graph: ${g.outputs.length} outputs for ${trainable.length} trainable params`);
  return trainable.map((p, i) => ({ param: p.name, output: g.outputs[i + 1]! }));
}

export const autodiff: Pass = {
  name: 'autodiff',
  run(g: Graph): Graph {
    const lossName = g.outputs[0]!;
    const b = new GraphBuilder(g.name);
    for (const i of g.inputs) b.input(i.name, i.type);
    b.declareParams(g.params);
    for (const n of g.nodes) b.copy(n);
    const lossType = b.typeOf(value(lossName));
    if (lossType.dtype !== 'f32' || lossType.shape.length !== 1 || lossType.shape[0] !== 1) throw new Error(`autodiff: the first output %${lossName} must be a scalar loss f32[1], got ${typeToString(lossType)}`);

    const trainable = new Set(g.params.filter((p) => p.trainable).map((p) => p.name));
    // Values that depend on a trainable param: only these carry gradients.
    const varies = new Set<string>();
    for (const n of g.nodes) {
      if (!n.inputs.some((o) => (o.kind === 'param' ? trainable.has(o.name) : varies.has(o.name)))) continue;
      for (const o of n.outputs) if (o.type.dtype !== 'i32' && o.type.dtype !== 'u16') varies.add(o.name);
    }
    const forwardValues = new Set([...g.inputs.map((i) => i.name), ...g.nodes.flatMap((n) => n.outputs.map((o) => o.name))]);

    const grads = new Map<string, Operand>(); // by value name, and params as @name
    const accumulate = (key: string, d: Operand, base: string) => {
      const prev = grads.get(key);
      grads.set(key, prev ? b.op('add', [prev, d], {}, `d.${base}`) : d);
    };
    grads.set(lossName, b.op('fill_like', [value(lossName)], { value: 1 }, `d.${lossName}`));

    for (let i = g.nodes.length - 1; i >= 0; i--) {
      const n = g.nodes[i]!;
      const dOut = n.outputs.map((o) => grads.get(o.name) ?? null);
      if (dOut.every((d) => d === null)) continue;
      const rule = GRAD_RULES.get(n.op);
      if (!rule) throw new Error(`autodiff: op ${n.op} has no gradient rule (node %${nodeName(n)})`);
      const allowed = new Set([...rule.needs.inputs.map((j) => n.inputs[j]!), ...rule.needs.outputs.map((j) => value(n.outputs[j]!.name))].filter((o) => o.kind === 'value').map((o) => o.name));
      const ctx: GradContext = {
        emit: (op, inputs, attrs = {}) => {
          for (const o of inputs) {
            if (o.kind === 'value' && forwardValues.has(o.name) && !allowed.has(o.name)) {
              throw new Error(`autodiff: the gradient rule of ${n.op} reads ${operandToString(o)}, which its needs do not list (node %${nodeName(n)})`);
            }
          }
          return b.opN(op, inputs, attrs, [`d.${nodeName(n)}`]);
        },
        output: (node, j) => {
          if (node !== n || !rule.needs.outputs.includes(j)) throw new Error(`autodiff: the gradient rule of ${n.op} reads output ${j}, which its needs do not list (node %${nodeName(n)})`);
          return value(n.outputs[j]!.name);
        },
        typeOf: (o) => b.typeOf(o),
      };
      const dIn = rule.backward(ctx, n, dOut);
      if (dIn.length !== n.inputs.length) throw new Error(`autodiff: the gradient rule of ${n.op} gave ${dIn.length} gradients for ${n.inputs.length} inputs (node %${nodeName(n)})`);
      dIn.forEach((d, j) => {
        const o = n.inputs[j]!;
        if (!d) return;
        if (o.kind === 'param' ? trainable.has(o.name) : varies.has(o.name)) accumulate(o.kind === 'param' ? `@${o.name}` : o.name, d, nodeName(n));
      });
    }

    const outputs = [value(lossName), ...g.params.filter((p) => p.trainable).map((p) => grads.get(`@${p.name}`) ?? b.op('fill_like', [{ kind: 'param', name: p.name }], { value: 0 }, `d.${p.name}`))];
    return dce.run(b.finish(outputs));
  },
};

/** The forward part of a training graph: the nodes the loss (output 0) depends on. */
export function forwardNodes(g: Graph): Set<Node> {
  const need = new Set([g.outputs[0]!]);
  const out = new Set<Node>();
  for (let i = g.nodes.length - 1; i >= 0; i--) {
    const n = g.nodes[i]!;
    if (!n.outputs.some((o) => need.has(o.name))) continue;
    out.add(n);
    for (const o of n.inputs) if (o.kind === 'value') need.add(o.name);
  }
  return out;
}
