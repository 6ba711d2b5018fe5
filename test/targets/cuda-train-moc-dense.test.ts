// The MoC products as dense bf16 GEMMs (TrainingExecutorOptions.mocMatmul = 'dense-bf16' with matmul
// 'bf16', targets/cuda/train/ops-moc-bf16.ts): moc_up = cast x, cast W, gemm 'xwt' → G [T, F], gather;
// moc_down / moc_rows_grad = scatter → S [T, F] in bf16 (padding zeroed), cast W / b, gemm 'xw' / 'xtw'.
//
// Without a GPU (mma.sync does not run on the PTX interpreter):
// - the launch list of the stories260K MoC K = 32 training graph (policies moc-gcp, none, moc-gcp-attn) on a device
//   that records launches: it is the matmul 'bf16' list with each moc_up / moc_down / moc_rows_grad
//   launch replaced by the dense ones, whose kernels, grids, pointers (operands, output, scratch
//   offsets) and M, N, K are worked out here from the graph's shapes and the op meanings (ops.ts
//   moc_up x [T, d], W [F, d]; moc_rows_grad's output [F, d]); every other launch unchanged; the
//   scratch exactly the largest need (bytes computed here);
// - the option: default 'simt', swaps only the three ops, refused without matmul 'bf16' (before
//   anything is allocated), MOCC_CUDA_TRAIN_MOC, and cudaGradients passing it on;
// - every kernel of that graph under the option assembles for sm_80 and sm_90 with no local memory;
// - the bf16 scatter, interpreted, against the ref's moc_scatter rounded to bf16, padding zero.
// On a GPU (skipped without one): each entry alone (through a hand-made OpContext) on random operands,
// shapes of the stories260K graph's MoC nodes at T = 32 and 45 and a 1B-like T = 256, F = 5461,
// K = 1024, d = 2048: against the ref kernel (targets/ref/kernels.ts mocUp / mocDown,
// train-kernels.ts mocRowsGrad) on the bf16-rounded operands, within 2e-5·Σ|terms| an element (f32
// accumulation of the same products, as cuda-train-bf16.test.ts's GEMM tests; the scattered zeros
// add exact zeros), output and scratch NaN-poisoned (output padding must stay NaN; the scratch's
// stale padding must not leak in), activations' padding a large finite garbage, params' zero.
import test, { type ExecutionContext } from 'ava';
import { cudaGradients } from '../../driver/gradient-backend.js';
import type { CheckpointPolicy } from '../../passes/checkpoint.js';
import type { Graph, Node, Operand } from '../../src/ir/types.js';
import { MODEL_INPUTS } from '../../src/model/graph-inputs.js';
import * as refK from '../../targets/ref/kernels.js';
import * as refT from '../../targets/ref/train-kernels.js';
import { CudaTrainingExecutor } from '../../targets/cuda/train/executor.js';
import { cudaTrainDevice } from '../../targets/cuda/train/cuda-device.js';
import type { DevPtr, LaunchArg, TrainDevice } from '../../targets/cuda/train/device.js';
import { trainOpOf, TRAIN_OPS, type Launch, type OpContext } from '../../targets/cuda/train/ops.js';
import { BF16_MATMUL_OPS, trainMocMatmulFromEnv } from '../../targets/cuda/train/ops-bf16.js';
import { DENSE_MOC_OPS } from '../../targets/cuda/train/ops-moc-bf16.js';
import { mocScatter, mocScatterGrid, SCATTER_THREADS } from '../../targets/cuda/ptx/train-scatter.js';
import { f32ToBf16 } from '../../src/util/dtype.js';
import { pad8 } from '../../targets/cuda/ptx/layout.js';
import { storiesTraining } from '../helpers/stories-training.js';
import { batch } from '../helpers/train-tiny-model.js';
import { roundBf16 } from '../helpers/train-bf16-oracle.js';
import { randomF32, rng } from '../helpers/cuda.js';
import { recordingDevice } from '../helpers/recording-device.js';
import { floats, randomDistinctIdx, runOn, unpadRows } from '../helpers/train-kernels.js';
import { cudaDeviceRequirement, findPtxas, ptxasRequirement, testsNeeding } from '../helpers/requires.js';
import { assertEachAssembles } from '../helpers/ptxas.js';

