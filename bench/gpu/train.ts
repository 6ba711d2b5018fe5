// bench train: mocc's training step of the 1B preset (make_llama_1b.py; any checkpoint: --model) on the GPU — the CUDA training
// executor (targets/cuda/train/executor.ts: the training graph run in ONE arena from the memory plan)
// and the device optimizer (optimizer.ts: clip + AdamW, --optimizer-state's weights and moments), through the
// step runner `mocc train --target cuda` uses (step-runner.ts) — for the
// configurations issue 18 compares with PyTorch (bench/gpu/torch_train.py): dense and MoC K, each under
// a checkpoint policy. Per configuration:
//   memory  planned: the executor's arena (passes/memory-plan.ts in device bytes) + the params + the
//           optimizer's m and v, all known before anything is allocated, + the executor's one scratch
//           buffer (the largest node's, computed from the graph at build); allocated: the bytes the
//           executor and the optimizer asked the device for (a counting wrapper, so the rest — scratch,
//           RoPE tables, clip partials — is visible as the difference); measured: the driver's free
//           memory before building minus its lowest value seen (after building, after each step: the
//           high-water mark, since nothing is allocated during a step). Issue 18: measured within 5%
//           of planned.
//   speed   tokens/s over --steps timed steps after --warmup ones (a step: launch the graph, read the
//           loss, clip, AdamW; the loss read synchronizes), on random tokens (WindowSampler over one
//           random document, the same batches for every configuration).
// Usage: node dist/bench/gpu/train.js --model DIR --out FILE [--batch 64] [--seq 256] [--steps 3]
//        [--warmup 1] [--k 1024] [--configs dense:gcp,moc:moc-gcp,...] [--lr 1e-4] [--matmul f32|bf16] [--profile]
//        [--optimizer-state f32|bf16|bf16-params] [--fuse-lm-head]
// (a config is dense:POLICY or moc:POLICY, any of passes/checkpoint.ts's, e.g. moc:moc-gcp-attn;
// bench/train-plan-1b.ts prints the same plan on the host without a GPU)
// --matmul: the executor's GEMMs (TrainingExecutorOptions.matmul): f32 SIMT, or bf16 tensor cores;
// MOCC_CUDA_TRAIN_MOC=dense with bf16: MoC's projections as dense GEMMs too (mocMatmul).
// --profile: after the timed steps, one more step with a CUDA event around every launch
// (kernel-times.ts): its GPU time by kernel family, printed and saved as kernelTimes.
// --optimizer-state f32|bf16|bf16-params (default f32): how AdamW stores m and v (src/train/adamw.ts
// stateDType; bf16: 2 bytes an element, the master weights f32; bf16-params: the weight matrices bf16
// too, needs --matmul bf16 and, for moc configs, MOCC_CUDA_TRAIN_MOC=dense; the planned figure counts
// each so, executor.ts trainingStateBytes).
// --cast-once 1|0|both (default: MOCC_CUDA_TRAIN_CAST_ONCE's, shared casts unless it is 0): with
// --matmul bf16, each GEMM operand value cast once for the GEMMs near each other that read it
// (TrainingExecutorOptions.castOnce, passes/bf16-gemm-operands.ts) or once per GEMM (0); both: every
// config twice, per-GEMM casts first, side by side in this process.
// --matmul-acc 1|0|both (default: MOCC_CUDA_TRAIN_MATMUL_ACC's, else the executor's: on with --matmul
// bf16): each add of a matmul product folded into the GEMM's accumulate epilogue, and of rmsnorm_grad's
// dx into its kernel's store (TrainingExecutorOptions.matmulAccumulate, passes/matmul-accumulate.ts) or kept (0); both: every
// config twice, adds kept first, side by side in this process (crossed with --cast-once both).
// MOCC_CUDA_TRAIN_BF16_PRODUCERS=0: with shared casts, keep the casts of values only casts read (by
// default their producers write bf16: TrainingExecutorOptions.bf16Producers, passes/bf16-producers.ts).
// --fuse-lm-head: the output projection fused with the loss (trainingGraph fuseLmHead: lm_head_loss in
// blocks of passes/loss.ts lmHeadChunkRows rows), so the [T, V] logits and dlogits are never arena
// values; the planned figure follows from the fused graph's plan (the block lives in the scratch).
// A configuration that does not fit is reported (the driver's out-of-memory error) and the next runs.
import { writeFileSync } from 'node:fs';
import { loadModel } from '../../driver/load.js';
import { modelWeights } from '../../driver/evaluate.js';
import { trainingGraph } from '../../driver/training-graph.js';

