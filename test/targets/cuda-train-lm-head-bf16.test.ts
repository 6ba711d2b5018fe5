// The CUDA training executor's bf16 entries for the fused head + loss (targets/cuda/train/
// ops-lm-head-bf16.ts: lm_head_loss / lm_head_loss_grad under the matmul option 'bf16').
//
// Without a GPU:
// - stories260K (V 512, d 64) with the fused head in blocks of 16 of T = 45 rows (16, 16, 13: a tail),
//   dense (policy none) and MoC K = 32 (moc-gcp-attn, dense MoC GEMMs), on a recording device: the
//   head's forward and gradient launches are the header's schedule, block by block (W cast once, each
//   block's x rows cast, its GEMMs' M, N, K, the dx rows' and the state's pointer offsets, dW stored
//   by the first block and accumulated by the others), and no f32 SIMT GEMM is left in the list; on a
//   device claiming wgmma the list is the same with every GEMM on gemm90 (same layout, epilogue, y, M,
//   N, K) and none on mma.sync, the same allocations;
// - every kernel of those lists assembles (sm_80 and sm_90; the wgmma list's for sm_90a) with no local
//   memory.
// On a GPU (skipped without one):
// - stories260K with the fused head under bf16, against the bf16 oracle (x, W rounded, the ref
//   kernels) and the ref executor within cuda-train-bf16.test.ts's tolerances (its header says why);
// - a 1B-like head (T 2048, d 2048, V 32000, blocks of 900: 900, 900, 248), the op alone on a
//   hand-made context, on gemm.ts and (Hopper) gemm90: only 8 sampled rows have targets (the rest
//   -1, uncounted), so the loss, dx and dW are the ref kernels' (targets/ref/lm-head-loss.ts) on those
//   rows alone, computed on the CPU in seconds, while the GPU runs every block's GEMMs in full.
//   Tolerance: loss 1e-3 relative (f32 accumulation of bf16 products, ex2/lg2.approx); dx, dW 1e-2 of
//   the tensor's largest |entry| (dlogits rounded to bf16 in the kernels, 2^-9 relative a term, not in
//   the oracle); uncounted rows' dx must be exactly 0; outputs and scratch poisoned with NaN.
import test, { type ExecutionContext } from 'ava';
import type { CheckpointPolicy } from '../../passes/checkpoint.js';
import { modelWeights } from '../../driver/evaluate.js';
import { loadModel } from '../../driver/load.js';
import { trainingGraph } from '../../driver/training-graph.js';
import type { Node } from '../../src/ir/types.js';
import { runTrainingGraph } from '../../targets/ref/train.js';
import { lmHeadLoss, lmHeadLossGrad } from '../../targets/ref/lm-head-loss.js';
import { CudaTrainingExecutor, type TrainingExecutorOptions } from '../../targets/cuda/train/executor.js';
import { cudaTrainDevice } from '../../targets/cuda/train/cuda-device.js';
import type { DevPtr, LaunchArg, TrainDevice, WgmmaDevice } from '../../targets/cuda/train/device.js';
import { trainOpOf, type Launch, type OpContext } from '../../targets/cuda/train/ops.js';
import { pad8 } from '../../targets/cuda/ptx/layout.js';
import { CHECKPOINTS } from '../helpers/fixtures.js';
import { batch, POISON } from '../helpers/train-tiny-model.js';
import { relErrors, roundBf16, runTrainingGraphBf16Matmuls } from '../helpers/train-bf16-oracle.js';
import { randomF32, rng } from '../helpers/cuda.js';
import { recordingDevice } from '../helpers/recording-device.js';
import { cudaDeviceRequirement, findPtxas, ptxasRequirement, testsNeeding } from '../helpers/requires.js';
import { assemblePtx, assertEachAssembles, NO_LOCAL_MEMORY } from '../helpers/ptxas.js';

const HOPPER: WgmmaDevice = { multiprocessors: 132 };
const T = 45, CHUNK = 16, BLOCKS = [16, 16, 13], V = 512, D = 64;