const MOC_OPS = ['moc_up', 'moc_down', 'moc_rows_grad'];
const DENSE = { matmul: 'bf16', mocMatmul: 'dense-bf16' } as const;

/** Sequence lengths of a batch of T rows (two packed sequences). */
const lengthsOf = (T: number) => [Math.ceil((2 * T) / 3), T - Math.ceil((2 * T) / 3)];

/** Shapes of a graph's values and params with T bound. */
function shapesOf(g: Graph, T: number): (o: Operand) => number[] {
  const m = new Map<string, number[]>();
  const bind = (s: readonly (number | string)[]) => s.map((d) => (typeof d === 'number' ? d : T));
  for (const i of g.inputs) m.set(i.name, bind(i.type.shape));
  for (const p of g.params) m.set(`@${p.name}`, bind(p.type.shape));
  for (const n of g.nodes) for (const o of n.outputs) m.set(o.name, bind(o.type.shape));
  return (o) => m.get(o.kind === 'param' ? `@${o.name}` : o.name)!;
}

const align256 = (n: number) => Math.ceil(n / 256) * 256;
const plain = (l: Launch) => ({ kernel: l.kernel.name, grid: l.grid, block: l.block, args: l.args.map((a: LaunchArg) => ('ptr' in a ? { ptr: Number(a.ptr) } : a)) });

/** castRows of [rows, width] f32 at `from` into bf16 at `to` (cast.ts: 256 threads, two elements a thread over pad8(width)). */
const castOf = (rows: number, width: number, to: number, from: number) => ({
  kernel: `cast_bf16_w${width}`, grid: [Math.ceil(pad8(width) / 2048), rows, 1], block: 256, args: [{ ptr: to }, { ptr: from }],
});
/** gemm.ts launch: 128×128 (8 warps) when M and N are both ≥ 128, else 64×64 (4 warps); params y, x, w, M, N, K. */
function gemmOf(layout: string, y: number, x: number, w: number, M: number, N: number, K: number) {
  const big = M >= 128 && N >= 128, tile = big ? 128 : 64;
  return {
    kernel: `gemm_${layout}_bf16_m${tile}n${tile}k32_w${big ? '2x4' : '2x2'}`, grid: [Math.ceil(N / tile), Math.ceil(M / tile), 1], block: big ? 256 : 128,
    args: [{ ptr: y }, { ptr: x }, { ptr: w }, { u32: M }, { u32: N }, { u32: K }],
  };
}

/** The expected dense launches of a MoC node and its scratch need (ops-moc-bf16.ts header), from the shapes and meanings. */
function expectedDense(n: Node, shape: (o: Operand) => number[], ptrOf: (o: Operand) => number, out: number, scratch: number) {
  const [i0, i1, idx] = n.inputs.map(ptrOf) as [number, number, number];
  const T = shape(n.inputs[0]!)[0]!, K = shape(n.inputs[2]!)[1]!;
  const f32TF = (F: number) => align256(T * pad8(F) * 4), bf16 = (rows: number, width: number) => rows * pad8(width) * 2;
  // the scatter writes S in bf16 straight into the scratch's first piece (no f32 S, no cast of it)
  const scatterOf = (F: number, from: number) => ({ kernel: `moc_scatter_k${K}_f${F}_bf16`, grid: [1, T, 1], block: 256, args: [{ ptr: scratch }, { ptr: from }, { ptr: idx }] });
  if (n.op === 'moc_up') {
    const [F, d] = shape(n.inputs[1]!) as [number, number];
    const xh = scratch + f32TF(F), wh = xh + align256(bf16(T, d));
    const threads = Math.min(128, Math.max(32, Math.ceil(K / 32) * 32));
    return {
      need: wh - scratch + bf16(F, d),
      launches: [
        castOf(T, d, xh, i0), castOf(F, d, wh, i1), gemmOf('xwt', scratch, xh, wh, T, F, d),
        { kernel: `train_moc_gather_f${F}_k${K}`, grid: [T, Math.ceil(K / threads), 1], block: threads, args: [{ ptr: out }, { ptr: scratch }, { ptr: idx }] },
      ],
    };
  }
  if (n.op === 'moc_down') {
    const [F, d] = shape(n.inputs[1]!) as [number, number];
    const sh = scratch, wh = sh + align256(bf16(T, F));
    return { need: wh - scratch + bf16(F, d), launches: [scatterOf(F, i0), castOf(F, d, wh, i1), gemmOf('xw', out, sh, wh, T, d, F)] };
  }
  const [F, d] = shape({ kind: 'value', name: n.outputs[0]!.name }) as [number, number]; // moc_rows_grad: out [rows, d]
  const sh = scratch, bh = sh + align256(bf16(T, F));
  return { need: bh - scratch + bf16(T, d), launches: [scatterOf(F, i0), castOf(T, d, bh, i1), gemmOf('xtw', out, sh, bh, F, d, T)] };
}