import { MODEL_INPUTS, TRAIN_INPUTS } from '../../src/model/graph-inputs.js';
import { tokenDataFromDocuments, WindowSampler } from '../../src/train/data.js';
import type { CheckpointPolicy } from '../../passes/checkpoint.js';
import { executorPlan, trainingStateBytes } from '../../targets/cuda/train/executor.js';
import { CudaStepRunner } from '../../targets/cuda/train/step-runner.js';
import { cudaTrainDevice } from '../../targets/cuda/train/cuda-device.js';
import type { TrainDevice } from '../../targets/cuda/train/device.js';
import { cudaContext } from '../../targets/cuda/index.js';
import { trainBf16ProducersFromEnv, trainCastOnceFromEnv, trainMatmulAccumulateFromEnv, trainMocMatmulFromEnv, type TrainMatmul } from '../../targets/cuda/train/ops-bf16.js';
import { formatKernelTimes, kernelTimer } from './kernel-times.js';
import { ADAMW_STATE_DTYPES, type AdamWStateDType } from '../../src/train/adamw.js';

const arg = (name: string) => { const i = process.argv.indexOf(name); return i > 0 ? process.argv[i + 1] : undefined; };
const dir = arg('--model'), outPath = arg('--out');
if (!dir || !outPath) {
  console.error('train: --model DIR and --out FILE are required');
  process.exit(1);
}
const BATCH = Number(arg('--batch') ?? 64), SEQ = Number(arg('--seq') ?? 256), STEPS = Number(arg('--steps') ?? 3), WARMUP = Number(arg('--warmup') ?? 1);
const K = Number(arg('--k') ?? 1024), LR = Number(arg('--lr') ?? 1e-4);
const MATMUL = (arg('--matmul') ?? 'f32') as TrainMatmul;
if (MATMUL !== 'f32' && MATMUL !== 'bf16') throw new Error(`train: --matmul ${MATMUL} is not f32 or bf16`);
const OPT_STATE = (arg('--optimizer-state') ?? 'f32') as AdamWStateDType;
if (!ADAMW_STATE_DTYPES.includes(OPT_STATE)) throw new Error(`train: --optimizer-state ${OPT_STATE} is not ${ADAMW_STATE_DTYPES.join(' or ')}`);
const CAST_ONCE_ARG = arg('--cast-once');
if (CAST_ONCE_ARG !== undefined && !['0', '1', 'both'].includes(CAST_ONCE_ARG)) throw new Error(`train: --cast-once ${CAST_ONCE_ARG} is not 0, 1 or both`);
const CAST_ONCE_MODES = CAST_ONCE_ARG === 'both' ? [false, true] : [CAST_ONCE_ARG === undefined ? trainCastOnceFromEnv() : CAST_ONCE_ARG === '1'];
const ACC_ARG = arg('--matmul-acc');
if (ACC_ARG !== undefined && !['0', '1', 'both'].includes(ACC_ARG)) throw new Error(`train: --matmul-acc ${ACC_ARG} is not 0, 1 or both`);
// the executor's matmulAccumulate, resolved as it resolves it (its default: on with bf16 GEMMs)
const ACC_MODES = (ACC_ARG === 'both' ? [false, true] : [ACC_ARG === undefined ? trainMatmulAccumulateFromEnv() : ACC_ARG === '1']).map((a) => a ?? MATMUL === 'bf16');
const MOC_MATMUL = trainMocMatmulFromEnv(); // MOCC_CUDA_TRAIN_MOC=dense: MoC's projections as dense GEMMs (with --matmul bf16)
const BF16_PRODUCERS = trainBf16ProducersFromEnv(); // MOCC_CUDA_TRAIN_BF16_PRODUCERS=0: keep the casts bf16-producers folds
const configs = (arg('--configs') ?? 'dense:gcp,moc:moc-gcp').split(',').flatMap((c) => {
  const [ffn, policy] = c.split(':') as ['dense' | 'moc', CheckpointPolicy];
  if ((ffn !== 'dense' && ffn !== 'moc') || !policy) throw new Error(`train: config '${c}' is not dense:POLICY or moc:POLICY`);
  return CAST_ONCE_MODES.flatMap((castOnce) => ACC_MODES.map((matmulAccumulate) => ({ ffn, policy, castOnce, matmulAccumulate })));
});
const PROFILE = process.argv.includes('--profile');
const FUSE_LM_HEAD = process.argv.includes('--fuse-lm-head');
const GiB = 2 ** 30, rows = BATCH * SEQ;
const cuda = cudaContext();
const free = () => cuda.memGetInfo().free;
/** Whether the bf16 GEMMs run on gemm-sm90's wgmma (Hopper, MOCC_CUDA_WGMMA not 0) or gemm.ts's mma.sync: the device says. */
const wgmma = cudaTrainDevice().wgmma !== undefined;

