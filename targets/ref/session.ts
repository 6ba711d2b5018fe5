// The reference interpreter: walks the graph node by node in float32, with a KV cache per layer.
import type { Graph, Node, Operand, TensorType } from '../../src/ir/types.js';
import type { ModelSession, RunnableModel } from '../target.js';
import * as K from './kernels.js';

type Value = Float32Array | Int32Array;

export class RefSession implements ModelSession {
  private pos = 0;
  private readonly cache = new Map<number, K.KvSlot>();
  /** Weights decoded to float32 on first use, and nodes computed from weights only (e.g. transpose(@w)). */
  private readonly constants = new Map<string, Value>();
  private readonly constantNodes: Set<string>;
  private readonly graph: Graph;
  /** Types by name: values as `name`, weights as `@name`. */
  private readonly types = new Map<string, TensorType>();

  constructor(private readonly model: RunnableModel) {
    this.graph = model.graph;
    this.constantNodes = constantNodeNames(model.graph);
    for (const i of this.graph.inputs) this.types.set(i.name, i.type);
    for (const w of this.graph.weights) this.types.set(`@${w.name}`, w.type);
    for (const n of this.graph.nodes) this.types.set(n.name, n.type);
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
      if (o.kind === 'weight') return this.weightF32(o.name);
      const v = values.get(o.name) ?? this.constants.get(o.name);
      if (!v) throw new Error(`%${o.name} has no value`);
      return v;
    };
    for (const n of this.graph.nodes) {
      if (this.constantNodes.has(n.name)) {
        if (!this.constants.has(n.name)) this.constants.set(n.name, this.evalNode(n, n.inputs.map(get)));
        continue;
      }
      values.set(n.name, this.evalNode(n, n.inputs.map(get)));
    }
    return get({ kind: 'value', name: this.graph.outputs[0]! });
  }

  private weightF32(name: string): Float32Array {
    let w = this.constants.get(`@${name}`);
    if (!w) {
      const src = this.model.weights.get(name);
      if (!src) throw new Error(`weight @${name} is not in the model's weights`);
      w = src.toFloat32();
      this.constants.set(`@${name}`, w);
    }
    return w as Float32Array;
  }

  /** Static size of axis `axis` of an operand (weights, inputs and node values all have static widths). */
  private dim(o: Operand, axis: number): number {
    const t = o.kind === 'weight' ? this.types.get(`@${o.name}`) : this.types.get(o.name);
    const d = t?.shape[axis];
    if (typeof d !== 'number') throw new Error(`${o.kind === 'weight' ? '@' : '%'}${o.name}: axis ${axis} is not static`);
    return d;
  }

  private evalNode(n: Node, ins: Value[]): Value {
    const f = (i: number) => ins[i] as Float32Array;
    const idx = (i: number) => ins[i] as Int32Array;
    const dim = (i: number, axis: number) => this.dim(n.inputs[i]!, axis);
    const a = n.attrs;
    const kept = n.type.shape[1] as number;
    switch (n.op) {
      case 'embedding': return K.embedding(f(0), dim(0, 1), idx(1));
      case 'rmsnorm': return K.rmsnorm(f(0), f(1), a.eps as number);
      case 'linear': case 'logits': return K.linear(f(0), f(1), dim(1, 1));
      case 'rope':
        return K.rope(f(0), {
          heads: a.heads as number, headDim: a.head_dim as number, theta: a.theta as number, style: a.style as 'half' | 'interleaved',
          ...(a.scaling === 'llama3' ? { llama3: { factor: a.factor as number, lowFreqFactor: a.low_freq_factor as number, highFreqFactor: a.high_freq_factor as number, originalMaxPos: a.original_max_pos as number } } : {}),
        }, this.pos);
      case 'attention': return K.attention(f(0), f(1), f(2), this.kvSlot(n, this.pos + f(0).length / ((a.heads as number) * (a.head_dim as number))), this.pos, a.heads as number, a.kv_heads as number, a.head_dim as number);
      case 'silu': return K.silu(f(0));
      case 'sigmoid': return K.sigmoid(f(0));
      case 'mul': return K.mul(f(0), f(1));
      case 'add': return K.add(f(0), f(1));
      case 'transpose': return K.transpose(f(0), dim(0, 0), dim(0, 1));
      case 'moc_select': return K.mocSelect(f(0), dim(0, 1), a.k !== undefined ? { k: a.k as number } : { a: a.a as number, b: a.b as number });
      case 'moc_gather': return K.mocGather(f(0), dim(0, 1), idx(1), kept);
      case 'moc_up': return K.mocUp(f(0), f(1), dim(0, 1), idx(2), kept);
      case 'moc_down': return K.mocDown(f(0), f(1), n.type.shape[1] as number, idx(2), dim(0, 1));
      default: throw new Error(`ref target has no kernel for op '${n.op}'`);
    }
  }

  /**
   * The layer's KV cache with room for `rows` positions. It grows by doubling (up to the context length)
   * instead of being allocated for the whole context at once: a header may claim a context of 2^31
   * positions, and a real model's full context can take gigabytes that a short run never uses.
   */
  private kvSlot(n: Node, rows: number): K.KvSlot {
    const layer = n.attrs.layer as number;
    const kvw = (n.attrs.kv_heads as number) * (n.attrs.head_dim as number);
    let slot = this.cache.get(layer);
    if (!slot || slot.k.length < rows * kvw) {
      const cap = Math.min(this.model.spec.maxSeqLen, Math.max(rows, 64, 2 * (slot ? slot.k.length / kvw : 0)));
      const grown = { k: new Float32Array(cap * kvw), v: new Float32Array(cap * kvw) };
      if (slot) {
        grown.k.set(slot.k);
        grown.v.set(slot.v);
      }
      this.cache.set(layer, (slot = grown));
    }
    return slot;
  }
}

/** Nodes whose inputs are all weights or other such nodes: computed once per session. */
function constantNodeNames(g: Graph): Set<string> {
  const out = new Set<string>();
  for (const n of g.nodes) if (n.inputs.every((o) => o.kind === 'weight' || out.has(o.name))) out.add(n.name);
  return out;
}
