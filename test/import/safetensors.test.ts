import test from 'ava';
import { throwsUser } from '../helpers/errors.js';
import { mkdtempSync, readdirSync, readFileSync, readlinkSync, realpathSync, rmSync, writeFileSync, existsSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { readSafetensorsHeader, writeSafetensors } from '../../src/import/safetensors.js';
import { UserError } from '../../src/util/errors.js';

const tmp = mkdtempSync(join(tmpdir(), 'mocc-st-test-'));
test.after.always(() => rmSync(tmp, { recursive: true, force: true }));
let counter = 0;
const tmpPath = (name: string): string => join(tmp, `${counter++}-${name}`);

/** Builds a safetensors file by hand: u64 header length, the header text, then the data bytes. */
function rawFile(headerText: string, data: Uint8Array = new Uint8Array(0), lenOverride?: bigint): string {
  const h = Buffer.from(headerText, 'utf8');
  const len = Buffer.alloc(8);
  len.writeBigUInt64LE(lenOverride ?? BigInt(h.length));
  const p = tmpPath('raw.safetensors');
  writeFileSync(p, Buffer.concat([len, h, Buffer.from(data)]));
  return p;
}
const hdr = (o: unknown): string => JSON.stringify(o);


// Values exactly representable in f32, f16 and bf16 (few mantissa bits, modest exponents),
// so the expected stored bits can be written down without any conversion code.
const EXACT = [0, 1, -1, 0.5, -2.25, 3.5, 0.125, -0.0078125, 96, -1024, 0.375, 7];
function exactValues(n: number): Float32Array {
  const v = new Float32Array(n);
  for (let i = 0; i < n; i++) v[i] = EXACT[i % EXACT.length]! * (i % 3 === 0 ? 1 : 0.5);
  return v;
}
/** Independent encoders for exact values: f32 via Buffer, bf16 = top 16 bits of f32, f16 by hand. */
function f16Bits(v: number): number {
  if (v === 0) return Object.is(v, -0) ? 0x8000 : 0;
  const sign = v < 0 ? 0x8000 : 0;
  const a = Math.abs(v);
  const e = Math.floor(Math.log2(a));
  const m = a / 2 ** e - 1; // exact for our values
  return sign | ((e + 15) << 10) | Math.round(m * 1024);
}
function encodeIndependent(dtype: 'f32' | 'f16' | 'bf16', v: Float32Array): Buffer {
  const b = Buffer.alloc(v.length * (dtype === 'f32' ? 4 : 2));
  for (let i = 0; i < v.length; i++) {
    if (dtype === 'f32') b.writeFloatLE(v[i]!, i * 4);
    else if (dtype === 'bf16') {
      const f = Buffer.alloc(4);
      f.writeFloatLE(v[i]!);
      b.writeUInt16LE(f.readUInt32LE() >>> 16, i * 2);
    } else b.writeUInt16LE(f16Bits(v[i]!), i * 2);
  }
  return b;
}

/** An entry whose write() emits the given bytes in uneven chunks (1, 7, 3, 64, ... bytes). */
function chunkedEntry(name: string, dtype: 'f32' | 'f16' | 'bf16', shape: number[], bytes: Uint8Array) {
  return {
    name, dtype, shape,
    write: (emit: (c: Uint8Array) => void) => {
      const sizes = [1, 7, 3, 64, 5, 1000];
      let off = 0;
      for (let i = 0; off < bytes.length; i++) {
        const n = Math.min(sizes[i % sizes.length]!, bytes.length - off);
        emit(bytes.subarray(off, off + n));
        off += n;
      }
    },
  };
}

test('writer round-trip: f32/f16/bf16 values, metadata, 8-aligned header, independent parse', async (t) => {
  const a = exactValues(3 * 5);
  const b = exactValues(17);
  const c = exactValues(2 * 3 * 4);
  const bytes = { a: encodeIndependent('f32', a), b: encodeIndependent('f16', b), c: encodeIndependent('bf16', c) };
  const p = tmpPath('rt.safetensors');
  await writeSafetensors(p, [
    chunkedEntry('a.weight', 'f32', [3, 5], bytes.a),
    chunkedEntry('b', 'f16', [17], bytes.b),
    chunkedEntry('c', 'bf16', [2, 3, 4], bytes.c),
    { name: 'empty', dtype: 'f32', shape: [0, 4], write: () => {} },
  ], { format: 'pt', note: 'hi' });

  // Independent reading: parse the file by hand.
  const raw = readFileSync(p);
  const n = Number(raw.readBigUInt64LE(0));
  t.is(n % 8, 0, 'header length is a multiple of 8');
  t.is((8 + n) % 8, 0);
  const text = raw.subarray(8, 8 + n).toString('utf8');
  t.regex(text, /^\{.*\} *$/s, 'JSON padded with spaces');
  const header = JSON.parse(text);
  t.deepEqual(header.__metadata__, { format: 'pt', note: 'hi' });
  t.deepEqual(header['a.weight'], { dtype: 'F32', shape: [3, 5], data_offsets: [0, 60] });
  t.deepEqual(header.b, { dtype: 'F16', shape: [17], data_offsets: [60, 94] });
  t.deepEqual(header.c, { dtype: 'BF16', shape: [2, 3, 4], data_offsets: [94, 142] });
  t.deepEqual(header.empty, { dtype: 'F32', shape: [0, 4], data_offsets: [142, 142] });
  t.is(raw.length, 8 + n + 142);
  const data = raw.subarray(8 + n);
  t.true(data.subarray(0, 60).equals(bytes.a));
  t.true(data.subarray(60, 94).equals(bytes.b));
  t.true(data.subarray(94, 142).equals(bytes.c));
  for (let i = 0; i < 15; i++) t.is(data.readFloatLE(i * 4), a[i]!);

  // Our reader.
  const st = readSafetensorsHeader(p);
  try {
    t.deepEqual(st.metadata, { format: 'pt', note: 'hi' });
    t.deepEqual([...st.tensors.keys()], ['a.weight', 'b', 'c', 'empty']);
    const ta = st.tensors.get('a.weight')!;
    t.is(ta.dtype, 'f32');
    t.deepEqual([...ta.shape], [3, 5]);
    t.is(ta.offset, 8 + n);
    t.deepEqual(ta.toFloat32(), a);
    t.deepEqual(ta.readRowsF32(1, 3), a.slice(5, 15));
    t.deepEqual(st.tensors.get('b')!.toFloat32(), b);
    t.is(st.tensors.get('b')!.dtype, 'f16');
    t.deepEqual(st.tensors.get('c')!.toFloat32(), c);
    t.is(st.tensors.get('c')!.dtype, 'bf16');
    t.is(st.tensors.get('c')!.offset, 8 + n + 94);
    t.deepEqual(st.tensors.get('empty')!.toFloat32(), new Float32Array(0));
  } finally {
    st.file.close();
  }
});

test('writer: large tensor streamed in big chunks round-trips', async (t) => {
  const rows = 300, cols = 1000; // 1.2 MB f32, more than the writer's buffer
  const p = tmpPath('big.safetensors');
  const rowVals = (r: number) => Float32Array.from({ length: cols }, (_, j) => (r * cols + j) % 977 - 488);
  await writeSafetensors(p, [
    { name: 'small', dtype: 'bf16', shape: [3], write: (emit) => emit(new Uint8Array([0, 0x3f, 0x80, 0x3f, 0, 0xc0])) },
    { name: 'big', dtype: 'f32', shape: [rows, cols], write: (emit) => { for (let r = 0; r < rows; r += 100) {
      const chunk = new Float32Array(100 * cols);
      for (let i = 0; i < 100; i++) chunk.set(rowVals(r + i), i * cols);
      emit(new Uint8Array(chunk.buffer));
    } } },
  ]);
  const st = readSafetensorsHeader(p);
  try {
    t.deepEqual(st.tensors.get('small')!.toFloat32(), Float32Array.from([0.5, 1, -2]));
    const big = st.tensors.get('big')!;
    t.deepEqual(big.readRowsF32(299, 300), rowVals(299));
    t.deepEqual(big.readRowsF32(0, 1), rowVals(0));
    t.deepEqual(big.readRowsF32(150, 151), rowVals(150));
  } finally {
    st.file.close();
  }
});

test('writer: an entry emitting too few or too many bytes throws and leaves no file', async (t) => {
  const p1 = tmpPath('short.safetensors');
  const e1 = await t.throwsAsync(() => writeSafetensors(p1, [{ name: 'x', dtype: 'f32', shape: [4], write: (emit) => emit(new Uint8Array(12)) }]));
  t.regex(e1!.message, /x: wrote 12 bytes but .* needs 16/);
  t.false(existsSync(p1));
  const p2 = tmpPath('long.safetensors');
  const e2 = await t.throwsAsync(() => writeSafetensors(p2, [{ name: 'y', dtype: 'bf16', shape: [2, 2], write: (emit) => { emit(new Uint8Array(6)); emit(new Uint8Array(6)); } }]));
  t.regex(e2!.message, /y: wrote more than the 8 bytes/);
  t.false(existsSync(p2));
});

test('reader: truncated file (shorter than 8 bytes)', async (t) => {
  const p = tmpPath('tiny.safetensors');
  writeFileSync(p, Buffer.from([1, 2, 3]));
  throwsUser(t, () => readSafetensorsHeader(p), 'truncated');
  t.true(t.throws(() => readSafetensorsHeader(p))!.message.includes(p), 'names the file');
});

test('reader: missing file', async (t) => {
  throwsUser(t, () => readSafetensorsHeader(join(tmp, 'nope.safetensors')), 'ENOENT');
});

test('reader: header length beyond the file', async (t) => {
  const p = rawFile(hdr({}), new Uint8Array(0), 5000n);
  throwsUser(t, () => readSafetensorsHeader(p), /header length 5000 goes beyond the end of the file/);
});

test('reader: absurd header length', async (t) => {
  const p = rawFile(hdr({}), new Uint8Array(0), 1n << 40n);
  throwsUser(t, () => readSafetensorsHeader(p), 'absurdly large');
});

test('reader: header not JSON / not an object', async (t) => {
  throwsUser(t, () => readSafetensorsHeader(rawFile('{"a": ')), 'not valid JSON');
  throwsUser(t, () => readSafetensorsHeader(rawFile('[1,2]')), 'not a JSON object');
  throwsUser(t, () => readSafetensorsHeader(rawFile('null')), 'not a JSON object');
});

test('reader: unknown dtype names what was found', async (t) => {
  const p = rawFile(hdr({ x: { dtype: 'I8', shape: [4], data_offsets: [0, 4] } }), new Uint8Array(4));
  throwsUser(t, () => readSafetensorsHeader(p), 'tensor x has dtype I8, supported: F32, F16, BF16');
});

test('reader: bad data_offsets', async (t) => {
  for (const offs of [[4, 0], [0], [-4, 0], [0.5, 4.5], 'x']) {
    const p = rawFile(hdr({ x: { dtype: 'F32', shape: [1], data_offsets: offs } }), new Uint8Array(8));
    throwsUser(t, () => readSafetensorsHeader(p), 'tensor x has data_offsets');
  }
  const p = rawFile(hdr({ x: { dtype: 'F32', shape: [-1], data_offsets: [0, 4] } }), new Uint8Array(4));
  throwsUser(t, () => readSafetensorsHeader(p), 'tensor x has shape [-1]');
});

test('reader: offsets outside the data section', async (t) => {
  const p = rawFile(hdr({ a: { dtype: 'F32', shape: [2], data_offsets: [0, 8] }, b: { dtype: 'F32', shape: [2], data_offsets: [8, 16] } }), new Uint8Array(12));
  throwsUser(t, () => readSafetensorsHeader(p), /tensor b has data_offsets \[8, 16\] outside the data section \(12 bytes\)/);
});

test('reader: byte length disagrees with shape × element size', async (t) => {
  const p = rawFile(hdr({ w: { dtype: 'BF16', shape: [2, 3], data_offsets: [0, 24] } }), new Uint8Array(24));
  throwsUser(t, () => readSafetensorsHeader(p), 'tensor w has 24 bytes but shape [2,3] of BF16 needs 12');
});

test('reader: overlapping tensors', async (t) => {
  const p = rawFile(hdr({
    z: { dtype: 'F32', shape: [2], data_offsets: [16, 24] },
    a: { dtype: 'F32', shape: [4], data_offsets: [0, 16] },
    b: { dtype: 'F32', shape: [3], data_offsets: [8, 20] },
  }), new Uint8Array(24));
  throwsUser(t, () => readSafetensorsHeader(p), /tensors a \[0, 16\) and b \[8, 20\) overlap/);
  // Adjacent (touching) tensors and empty tensors are fine.
  const ok = rawFile(hdr({ a: { dtype: 'F32', shape: [2], data_offsets: [0, 8] }, e: { dtype: 'F32', shape: [0], data_offsets: [4, 4] }, b: { dtype: 'F32', shape: [2], data_offsets: [8, 16] } }), new Uint8Array(16));
  const st = readSafetensorsHeader(ok);
  t.is(st.tensors.size, 3);
  st.file.close();
});

test('reader: closes its file handle on every error', async (t) => {
  if (!existsSync('/proc/self/fd')) return t.pass('no /proc on this platform');
  const bad = [
    rawFile(hdr({}), new Uint8Array(0), 5000n),
    rawFile('{"a": '),
    rawFile(hdr({ x: { dtype: 'I8', shape: [4], data_offsets: [0, 4] } }), new Uint8Array(4)),
    rawFile(hdr({ a: { dtype: 'F32', shape: [4], data_offsets: [0, 16] }, b: { dtype: 'F32', shape: [1], data_offsets: [8, 12] } }), new Uint8Array(16)),
  ];
  // Which open descriptors point at these files (not a count of all: ava runs other test files in
  // worker threads of this process, which open and close files of their own meanwhile).
  const real = bad.map((p) => realpathSync(p));
  const openOnBad = () => readdirSync('/proc/self/fd').filter((fd) => {
    try {
      return real.includes(readlinkSync(`/proc/self/fd/${fd}`));
    } catch {
      return false; // closed between the listing and the readlink
    }
  }).length;
  for (let i = 0; i < 20; i++) for (const p of bad) t.throws(() => readSafetensorsHeader(p), { instanceOf: UserError });
  t.is(openOnBad(), 0);
});
