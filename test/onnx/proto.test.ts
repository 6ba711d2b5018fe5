// The ONNX schema loads and decodes the stories260K fixture (exported by torch.onnx.export(dynamo=True),
// ../shared/fixtures/README.md): IR 10, opset 20, 422 nodes, input_ids → logits, external weights.
import test from 'ava';
import { readFileSync } from 'node:fs';
import { onnxType } from '../../src/onnx/proto.js';
import { ROOT } from '../helpers/fixtures.js';

test('onnx.proto (ONNX 1.23) decodes the stories260K fixture', (t) => {
  const bytes = readFileSync(`${ROOT}fixtures/stories260K/onnx/model.onnx`);
  const m = onnxType('ModelProto').toObject(onnxType('ModelProto').decode(bytes), { longs: Number }) as {
    irVersion: number; opsetImport: { domain?: string; version: number }[]; graph: { node: unknown[]; input: { name: string }[]; output: { name: string }[]; initializer: { externalData?: { key: string; value: string }[] }[] };
  };
  t.is(m.irVersion, 10);
  t.is(m.opsetImport.find((o) => !o.domain)?.version, 20);
  t.is(m.graph.node.length, 422);
  t.deepEqual(m.graph.input.map((i) => i.name), ['input_ids']);
  t.deepEqual(m.graph.output.map((o) => o.name), ['logits']);
  t.true(m.graph.initializer.some((i) => i.externalData?.some((e) => e.key === 'location' && e.value === 'model.onnx.data')));
});
