// ONNX import of the stories260K fixture (torch.onnx.export(dynamo=True), fixtures/stories260K/onnx):
// the config is inferred from the graph and every weight equals the Hugging Face safetensors (the
// independent reference: ONNX stores MatMul weights [in, out], mocc presents them [out, in]); renaming
// every node, value and initializer changes nothing (the importer matches structure, not names); bad
// input is a one-line UserError, and through the CLI exit 1 with nothing written. Logits and greedy
// text against the HF references run with the other formats (test/e2e/logits.test.ts, greedy.test.ts).
import test from 'ava';
import { copyFileSync, existsSync, mkdirSync, mkdtempSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { randomBytes } from 'node:crypto';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { readFileSync } from 'node:fs';
import type protobuf from 'protobufjs';
import { importHf } from '../../src/import/hf.js';
import { importOnnx } from '../../src/import/onnx/index.js';
import type { Checkpoint } from '../../src/import/spec.js';
import { onnxType } from '../../src/onnx/proto.js';
import { userError } from '../helpers/cli-assert.js';
import { mocc } from '../helpers/cli.js';
import { throwsUser } from '../helpers/errors.js';
import { CHECKPOINTS, FIX, withCheckpoint, sameWeights } from '../helpers/fixtures.js';

const ONNX_DIR = `${FIX}onnx/`;
const DATA = 'model.onnx.data';
const tmp = mkdtempSync(join(tmpdir(), 'mocc-onnx-test-'));
test.after.always(() => rmSync(tmp, { recursive: true, force: true }));
let counter = 0;


/* eslint-disable @typescript-eslint/no-explicit-any */
type Msg = any;
const MODEL = onnxType('ModelProto');
const decodeFixture = (): Msg => MODEL.decode(readFileSync(CHECKPOINTS.onnx));

/** Writes `m` as model.onnx in a fresh directory beside a copy of the weights file (unless `withData` is false). */
function writeModel(m: Msg | Uint8Array, withData = true, sub = ''): string {
  const dir = join(tmp, `m${counter++}`, sub);
  mkdirSync(dir, { recursive: true });
  if (withData) copyFileSync(join(ONNX_DIR, DATA), join(dir, DATA));
  const path = join(dir, 'model.onnx');
  writeFileSync(path, m instanceof Uint8Array ? m : MODEL.encode(m as protobuf.Message).finish());
  return path;
}

const externalInits = (m: Msg): Msg[] => m.graph.initializer.filter((i: Msg) => i.externalData?.length > 0);
const setExternal = (init: Msg, key: string, value: string): void => {
  init.externalData.find((e: Msg) => e.key === key).value = value;
};

test('the fixture: config inferred from the graph', (t) => {
  withCheckpoint(() => importOnnx(CHECKPOINTS.onnx), (c) => {
    t.is(c.format, 'onnx');
    const { maxSeqLen: _unknownToOnnx, ...spec } = c.spec;
    t.deepEqual(spec, {
      arch: 'llama', dim: 64, nLayers: 5, nHeads: 8, nKvHeads: 4, headDim: 8, dFfn: 172, vocabSize: 512,
      normEps: 1e-5, rope: { theta: 10000, style: 'half' }, tiedEmbeddings: true, bosId: 1, eosId: 2,
    });
    t.deepEqual(c.files, [CHECKPOINTS.onnx, join(ONNX_DIR, DATA)]);
  });
});

test('the fixture: every weight equals the Hugging Face safetensors', (t) => {
  withCheckpoint(() => importHf(CHECKPOINTS.hf), (hf) => withCheckpoint(() => importOnnx(CHECKPOINTS.onnx), (ox) => {
    sameWeights(t, ox.weights, hf.weights);
  }));
});

test('renaming every node, value and initializer to random strings changes nothing', (t) => {
  const m = decodeFixture();
  const names = new Map<string, string>();
  const rename = (s: string): string => {
    if (s === '') return s;
    let r = names.get(s);
    if (!r) names.set(s, (r = `${randomBytes(6).toString('base64')} #${names.size}`));
    return r;
  };
  const g = m.graph;
  for (const n of g.node) {
    n.name = rename(`node:${n.name}`);
    n.input = n.input.map(rename);
    n.output = n.output.map(rename);
  }
  for (const i of g.initializer) i.name = rename(i.name);
  for (const v of [...g.input, ...g.output, ...g.valueInfo]) v.name = rename(v.name);
  const path = writeModel(m);
  withCheckpoint(() => importOnnx(CHECKPOINTS.onnx), (a) => withCheckpoint(() => importOnnx(path), (b) => {
    t.deepEqual(b.spec, a.spec);
    for (const [name, w] of a.weights) t.deepEqual(b.weights.get(name)!.toFloat32(), w.toFloat32(), name);
  }));
  // The inputs really were renamed.
  t.false(readFileSync(path).includes(Buffer.from('input_layernorm')));
});

/** Bad inputs: the importer's one-line message, and `mocc convert` exits 1 writing nothing. */
const BAD: Array<[string, () => string, RegExp]> = [
  ['a missing external file', () => writeModel(decodeFixture(), false), /external data file .*model\.onnx\.data does not exist/],
  ['offset + length past the end of the external file', () => {
    const m = decodeFixture();
    setExternal(externalInits(m)[0], 'offset', String(statSync(join(ONNX_DIR, DATA)).size - 100));
    return writeModel(m);
  }, /offset \d+ \+ length \d+ goes past the end of .*model\.onnx\.data/],
  ['an absolute location (of a file that exists)', () => {
    const m = decodeFixture();
    setExternal(externalInits(m)[0], 'location', join(ONNX_DIR, DATA));
    return writeModel(m);
  }, /must be a relative path inside the model's directory/],
  ['a ".." location (of a file that exists)', () => {
    const m = decodeFixture();
    setExternal(externalInits(m)[0], 'location', `../${DATA}`);
    const path = writeModel(m, true, 'sub'); // the data sits in the parent directory
    copyFileSync(join(ONNX_DIR, DATA), join(path, '..', '..', DATA));
    return path;
  }, /must be a relative path inside the model's directory/],
  ['a length disagreeing with dims × dtype', () => {
    const m = decodeFixture();
    const init = externalInits(m)[0];
    setExternal(init, 'length', String(Number(init.externalData.find((e: Msg) => e.key === 'length').value) - 4));
    return writeModel(m);
  }, /external data length \d+ disagrees with dims \[\d+,\d+\] × 4 bytes/],
  ['an unsupported op', () => {
    const m = decodeFixture();
    m.graph.node.find((n: Msg) => n.opType === 'Softmax').opType = 'Einsum';
    return writeModel(m);
  }, /unsupported ONNX op Einsum \(domain ai\.onnx, opset 20\) at node \d+/],
  ['an op from another domain', () => {
    const m = decodeFixture();
    const n = m.graph.node.find((x: Msg) => x.opType === 'Sigmoid');
    n.domain = 'com.microsoft';
    return writeModel(m);
  }, /unsupported ONNX op Sigmoid \(domain com\.microsoft, no opset imported for that domain\)/],
  ['a graph with no residual chain', () => {
    const m = decodeFixture();
    // The first Add that reads the embedding Gather's output: make it add the branch to itself.
    const emb = m.graph.node.find((n: Msg) => n.opType === 'Gather').output[0];
    const add = m.graph.node.find((n: Msg) => n.opType === 'Add' && n.input.includes(emb));
    const branch = add.input.find((i: string) => i !== emb);
    add.input = [branch, branch];
    return writeModel(m);
  }, /not a LLaMA graph mocc recognises: no residual chain/],
  ['a truncated protobuf', () => {
    const bytes = readFileSync(CHECKPOINTS.onnx);
    return writeModel(bytes.subarray(0, Math.floor(bytes.length / 2)));
  }, /not a valid ONNX protobuf \(.*\); truncated or corrupt\?/],
];

for (const [what, make, message] of BAD) {
  test(`bad input: ${what}`, (t) => {
    const path = make();
    throwsUser(t, () => importOnnx(path), message);
    const out = join(tmp, `out${counter++}`);
    userError(t, mocc('convert', path, '-o', out, '--dense'), message);
    t.false(existsSync(out), 'nothing written');
  });
}

test('with no tokenizer, mocc run says it looked for a tokenizer.json beside the .onnx', (t) => {
  const path = writeModel(decodeFixture());
  const search = mocc('run', path, '--prompt', 'Once');
  t.is(search.code, 1);
  t.regex(search.stderr, /no tokenizer\.json beside model\.onnx/);
});
