// The CUDA training executor with passes/bf16-producers.ts on and off (TrainingExecutorOptions
// bf16Producers), bf16 GEMMs, run end to end on the CPU: every kernel interpreted except gemm.ts's
// tensor-core GEMMs, which host-gemm-device.ts computes from the same device bytes (a model of what
// gemm.ts reads, padding included). The tiny LLaMA (widths not multiples of 8, so rows have
// padding), dense and as MoC with dense MoC GEMMs; the oracle is the same executor with the casts
// kept: loss and every gradient bit-identical, with a cast launch fewer per cast folded and the
// producers launching their bf16 variants. The arena is poisoned with 0x3f807fc1 before each run: an
// f32 ≈ 1.0039 (finite padding, as the executor assumes) whose low half word is a bf16 NaN, so a bf16
// value's padding a producer left unwritten would turn GEMM results NaN.
// The op table and the executor's entries: every op that may write bf16 has a bf16-output entry.
// On a GPU: stories260K with the real GEMMs, on and off, bit for bit.
import test from 'ava';
import { trainingGraph } from '../../driver/training-graph.js';
import { bf16ProducerValues } from '../../passes/bf16-producers.js';
import { BF16_OUTPUT_OPS } from '../../src/ir/ops.js';
import type { CheckpointPolicy } from '../../passes/checkpoint.js';
import { CudaTrainingExecutor, executorGraph, type TrainingExecutorOptions } from '../../targets/cuda/train/executor.js';
import { TRAIN_OPS } from '../../targets/cuda/train/ops.js';
import { trainBf16ProducersFromEnv } from '../../targets/cuda/train/ops-bf16.js';
import type { Kernel } from '../../targets/cuda/ptx/dense.js';
import { hostGemmDevice } from '../helpers/host-gemm-device.js';
import { batch, randomWeights, TINY } from '../helpers/train-tiny-model.js';
import { checkpointGraph } from '../../driver/load.js';
import { sameBits } from '../helpers/pass-checks.js';
import { gpuSwitchKeepsBits } from '../helpers/stories-training.js';

const POISON_BF16_NAN_LOW = 0x3f807fc1;

test('every op that may write bf16 (BF16_OUTPUT_OPS) has a CUDA entry that writes it; MOCC_CUDA_TRAIN_BF16_PRODUCERS', (t) => {
  for (const op of BF16_OUTPUT_OPS) t.true(TRAIN_OPS[op]?.bf16Output, op);
  t.true(TRAIN_OPS.cast?.bf16Output);
  t.false(Boolean(TRAIN_OPS.silu?.bf16Output), 'an op without a bf16 kernel says so');
  t.true(trainBf16ProducersFromEnv({}));
  t.true(trainBf16ProducersFromEnv({ MOCC_CUDA_TRAIN_BF16_PRODUCERS: '1' }));
  t.false(trainBf16ProducersFromEnv({ MOCC_CUDA_TRAIN_BF16_PRODUCERS: '0' }));
  t.throws(() => trainBf16ProducersFromEnv({ MOCC_CUDA_TRAIN_BF16_PRODUCERS: 'yes' }), { message: /expected 0 or 1/ });
});

// The tiny model's folded widths (d 24, q 24, k 12) are multiples of 8; the narrow variant's are not
// (d 20, k 6: rmsnorm's and rope_grad's bf16 rows have padding; the vocabulary's 40 has none, so
// cross_entropy_grad's padding is cuda-train-bf16-out.test.ts's; MoC's F = 36 has).
const NARROW = { ...TINY, dim: 20, nKvHeads: 1 };
const CASES: Array<[string, typeof TINY, 'dense' | { k: number }, CheckpointPolicy, TrainingExecutorOptions]> = [
  ['2-layer LLaMA dense, gcp', { ...TINY, nLayers: 2 }, 'dense', 'gcp', { matmul: 'bf16' }],
  ['1-layer LLaMA (d 20, one kv head) dense, none', { ...NARROW, nLayers: 1 }, 'dense', 'none', { matmul: 'bf16' }],
  ['1-layer LLaMA MoC K = 12 of 36, moc-gcp, dense MoC GEMMs', { ...TINY, nLayers: 1 }, { k: 12 }, 'moc-gcp', { matmul: 'bf16', mocMatmul: 'dense-bf16' }],
];

for (const [what, spec, selection, policy, opts] of CASES) {
  test(`interpreted (host GEMMs): tiny ${what}: loss and gradients bit-identical with bf16 producers on and off`, (t) => {
    const g = trainingGraph(checkpointGraph(spec, () => 'f32', selection), { loss: { kind: 'cross_entropy' }, policy });
    const weights = randomWeights(g, 7), inputs = batch([7, 5], TINY.vocabSize, 11), T = 12;
    const folded = bf16ProducerValues(executorGraph(g, { ...opts, bf16Producers: false }));
    const casts = [...folded.values()].reduce((s, c) => s + c.length, 0);
    t.true(folded.size > 0, 'something to fold');
    const run = (bf16Producers: boolean) => {
      const dev = hostGemmDevice(16 << 20);
      const names: string[] = [];
      const ex = new CudaTrainingExecutor(g, weights, T, { ...dev, launch: (k: Kernel, ...rest) => (names.push(k.name), dev.launch(k, ...rest)) }, { ...opts, bf16Producers, poison: POISON_BF16_NAN_LOW });
      try {
        return { outputs: ex.run(inputs).outputs, names, gemms: dev.gemms };
      } finally {
        ex.dispose();
      }
    };
    const off = run(false), on = run(true);
    t.true(off.gemms > 0 && on.gemms === off.gemms, `${off.gemms} host GEMMs each way`);
    t.true(Number.isFinite(off.outputs[0]![0]!), `loss ${off.outputs[0]![0]}`);
    sameBits(t, on.outputs, off.outputs, g.outputs);
    const count = (names: string[], re: RegExp) => names.filter((n) => re.test(n)).length;
    t.is(count(off.names, /^cast_bf16_w\d+$/) - count(on.names, /^cast_bf16_w\d+$/), casts, 'a cast launch fewer per cast folded');
    t.is(off.names.length - on.names.length, casts, 'nothing else changes in number');
    const bf16Kernels = on.names.filter((n) => /^(rmsnorm_rows|rope_grad|moc_scatter|ce_grad).*bf16$/.test(n));
    t.true(bf16Kernels.length >= folded.size, `${bf16Kernels.length} bf16-output producer launches for ${folded.size} values`);
    t.log(`${folded.size} producers write bf16, ${casts} casts gone; ${[...new Set(bf16Kernels)].join(', ')}; loss ${on.outputs[0]![0]}`);
  });
}

// On a GPU (skipped without one): stories260K, the real GEMMs (wgmma on Hopper), bit-identical on and off.
gpuSwitchKeepsBits((what) => `GPU: stories260K ${what}, T = 45: loss and gradients bit-identical with bf16 producers on and off`, [
  ['dense, gcp', 'dense', 'gcp', { matmul: 'bf16' }],
  ['MoC K = 32, moc-gcp, dense MoC GEMMs', { k: 32 }, 'moc-gcp', { matmul: 'bf16', mocMatmul: 'dense-bf16' }],
], 'bf16Producers');
