// The dense WGSL kernels against the ref kernels, on the WebGPU device Dawn offers here (SwiftShader
// on a machine without a GPU): both variants, every weight dtype, awkward sizes, outputs poisoned.
// Serial: runKernel brackets each dispatch with one device-wide error scope.
import test from 'ava';
import { argmax as refArgmax } from '../../src/run/sample.js';
import * as ref from '../../targets/ref/kernels.js';
import type { Variant, WeightDType, WgslKernel } from '../../targets/wgsl/kernel.js';
import { weightStride } from '../../targets/wgsl/kernel.js';
import { argmax, attention, elementwise, embedding, gemv, kvAppend, rmsnorm, rope, type GemvSpec } from '../../targets/wgsl/kernels/dense.js';
import { assertWithinLimits, maxRelErr, packWeight, poisoned, randomF32, runKernel, workgroupBytes, type HostArray } from '../helpers/webgpu.js';
import { testsNeeding, webgpuRequirement } from '../helpers/requires.js';

/** Tests that run kernels need a WebGPU adapter (skipped without one; a failure in CI). */
const gpuTest = testsNeeding(await webgpuRequirement());

const VARIANTS: Variant[] = ['cpu', 'gpu'];
const DTYPES: WeightDType[] = ['f32', 'f16', 'bf16'];

/** A fresh seed per input: inputs of one test never share a random stream. */
function seeds(base: number): (n: number, scale?: number) => Float32Array {
  let next = base;
  return (n, scale = 1) => randomF32(n, (next++) * 2654435761, scale);
}

const f32Of = (out: HostArray[], i: number): Float32Array => out[i] as Float32Array;
const bits = (a: Float32Array): number[] => Array.from(new Uint32Array(a.buffer, a.byteOffset, a.length));

/** The rows [start, start+rows) of a packed weight, as a binding of only those rows. */
function weightRows(dtype: WeightDType, data: Float32Array | Uint32Array, cols: number, start: number, rows: number): Float32Array | Uint32Array {
  const s = weightStride(dtype, cols);
  return data.slice(start * s, (start + rows) * s);
}

gpuTest.serial('embedding: exact rows of the table, for every dtype, whole or in row chunks', async (t) => {
  const rnd = seeds(100);
  const d = 37;
  const vocab = 11;
  const tokens = Int32Array.from([5, 0, 10]);
  for (const dtype of DTYPES) {
    const { data, rounded } = packWeight(dtype, rnd(vocab * d), vocab, d);
    const want = ref.embedding(rounded, d, tokens);
    for (const variant of VARIANTS) {
      const whole = await runKernel(embedding(dtype, d, vocab, 0, variant), [poisoned(tokens.length * d), data, tokens], { T: tokens.length });
      t.deepEqual(bits(f32Of(whole, 0)), bits(want), `${dtype}/${variant} whole table`);

      // Rows 0..5 and 6..10 in two dispatches: the first leaves token 10's row alone.
      const lo = embedding(dtype, d, 6, 0, variant);
      const hi = embedding(dtype, d, 5, 6, variant);
      const afterLo = f32Of(await runKernel(lo, [poisoned(tokens.length * d), weightRows(dtype, data, d, 0, 6), tokens], { T: 3 }), 0);
      t.true(afterLo.subarray(2 * d).every(Number.isNaN), `${dtype}/${variant}: a chunk wrote a row it does not hold`);
      const both = f32Of(await runKernel(hi, [afterLo, weightRows(dtype, data, d, 6, 5), tokens], { T: 3 }), 0);
      t.deepEqual(bits(both), bits(want), `${dtype}/${variant} chunked`);
    }
  }
});

gpuTest.serial('rmsnorm matches ref for every dtype and variant', async (t) => {
  const rnd = seeds(200);
  for (const d of [173, 300]) { // 300: more than one element per invocation of the gpu workgroup
    const T = 3;
    for (const dtype of DTYPES) {
      const x = rnd(T * d, 2);
      const { data, rounded } = packWeight(dtype, rnd(d), 1, d);
      const want = ref.rmsnorm(x, rounded, 1e-5);
      for (const variant of VARIANTS) {
        const out = await runKernel(rmsnorm(dtype, d, 1e-5, variant), [poisoned(T * d), x, data], { T });
        const err = maxRelErr(f32Of(out, 0), want);
        t.true(err <= 1e-4, `d=${d} ${dtype}/${variant}: max rel err ${err}`);
      }
    }
  }
});