/** A hand-made OpContext over device pointers (what the executor's context gives an entry). */
function opContext(n: Node, shapes: number[][], ptrs: { ins: DevPtr[]; out: DevPtr; scratch: DevPtr }): OpContext {
  const dim = (s: number[], axis: number) => s[axis < 0 ? s.length + axis : axis]!;
  return {
    node: n, T: shapes[0]![0]!,
    input: (i) => ptrs.ins[i]!, output: () => ptrs.out,
    inDim: (i, axis) => dim(shapes[i]!, axis), outDim: (_i, axis) => dim(shapes[3]!, axis),
    scratch: (offset = 0) => (typeof ptrs.scratch === 'bigint' ? ptrs.scratch + BigInt(offset) : ptrs.scratch + offset),
    ropeTable: () => { throw new Error('no rope table'); },
  };
}

/** Builds g under bf16 and bf16 + dense MoC on recording devices, runs one step, checks the dense list against the bf16 one. */
function checkLaunchList(t: ExecutionContext, g: Graph, weights: Map<string, Float32Array>, inputs: Record<string, Int32Array>): void {
  const T = inputs[MODEL_INPUTS.tokens]!.length, shape = shapesOf(g, T);
  const b = recordingDevice(), h = recordingDevice();
  const exB = new CudaTrainingExecutor(g, weights, T, b.dev, { matmul: 'bf16' }), exH = new CudaTrainingExecutor(g, weights, T, h.dev, DENSE);
  exB.launch(inputs);
  exH.launch(inputs);
  const scratchB = b.allocs.at(-1)!, scratch = h.allocs.at(-1)!;
  t.is(scratch.ptr, scratchB.ptr, 'the scratch is the last allocation; everything before it at the same addresses');
  const mocNodes = g.nodes.filter((n) => MOC_OPS.includes(n.op));
  t.deepEqual([...new Set(mocNodes.map((n) => n.op))].sort(), [...MOC_OPS].sort());
  const ptrOf = (o: Operand) => Number(o.kind === 'param' ? exH.paramTensor(o.name).ptr : exH.valueTensor(o.name).ptr);
  const bigTile = new Set<string>();
  let need = scratchB.bytes, j = 0, k = 0;
  for (const lb of b.launches) {
    // the SIMT MoC kernels of train-moc.ts, one launch a node
    if (!/^train_moc_(up|down|rows_grad)_/.test(lb.kernel.name)) {
      t.deepEqual(plain(h.launches[j++]!), plain(lb));
      continue;
    }
    const n = mocNodes[k++]!, out = Number(exH.valueTensor(n.outputs[0]!.name).ptr);
    t.is(Number((lb.args[0] as { ptr: DevPtr }).ptr), out, `%${n.outputs[0]!.name}: the SIMT launch is this node's`);
    const e = expectedDense(n, shape, ptrOf, out, scratch.ptr);
    need = Math.max(need, e.need);
    // (at these sizes the logits' bf16 copies size the buffer: the entry's own need checked alone)
    const ctx = opContext(n, [...n.inputs.map(shape), shape({ kind: 'value', name: n.outputs[0]!.name })], { ins: [0, 0, 0], out: 0, scratch: 0 });
    t.is(DENSE_MOC_OPS[n.op]!.scratchBytes!(ctx), e.need, `%${n.outputs[0]!.name} (${n.op}): scratch bytes`);
    for (const [i, want] of e.launches.entries()) {
      const got = plain(h.launches[j++]!);
      t.deepEqual(got, want, `%${n.outputs[0]!.name} (${n.op}): launch ${i}`);
      if (got.kernel.includes('_m128n128')) bigTile.add(n.op);
    }
  }
  t.is(k, mocNodes.length, 'one SIMT launch a MoC product node');
  t.is(j, h.launches.length, 'nothing more launched');
  t.is(scratch.bytes, need, 'the scratch: the largest of the bf16 ops\' and the dense MoC ops\'');
  t.log(`${mocNodes.length} MoC product nodes, ${h.launches.length} launches, scratch ${scratch.bytes} bytes (bf16: ${scratchB.bytes}), 128×128 tile in ${[...bigTile].join(', ') || 'none'}`);
}

