// The reference interpreter: walks the graph node by node in float32, with a KV cache per layer.
import type { Graph, Node, Operand, TensorType } from '../../src/ir/types.js';
import { operandToString } from '../../src/ir/types.js';
import type { ModelSession, RunnableModel } from '../target.js';
import * as K from './kernels.js';

type Value = Float32Array | Int32Array;

export class RefSession implements ModelSession {
  private pos = 0;
  private readonly cache = new Map<number, K.KvSlot>();
  /** Params decoded to float32 on first use (as `@name`), and outputs of nodes computed from params only (e.g. transpose(@w)). */
  private readonly constants = new Map<string, Value>();
  private readonly constantNodes: Set<Node>;
  private readonly graph: Graph;
  /** Types by name: values as `name`, params as `@name`. */
  private readonly types = new Map<string, TensorType>();

  constructor(private readonly model: RunnableModel) {
    this.graph = model.graph;
    this.constantNodes = constantNodes(model.graph);
    for (const i of this.graph.inputs) this.types.set(i.name, i.type);
    for (const p of this.graph.params) this.types.set(`@${p.name}`, p.type);
    for (const n of this.graph.nodes) for (const o of n.outputs) this.types.set(o.name, o.type);
  }

  get position(): number {
    return this.pos;
  }

  reset(): void {
    this.pos = 0;
    this.cache.clear();
  }

  forward(tokens: readonly number[]): Float32Array {
    if (tokens.length === 0) throw new Error('forward() needs at least one token');
    if (this.pos + tokens.length > this.model.spec.maxSeqLen) {
      throw new Error(`context full: ${this.pos} + ${tokens.length} tokens exceeds the model's ${this.model.spec.maxSeqLen}`);
    }
    const out = this.evaluate({ [this.graph.inputs[0]!.name]: Int32Array.from(tokens) });
    this.pos += tokens.length;
    return out as Float32Array;
  }

  /** Runs the graph on the given inputs (by name) and returns its first output; does not advance the position. */
  evaluate(inputs: Record<string, Value>): Value {
    const values = new Map<string, Value>(Object.entries(inputs));
    const get = (o: Operand): Value => {
      if (o.kind === 'param') return this.weightF32(o.name);
      const v = values.get(o.name) ?? this.constants.get(o.name);
      if (!v) throw new Error(`%${o.name} has no value`);
      return v;
    };
    for (const n of this.graph.nodes) {
      const constant = this.constantNodes.has(n);
      if (constant && this.constants.has(n.outputs[0]!.name)) continue;
      const outs = this.evalNode(n, n.inputs.map(get));
      n.outputs.forEach((o, i) => (constant ? this.constants : values).set(o.name, outs[i]!));
    }
    return get({ kind: 'value', name: this.graph.outputs[0]! });
  }

  private weightF32(name: string): Float32Array {
    let w = this.constants.get(`@${name}`);
    if (!w) {
      const src = this.model.weights.get(name);
      if (!src) throw new Error(`param @${name} is not in the model's weights`);
      w = src.toFloat32();
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
    if (n.op === 'split') return K.split(ins[0] as Float32Array, this.dim(n.inputs[0]!, 1), n.attrs.parts as number);
    return [this.evalSingle(n, ins)];
  }

  private evalSingle(n: Node, ins: Value[]): Value {
    const f = (i: number) => ins[i] as Float32Array;
    const idx = (i: number) => ins[i] as Int32Array;
    const dim = (i: number, axis: number) => this.dim(n.inputs[i]!, axis);
    const a = n.attrs;
    const kept = n.outputs[0]!.type.shape[1] as number;
    switch (n.op) {
      case 'embedding': return K.embedding(f(0), dim(0, 1), idx(1));
      case 'rmsnorm': return K.rmsnorm(f(0), f(1), a.eps as number);
      case 'linear': case 'logits': return K.linear(f(0), f(1), dim(1, 1));
      case 'rope':
        return K.rope(f(0), {
          heads: a.heads as number, headDim: a.head_dim as number, theta: a.theta as number, style: a.style as 'half' | 'interleaved',
          ...(a.scaling === 'llama3' ? { llama3: { factor: a.factor as number, lowFreqFactor: a.low_freq_factor as number, highFreqFactor: a.high_freq_factor as number, originalMaxPos: a.original_max_pos as number } } : {}),
        }, this.pos);
      case 'attention': return K.attention(f(0), f(1), f(2), this.kvSlot(n), this.pos, a.heads as number, a.kv_heads as number, a.head_dim as number);
      case 'silu': return K.silu(f(0));
      case 'sigmoid': return K.sigmoid(f(0));
      case 'mul': return K.mul(f(0), f(1));
      case 'add': return K.add(f(0), f(1));
      case 'transpose': return K.transpose(f(0), dim(0, 0), dim(0, 1));
      case 'moc_select': return K.mocSelect(f(0), dim(0, 1), a.k !== undefined ? { k: a.k as number } : { a: a.a as number, b: a.b as number });
      case 'moc_gather': return K.mocGather(f(0), dim(0, 1), idx(1), kept);
      case 'moc_up': return K.mocUp(f(0), f(1), dim(0, 1), idx(2), kept);
      case 'moc_down': return K.mocDown(f(0), f(1), kept, idx(2), dim(0, 1));
      default: throw new Error(`ref target has no kernel for op '${n.op}'`);
    }
  }

  private kvSlot(n: Node): K.KvSlot {
    const layer = n.attrs.layer as number;
    let slot = this.cache.get(layer);
    if (!slot) {
      const kvw = (n.attrs.kv_heads as number) * (n.attrs.head_dim as number);
      const cap = this.model.spec.maxSeqLen;
      slot = { k: new Float32Array(cap * kvw), v: new Float32Array(cap * kvw) };
      this.cache.set(layer, slot);
    }
    return slot;
  }
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