/**
 * GEMV tolerance. A dot product of n terms summed in f32 is off from the float64 ref by about
 * √n·2⁻²⁴ times the terms' size, however small the result: an output that cancels to near zero
 * cannot meet a relative bound with a fixed absolute floor. So the floor is 1e-2 of the outputs' RMS
 * (seen here: errors up to ~5e-8 of the RMS; a missed or doubled term is ~5e-2 of it).
 */
function gemvErr(got: Float32Array, want: Float32Array): number {
  const rms = Math.sqrt(want.reduce((s, v) => s + v * v, 0) / want.length);
  return maxRelErr(got, want, 1e-2 * rms);
}

async function runGemv(spec: GemvSpec, y: Float32Array, x: Float32Array, w: Float32Array | Uint32Array, T: number): Promise<Float32Array> {
  return f32Of(await runKernel(gemv(spec), [y, x, w], { T }), 0);
}

gpuTest.serial('gemv matches ref linear: every dtype and variant, awkward shapes, T = 1 and 3', async (t) => {
  const rnd = seeds(300);
  for (const [inDim, outDim] of [[72, 37], [173, 300]] as const) {
    for (const dtype of DTYPES) {
      const { data, rounded } = packWeight(dtype, rnd(outDim * inDim), outDim, inDim);
      for (const T of [1, 3]) {
        const x = rnd(T * inDim);
        const want = ref.linear(x, rounded, inDim);
        for (const variant of VARIANTS) {
          const spec = { dtype, inDim, outDim, outStride: outDim, rowBase: 0, variant };
          const err = gemvErr(await runGemv(spec, poisoned(T * outDim), x, data, T), want);
          t.true(err <= 1e-4, `${inDim}→${outDim} ${dtype}/${variant} T=${T}: max rel err ${err}`);
        }
      }
    }
  }
});

gpuTest.serial('gemv with a residual: y = res + W·x, also over row chunks', async (t) => {
  const rnd = seeds(350);
  const [inDim, outDim, T, split] = [72, 37, 3, 19];
  for (const dtype of DTYPES) {
    const { data, rounded } = packWeight(dtype, rnd(outDim * inDim), outDim, inDim);
    const x = rnd(T * inDim), res = rnd(T * outDim);
    const want = ref.add(res, ref.linear(x, rounded, inDim));
    for (const variant of VARIANTS) {
      const whole = { dtype, inDim, outDim, outStride: outDim, rowBase: 0, variant, residual: true };
      const [y] = await runKernel(gemv(whole), [poisoned(T * outDim), x, data, res], { T });
      t.true(gemvErr(y as Float32Array, want) <= 1e-4, `${dtype}/${variant}: ${gemvErr(y as Float32Array, want)}`);
      const [a] = await runKernel(gemv({ ...whole, outDim: split }), [poisoned(T * outDim), x, weightRows(dtype, data, inDim, 0, split), res], { T });
      const [b] = await runKernel(gemv({ ...whole, outDim: outDim - split, rowBase: split }), [a!, x, weightRows(dtype, data, inDim, split, outDim - split), res], { T });
      t.true(gemvErr(b as Float32Array, want) <= 1e-4, `${dtype}/${variant} in chunks: ${gemvErr(b as Float32Array, want)}`);
    }
  }
});

gpuTest.serial('gemv gpu: longer rows and fewer outputs, which get 32 to 256 lanes a row', async (t) => {
  const rnd = seeds(400);
  for (const [inDim, outDim] of [[600, 40], [2048, 37], [5461, 9]] as const) {
    const dtype = 'bf16';
    const T = 2;
    const { data, rounded } = packWeight(dtype, rnd(outDim * inDim), outDim, inDim);
    const x = rnd(T * inDim);
    const spec = { dtype, inDim, outDim, outStride: outDim, rowBase: 0, variant: 'gpu' } as const;
    const err = gemvErr(await runGemv(spec, poisoned(T * outDim), x, data, T), ref.linear(x, rounded, inDim));
    t.true(err <= 1e-4, `${inDim}→${outDim}: max rel err ${err}`);
  }
});

