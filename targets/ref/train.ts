// Running a training graph (passes/autodiff.ts → checkpoint.ts) on the ref target: node by node in
// the graph's order, over float32 master weights the caller owns (the optimizer updates them in
// place between steps), freeing each value after its last read by the memory plan's liveness — so
// a checkpoint policy that saves less really holds less, and the bytes held are measured.
import type { Graph, TensorType } from '../../src/ir/types.js';
import { lifetimes } from '../../passes/memory-plan.js';
import { evalNode, type Value } from './eval-node.js';

export interface TrainingRun {
  /** The graph's outputs by position: the loss f32[1], then one gradient per trainable param. */
  outputs: Value[];
  /** Most activation bytes held at once (weight gradients excluded), as the memory plan counts them. */
  peakBytes: number;
}

/**
 * Runs g once. `weights` holds every param in the param's own layout (a `transposed` param as the
 * graph reads it); `inputs` the graph inputs by name. `rows` binds the symbolic row count T.
 */
export function runTrainingGraph(g: Graph, weights: ReadonlyMap<string, Float32Array>, inputs: Record<string, Value>, rows: number): TrainingRun {
  const lives = lifetimes(g, { T: rows });
  const lastUse = new Map(lives.map((l) => [l.name, l.lastUse]));
  const isGradient = new Set(lives.filter((l) => l.category === 'weight gradients').map((l) => l.name));
  const types = new Map<string, TensorType>();
  for (const i of g.inputs) types.set(i.name, i.type);
  for (const p of g.params) types.set(`@${p.name}`, p.type);
  for (const n of g.nodes) for (const o of n.outputs) types.set(o.name, o.type);

  const values = new Map<string, Value>();
  let live = 0, peakBytes = 0;
  const hold = (name: string, v: Value) => {
    values.set(name, v);
    if (!isGradient.has(name)) live += v.byteLength;
  };
  for (const i of g.inputs) {
    const v = inputs[i.name];
    if (!v) throw new Error(`training graph ${g.name}: input %${i.name} not given`);
    hold(i.name, v);
  }
  peakBytes = live;
  g.nodes.forEach((n, step) => {
    const ins = n.inputs.map((o) => {
      const v = o.kind === 'param' ? weights.get(o.name) : values.get(o.name);
      if (!v) throw new Error(`training graph ${g.name}: ${o.kind === 'param' ? '@' : '%'}${o.name} has no value`);
      return v;
    });
    const outs = evalNode(n, ins, (i, axis) => {
      const o = n.inputs[i]!;
      const t = types.get(o.kind === 'param' ? `@${o.name}` : o.name)!;
      const d = t.shape[axis]!;
      return typeof d === 'number' ? d : rows;
    });
    n.outputs.forEach((o, k) => hold(o.name, outs[k]!));
    peakBytes = Math.max(peakBytes, live);
    // Free what this step read last (and outputs nobody reads).
    for (const name of new Set([...n.inputs.filter((o) => o.kind === 'value').map((o) => o.name), ...n.outputs.map((o) => o.name)])) {
      if ((lastUse.get(name) ?? step) <= step) {
        const v = values.get(name);
        if (v && !isGradient.has(name)) live -= v.byteLength;
        values.delete(name);
      }
    }
  });
  return { outputs: g.outputs.map((o) => values.get(o)!), peakBytes };
}
