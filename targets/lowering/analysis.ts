// Facts about an IR graph that every GPU lowering reads, computed once per lowering:
//  - who produces a value and who reads it (reader indices in program order; a graph output counts
//    as one reader at index nodes.length, after every node);
//  - static widths (axis 1) of values and weights;
//  - how a weight operand reaches the device: a weight, or the transpose of one (a param flagged
//    `transposed`, whose store holds its transpose, or transpose(@w); computed on the host as a
//    constant named `<weight>.t`), with its device dtype and its rows × cols as read.
// Nothing here decides a fusion or names a kernel; fusion.ts finds the patterns, each target
// decides what to do with them.
import { UserError } from '../../src/util/errors.js';
import type { Graph, Operand, TensorType } from '../../src/ir/types.js';
import { MODEL_INPUTS } from '../../src/model/graph-inputs.js';
import { decodeGraph } from '../../passes/kv-cache.js';
import { decodeView, type Node } from './decode-view.js';

export type { Node };
import { deviceDType, matrixShape, type WeightDType } from './device-image.js';

/** A weight as one device buffer: its name there, dtype and shape as stored (a vector is one row). */
export interface DeviceWeight {
  name: string;
  dtype: WeightDType;
  rows: number;
  cols: number;
}

/** How a weight operand is read: the weight itself, or its host-computed transpose (`of` is the weight). */
export type WeightRead = DeviceWeight & ({ kind: 'weight' } | { kind: 'transpose'; of: string });

export class GraphFacts {
  /** Reader index of the graph outputs: after every node. */
  readonly outputIndex: number;
  /** The decode graph lowered (a model graph is rewritten by passes/kv-cache.ts first). */
  readonly graph: Graph;
  /** Its nodes in program order, as the lowerings read them (decode-view.ts). */
  readonly nodes: readonly Node[];
  private readonly byName: Map<string, { n: Node; i: number }>;
  private readonly readerIndices = new Map<string, number[]>();
  private readonly weightTypes: Map<string, TensorType>;
  private readonly transposedParams: Set<string>;

  /** `target` names the target in error messages ("cuda target: …"); `capacity` is the KV caches' rows (the model's context). */
  constructor(model: Graph, readonly target: string, capacity: number) {
    const graph = (this.graph = decodeGraph(model, capacity));
    this.nodes = decodeView(graph, target, capacity);
    this.outputIndex = this.nodes.length;
    this.byName = new Map(this.nodes.map((n, i) => [n.name, { n, i }]));
    this.nodes.forEach((n, i) => n.inputs.forEach((o) => o.kind === 'value' && this.readerIndices.set(o.name, [...(this.readerIndices.get(o.name) ?? []), i])));
    for (const o of graph.outputs) this.readerIndices.set(o, [...(this.readerIndices.get(o) ?? []), this.outputIndex]);
    this.weightTypes = new Map(graph.params.map((w) => [w.name, w.type]));
    this.transposedParams = new Set(graph.params.filter((p) => p.transposed).map((p) => p.name));
  }

  node(name: string): Node | undefined {
    return this.byName.get(name)?.n;
  }

  /** The node that computes a value operand (undefined for weights and graph inputs). */
  producer(o: Operand | undefined): Node | undefined {
    return o && o.kind === 'value' ? this.byName.get(o.name)?.n : undefined;
  }

  /** Indices of the nodes reading value v, in program order, once per operand; outputIndex if it is a graph output. */
  readers(v: string): readonly number[] {
    return this.readerIndices.get(v) ?? [];
  }

  /** The nodes reading value v (graph outputs left out), once per operand. */
  readerNodes(v: string): Node[] {
    return this.readers(v).flatMap((i) => (i < this.outputIndex ? [this.nodes[i]!] : []));
  }

  /** How many operands (and graph outputs) read value v. */
  useCount(v: string): number {
    return this.readers(v).length;
  }

  /** A node's width (axis 1 of its [T, width] result). */
  width(n: Node): number {
    return n.type.shape[1] as number;
  }

  /** Static width (axis 1) of an operand: a node's output, a graph input or a weight. */
  widthOf(o: Operand): number {
    const t = o.kind === 'value' ? (this.byName.get(o.name)?.n.type ?? this.graph.inputs.find((x) => x.name === o.name)?.type) : this.weightTypes.get(o.name);
    const d = t?.shape[1];
    if (typeof d !== 'number') throw new UserError(`${this.target} target: ${o.kind === 'param' ? '@' : '%'}${o.name} has no static width`);
    return d;
  }

  /** A weight as the device stores it. */
  weight(name: string): DeviceWeight {
    const t = this.weightTypes.get(name)!;
    const [rows, cols] = matrixShape({ shape: t.shape as number[] }); // weights have static shapes
    return { name, dtype: deviceDType(t.dtype), rows, cols };
  }

  /** How the operand reads a weight, or undefined when it is neither a weight nor a transpose of one. */
  weightRead(o: Operand): WeightRead | undefined {
    if (o.kind === 'param' && this.transposedParams.has(o.name)) {
      const w = this.weight(o.name); // the param's own layout; the store holds its transpose
      return { kind: 'transpose', of: w.name, name: `${w.name}.t`, dtype: w.dtype, rows: w.rows, cols: w.cols };
    }
    if (o.kind === 'param') return { kind: 'weight', ...this.weight(o.name) };
    const t = this.producer(o);
    if (t?.op !== 'transpose' || t.inputs[0]!.kind !== 'param') return undefined;
    const w = this.weight(t.inputs[0]!.name);
    return { kind: 'transpose', of: w.name, name: `${w.name}.t`, dtype: w.dtype, rows: w.cols, cols: w.rows };
  }

  /** The graph's i32 token ids (its other input, the positions, is the device's position counter: decode-view.ts). */
  tokenInput(): Graph['inputs'][number] {
    const others = this.graph.inputs.filter((i) => i.name !== MODEL_INPUTS.pos);
    const tokens = others[0];
    if (others.length !== 1 || tokens!.type.dtype !== 'i32') throw new UserError(`${this.target} target: the graph must take one i32 token input`);
    return tokens!;
  }

  fail(n: Node, why: string): never {
    throw new UserError(`${this.target} target: cannot lower %${n.name} = ${n.op}: ${why}`);
  }
}
