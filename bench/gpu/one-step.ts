// One prefill and one decode step of stories260K, dense and MoC K=32, on the cuda target, graphs off
// and on: the program compute-sanitizer runs (run.sh), so every kernel of a step (with programmatic
// dependent launch on Hopper, the default) is checked for memory errors and races. stories260K's
// rows are too short for some kernel layouts (GEMV rows split over warps, Top-K over thousands of
// channels, the fused up·down at 1B sizes), so those also run once at 1B-preset sizes (T = 2).
import * as D from '../../targets/cuda/ptx/dense.js';
import * as M from '../../targets/cuda/ptx/moc.js';
import { freeAll, launch, pad8, poisoned, randomF32, rng, upload, weight } from '../../test/helpers/cuda.js';
import { projectRoot } from '../../src/util/project-root.js';
import { loadModel } from '../../driver/load.js';
import { createCudaSession } from '../../targets/cuda/index.js';

let ok = true;
for (const [label, selection] of [['MoC K=32', { k: 32 }], ['dense', 'dense']] as const) {
  const m = loadModel(`${projectRoot()}/fixtures/stories260K/gguf/stories260K.gguf`, { selection });
  const s = createCudaSession(m);
  s.useGraphs = false;
  s.forward([1, 403, 407, 261, 378]);
  const a = s.forward([432]);
  s.reset();
  s.useGraphs = true;
  s.forward([1, 403, 407, 261, 378]);
  const b = s.forward([432]);
  const same = a.every((v, i) => v === b[i]);
  console.log(`${label}: one decode step: graphs off and on ${same ? 'agree exactly' : 'DIFFER'}; greedy next token ${a.indexOf(Math.max(...a))}`);
  s.greedy(432, 3);
  m.close();
  ok &&= same;
}

{
  const r = rng(7), T = 2, d = 2048, f = 5464, k = 1024;
  const norm = { dtype: 'f32' as const, eps: 1e-5 };
  const x = upload(new Float32Array(T * pad8(d)).map(() => r()));
  const nw = weight(randomF32(d, r), 1, d, 'f32').device;
  const down: D.GemvSpec = { dtype: 'bf16', inDim: f, outDim: d, epilogue: 'accumulate', ...D.gemvLayout(f, d) };
  const h = upload(new Float32Array(T * pad8(f)).map(() => r()));
  launch(D.gemv(down), D.gemvGrid(down, T), 256, [upload(new Float32Array(T * pad8(d))), h, weight(randomF32(d * f, r, 0.02), d, f, 'bf16').device]);
  const g = upload(new Float32Array(T * pad8(f)).map(() => r()));
  const idx = poisoned(T * pad8(k) * 4);
  const tau = upload(new Float32Array([0.5])); // as lowered: Top-K writes its threshold, up·down warms the L2 from it
  launch(M.topkSelect(f, k, { tau: true }), [1, T, 1], M.selectShape(f).threads, [idx, g, tau]);
  const split = M.upDownSplit(k);
  const partial = poisoned(T * split.blocks * pad8(d) * 4);
  const [wu, wd] = [0, 1].map(() => weight(randomF32(f * d, r, 0.02), f, d, 'bf16').device);
  launch(M.mocUpDown({ dtype: 'bf16', d, f, kKeep: k, norm, warm: true }), [split.blocks, T, 1], 256, [partial, x, wu!, wd!, idx, g, nw, tau]);
  launch(M.downReduce(d, split.blocks), [M.reduceGrid(d), T, 1], M.REDUCE_THREADS, [upload(new Float32Array(T * pad8(d))), partial]);
  const qkv: D.GemvSpec[] = [
    { dtype: 'bf16', inDim: d, outDim: d, epilogue: 'store', norm, rope: { hd: 64, style: 'half' } },
    { dtype: 'bf16', inDim: d, outDim: 512, epilogue: 'store', norm, rope: { hd: 64, style: 'half' }, toCache: true },
    { dtype: 'bf16', inDim: d, outDim: 512, epilogue: 'store', norm, toCache: true },
  ];
  const table = upload(new Float32Array(16 * 64).map(() => r()));
  launch(D.gemvMulti(qkv), [D.gemvMultiGrid(qkv), T, 1], 256, [x, nw, poisoned(T * d * 4), weight(randomF32(d * d, r, 0.02), d, d, 'bf16').device,
    poisoned(16 * 512 * 4), weight(randomF32(512 * d, r, 0.02), 512, d, 'bf16').device, poisoned(16 * 512 * 4), weight(randomF32(512 * d, r, 0.02), 512, d, 'bf16').device, table, upload(Int32Array.of(5))]);
  console.log('1B-size kernels (split GEMV, Top-K, fused up·down + reduce, Q/K/V with RoPE and cache append) ran');
  freeAll();
}
process.exitCode = ok ? 0 : 1;
