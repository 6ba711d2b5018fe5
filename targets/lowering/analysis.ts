// Facts about an IR graph that every GPU lowering reads, computed once per lowering:
//  - who produces a value and who reads it (reader indices in program order; a graph output counts
//    as one reader at index nodes.length, after every node);
//  - static widths (axis 1) of values and weights;
//  - how a weight operand reaches the device: a weight, or the transpose of one (computed on the
//    host as a constant named `<weight>.t`), with its device dtype and its rows × cols as stored.
// Nothing here decides a fusion or names a kernel; fusion.ts finds the patterns, each target
// decides what to do with them.
import { UserError } from '../../src/import/spec.js';
import type { Graph, Node as IrNode, Operand, TensorType } from '../../src/ir/types.js';
import { single } from '../../src/ir/types.js';
import { deviceDType, matrixShape, type WeightDType } from './device-image.js';

/**
 * A node as the lowerings see it: every op they lower has one output, so a node is named by it
 * and has its type (a node with several outputs is refused when the facts are built).
 */
export interface Node {
  readonly name: string;
  readonly op: string;
  readonly inputs: readonly Operand[];
  readonly attrs: IrNode['attrs'];
  readonly type: TensorType;
}

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
  /** The graph's nodes in program order, as single-output nodes. */
  readonly nodes: readonly Node[];
  private readonly byName: Map<string, { n: Node; i: number }>;
  private readonly readerIndices = new Map<string, number[]>();
  private readonly weightTypes: Map<string, TensorType>;

  /** `target` names the target in error messages ("cuda target: …"). */
  constructor(readonly graph: Graph, readonly target: string) {
    this.outputIndex = graph.nodes.length;
    this.nodes = graph.nodes.map((n) => {
      if (n.outputs.length !== 1) throw new UserError(`${target} target: cannot lower ${n.op} with ${n.outputs.length} outputs`);
      const { name, type } = single(n);
      return { name, op: n.op, inputs: n.inputs, attrs: n.attrs, type };
    });
    this.byName = new Map(this.nodes.map((n, i) => [n.name, { n, i }]));
    this.nodes.forEach((n, i) => n.inputs.forEach((o) => o.kind === 'value' && this.readerIndices.set(o.name, [...(this.readerIndices.get(o.name) ?? []), i])));
    for (const o of graph.outputs) this.readerIndices.set(o, [...(this.readerIndices.get(o) ?? []), this.outputIndex]);
    this.weightTypes = new Map(graph.params.map((w) => [w.name, w.type]));
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
    if (o.kind === 'param') return { kind: 'weight', ...this.weight(o.name) };
    const t = this.producer(o);
    if (t?.op !== 'transpose' || t.inputs[0]!.kind !== 'param') return undefined;
    const w = this.weight(t.inputs[0]!.name);
    return { kind: 'transpose', of: w.name, name: `${w.name}.t`, dtype: w.dtype, rows: w.cols, cols: w.rows };
  }

  /** The graph's one input, the i32 token ids. */
  tokenInput(): Graph['inputs'][number] {
    const tokens = this.graph.inputs[0]!;
    if (this.graph.inputs.length !== 1 || tokens.type.dtype !== 'i32') throw new UserError(`${this.target} target: the graph must take one i32 token input`);
    return tokens;
  }

  fail(n: Node, why: string): never {
    throw new UserError(`${this.target} target: cannot lower %${n.name} = ${n.op}: ${why}`);
  }
}