type Case = [string, 'dense' | { k: number }, CheckpointPolicy, TrainingExecutorOptions];
const CASES: Case[] = [
  ['dense', 'dense', 'none', { matmul: 'bf16' }],
  ['MoC K = 32, dense MoC GEMMs', { k: 32 }, 'moc-gcp-attn', { matmul: 'bf16', mocMatmul: 'dense-bf16' }],
];

function fusedStories(selection: 'dense' | { k: number }, policy: CheckpointPolicy, chunk: number | true = CHUNK) {
  const m = loadModel(CHECKPOINTS.hf, { selection });
  const g = trainingGraph(m.graph, { loss: { kind: 'cross_entropy' }, policy, fuseLmHead: chunk });
  return { m, g, weights: modelWeights(m) };
}

const GEMM = /^gemm(90)?_(xwt|xw|xtw)_bf16_.*?(_acc)?$/;
const num = (a: LaunchArg) => ('ptr' in a ? Number(a.ptr) : 'u32' in a ? a.u32 : NaN);

/** A launch as the schedule names it: GEMMs by layout, M N K, epilogue (either kernel); casts by width and rows; the rest by name and grid x. */
function sig(l: Launch): string {
  const g = GEMM.exec(l.kernel.name);
  if (g) return `${g[2]} ${l.args.slice(3).map(num).join(' ')}${g[3] ? ' acc' : ''}`;
  if (l.kernel.name.startsWith('cast_')) return `${l.kernel.name} rows ${l.grid[1]}`;
  return `${l.kernel.name} ${l.grid[0]}`;
}

/** The header's schedule of the head's forward (fold) and of its gradient. */
function expectedSchedule() {
  const fold = [`cast_bf16_w${D} rows ${V}`, ...BLOCKS.flatMap((r) => [`cast_bf16_w${D} rows ${r}`, `xwt ${r} ${V} ${D}`, `ce_fold ${r}`]), 'ce_finalize 1'];
  const grad = [...fold, ...BLOCKS.flatMap((r, i) => [`cast_bf16_w${D} rows ${r}`, `xwt ${r} ${V} ${D}`, `ce_grad_bf16 ${r}`, `xw ${r} ${D} ${V}`, `xtw ${V} ${D} ${r}${i ? ' acc' : ''}`])];
  return { fold, grad };
}

/** The executor's launch list on `dev`, and where the head's forward and gradient start (the first and second ce_fold, less W's and x's casts and the GEMM). */
function recordList(selection: 'dense' | { k: number }, policy: CheckpointPolicy, o: TrainingExecutorOptions, wgmma?: WgmmaDevice) {
  const { m, g, weights } = fusedStories(selection, policy);
  try {
    const r = recordingDevice();
    const dev: TrainDevice = wgmma ? { ...r.dev, wgmma } : r.dev;
    const ex = new CudaTrainingExecutor(g, weights, T, dev, o);
    ex.launch(batch([30, 15], m.spec.vocabSize, 5));
    const folds = r.launches.flatMap((l, i) => (l.kernel.name === 'ce_fold' ? [i] : []));
    return { ...r, kernels: ex.kernels, fwd: folds[0]! - 3, grad: folds[BLOCKS.length]! - 3 };
  } finally {
    m.close();
  }
}