gpuTest.serial('gemv with a weight split in row chunks: two dispatches fill one y through rowBase and outStride', async (t) => {
  const rnd = seeds(500);
  const [inDim, outDim, T] = [72, 37, 3];
  const split = 19;
  for (const dtype of DTYPES) {
    const { data, rounded } = packWeight(dtype, rnd(outDim * inDim), outDim, inDim);
    const x = rnd(T * inDim);
    const want = ref.linear(x, rounded, inDim);
    for (const variant of VARIANTS) {
      const first = await runGemv({ dtype, inDim, outDim: split, outStride: outDim, rowBase: 0, variant }, poisoned(T * outDim), x, weightRows(dtype, data, inDim, 0, split), T);
      for (let r = 0; r < T; r++) t.true(first.subarray(r * outDim + split, (r + 1) * outDim).every(Number.isNaN), `${dtype}/${variant}: chunk 1 wrote past its rows`);
      const y = await runGemv({ dtype, inDim, outDim: outDim - split, outStride: outDim, rowBase: split, variant }, first, x, weightRows(dtype, data, inDim, split, outDim - split), T);
      const err = gemvErr(y, want);
      t.true(err <= 1e-4, `${dtype}/${variant}: max rel err ${err}`);
    }
  }
});

/** The host's RoPE table, as targets/lowering/rope-table.ts builds it. */
function ropeTable(p: ref.RopeParams, maxPos: number): Float32Array {
  const inv = ref.ropeInvFreq(p);
  const half = p.headDim / 2;
  const table = new Float32Array(maxPos * half * 2);
  for (let pos = 0; pos < maxPos; pos++) {
    for (let i = 0; i < half; i++) {
      table[(pos * half + i) * 2] = Math.cos(pos * inv[i]!);
      table[(pos * half + i) * 2 + 1] = Math.sin(pos * inv[i]!);
    }
  }
  return table;
}

gpuTest.serial('rope matches ref in both pairings at a nonzero position', async (t) => {
  const rnd = seeds(600);
  const [heads, hd, T, pos] = [3, 10, 3, 5];
  for (const style of ['half', 'interleaved'] as const) {
    const p: ref.RopeParams = { heads, headDim: hd, theta: 10000, style };
    const x = rnd(T * heads * hd);
    const want = ref.rope(x, p, pos);
    for (const variant of VARIANTS) {
      const out = await runKernel(rope(heads, hd, style, variant), [x.slice(), ropeTable(p, pos + T + 2)], { T, pos });
      // The table holds cos/sin rounded to f32 where the ref keeps float64: ~1e-7 absolute.
      const err = maxRelErr(f32Of(out, 0), want);
      t.true(err <= 1e-4, `${style}/${variant}: max rel err ${err}`);
    }
  }
});

gpuTest.serial('kvAppend copies the new rows to pos.. and leaves every other cache row alone', async (t) => {
  const rnd = seeds(700);
  const [w, capacity, T, pos] = [37, 9, 3, 4];
  const kc = rnd(capacity * w);
  const vc = rnd(capacity * w);
  const k = rnd(T * w);
  const v = rnd(T * w);
  const [gotK, gotV] = await runKernel(kvAppend(w), [kc, vc, k, v], { T, pos });
  const wantK = kc.slice();
  const wantV = vc.slice();
  wantK.set(k, pos * w);
  wantV.set(v, pos * w);
  t.deepEqual(bits(gotK as Float32Array), bits(wantK));
  t.deepEqual(bits(gotV as Float32Array), bits(wantV));
});

gpuTest.serial('attention matches ref: GQA, causal over the cache, nonzero pos, several tiles of positions', async (t) => {
  const rnd = seeds(800);
  const cases = [
    { heads: 4, kvHeads: 2, hd: 8, T: 3, pos: 5 },
    { heads: 3, kvHeads: 1, hd: 12, T: 1, pos: 0 }, // 12 does not divide the gpu workgroup
    { heads: 2, kvHeads: 2, hd: 64, T: 2, pos: 300 }, // more than one 256-position tile
  ];
  for (const { heads, kvHeads, hd, T, pos } of cases) {
    const kvw = kvHeads * hd;
    const capacity = pos + T + 2;
    const q = rnd(T * heads * hd);
    const k = rnd(T * kvw);
    const v = rnd(T * kvw);
    const cache = { k: rnd(capacity * kvw), v: rnd(capacity * kvw) };
    // Rows past the last new token are never attended: NaN there would show.
    cache.k.fill(NaN, (pos + T) * kvw);
    cache.v.fill(NaN, (pos + T) * kvw);
    const want = ref.attention(q, k, v, cache, pos, heads, kvHeads, hd); // appends k, v to cache first
    for (const variant of VARIANTS) {
      const out = await runKernel(attention(heads, kvHeads, hd, variant), [poisoned(T * heads * hd), q, cache.k, cache.v], { T, pos });
      // A weighted mean of V: f32 exp and sums against float64, with outputs that can cancel.
      const err = maxRelErr(f32Of(out, 0), want);
      t.true(err <= 1e-4, `h${heads}/kv${kvHeads}/hd${hd} T=${T} pos=${pos} ${variant}: max rel err ${err}`);
    }
  }
});