/** The device, counting what is allocated (and freed) through it. */
function counting(dev: TrainDevice) {
  const sizes = new Map<unknown, number>();
  let live = 0;
  const d: TrainDevice = {
    ...dev, // upload, download, fill, launch and the device's wgmma as they are
    alloc(bytes) {
      const p = dev.alloc(bytes);
      sizes.set(p, bytes);
      live += bytes;
      return p;
    },
    free(p) {
      live -= sizes.get(p) ?? 0;
      sizes.delete(p);
      dev.free(p);
    },
  };
  return { dev: d, live: () => live, freeAll: () => [...sizes.keys()].forEach((p) => d.free(p as never)) };
}

/** One random document long enough for every window: the same batches for every configuration of a model. */
function randomTokens(vocab: number) {
  let seed = 12345;
  const doc = Int32Array.from({ length: rows * (WARMUP + STEPS + 1) + 1 }, () => ((seed = (seed * 1103515245 + 12345) >>> 0) >>> 8) % vocab);
  return tokenDataFromDocuments([doc]);
}

const results: Record<string, unknown>[] = [];
for (const { ffn, policy, castOnce, matmulAccumulate } of configs) {
  const label = `mocc ${ffn === 'dense' ? 'dense' : `MoC K=${K}`} ${policy}${MATMUL === 'bf16' ? `, bf16 matmuls (${wgmma ? 'wgmma' : 'mma.sync'}${castOnce ? (BF16_PRODUCERS ? '' : ', casts not folded into producers') : ', a cast per GEMM'}${matmulAccumulate ? '' : ', adds kept'})` : matmulAccumulate ? ', adds folded' : ''}${ffn === 'moc' && MOC_MATMUL !== 'simt' ? `, MoC ${MOC_MATMUL}` : ''}${OPT_STATE === 'bf16' ? ', bf16 AdamW state' : OPT_STATE === 'bf16-params' ? ', bf16 params + AdamW state' : ''}${FUSE_LM_HEAD ? ', fused LM head' : ''}`;
  const m = loadModel(dir, { selection: ffn === 'dense' ? 'dense' : { k: K } });
  const g = trainingGraph(m.graph, { loss: { kind: 'cross_entropy' }, policy, ...(FUSE_LM_HEAD ? { fuseLmHead: true } : {}) });
  const weights = modelWeights(m);
  const plan = executorPlan(g, rows, { matmul: MATMUL, castOnce, bf16Producers: BF16_PRODUCERS, matmulAccumulate });
  // params (2 bytes an element for those a 'bf16-params' run stores bf16), m and v: the executor's and optimizer's allocations
  const { params: paramBytes, moments: momentBytes } = trainingStateBytes(g, { T: rows }, OPT_STATE);
  let planned = plan.arenaBytes + paramBytes + momentBytes;
  const c = counting(cudaTrainDevice());
  const timer = kernelTimer(c.dev, cuda);
  const free0 = free();
  let minFree = free0;
  const r: Record<string, unknown> = { label, ffn, policy, k: ffn === 'moc' ? K : null, matmul: MATMUL, gemm: MATMUL === 'bf16' ? (wgmma ? 'wgmma' : 'mma.sync') : 'simt', mocMatmul: MOC_MATMUL, castOnce: MATMUL === 'bf16' && castOnce, bf16Producers: MATMUL === 'bf16' && castOnce && BF16_PRODUCERS, matmulAccumulate, optimizerState: OPT_STATE, fuseLmHead: FUSE_LM_HEAD, batch: BATCH, seq: SEQ, rows, arenaBytes: plan.arenaBytes, paramBytes, momentBytes, plannedBytes: planned };
  try {
    const t0 = performance.now();
    // the step `mocc train --target cuda` runs (driver/trainer.ts over this runner), at a constant lr
    const runner = new CudaStepRunner(g, { weights, rows, weightDecay: 0.1, maxNorm: 1, stateDType: OPT_STATE }, timer.dev, { matmul: MATMUL, mocMatmul: MOC_MATMUL, castOnce, bf16Producers: BF16_PRODUCERS, matmulAccumulate });
    planned += runner.scratchBytes;
    Object.assign(r, { scratchBytes: runner.scratchBytes, plannedBytes: planned });
    if (runner.momentBytes !== momentBytes) throw new Error(`train: the optimizer allocated ${runner.momentBytes} bytes of moments, the plan counted ${momentBytes}`);
    minFree = Math.min(minFree, free());
    r.buildSeconds = (performance.now() - t0) / 1000;
    const sampler = new WindowSampler(randomTokens(m.spec.vocabSize), { batch: BATCH, seq: SEQ, seed: 1 });
    const step = () => {
      const b = sampler.next();
      const { loss, gradNorm } = runner.gradients({ [MODEL_INPUTS.tokens]: b.tokens, [MODEL_INPUTS.pos]: b.pos, [MODEL_INPUTS.seq]: b.seq, [TRAIN_INPUTS.targets]: b.targets }, rows);
      runner.update(LR);
      minFree = Math.min(minFree, free());
      return { loss, norm: gradNorm };
    };
    const warm = Array.from({ length: WARMUP }, step);
    const t = performance.now();
    const timed = Array.from({ length: STEPS }, step);
    const seconds = (performance.now() - t) / 1000;
    const measured = free0 - minFree;
    Object.assign(r, {
      allocatedBytes: c.live(), measuredPeakBytes: measured, measuredOverPlanned: measured / planned,
      stepSeconds: seconds / STEPS, tokensPerSecond: (rows * STEPS) / seconds, losses: [...warm, ...timed].map((s) => s.loss), gradNorms: [...warm, ...timed].map((s) => s.norm),
    });
    console.log(`  ${label.padEnd(28)} planned ${(planned / GiB).toFixed(2)} GiB (arena ${(plan.arenaBytes / GiB).toFixed(2)}), allocated ${(c.live() / GiB).toFixed(2)}, measured peak ${(measured / GiB).toFixed(2)} (${((100 * measured) / planned).toFixed(1)}% of planned); ${(seconds / STEPS).toFixed(3)} s a step, ${((rows * STEPS) / seconds).toFixed(0)} tok/s; losses ${(r.losses as number[]).map((l) => l.toFixed(3)).join(' ')}`);
    if (PROFILE) {
      timer.start();
      const t1 = performance.now();
      step();
      const wallMs = performance.now() - t1;
      const times = timer.stop();
      r.kernelTimes = { wallMs, families: times };
      console.log(`    one profiled step: ${wallMs.toFixed(1)} ms wall`);
      for (const line of formatKernelTimes(times)) console.log(line);
    }
    runner.dispose();
  } catch (e) {
    r.error = (e as Error).message;
    console.log(`  ${label.padEnd(28)} planned ${(planned / GiB).toFixed(2)} GiB (without scratch if the build failed): ${r.error}`);
  } finally {
    timer.dispose();
    c.freeAll();
    m.close?.();
  }
  results.push(r);
}
const device = cuda.device.name;
writeFileSync(outPath, JSON.stringify({ bench: 'train', device, batch: BATCH, seq: SEQ, steps: STEPS, warmup: WARMUP, lr: LR, results }, null, 2));
console.log(`train on ${device}: ${dir}, ${BATCH} x ${SEQ} tokens a step -> ${outPath}`);