for (const [policy, T] of [['moc-gcp', 45], ['none', 32], ['moc-gcp', 160], ['moc-gcp-attn', 45]] as [CheckpointPolicy, number][]) {
  test(`launch list under bf16 + dense MoC, stories260K MoC K = 32, policy ${policy}, T = ${T}`, (t) => {
    const { m, g, weights } = storiesTraining(policy, { k: 32 });
    try {
      checkLaunchList(t, g, weights, batch(lengthsOf(T), m.spec.vocabSize, 5));
    } finally {
      m.close();
    }
  });
}

test('mocMatmul option: simt by default, dense-bf16 swaps only the three MoC products, refused without matmul bf16; MOCC_CUDA_TRAIN_MOC', (t) => {
  const node = (op: string) => ({ op, inputs: [], attrs: {}, outputs: [{ name: 'y' }] }) as unknown as Node;
  for (const op of [...MOC_OPS, 'moc_gather', 'moc_scatter', 'moc_select', 'linear', 'matmul_tn']) {
    t.is(trainOpOf(node(op), 'bf16'), BF16_MATMUL_OPS[op] ?? TRAIN_OPS[op]);
    t.is(trainOpOf(node(op), 'bf16', 'simt'), BF16_MATMUL_OPS[op] ?? TRAIN_OPS[op]);
    t.is(trainOpOf(node(op), 'bf16', 'dense-bf16'), DENSE_MOC_OPS[op] ?? BF16_MATMUL_OPS[op] ?? TRAIN_OPS[op]);
    t.is(trainOpOf(node(op), 'f32', 'simt'), TRAIN_OPS[op]);
    t.throws(() => trainOpOf(node(op), 'f32', 'dense-bf16'), { message: /needs matmul 'bf16'/ });
  }
  t.deepEqual(Object.keys(DENSE_MOC_OPS).sort(), [...MOC_OPS].sort());
  t.is(trainMocMatmulFromEnv({}), 'simt');
  t.is(trainMocMatmulFromEnv({ MOCC_CUDA_TRAIN_MOC: '' }), 'simt');
  t.is(trainMocMatmulFromEnv({ MOCC_CUDA_TRAIN_MOC: 'simt' }), 'simt');
  t.is(trainMocMatmulFromEnv({ MOCC_CUDA_TRAIN_MOC: 'dense' }), 'dense-bf16');
  t.throws(() => trainMocMatmulFromEnv({ MOCC_CUDA_TRAIN_MOC: 'bf16' }), { message: /expected simt or dense/ });
});

