// Decodes an .onnx file (a ModelProto, src/onnx/proto.ts) into the plain records the importer works on:
// nodes with their attributes, initializers (data not read), graph inputs and outputs, opset imports.
// Only the .onnx protobuf itself is read here; external weight files are opened by tensors.ts.
import { readFileSync } from 'node:fs';
import { onnxType } from '../../onnx/proto.js';
import { oneLine, UserError } from '../../util/errors.js';

/** An attribute, its value already picked out of AttributeProto's one-of fields. */
export type OnnxAttr =
  | { kind: 'float'; value: number }
  | { kind: 'int'; value: number }
  | { kind: 'string'; value: string }
  | { kind: 'tensor'; value: OnnxTensorProto }
  | { kind: 'floats'; value: number[] }
  | { kind: 'ints'; value: number[] }
  | { kind: 'other' };

export interface OnnxNode {
  /** Position in the graph (names are never used to find structure; this is for messages). */
  index: number;
  op: string;
  /** '' is the default domain (ai.onnx); 'ai.onnx' is normalised to ''. */
  domain: string;
  /** Input value names; '' marks an omitted optional input. */
  inputs: string[];
  outputs: string[];
  attrs: Map<string, OnnxAttr>;
}

/** Node n's int attribute `name`, or `dflt` when it is absent (ONNX's default) or not an int. */
export function intAttr(n: OnnxNode, name: string, dflt: number): number {
  const a = n.attrs.get(name);
  return a?.kind === 'int' ? a.value : dflt;
}

/** Node n's ints attribute `name`, if it has one. */
export function intsAttr(n: OnnxNode, name: string): number[] | undefined {
  const a = n.attrs.get(name);
  return a?.kind === 'ints' ? a.value : undefined;
}

/** Node n's int or float attribute `name`, if it has one. */
export function numAttr(n: OnnxNode, name: string): number | undefined {
  const a = n.attrs.get(name);
  return a?.kind === 'int' || a?.kind === 'float' ? a.value : undefined;
}

/** A TensorProto as protobufjs's toObject gives it (longs as numbers, bytes as Uint8Array). */
export interface OnnxTensorProto {
  name?: string;
  dims?: number[];
  dataType?: number;
  rawData?: Uint8Array;
  floatData?: number[];
  int32Data?: number[];
  int64Data?: number[];
  doubleData?: number[];
  dataLocation?: number;
  externalData?: Array<{ key?: string; value?: string }>;
}

export interface OnnxModel {
  path: string;
  irVersion: number;
  /** Domain ('' for ai.onnx) → opset version. */
  opsets: Map<string, number>;
  nodes: OnnxNode[];
  initializers: OnnxTensorProto[];
  inputs: string[];
  outputs: string[];
}

interface RawAttr { name?: string; type?: number; f?: number; i?: number; s?: Uint8Array; t?: OnnxTensorProto; floats?: number[]; ints?: number[] }
interface RawNode { input?: string[]; output?: string[]; opType?: string; domain?: string; attribute?: RawAttr[] }
interface RawModel {
  irVersion?: number;
  opsetImport?: Array<{ domain?: string; version?: number }>;
  graph?: { node?: RawNode[]; initializer?: OnnxTensorProto[]; input?: Array<{ name?: string }>; output?: Array<{ name?: string }> };
}

/** AttributeProto.AttributeType codes (onnx.proto). */
const ATTR = { FLOAT: 1, INT: 2, STRING: 3, TENSOR: 4, FLOATS: 6, INTS: 7 } as const;

function attrOf(a: RawAttr): OnnxAttr {
  switch (a.type) {
    case ATTR.FLOAT: return { kind: 'float', value: a.f ?? 0 };
    case ATTR.INT: return { kind: 'int', value: a.i ?? 0 };
    case ATTR.STRING: return { kind: 'string', value: Buffer.from(a.s ?? new Uint8Array()).toString('utf8') };
    case ATTR.TENSOR: return a.t ? { kind: 'tensor', value: a.t } : { kind: 'other' };
    case ATTR.FLOATS: return { kind: 'floats', value: a.floats ?? [] };
    case ATTR.INTS: return { kind: 'ints', value: a.ints ?? [] };
    default: return { kind: 'other' };
  }
}

const normDomain = (d: string | undefined): string => (d === undefined || d === 'ai.onnx' ? '' : d);

/** Reads and decodes `path`; a file protobuf cannot decode, or one with no graph, is a UserError. */
export function readOnnxModel(path: string): OnnxModel {
  let bytes: Buffer;
  try {
    bytes = readFileSync(path);
  } catch (e) {
    throw new UserError(`${path}: cannot read (${(e as NodeJS.ErrnoException).code ?? (e as Error).message})`);
  }
  const type = onnxType('ModelProto');
  let m: RawModel;
  try {
    m = type.toObject(type.decode(bytes), { longs: Number, defaults: false }) as RawModel;
  } catch (e) {
    // protobufjs says e.g. "index out of range: 1234 + 10 > 1240" for a truncated file.
    throw new UserError(`${path}: not a valid ONNX protobuf (${oneLine((e as Error).message, 120)}); truncated or corrupt?`);
  }
  if (!m.graph) throw new UserError(`${path}: the ONNX model has no graph`);
  const opsets = new Map<string, number>();
  for (const o of m.opsetImport ?? []) opsets.set(normDomain(o.domain), o.version ?? 0);
  const nodes = (m.graph.node ?? []).map((n, index): OnnxNode => ({
    index,
    op: n.opType ?? '',
    domain: normDomain(n.domain),
    inputs: n.input ?? [],
    outputs: n.output ?? [],
    attrs: new Map((n.attribute ?? []).map((a) => [a.name ?? '', attrOf(a)])),
  }));
  const inits = m.graph.initializer ?? [];
  const initNames = new Set(inits.map((i) => i.name ?? ''));
  return {
    path,
    irVersion: m.irVersion ?? 0,
    opsets,
    nodes,
    initializers: inits,
    // Before IR 4, initializers were also listed as graph inputs; those are not runtime inputs.
    inputs: (m.graph.input ?? []).map((i) => i.name ?? '').filter((n) => !initNames.has(n)),
    outputs: (m.graph.output ?? []).map((o) => o.name ?? ''),
  };
}