gpuTest.serial('elementwise silu, mul, add, silu_mul match ref', async (t) => {
  const rnd = seeds(900);
  const refs = {
    silu: (a: Float32Array) => ref.silu(a),
    mul: ref.mul,
    add: ref.add,
    silu_mul: (a: Float32Array, b: Float32Array) => ref.mul(ref.silu(a), b),
  };
  for (const op of ['silu', 'mul', 'add', 'silu_mul'] as const) {
    for (const [n, T] of [[37, 3], [300, 1]] as const) {
      const a = rnd(T * n, 12); // silu over its curved part and its tails
      const b = rnd(T * n);
      const kernel = elementwise(op, n);
      const inputs = op === 'silu' ? [a] : [a, b];
      const out = await runKernel(kernel, [poisoned(T * n), ...inputs], { T });
      const err = maxRelErr(f32Of(out, 0), refs[op](a, b));
      t.true(err <= 1e-4, `${op} n=${n} T=${T}: max rel err ${err}`);
    }
  }
});

gpuTest.serial('argmax of the last row equals sample.ts argmax: ties, last element, NaN', async (t) => {
  const rnd = seeds(1000);
  const vocab = 1000;
  const T = 3;
  const rows: Array<[string, (row: Float32Array) => void]> = [
    ['random', () => {}],
    ['tie within one gpu invocation\'s stride', (r) => { r[259] = 5; r[3] = 5; }],
    ['tie across invocations, later one seen first', (r) => { r[700] = 5; r[7] = 5; r[5] = 5; }],
    ['max in the last element', (r) => { r[vocab - 1] = 5; }],
    ['max at index 0', (r) => { r[0] = 5; }],
    ['NaNs never win', (r) => { r[10] = 5; r[1] = NaN; r[11] = NaN; r[999] = NaN; }],
    ['NaN at index 0 is never replaced', (r) => { r[0] = NaN; r[10] = 5; }],
    ['all equal', (r) => { r.fill(-2); }],
    ['-Infinity everywhere but one', (r) => { r.fill(-Infinity); r[600] = -1e30; }],
  ];
  for (const [what, edit] of rows) {
    const logits = rnd(T * vocab);
    logits.fill(100, 0, vocab); // an earlier row's larger values must not count
    const last = logits.subarray((T - 1) * vocab);
    edit(last);
    const want = refArgmax(last);
    for (const variant of VARIANTS) {
      const [out] = await runKernel(argmax(vocab, variant), [Uint32Array.of(0xdeadbeef), logits], { T });
      t.is((out as Uint32Array)[0], want, `${what} (${variant})`);
    }
  }
  for (const variant of VARIANTS) { // a vocabulary smaller than the gpu workgroup, and T = 1
    const logits = rnd(37);
    const [out] = await runKernel(argmax(37, variant), [Uint32Array.of(0xdeadbeef), logits], { T: 1 });
    t.is((out as Uint32Array)[0], refArgmax(logits), `vocab 37 (${variant})`);
  }
});

