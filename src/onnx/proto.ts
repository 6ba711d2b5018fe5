// ONNX's protobuf messages through protobufjs: the schema is ONNX 1.23's own onnx.proto (src/onnx/,
// Apache-2.0), compiled once to onnx-proto.json by fixtures/gen/make_onnx_proto_json.mjs. We chose it
// over the npm `onnx-proto` package, which is generated from an old ONNX (no IR 10 fields, no
// bfloat16/float8/int4 data types, no FunctionProto attributes as today's exporters write them).
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import protobuf from 'protobufjs';
import { projectRoot } from '../util/project-root.js';

let root: protobuf.Root | undefined;

/** The `onnx` package of message types (ModelProto, GraphProto, NodeProto, TensorProto, ...). */
export function onnxRoot(): protobuf.Root {
  root ??= protobuf.Root.fromJSON(JSON.parse(readFileSync(join(projectRoot(), 'src', 'onnx', 'onnx-proto.json'), 'utf8')));
  return root;
}

export const onnxType = (name: 'ModelProto' | 'GraphProto' | 'NodeProto' | 'TensorProto' | 'ValueInfoProto' | 'AttributeProto'): protobuf.Type => onnxRoot().lookupType(`onnx.${name}`);

/** TensorProto.DataType codes mocc reads or writes (onnx.proto's enum). */
export const ONNX_DTYPE = { FLOAT: 1, UINT8: 2, INT8: 3, UINT16: 4, INT16: 5, INT32: 6, INT64: 7, BOOL: 9, FLOAT16: 10, DOUBLE: 11, BFLOAT16: 16 } as const;
