// add-loss: a model graph (output: logits [T,V]) → the same graph ending in a scalar loss f32[1],
// the start of a training graph (autodiff.ts differentiates it). Next-token cross-entropy reads the
// targets input; distillation (KL to a teacher, src/ir/ops-train.ts kl_div) also reads the teacher's
// logits as an input, so the teacher runs separately (it may be another model, on another target).
import { GraphBuilder } from '../src/ir/builder.js';
import type { Graph } from '../src/ir/types.js';
import { TRAIN_INPUTS } from '../src/model/graph-inputs.js';
import type { Pass } from './pass.js';

export type LossSpec = { kind: 'cross_entropy' } | { kind: 'kl_div'; temperature: number };

export const addLoss: Pass<LossSpec> = {
  name: 'add-loss',
  run(g: Graph, loss: LossSpec): Graph {
    if (g.states.length) throw new Error(`graph ${g.name}: a training graph starts from the model graph, not a decode graph (it has state)`);
    const logitsName = g.outputs[0]!;
    const b = new GraphBuilder(g.name);
    for (const i of g.inputs) b.input(i.name, i.type);
    b.declareParams(g.params);
    for (const n of g.nodes) b.copy(n);
    const logits = { kind: 'value', name: logitsName } as const;
    const rows = b.typeOf(logits).shape[0]!;
    const targets = b.input(TRAIN_INPUTS.targets, { dtype: 'i32', shape: [rows] });
    const out = loss.kind === 'cross_entropy'
      ? b.op('cross_entropy', [logits, targets], {}, 'loss')
      : b.op('kl_div', [logits, b.input(TRAIN_INPUTS.teacher, b.typeOf(logits)), targets], { temperature: loss.temperature }, 'loss');
    return b.finish([out]);
  },
};