/** Every generator with a base spec and each of its parameters changed in turn. */
function specFamilies(): Record<string, Array<() => WgslKernel>> {
  const g = (over: Partial<GemvSpec>) => () => gemv({ dtype: 'bf16', inDim: 72, outDim: 37, outStride: 40, rowBase: 0, variant: 'gpu', ...over });
  return {
    embedding: [() => embedding('f16', 37, 11, 0, 'cpu'), () => embedding('bf16', 37, 11, 0, 'cpu'), () => embedding('f16', 38, 11, 0, 'cpu'), () => embedding('f16', 37, 12, 0, 'cpu'), () => embedding('f16', 37, 11, 6, 'cpu')],
    rmsnorm: [() => rmsnorm('f32', 64, 1e-5, 'cpu'), () => rmsnorm('f16', 64, 1e-5, 'cpu'), () => rmsnorm('f32', 65, 1e-5, 'cpu'), () => rmsnorm('f32', 64, 1e-6, 'cpu'), () => rmsnorm('f32', 64, 1e-5, 'gpu')],
    gemv: [g({}), g({ dtype: 'f16' }), g({ inDim: 73 }), g({ outDim: 36 }), g({ outStride: 41 }), g({ rowBase: 1 }), g({ variant: 'cpu' })],
    rope: [() => rope(4, 16, 'half', 'cpu'), () => rope(5, 16, 'half', 'cpu'), () => rope(4, 18, 'half', 'cpu'), () => rope(4, 16, 'interleaved', 'cpu')],
    kvAppend: [() => kvAppend(64), () => kvAppend(65)],
    attention: [() => attention(4, 2, 8, 'cpu'), () => attention(8, 2, 8, 'cpu'), () => attention(4, 4, 8, 'cpu'), () => attention(4, 2, 16, 'cpu'), () => attention(4, 2, 8, 'gpu')],
    elementwise: [() => elementwise('silu', 64), () => elementwise('mul', 64), () => elementwise('add', 64), () => elementwise('silu_mul', 64), () => elementwise('add', 65)],
    argmax: [() => argmax(100, 'cpu'), () => argmax(101, 'cpu'), () => argmax(100, 'gpu')],
  };
}

test('generated code is deterministic, and each parameter shows in the key', (t) => {
  const byKey = new Map<string, string>();
  for (const [name, family] of Object.entries(specFamilies())) {
    const kernels = family.map((make) => make());
    family.forEach((make, i) => t.deepEqual(make(), kernels[i], `${name} #${i} differs between two calls`));
    t.is(new Set(kernels.map((k) => k.key)).size, kernels.length, `${name}: a parameter is missing from the key`);
    for (const k of kernels) {
      t.is(byKey.get(k.key) ?? k.code, k.code, `${k.key} names two different codes`);
      byKey.set(k.key, k.code);
    }
  }
  // Ops without a reduction share one code between the variants; the key says so.
  t.is(embedding('f32', 37, 11, 0, 'cpu').key, embedding('f32', 37, 11, 0, 'gpu').key);
  t.is(rope(4, 16, 'half', 'cpu').code, rope(4, 16, 'half', 'gpu').code);
});

test('bad sizes are refused', (t) => {
  t.throws(() => gemv({ dtype: 'f32', inDim: 72, outDim: 37, outStride: 40, rowBase: 4, variant: 'cpu' }), { instanceOf: RangeError });
  t.throws(() => attention(6, 4, 8, 'cpu'), { instanceOf: RangeError });
  t.throws(() => attention(2, 1, 512, 'gpu'), { instanceOf: RangeError });
  t.throws(() => attention(2, 1, 6, 'gpu'), { instanceOf: RangeError });
  t.throws(() => rope(2, 7, 'half', 'cpu'), { instanceOf: RangeError });
  t.throws(() => elementwise('add', 0), { instanceOf: RangeError });
  t.throws(() => embedding('f32', 8, 4, -1, 'cpu'), { instanceOf: RangeError });
});


gpuTest.serial('model-sized kernels compile, within the dispatch, binding and workgroup-memory limits', async (t) => {
  const [d, ffn, vocab, heads, kvHeads, hd] = [2048, 5632, 32000, 32, 4, 64]; // TinyLlama
  const kernels = VARIANTS.flatMap((variant) => [
    embedding('bf16', d, vocab, 0, variant),
    rmsnorm('bf16', d, 1e-5, variant),
    gemv({ dtype: 'bf16', inDim: d, outDim: vocab, outStride: vocab, rowBase: 0, variant }),
    gemv({ dtype: 'f16', inDim: ffn, outDim: d, outStride: d, rowBase: 0, variant }),
    gemv({ dtype: 'f32', inDim: 5461, outDim: d, outStride: d, rowBase: 0, variant }),
    rope(heads, hd, 'half', variant),
    attention(heads, kvHeads, 128, variant),
    argmax(vocab, variant),
  ]).concat(kvAppend(kvHeads * hd), elementwise('silu_mul', ffn));
  await assertWithinLimits(t, kernels);
  t.is(workgroupBytes(attention(heads, kvHeads, hd, 'gpu').code), 16 * hd / 4 + 4 * 256 + 4 * 256 + 16 * 256); // the parser sees them all
});
