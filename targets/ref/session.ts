// The reference interpreter: walks a graph node by node in float32. evaluate() runs the model graph
// as it is (pure: whole sequences, no cache); forward() runs its decode graph (passes/kv-cache.ts),
// keeping the graph's state (the KV caches) between calls and feeding positions past, past+1, ….
import type { Graph, Node, Operand, TensorType } from '../../src/ir/types.js';
import { operandToString } from '../../src/ir/types.js';
import { MODEL_INPUTS } from '../../src/model/graph-inputs.js';
import { decodeGraph } from '../../passes/kv-cache.js';
import type { ModelSession, RunnableModel } from '../target.js';
import { lastRow, paramF32, type ForwardOptions } from '../../src/model/runnable.js';
import * as K from './kernels.js';
import { evalNode, type Value } from './eval-node.js';

export class RefSession implements ModelSession {
  private pos = 0;
  /** The decode graph's state values, by state name (zero-filled when a session starts). */
  private readonly state = new Map<string, Value>();
  /** Params decoded to float32 on first use (as `@name`), and outputs of nodes computed from params only (e.g. transpose(@w)). */
  private readonly constants = new Map<string, Value>();
  private decode: Graph | undefined;
  /** Positions the decode graph's caches hold (decodeGraph). */
  private capacity = 0;
  /** Types by name: values as `name`, params as `@name` (of both graphs: they share params and names). */
  private readonly types = new Map<string, TensorType>();

  constructor(private readonly model: RunnableModel) {
    this.learnTypes(model.graph);
  }

  get position(): number {
    return this.pos;
  }

  reset(): void {
    this.pos = 0;
    this.state.clear();
  }

  forward(tokens: readonly number[], options?: ForwardOptions): Float32Array {
    if (tokens.length === 0) throw new Error('forward() needs at least one token');
    if (this.pos + tokens.length > this.model.spec.maxSeqLen) {
      throw new Error(`context full: ${this.pos} + ${tokens.length} tokens exceeds the model's ${this.model.spec.maxSeqLen}`);
    }
    const g = this.decodeGraph(this.pos + tokens.length);
    for (const s of g.states) {
      // Zero-filled at the start; when the capacity grew, the rows written so far are carried over.
      const fresh = new Float32Array(staticSize(s.type));
      const old = this.state.get(s.name);
      if (old && old.length === fresh.length) continue;
      if (old) fresh.set(old);
      this.state.set(s.name, fresh);
    }
    const values = this.run(g, {
      [MODEL_INPUTS.tokens]: Int32Array.from(tokens),
      [MODEL_INPUTS.pos]: K.positionsFrom(this.pos, tokens.length),
      ...Object.fromEntries(this.state),
    });
    for (const s of g.states) this.state.set(s.name, values.get(s.next)!);
    this.pos += tokens.length;
    const logits = values.get(g.outputs[0]!) as Float32Array;
    return options?.lastOnly ? lastRow(logits, tokens.length) : logits;
  }

  /** Runs the model graph on the given inputs (by name) and returns its first output; no state, no position. */
  evaluate(inputs: Record<string, Value>): Value {
    return this.run(this.model.graph, inputs).get(this.model.graph.outputs[0]!)!;
  }

  /**
   * The decode graph with caches of room for at least `rows` positions. The capacity grows by doubling
   * (up to the context length) instead of being the whole context from the start: a header may claim a
   * context of 2^31 positions, and a real model's full context takes memory a short run never uses.
   * Cache rows are row-major [capacity, width], so a grown cache starts with the old one's rows.
   */
  private decodeGraph(rows: number): Graph {
    if (!this.decode || rows > this.capacity) {
      this.capacity = Math.min(this.model.spec.maxSeqLen, Math.max(rows, 64, 2 * this.capacity));
      this.decode = decodeGraph(this.model.graph, this.capacity);
      this.learnTypes(this.decode);
    }
    return this.decode;
  }

  private learnTypes(g: Graph): void {
    for (const i of [...g.inputs, ...g.states]) this.types.set(i.name, i.type);
    for (const p of g.params) {
      this.types.set(`@${p.name}`, p.type);
    }
    for (const n of g.nodes) for (const o of n.outputs) this.types.set(o.name, o.type);
  }

  /** Evaluates every node of g; returns all values by name. */
  private run(g: Graph, inputs: Record<string, Value>): Map<string, Value> {
    const values = new Map<string, Value>(Object.entries(inputs));
    const get = (o: Operand): Value => {
      if (o.kind === 'param') return this.weightF32(o.name);
      const v = values.get(o.name) ?? this.constants.get(o.name);
      if (!v) throw new Error(`%${o.name} has no value`);
      return v;
    };
    const constant = constantNodes(g);
    for (const n of g.nodes) {
      const isConst = constant.has(n);
      if (isConst && this.constants.has(n.outputs[0]!.name)) continue;
      const outs = this.evalNode(n, n.inputs.map(get));
      n.outputs.forEach((o, i) => (isConst ? this.constants : values).set(o.name, outs[i]!));
    }
    for (const o of g.outputs) values.set(o, get({ kind: 'value', name: o }));
    return values;
  }

  private weightF32(name: string): Float32Array {
    let w = this.constants.get(`@${name}`);
    if (!w) {
      const p = this.model.graph.params.find((q) => q.name === name) ?? this.decode?.params.find((q) => q.name === name);
      if (!p) throw new Error(`param @${name} is not a param of the graph`);
      w = paramF32(this.model.weights, p);
      this.constants.set(`@${name}`, w);
    }
    return w as Float32Array;
  }

  /** Static size of axis `axis` of an operand (params, inputs and node values all have static widths). */
  private dim(o: Operand, axis: number): number {
    const t = this.types.get(o.kind === 'param' ? `@${o.name}` : o.name);
    const d = t?.shape[axis];
    if (typeof d !== 'number') throw new Error(`${operandToString(o)}: axis ${axis} is not static`);
    return d;
  }

  /** The node's output values, one per output. */
  private evalNode(n: Node, ins: Value[]): Value[] {
    return evalNode(n, ins, (i, axis) => this.dim(n.inputs[i]!, axis));
  }
}

function staticSize(t: TensorType): number {
  return t.shape.reduce<number>((s, d) => s * (d as number), 1);
}

/** Nodes whose inputs are all params or outputs of other such nodes: computed once per session. */
function constantNodes(g: Graph): Set<Node> {
  const out = new Set<Node>();
  const values = new Set<string>();
  for (const n of g.nodes) {
    if (!n.inputs.every((o) => o.kind === 'param' || values.has(o.name))) continue;
    out.add(n);
    for (const o of n.outputs) values.add(o.name);
  }
  return out;
}