test('the executor refuses mocMatmul dense-bf16 without matmul bf16 before allocating; cudaGradients passes the option (given, or MOCC_CUDA_TRAIN_MOC)', (t) => {
  const { m, g, weights } = storiesTraining('moc-gcp', { k: 32 });
  try {
    for (const matmul of [undefined, 'f32'] as const) {
      const r = recordingDevice();
      t.throws(() => new CudaTrainingExecutor(g, weights, 5, r.dev, { matmul, mocMatmul: 'dense-bf16' }), { message: /needs matmul 'bf16'/ });
      t.is(r.allocs.length, 0, 'nothing allocated');
    }
    const inputs = batch([5], m.spec.vocabSize, 3);
    // dense MoC products: no launch of the SIMT kernels of moc_up / moc_down / moc_rows_grad (the graph's
    // own moc_scatter writes bf16 under matmul 'bf16' either way, passes/bf16-producers.ts, so it says nothing)
    const simtProducts = (make: (dev: () => TrainDevice) => ReturnType<typeof cudaGradients>) => {
      const r = recordingDevice();
      const back = make(() => r.dev).create(g);
      back.lossAndGrads(weights, inputs, 5);
      back.dispose();
      return r.launches.filter((l) => /^train_moc_(up|down|rows_grad)_/.test(l.kernel.name)).length;
    };
    const dense = (make: Parameters<typeof simtProducts>[0]) => simtProducts(make) === 0;
    const saved = { matmul: process.env.MOCC_CUDA_TRAIN_MATMUL, moc: process.env.MOCC_CUDA_TRAIN_MOC };
    try {
      delete process.env.MOCC_CUDA_TRAIN_MATMUL;
      delete process.env.MOCC_CUDA_TRAIN_MOC;
      t.false(dense((d) => cudaGradients(d, { matmul: 'bf16' })));
      t.true(dense((d) => cudaGradients(d, DENSE)));
      process.env.MOCC_CUDA_TRAIN_MATMUL = 'bf16';
      process.env.MOCC_CUDA_TRAIN_MOC = 'dense';
      t.true(dense((d) => cudaGradients(d)));
      t.false(dense((d) => cudaGradients(d, { mocMatmul: 'simt' })));
      delete process.env.MOCC_CUDA_TRAIN_MATMUL;
      t.throws(() => dense((d) => cudaGradients(d)), { message: /needs matmul 'bf16'/ });
    } finally {
      for (const [k, v] of [['MOCC_CUDA_TRAIN_MATMUL', saved.matmul], ['MOCC_CUDA_TRAIN_MOC', saved.moc]] as const) {
        if (v === undefined) delete process.env[k];
        else process.env[k] = v;
      }
    }
  } finally {
    m.close();
  }
});

testsNeeding(ptxasRequirement(findPtxas()))('every kernel of the stories260K MoC K = 32 training graph under bf16 + dense MoC assembles for sm_80 and sm_90 with no local memory', (t) => {
  const { m, g, weights } = storiesTraining('moc-gcp', { k: 32 });
  try {
    // T = 160: moc_up's GEMM (M = T, N = F = 172) takes the 128×128 tile; the others have N = d = 64
    // (the 128×128 'xw' / 'xtw' kernels are the bf16 matmuls' own, assembled in cuda-train-bf16.test.ts)
    const ex = new CudaTrainingExecutor(g, weights, 160, recordingDevice().dev, DENSE);
    const names = ex.kernels.map((k) => k.name);
    for (const re of [/^moc_scatter_\w+_bf16$/, /^gemm_xw_bf16_/, /^gemm_xtw_bf16_/, /^gemm_xwt_bf16_m128n128/, /^train_moc_gather_/]) t.true(names.some((n) => re.test(n)), `${re}: ${names.join(' ')}`);
    t.false(names.some((n) => /^train_moc_(up|down|rows_grad)_/.test(n)), 'no SIMT MoC product left');
    assertEachAssembles(t, ex.kernels);
    t.log(`${ex.kernels.length} kernels`);
  } finally {
    m.close();
  }
});