function checkSchedule(t: ExecutionContext, r: ReturnType<typeof recordList>): void {
  const { fold, grad } = expectedSchedule();
  t.deepEqual(r.launches.slice(r.fwd, r.fwd + fold.length).map(sig), fold, 'forward');
  const gl = r.launches.slice(r.grad, r.grad + grad.length);
  t.deepEqual(gl.map(sig), grad, 'gradient');
  // pointers: the fold's state offset by r0 rows of 8 bytes; dx rows by r0 padded rows; dW the same y in every block
  const foldState = gl.filter((l) => l.kernel.name === 'ce_fold').map((l) => num(l.args[0]!));
  const dx = gl.filter((l) => sig(l).startsWith('xw ')).map((l) => num(l.args[0]!));
  const dw = gl.filter((l) => sig(l).startsWith('xtw ')).map((l) => num(l.args[0]!));
  const r0s = BLOCKS.map((_, i) => i * CHUNK);
  t.deepEqual(foldState.map((p) => p - foldState[0]!), r0s.map((r0) => r0 * 8));
  t.deepEqual(dx.map((p) => p - dx[0]!), r0s.map((r0) => r0 * pad8(D) * 4));
  t.deepEqual(new Set(dw).size, 1, 'dW: one output for every block');
  t.false(r.launches.some((l) => /^(gemm_f32|matmul_)/.test(l.kernel.name)), 'no f32 SIMT GEMM left');
}

for (const [what, selection, policy, o] of CASES) {
  test(`launch list under bf16, stories260K ${what}, policy ${policy}, fused head in blocks of 16 of ${T} rows: the header's schedule; on an sm_90a device the same with every GEMM on gemm90`, (t) => {
    const mma = recordList(selection, policy, o), hop = recordList(selection, policy, o, HOPPER);
    checkSchedule(t, mma);
    checkSchedule(t, hop);
    t.deepEqual(hop.allocs, mma.allocs, 'the same buffers');
    t.deepEqual(hop.launches.map(sig), mma.launches.map(sig), 'the same list, GEMM for GEMM');
    t.true(mma.launches.some((l) => l.kernel.name.startsWith('gemm_xtw_bf16_') && l.kernel.name.endsWith('_acc')));
    t.false(hop.launches.some((l) => /^gemm_(xwt|xw|xtw)_/.test(l.kernel.name)), 'no GEMM left on mma.sync');
    t.true(hop.launches.some((l) => l.kernel.name.startsWith('gemm90_xtw_') && l.kernel.name.endsWith('_acc')));
  });
}

testsNeeding(ptxasRequirement(findPtxas()))('every kernel of those launch lists assembles (sm_80, sm_90; the wgmma list\'s for sm_90a) with no local memory', (t) => {
  const plain = new Map<string, string>(), hopper = new Map<string, string>();
  for (const [, selection, policy, o] of CASES) {
    for (const k of recordList(selection, policy, o).kernels) plain.set(k.name, k.text);
    for (const k of recordList(selection, policy, o, HOPPER).kernels) hopper.set(k.name, k.text);
  }
  assertEachAssembles(t, [...plain].map(([name, text]) => ({ name, text })));
  for (const [name, text] of hopper) {
    const r = assemblePtx([text], 'sm_90a');
    t.is(r.status, 0, `${name}: ${r.stderr}`);
    t.regex(r.stderr, NO_LOCAL_MEMORY, `${name}: ${r.stderr}`);
  }
  t.log(`${plain.size} kernels, ${hopper.size} on the sm_90a list`);
});

// ---- on a GPU ----
const gpuTest = testsNeeding(cudaDeviceRequirement());

