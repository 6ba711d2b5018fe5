// The row- and index-moving training kernels (targets/cuda/ptx/train-scatter.ts) against the ref
// kernels of the same ops (targets/ref/train-kernels.ts: embeddingGrad, mocScatter, indexNarrow,
// indexWiden), the oracle:
// - every kernel assembles for sm_80 and sm_90 with no local memory (needs ptxas);
// - each case runs on the CPU through the PTX interpreter and, with a GPU, on the GPU: tokens that
//   repeat and rows that never occur, a sort with more slots than threads, d past a block of
//   columns, outputs NaN-poisoned (padding checked untouched);
// - on the GPU, two embedding_grad runs give the same bits (no atomics).
// Tolerance: embedding_grad sums each row's dy in t order in f32 (the ref in float64): within
// 1e-6·Σ|dy| of the row's terms. Scatters and index casts move values: exact.
import test from 'ava';
import { embeddingGradGrids, embeddingGradRows, embeddingGradSlots, embeddingGradSort, EMBEDDING_ROWS_THREADS, EMBEDDING_SORT_THREADS, indexCast, indexCastGrid, mocScatter, mocScatterGrid, SCATTER_THREADS } from '../../targets/cuda/ptx/train-scatter.js';
import { pad8 } from '../../targets/cuda/ptx/layout.js';
import * as ref from '../../targets/ref/train-kernels.js';
import { freeAll, randomF32, rng } from '../helpers/cuda.js';
import { cudaDeviceRequirement, findPtxas, ptxasRequirement, testsNeeding } from '../helpers/requires.js';
import { assemblePtx, NO_LOCAL_MEMORY } from '../helpers/ptxas.js';
import { floats, mismatches, padRows, paddingWritten, runOn, randomDistinctIdx, simAndGpu, unpadRows, type Where } from '../helpers/train-kernels.js';

const ptxasTest = testsNeeding(ptxasRequirement(findPtxas()));
const cudaTest = testsNeeding(cudaDeviceRequirement());

ptxasTest('train scatter kernels assemble for sm_80 and sm_90, no local memory', (t) => {
  const kernels = [embeddingGradSort(), embeddingGradRows(2048), mocScatter(1024, 5464), mocScatter(1030, 5461), mocScatter(7, 12300), indexCast('narrow', 1024), indexCast('widen', 1024)];
  for (const arch of ['sm_80', 'sm_90'] as const) {
    const r = assemblePtx(kernels.map((k) => k.text), arch);
    t.is(r.status, 0, `${arch}: ${r.stderr}`);
    for (const k of kernels) t.regex(r.stderr, new RegExp(`Compiling entry function '${k.name}'[^]*?${NO_LOCAL_MEMORY.source}`), `${arch} ${k.name}: ${r.stderr}`);
  }
});

test('embedding_grad: slots, grids and the limits of its keys', (t) => {
  t.is(embeddingGradSlots(1), 1);
  t.is(embeddingGradSlots(5), 8);
  t.is(embeddingGradSlots(16384), 16384);
  t.deepEqual(embeddingGradGrids(32000, 16384, 2048).rows, [8, 32000, 1]);
  t.throws(() => embeddingGradGrids(32000, 200000, 64), { message: /32 bits/ });
  t.throws(() => embeddingGradGrids(70000, 2, 64), { message: /y extent/ });
  t.notRegex(embeddingGradSort().text + embeddingGradRows(64).text, /atom\.|\bred\./);
});

function embeddingGradRun(where: Where, T: number, V: number, d: number, seed: number, sortThreads = EMBEDDING_SORT_THREADS) {
  const r = rng(seed);
  const dy = randomF32(T * d, r);
  // tokens from the first V - 1 rows (the last never occurs: its row must come out 0), one of them frequent
  const hot = Math.floor(((r() + 1) / 2) * Math.max(1, V - 1));
  const tokens = Int32Array.from({ length: T }, () => (r() < -0.5 ? hot : Math.floor(((r() + 1) / 2) * Math.max(1, V - 1))));
  const N = embeddingGradSlots(T), g = embeddingGradGrids(V, T, d);
  const out = runOn(where, { out: { poison: V * pad8(d) * 4 }, keys: { poison: N * 4 }, dy: { data: padRows(dy, T, d, NaN) }, tokens: { data: tokens } }, [
    { kernel: embeddingGradSort(sortThreads), grid: g.sort, block: sortThreads, args: ['keys', 'tokens', T, N] },
    { kernel: embeddingGradRows(d), grid: g.rows, block: EMBEDDING_ROWS_THREADS, args: ['out', 'keys', 'dy', T, N] },
  ]);
  return { dy, tokens, out };
}

// [T, V, d, sort threads]: one token; repeats in a tiny vocabulary; absent rows; slots > threads;
// d past one block of columns; the default sort block
const EMBEDDINGS: [number, number, number, number][] = [[1, 1, 1, 32], [5, 3, 7, 32], [37, 50, 13, 64], [100, 20, 300, 32], [33, 9, 8, 1024]];
for (const [T, V, d, threads] of EMBEDDINGS) {
  simAndGpu(`embedding_grad T=${T} V=${V} d=${d} (sort block ${threads}) vs ref`, (where) => (t) => {
    t.is(checkEmbeddingGrad(embeddingGradRun(where, T, V, d, T * 17 + V + d, threads), V, d), '');
  });
}