// [T, K, F]: padding of 7, 4 and 0 columns (F = 1, 700, 16); K past a block of threads; rows of
// pad8(F) bf16 past one round of 16-byte zero stores (F = 5000: 625 stores, 256 threads)
for (const [T, K, F] of [[2, 1, 1], [4, 300, 700], [3, 5, 16], [2, 40, 5000]] as [number, number, number][]) {
  test(`moc_scatter into bf16 T=${T} K=${K} F=${F}, interpreted: the ref's moc_scatter rounded to bf16 (host RNE), padding columns zero`, (t) => {
    const r = rng(T * 7 + K + F);
    const dy = randomF32(T * K, r), idx = randomDistinctIdx(T, K, F, r);
    const dyPadded = new Float32Array(T * pad8(K)).fill(NaN), idxPadded = new Int32Array(T * pad8(K)).fill(-1);
    for (let tt = 0; tt < T; tt++) {
      dyPadded.set(dy.subarray(tt * K, (tt + 1) * K), tt * pad8(K));
      idxPadded.set(idx.subarray(tt * K, (tt + 1) * K), tt * pad8(K));
    }
    const out = runOn('sim', { out: { poison: T * pad8(F) * 2 }, dy: { data: dyPadded }, idx: { data: idxPadded } },
      [{ kernel: mocScatter(K, F, 'bf16'), grid: mocScatterGrid(T), block: SCATTER_THREADS, args: ['out', 'dy', 'idx'] }]);
    const raw = new Uint16Array(out.out!.buffer, out.out!.byteOffset, T * pad8(F));
    const want = Array.from(refT.mocScatter(dy, idx, K, F), f32ToBf16);
    t.deepEqual(Array.from({ length: T * F }, (_, i) => raw[((i / F) | 0) * pad8(F) + (i % F)]!), want);
    let nonzero = 0;
    for (let row = 0; row < T; row++) for (let c = F; c < pad8(F); c++) if (raw[row * pad8(F) + c] !== 0) nonzero++;
    t.is(nonzero, 0, 'padding columns not +0');
  });
}

// ---- on the GPU ----
const gpuTest = testsNeeding(cudaDeviceRequirement());

/** One entry's case: op, T, F channels, K kept, d. */
interface MocCase { op: string; T: number; F: number; K: number; d: number }

/** The (op, shapes) of every MoC product node of the stories260K MoC graph at T = 32 and 45, and the 1B-like shape. */
function mocCases(): MocCase[] {
  const cases = new Map<string, MocCase>();
  const { m, g } = storiesTraining('moc-gcp', { k: 32 });
  m.close();
  for (const T of [32, 45]) {
    const shape = shapesOf(g, T);
    for (const n of g.nodes.filter((n) => MOC_OPS.includes(n.op))) {
      const K = shape(n.inputs[2]!)[1]!;
      const [F, d] = (n.op === 'moc_rows_grad' ? shape({ kind: 'value', name: n.outputs[0]!.name }) : shape(n.inputs[1]!)) as [number, number];
      const c = { op: n.op, T, F, K, d };
      cases.set(JSON.stringify(c), c);
    }
  }
  for (const op of MOC_OPS) cases.set(op, { op, T: 256, F: 5461, K: 1024, d: 2048 });
  return [...cases.values()];
}

/** Garbage for an activation's padding: finite (the executor's arena holds finite numbers), large. */
const GARBAGE = 1e30;
const abs = (x: Float32Array) => x.map(Math.abs);

