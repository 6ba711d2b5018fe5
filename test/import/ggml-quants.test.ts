// Every ggml block type mocc reads, dequantized through the GGUF import path, against the `gguf` Python
// package's dequantization of the same bytes (fixtures/ggml-quants/quants.gguf, written by
// fixtures/gen/make_ggml_quant_vectors.py): bit for bit in f32, and as numpy / gguf-py round them to f16 / bf16.
import test from 'ava';
import { statSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { GGML_BLOCK_TYPES } from '../../src/import/ggml-quants.js';
import { ggufTensorSource, readGgufHeader, type GgufTensorInfo } from '../../src/import/gguf.js';
import type { DequantDType } from '../../src/import/quant-tensor.js';
import { FileHandle, type TensorSource } from '../../src/import/tensor.js';

const PATH = fileURLToPath(new URL('../../fixtures/ggml-quants/quants.gguf', import.meta.url));
const TYPES = ['Q4_0', 'Q4_1', 'Q5_0', 'Q5_1', 'Q8_0', 'Q2_K', 'Q3_K', 'Q4_K', 'Q5_K', 'Q6_K'];

function withFixture(fn: (tensor: (name: string, to?: DequantDType) => TensorSource, info: Map<string, GgufTensorInfo>) => void): void {
  const fh = new FileHandle(PATH, statSync(PATH).size);
  try {
    const h = readGgufHeader(fh, PATH);
    const info = new Map(h.tensors.map((t) => [t.name, t]));
    fn((name, to = 'f32') => ggufTensorSource(PATH, fh, info.get(name)!, to), info);
  } finally {
    fh.close();
  }
}

const bits = (a: Float32Array) => [...new Uint32Array(a.buffer, a.byteOffset, a.length)];

test('the fixture covers every block type mocc supports', (t) => {
  t.deepEqual([...GGML_BLOCK_TYPES.values()].map((b) => b.name).sort(), [...TYPES].sort());
  withFixture((_, info) => {
    for (const name of TYPES) t.is(info.get(name)?.ggmlType, [...GGML_BLOCK_TYPES.values()].find((b) => b.name === name)!.id, name);
  });
});

for (const name of TYPES) {
  test(`${name}: dequantized f32 values are bit-identical to gguf-py's`, (t) => {
    withFixture((tensor, info) => {
      const q = tensor(name, 'f32');
      const want = tensor(`${name}.f32`).toFloat32();
      t.is(q.dtype, 'f32');
      t.deepEqual(q.shape, info.get(`${name}.f32`)!.shape);
      t.is(q.byteLength, want.length * 4);
      t.deepEqual(bits(q.toFloat32()), bits(want));
      // Row reads (a row is two blocks) and raw byte ranges that start and end inside blocks agree too.
      const cols = q.shape[1]!;
      t.deepEqual(bits(q.readRowsF32(1, 2)), bits(want.subarray(cols, 2 * cols)));
      const start = 4 * (cols / 2 + 3), end = 4 * (cols + 5);
      t.deepEqual([...q.readBytes(start, end)], [...new Uint8Array(want.buffer, want.byteOffset + start, end - start)]);
    });
  });

  test(`${name}: dequantized to f16 and bf16 as numpy and gguf-py round those values`, (t) => {
    withFixture((tensor) => {
      for (const to of ['f16', 'bf16'] as const) {
        const q = tensor(name, to);
        const want = tensor(`${name}.${to}`);
        t.is(q.dtype, to);
        t.is(q.byteLength, want.byteLength);
        t.deepEqual([...q.readBytes(0, q.byteLength)], [...want.readBytes(0, want.byteLength)], to);
        t.deepEqual(bits(q.readRowsF32(0, 2)), bits(want.readRowsF32(0, 2)), to);
        t.deepEqual([...q.readBytes(6, 70)], [...want.readBytes(6, 70)], `${to} bytes [6, 70)`);
      }
    });
  });
}