/** '' when a run's table is ref's within 1e-6·Σ|dy| of each element's terms and no padding is written, else why not. */
function checkEmbeddingGrad({ dy, tokens, out }: ReturnType<typeof embeddingGradRun>, V: number, d: number): string {
  const want = ref.embeddingGrad(dy, tokens, V);
  const mag = new Float64Array(V * d);
  tokens.forEach((tok, tt) => { for (let i = 0; i < d; i++) mag[tok * d + i] += Math.abs(dy[tt * d + i]!); });
  const raw = floats(out.out!);
  const { bad, first } = mismatches(unpadRows(raw, V, d), want, (i) => 1e-6 * mag[i]!);
  const padding = paddingWritten(raw, V, d);
  return [bad ? `${bad} off: ${first}` : '', padding ? `${padding} padding elements written` : ''].filter(Boolean).join('; ');
}

cudaTest.serial('embedding_grad T=4000 V=3000 d=2048: two GPU runs give the same bits, and the ref sums (GPU)', (t) => {
  t.teardown(freeAll);
  const first = embeddingGradRun('gpu', 4000, 3000, 2048, 9), a = first.out.out!, b = embeddingGradRun('gpu', 4000, 3000, 2048, 9).out.out!;
  // counted, not deepEqual: a diff of 24 MB would be the whole report
  const wa = floats(a), wb = floats(b);
  let differ = 0;
  for (let i = 0; i < wa.length; i++) if (!Object.is(wa[i], wb[i])) differ++;
  t.is(differ, 0, `${differ} of ${wa.length} words differ between two runs`);
  t.is(checkEmbeddingGrad(first, 3000, 2048), '');
});

// [T, K, F]: one channel of one; K under a chunk; K and F past a block of threads; K past a round of
// 4-channel loads (1024) with a tail of 2 and F with a tail of 1 (16-byte copy-out); K mod 4 = 3;
// a row past 48 KiB of shared memory (12300 f32: the direct kernel)
for (const [T, K, F] of [[1, 1, 1], [3, 5, 13], [4, 300, 700], [2, 1030, 1501], [2, 1027, 1103], [1, 7, 12300]] as [number, number, number][]) {
  simAndGpu(`moc_scatter T=${T} K=${K} F=${F} vs ref`, (where) => (t) => {
    const r = rng(T * 5 + K + F);
    const dy = randomF32(T * K, r);
    const idx = randomDistinctIdx(T, K, F, r); // each row: K distinct channels of F
    const idxPadded = new Int32Array(T * pad8(K)).fill(-1); // padding slots are never read as channels
    for (let tt = 0; tt < T; tt++) idxPadded.set(idx.subarray(tt * K, (tt + 1) * K), tt * pad8(K));
    const out = runOn(where, { out: { poison: T * pad8(F) * 4 }, dy: { data: padRows(dy, T, K, NaN) }, idx: { data: idxPadded } },
      [{ kernel: mocScatter(K, F), grid: mocScatterGrid(T), block: SCATTER_THREADS, args: ['out', 'dy', 'idx'] }]);
    const raw = floats(out.out!);
    t.deepEqual(Array.from(unpadRows(raw, T, F)), Array.from(ref.mocScatter(dy, idx, K, F)));
    t.is(paddingWritten(raw, T, F), 0, 'padding written');
  });
}

// [T, K]: index_narrow then index_widen round trip, values up to 65535
for (const [T, K] of [[1, 1], [3, 13], [2, 300]] as [number, number][]) {
  simAndGpu(`index_narrow / index_widen T=${T} K=${K} vs ref`, (where) => (t) => {
    const r = rng(T * 3 + K);
    const idx = Int32Array.from({ length: T * K }, (_, i) => (i === 0 ? 65535 : Math.floor(((r() + 1) / 2) * 65536)));
    const padded = new Int32Array(T * pad8(K)).fill(-7);
    for (let tt = 0; tt < T; tt++) padded.set(idx.subarray(tt * K, (tt + 1) * K), tt * pad8(K));
    const out = runOn(where, { narrow: { poison: T * pad8(K) * 2 }, wide: { poison: T * pad8(K) * 4 }, idx: { data: padded } }, [
      { kernel: indexCast('narrow', K), grid: indexCastGrid(K, T), block: SCATTER_THREADS, args: ['narrow', 'idx'] },
      { kernel: indexCast('widen', K), grid: indexCastGrid(K, T), block: SCATTER_THREADS, args: ['wide', 'narrow'] },
    ]);
    const narrow = new Uint16Array(out.narrow!.buffer, 0, T * pad8(K)), wide = new Int32Array(out.wide!.buffer, 0, T * pad8(K));
    const rows = <A extends Uint16Array | Int32Array>(a: A) => Array.from({ length: T }, (_, tt) => Array.from(a.subarray(tt * pad8(K), tt * pad8(K) + K))).flat();
    t.deepEqual(rows(narrow), Array.from(ref.indexNarrow(idx)));
    t.deepEqual(rows(wide), Array.from(ref.indexWiden(ref.indexNarrow(idx))));
    // padding keeps its poison: u16 halves of 0x7fc00000 (0x0000, 0x7fc0), i32 words 0x7fc00000
    for (let tt = 0; tt < T; tt++) for (let c = K; c < pad8(K); c++) {
      const e = tt * pad8(K) + c;
      t.is(narrow[e], e % 2 ? 0x7fc0 : 0, `narrow padding [${tt}, ${c}]`);
      t.is(wide[e], 0x7fc00000, `wide padding [${tt}, ${c}]`);
    }
  });
}