const mocCaseList = cudaDeviceRequirement().missing === null ? mocCases() : [{ op: 'moc_up', T: 1, F: 1, K: 1, d: 1 }];
mocCaseList.forEach((c, i) => {
  gpuTest(`GPU: dense ${c.op} alone, T ${c.T}, F ${c.F}, K ${c.K}, d ${c.d}: the ref kernel on bf16-rounded operands, padding untouched`, (t) => {
    const dev = cudaTrainDevice(), r = rng(900 + i);
    const { T, F, K, d } = c;
    const idx = randomDistinctIdx(T, K, F, r);
    // operands [rows, width] and whether each is a param (zero padding) or an activation (garbage padding)
    const ins: { rows: number; width: number; data: Float32Array | Int32Array; param: boolean }[] = [];
    let out: [number, number], want: Float32Array, mag: Float32Array;
    if (c.op === 'moc_up') {
      const x = randomF32(T * d, r), w = randomF32(F * d, r);
      ins.push({ rows: T, width: d, data: x, param: false }, { rows: F, width: d, data: w, param: true });
      out = [T, K];
      want = refK.mocUp(roundBf16(x), roundBf16(w), d, idx, K);
      mag = refK.mocUp(abs(roundBf16(x)), abs(roundBf16(w)), d, idx, K);
    } else if (c.op === 'moc_down') {
      const z = randomF32(T * K, r), w = randomF32(F * d, r);
      ins.push({ rows: T, width: K, data: z, param: false }, { rows: F, width: d, data: w, param: true });
      out = [T, d];
      want = refK.mocDown(roundBf16(z), roundBf16(w), d, idx, K);
      mag = refK.mocDown(abs(roundBf16(z)), abs(roundBf16(w)), d, idx, K);
    } else {
      const a = randomF32(T * K, r), b = randomF32(T * d, r);
      ins.push({ rows: T, width: K, data: a, param: false }, { rows: T, width: d, data: b, param: false });
      out = [F, d];
      want = refT.mocRowsGrad(roundBf16(a), roundBf16(b), idx, K, F);
      mag = refT.mocRowsGrad(abs(roundBf16(a)), abs(roundBf16(b)), idx, K, F);
    }
    ins.push({ rows: T, width: K, data: idx, param: false });
    const n: Node = {
      op: c.op, attrs: c.op === 'moc_rows_grad' ? { rows: F } : {},
      inputs: [{ kind: 'value', name: 'a' }, c.op === 'moc_rows_grad' ? { kind: 'value', name: 'b' } : { kind: 'param', name: 'w' }, { kind: 'value', name: 'idx' }],
      outputs: [{ name: 'y', type: { dtype: 'f32', shape: out } }],
    };
    const shapes = [...ins.map((o) => [o.rows, o.width]), out];
    const op = DENSE_MOC_OPS[c.op]!;
    const ptrs: DevPtr[] = [];
    const alloc = (bytes: number) => (ptrs.push(dev.alloc(bytes)), ptrs.at(-1)!);
    try {
      const inPtrs = ins.map((o) => {
        const p = alloc(o.rows * pad8(o.width) * 4);
        const padded = o.data instanceof Int32Array ? new Int32Array(o.rows * pad8(o.width)).fill(-1) : new Float32Array(o.rows * pad8(o.width)).fill(o.param ? 0 : GARBAGE);
        for (let row = 0; row < o.rows; row++) padded.set(o.data.subarray(row * o.width, (row + 1) * o.width) as never, row * pad8(o.width));
        dev.upload(p, padded);
        return p;
      });
      const outBytes = out[0] * pad8(out[1]) * 4, y = alloc(outBytes);
      dev.fill(y, outBytes, 0x7fc00000);
      const scratchBytes = op.scratchBytes!(opContext(n, shapes, { ins: inPtrs, out: y, scratch: 0 })), scratch = alloc(scratchBytes);
      dev.fill(scratch, Math.ceil(scratchBytes / 4) * 4, 0x7fc00000);
      for (const l of op.launches(opContext(n, shapes, { ins: inPtrs, out: y, scratch }))) dev.launch(l.kernel, l.grid, l.block, l.args);
      const all = dev.download(y, new Float32Array(out[0] * pad8(out[1])));
      const [rows, width] = out;
      let bad = 0, worst = 0, padTouched = 0, first = '';
      for (let row = 0; row < rows; row++) {
        for (let col = 0; col < pad8(width); col++) {
          const got = all[row * pad8(width) + col]!;
          if (col >= width) {
            if (!Number.isNaN(got)) padTouched++;
            continue;
          }
          const e = row * width + col, tol = 2e-5 * mag[e]! + 1e-30, off = Math.abs(got - want[e]!) / tol;
          if (!(off <= 1)) {
            bad++;
            first ||= `[${row}, ${col}]: ${got} vs ${want[e]} (Σ|terms| ${mag[e]})`;
          }
          if (Number.isFinite(off)) worst = Math.max(worst, off);
        }
      }
      t.is(bad, 0, `${bad} of ${rows * width} elements off (NaN = unwritten or leaked); first ${first}`);
      t.is(padTouched, 0, 'padding columns written');
      t.log(`worst ${worst.toExponential(2)} of the allowance; scratch ${scratchBytes} bytes`);
    } finally {
      for (const p of ptrs) dev.free(p);
    }
  });
});
