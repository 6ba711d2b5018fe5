// Builds an ONNX GraphProto as plain objects for protobufjs (src/onnx/proto.ts): nodes in order,
// initializers, inputs and outputs. Large initializers go to the external-data file (external-data.ts)
// as they are added, so a model's weights are never all in memory at once; small ones stay inline.
import { ONNX_DTYPE } from '../../src/onnx/proto.js';
import type { ExternalDataWriter } from './external-data.js';

/** AttributeProto.AttributeType codes (onnx.proto). */
const ATTR = { FLOAT: 1, INT: 2, STRING: 3, INTS: 7, TENSOR: 4 } as const;

export type AttrArg = number | string | number[] | { tensor: TensorObject } | { float: number };
export type OnnxElem = (typeof ONNX_DTYPE)[keyof typeof ONNX_DTYPE];
/** A dimension of a graph input or output: a size, or a symbolic name (dim_param). */
export type OnnxDim = number | string;

export interface TensorObject {
  name?: string;
  dims: number[];
  dataType: number;
  rawData?: Uint8Array;
  dataLocation?: number;
  externalData?: { key: string; value: string }[];
}

/** Initializers at most this big stay inside model.onnx; bigger ones go to the external file. */
const INLINE_LIMIT = 1024;

export class OnnxGraphBuilder {
  private readonly nodes: object[] = [];
  private readonly initializers: TensorObject[] = [];
  private readonly inputs: object[] = [];
  private readonly outputs: object[] = [];
  private readonly used = new Set<string>();
  private readonly constCache = new Map<string, string>();
  private counter = 0;

  constructor(private readonly external: ExternalDataWriter) {}

  /** A value name not used yet, from a readable stem. */
  fresh(stem: string): string {
    let name = stem;
    while (this.used.has(name)) name = `${stem}_${++this.counter}`;
    this.used.add(name);
    return name;
  }

  /** Names given exactly later (graph outputs): fresh() never returns them. */
  reserve(names: string[]): void {
    for (const n of names) this.used.add(n);
  }

  input(name: string, elem: OnnxElem, dims: OnnxDim[]): string {
    this.used.add(name);
    this.inputs.push(valueInfo(name, elem, dims));
    return name;
  }

  output(name: string, elem: OnnxElem, dims: OnnxDim[]): void {
    this.outputs.push(valueInfo(name, elem, dims));
  }

  /** Adds a node; returns its output names (fresh names from `outStems`, or the exact names in `exact`). */
  node(op: string, inputs: string[], outStems: string[], attrs: Record<string, AttrArg> = {}, exact = false): string[] {
    const outs = outStems.map((s) => (exact ? s : this.fresh(s)));
    this.nodes.push({
      opType: op, name: this.fresh(`${op}_node`), input: inputs, output: outs,
      attribute: Object.entries(attrs).map(([name, v]) => attribute(name, v)),
    });
    return outs;
  }

  /** A single-output node. */
  op(op: string, inputs: string[], outStem: string, attrs: Record<string, AttrArg> = {}): string {
    return this.node(op, inputs, [outStem], attrs)[0]!;
  }

  /** An initializer holding `bytes` (little-endian, row-major) of element type `elem`. */
  initializer(stem: string, elem: OnnxElem, dims: number[], bytes: Uint8Array): string {
    const name = this.fresh(stem);
    if (bytes.byteLength <= INLINE_LIMIT) {
      this.initializers.push({ name, dims, dataType: elem, rawData: bytes });
    } else {
      const { offset, length } = this.external.append(bytes);
      this.initializers.push({
        name, dims, dataType: elem, dataLocation: 1,
        externalData: [{ key: 'location', value: this.external.fileName }, { key: 'offset', value: String(offset) }, { key: 'length', value: String(length) }],
      });
    }
    return name;
  }

  /** A constant int64 tensor (shapes, axes, indices), shared by every reader of the same value. */
  int64(values: number[], scalar = false): string {
    const key = `i64:${scalar ? 's' : 'v'}:${values.join(',')}`;
    let name = this.constCache.get(key);
    if (!name) {
      const b = new BigInt64Array(values.map((v) => BigInt(v)));
      name = this.initializer(`const_i64_${values.join('_').replace(/-/g, 'm')}`.slice(0, 60), ONNX_DTYPE.INT64, scalar ? [] : [values.length], new Uint8Array(b.buffer));
      this.constCache.set(key, name);
    }
    return name;
  }

  /** A constant float32 scalar (or shape [1] when `vector`), shared. */
  float(value: number): string {
    const key = `f32:${value}`;
    let name = this.constCache.get(key);
    if (!name) {
      name = this.initializer('const_f32', ONNX_DTYPE.FLOAT, [], new Uint8Array(new Float32Array([value]).buffer));
      this.constCache.set(key, name);
    }
    return name;
  }

  graph(name: string): object {
    return { name, node: this.nodes, initializer: this.initializers, input: this.inputs, output: this.outputs };
  }
}

function valueInfo(name: string, elem: OnnxElem, dims: OnnxDim[]): object {
  return { name, type: { tensorType: { elemType: elem, shape: { dim: dims.map((d) => (typeof d === 'number' ? { dimValue: d } : { dimParam: d })) } } } };
}

function attribute(name: string, v: AttrArg): object {
  if (typeof v === 'number') return { name, type: ATTR.INT, i: v };
  if (typeof v === 'string') return { name, type: ATTR.STRING, s: new TextEncoder().encode(v) };
  if (Array.isArray(v)) return { name, type: ATTR.INTS, ints: v };
  if ('float' in v) return { name, type: ATTR.FLOAT, f: v.float };
  return { name, type: ATTR.TENSOR, t: v.tensor };
}
