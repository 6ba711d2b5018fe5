// The ref target against independent computations written here, in the plainest form.
import test from 'ava';
import { importLlama2c } from '../../src/import/llama2c.js';
import { buildLlamaGraph } from '../../src/import/llama-graph.js';
import { MemoryTensor } from '../../src/import/tensor.js';
import { parseGraph } from '../../src/ir/parse.js';
import { swigluToMoc, type MocSelection } from '../../passes/swiglu-to-moc.js';
import { RefSession } from '../../targets/ref/session.js';
import { mocSelect } from '../../targets/ref/kernels.js';
import { CHECKPOINTS, REF, maxAbsDiff } from '../helpers/fixtures.js';

const ck = importLlama2c(CHECKPOINTS.llama2c);
test.after.always(() => ck.close());
const TOKENS = REF.sequences.sample0!.tokens.slice(0, 48);

function logits(sel: MocSelection | 'dense', tokens = TOKENS): Float32Array {
  const dense = buildLlamaGraph(ck.spec);
  const graph = sel === 'dense' ? dense : swigluToMoc.run(dense, sel);
  return new RefSession({ graph, weights: ck.weights, spec: ck.spec }).forward(tokens);
}

test('K = d_ffn reproduces the dense model bit for bit', (t) => {
  const d = logits('dense');
  const m = logits({ k: ck.spec.dFfn });
  t.is(maxAbsDiff(d, m), 0);
});

test('decoding token by token through the KV cache equals one prefill', (t) => {
  const dense = swigluToMoc.run(buildLlamaGraph(ck.spec), { k: 32 });
  const full = new RefSession({ graph: dense, weights: ck.weights, spec: ck.spec }).forward(TOKENS);
  const s = new RefSession({ graph: dense, weights: ck.weights, spec: ck.spec });
  const head = s.forward(TOKENS.slice(0, 10));
  const rows = [head];
  for (const tok of TOKENS.slice(10)) rows.push(s.forward([tok]));
  const stepwise = new Float32Array(full.length);
  let o = 0;
  for (const r of rows) (stepwise.set(r, o), (o += r.length));
  t.true(maxAbsDiff(full, stepwise) < 1e-5);
  t.is(s.position, TOKENS.length);
});

// --- an independent FFN: dense product with a mask, no gathers -----------------------------------
const rand = (seed: number) => () => ((seed = (seed * 1103515245 + 12345) % 2147483648) / 2147483648) * 2 - 1;

function maskedDenseFfn(x: number[], wg: number[][], wu: number[][], wd: number[][], mask: (g: number[]) => boolean[]): number[] {
  const g = wg.map((row) => row.reduce((s, w, i) => s + w * x[i]!, 0));
  const u = wu.map((row) => row.reduce((s, w, i) => s + w * x[i]!, 0));
  const m = mask(g);
  const z = g.map((gi, i) => (m[i] ? (gi / (1 + Math.exp(-gi))) * u[i]! : 0));
  return wd.map((row) => row.reduce((s, w, i) => s + w * z[i]!, 0));
}

function ffnGraph(d: number, f: number): string {
  return `graph ffn
  input %x : f32[T,${d}]
  param @wg : f32[${f},${d}]
  param @wu : f32[${f},${d}]
  param @wd : f32[${d},${f}]
  %g = linear(%x, @wg) : f32[T,${f}]
  %u = linear(%x, @wu) : f32[T,${f}]
  %s = silu(%g) : f32[T,${f}]
  %h = mul(%s, %u) : f32[T,${f}]
  %y = linear(%h, @wd) : f32[T,${d}]
  output %y
end
`;
}

/** Runs a single-FFN graph through the ref interpreter (the graph's input is x, not tokens). */
function runFfn(sel: MocSelection, d: number, f: number, x: Float32Array, w: Record<string, number[][]>): Float32Array {
  const graph = swigluToMoc.run(parseGraph(ffnGraph(d, f)), sel);
  const weights = new Map(Object.entries(w).map(([k, m]) => [k, new MemoryTensor(k, [m.length, m[0]!.length], Float32Array.from(m.flat()))]));
  const spec = { ...ck.spec, maxSeqLen: 64 };
  const s = new RefSession({ graph, weights, spec });
  return s.evaluate({ x }) as Float32Array;
}

test('a:b selection equals a dense FFN masked to the a largest of every b-block (tail block included)', (t) => {
  const d = 8, f = 22, T = 5; // 22 = 5 blocks of 4 + a tail of 2
  const r = rand(7);
  const mat = (rows: number, cols: number) => Array.from({ length: rows }, () => Array.from({ length: cols }, r));
  const w = { wg: mat(f, d), wu: mat(f, d), wd: mat(d, f) };
  const xs = mat(T, d);
  for (const [a, b] of [[1, 4], [2, 4], [3, 4], [2, 5]] as const) {
    const got = runFfn({ pattern: { a, b } }, d, f, Float32Array.from(xs.flat()), w);
    const want = xs.flatMap((x) => maskedDenseFfn(x.map(Math.fround), w.wg, w.wu, w.wd, (g) => g.map((v, i) => {
      const start = i - (i % b);
      const block = g.slice(start, Math.min(g.length, start + b));
      return block.filter((o) => o > v).length < a; // fewer than a larger values in its block (no ties in random data)
    })));
    t.true(maxAbsDiff(got, Float32Array.from(want)) < 1e-4, `${a}:${b}`);
  }
});

test('Top-K equals a dense FFN masked to the K largest gate values', (t) => {
  const d = 8, f = 19, T = 4;
  const r = rand(11);
  const mat = (rows: number, cols: number) => Array.from({ length: rows }, () => Array.from({ length: cols }, r));
  const w = { wg: mat(f, d), wu: mat(f, d), wd: mat(d, f) };
  const xs = mat(T, d);
  for (const k of [1, 5, 19]) {
    const got = runFfn({ k }, d, f, Float32Array.from(xs.flat()), w);
    const want = xs.flatMap((x) => maskedDenseFfn(x.map(Math.fround), w.wg, w.wu, w.wd, (g) => g.map((v) => g.filter((o) => o > v).length < k)));
    t.true(maxAbsDiff(got, Float32Array.from(want)) < 1e-4, `k=${k}`);
  }
});

test('Top-K breaks ties toward the lower channel and returns channels in ascending order', (t) => {
  const g = Float32Array.from([1, 3, 3, 2, 3, 0]);
  t.deepEqual([...mocSelect(g, 6, { k: 2 })], [1, 2]);
  t.deepEqual([...mocSelect(g, 6, { k: 4 })], [1, 2, 3, 4]);
  t.deepEqual([...mocSelect(g, 3, { a: 1, b: 3 })], [1, 1]); // rows [1,3,3] and [2,3,0]
  t.deepEqual([...mocSelect(Float32Array.from([NaN, -5, 4]), 3, { k: 2 })], [1, 2]);
});