for (const [what, selection, policy, o] of CASES) {
  gpuTest.serial(`GPU: stories260K ${what}, policy ${policy}, T = ${T}, fused head in blocks of 16 under bf16: loss and every gradient within bf16 tolerance of the oracle and the ref executor`, (t) => {
    const { m, g, weights } = fusedStories(selection, policy);
    const ex = new CudaTrainingExecutor(g, weights, T, cudaTrainDevice(), { poison: POISON, ...o });
    try {
      t.true(ex.kernels.some((k) => k.name === 'ce_grad_bf16'), 'the bf16 head entries ran');
      const inputs = batch([30, 15], m.spec.vocabSize, 5);
      const got = ex.run(inputs).outputs;
      const oracle = runTrainingGraphBf16Matmuls(g, weights, inputs, T) as Float32Array[];
      const ref = runTrainingGraph(g, weights, inputs, T).outputs as Float32Array[];
      const vsOracle = relErrors(g, got, oracle), vsRef = relErrors(g, got, ref);
      // cuda-train-bf16.test.ts's tolerances (its header: measured with the oracle, why MoC's are loose)
      const [lossTol, oracleTol, refTol] = selection === 'dense' ? [1e-2, 6e-2, 1e-1] : [3e-2, 3e-1, Infinity];
      t.true(vsOracle[0]!.rel <= lossTol, `loss ${got[0]![0]} vs the oracle's ${oracle[0]![0]}`);
      for (const [i, e] of vsOracle.entries()) {
        if (i === 0) continue;
        t.true(e.rel <= oracleTol, `%${e.name}: ${e.rel.toExponential(2)} of max |oracle|`);
        t.true(vsRef[i]!.rel <= refTol, `%${e.name}: ${vsRef[i]!.rel.toExponential(2)} of max |ref|`);
      }
      const worst = (es: { name: string; rel: number }[]) => es.reduce((x, y) => (y.rel > x.rel ? y : x));
      t.log(`loss ${got[0]![0]} (oracle ${oracle[0]![0]}, ref ${ref[0]![0]}); worst vs oracle %${worst(vsOracle).name} ${worst(vsOracle).rel.toExponential(2)}, vs ref %${worst(vsRef).name} ${worst(vsRef).rel.toExponential(2)}`);
    } finally {
      ex.dispose();
      m.close();
    }
  });
}

/** The 1B-like head: T, d, V, the block rows (a tail of 248), the rows with targets. */
const BIG = { T: 2048, d: 2048, V: 32000, chunk: 900 };
const SAMPLED = [0, 1, 899, 900, 1500, 1799, 1800, 2047];

/** A hand-made OpContext for an lm_head node (inputs x, W, targets, dloss; outputs dx, dW or the loss). */
function headContext(n: Node, p: { ins: DevPtr[]; outs: DevPtr[]; scratch: DevPtr }, wgmma: WgmmaDevice | undefined): OpContext {
  const shapes = [[BIG.T, BIG.d], [BIG.V, BIG.d], [BIG.T], [1]];
  const outShapes = n.op === 'lm_head_loss' ? [[1]] : [[BIG.T, BIG.d], [BIG.V, BIG.d]];
  const at = (s: number[], axis: number) => s[axis < 0 ? s.length + axis : axis]!;
  return {
    node: n, T: BIG.T,
    input: (i) => p.ins[i]!, output: (i) => p.outs[i]!,
    inDim: (i, axis) => at(shapes[i]!, axis), outDim: (i, axis) => at(outShapes[i]!, axis),
    scratch: (offset = 0) => (typeof p.scratch === 'bigint' ? p.scratch + BigInt(offset) : p.scratch + offset),
    ropeTable: () => { throw new Error('no rope table'); },
    ...(wgmma ? { wgmma } : {}),
  };
}

const maxRel = (got: Float32Array, want: Float32Array) => {
  let m = 0, d = 0;
  want.forEach((w, i) => { m = Math.max(m, Math.abs(w)); d = Math.max(d, Number.isFinite(got[i]!) ? Math.abs(got[i]! - w) : Infinity); });
  return d / m;
};

for (const kernel of ['mma.sync', 'gemm90'] as const) {
  gpuTest.serial(`GPU: a 1B-like fused head (T ${BIG.T}, d ${BIG.d}, V ${BIG.V}, blocks of ${BIG.chunk}) under bf16 on ${kernel}: the ref kernels on the bf16-rounded operands of ${SAMPLED.length} counted rows`, (t) => {
    const dev = cudaTrainDevice();
    if (kernel === 'gemm90' && !dev.wgmma) return t.pass('no wgmma on this device (not Hopper, or MOCC_CUDA_WGMMA=0)');
    const wgmma = kernel === 'gemm90' ? dev.wgmma : undefined;
    const { T, d, V, chunk } = BIG, r = rng(46);
    const x = randomF32(T * d, r), w = randomF32(V * d, r).map((v) => v * 0.05);
    const targets = new Int32Array(T).fill(-1);
    for (const s of SAMPLED) targets[s] = Math.floor(r() * V);
    const ptrs: DevPtr[] = [];
    const alloc = (bytes: number) => (ptrs.push(dev.alloc(bytes)), ptrs.at(-1)!);
    const nan = (p: DevPtr, bytes: number) => dev.fill(p, bytes, 0x7fc00000);
    try {
      const px = alloc(T * d * 4), pw = alloc(V * d * 4), pt = alloc(T * 4), pdl = alloc(4), loss = alloc(4), dx = alloc(T * d * 4), dw = alloc(V * d * 4);
      dev.upload(px, x); dev.upload(pw, w); dev.upload(pt, targets); dev.upload(pdl, new Float32Array([1]));
      nan(loss, 4); nan(dx, T * d * 4); nan(dw, V * d * 4);
      const node = (op: string): Node => ({ op, attrs: { chunk_rows: chunk }, inputs: [], outputs: [] });
      const run = (op: string, outs: DevPtr[]) => {
        const entry = trainOpOf(node(op), 'bf16'), ins = [px, pw, pt, pdl];
        const bytes = entry.scratchBytes!(headContext(node(op), { ins, outs, scratch: 0 }, wgmma)), scratch = alloc(bytes);
        nan(scratch, Math.ceil(bytes / 4) * 4);
        const launches = entry.launches(headContext(node(op), { ins, outs, scratch }, wgmma));
        t.is(launches.some((l) => l.kernel.name.startsWith('gemm90_')), kernel === 'gemm90', `${op}: GEMMs on ${kernel}`);
        for (const l of launches) dev.launch(l.kernel, l.grid, l.block, l.args, l);
      };
      run('lm_head_loss', [loss]);
      run('lm_head_loss_grad', [dx, dw]);
      const gotLoss = dev.download(loss, new Float32Array(1))[0]!, gotDx = dev.download(dx, new Float32Array(T * d)), gotDw = dev.download(dw, new Float32Array(V * d));
      // the ref on the sampled rows alone (the others count nothing, contribute nothing)
      const xs = new Float32Array(SAMPLED.length * d), ts = Int32Array.from(SAMPLED.map((s) => targets[s]!)), rx = roundBf16(x), rw = roundBf16(w);
      SAMPLED.forEach((s, j) => xs.set(rx.subarray(s * d, (s + 1) * d), j * d));
      const wantLoss = lmHeadLoss(xs, rw, ts, SAMPLED.length)[0]!;
      const [wantDx, wantDw] = lmHeadLossGrad(xs, rw, ts, new Float32Array([1]), SAMPLED.length);
      t.true(Math.abs(gotLoss - wantLoss) <= 1e-3 * Math.abs(wantLoss), `loss ${gotLoss} vs ${wantLoss}`);
      const dxRows = new Float32Array(SAMPLED.length * d);
      SAMPLED.forEach((s, j) => dxRows.set(gotDx.subarray(s * d, (s + 1) * d), j * d));
      const eDx = maxRel(dxRows, wantDx), eDw = maxRel(gotDw, wantDw);
      t.true(eDx <= 1e-2, `dx: ${eDx.toExponential(2)} of max |ref|`);
      t.true(eDw <= 1e-2, `dW: ${eDw.toExponential(2)} of max |ref|`);
      let nonzero = 0;
      for (let s = 0; s < T; s++) if (targets[s]! < 0) for (let i = 0; i < d; i++) if (gotDx[s * d + i] !== 0) nonzero++;
      t.is(nonzero, 0, 'uncounted rows: dx exactly 0 (NaN = unwritten)');
      t.log(`loss ${gotLoss} (ref ${wantLoss}); dx ${eDx.toExponential(2)}, dW ${eDw.toExponential(2)} of max |ref|`);
    } finally {
      for (const p of ptrs) dev.free(p);
    }
  });
}
