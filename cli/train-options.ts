// What `mocc train` and `mocc recover` share: the training flags, turning them into a TrainConfig,
// the memory budget check, the progress lines, and the loop with checkpoints and the final package.
import { Command, InvalidArgumentError, Option } from 'commander';
import { resolve } from 'node:path';
import type { LoadedModel } from '../driver/load.js';
import { runTraining } from '../driver/run-training.js';
import { checkTrainedOutput, writeTrainedPackage } from '../driver/save-trained.js';
import { trainerGraph, type Trainer, type TrainConfig } from '../driver/trainer.js';
import { TRAIN_GEMMS, TRAIN_TARGETS, type GradientTarget, type TrainGemm } from '../driver/gradient-backend.js';
import { CHECKPOINT_POLICIES, type CheckpointPolicy } from '../passes/checkpoint.js';
import type { LossSpec } from '../passes/loss.js';
import type { TrainingRecord } from '../src/package/manifest.js';
import { ADAMW_STATE_DTYPES, type AdamWStateDType } from '../src/train/adamw.js';
import { checkSeqFitsContext } from '../src/train/data.js';
import { UserError } from '../src/util/errors.js';
import { note, parseFloatArg, parseIntArg } from './common.js';
import { VERSION } from './version.js';
import { formatBytes } from '../src/util/format-bytes.js';

export interface TrainFlags {
  output: string;
  steps: number;
  batch: number;
  seq: number;
  lr: number;
  minLr?: number;
  warmup?: number;
  weightDecay: number;
  clip: number;
  ckpt?: CheckpointPolicy;
  trainable: string;
  seed: number;
  saveEvery: number;
  checkpointDir?: string;
  resume?: string;
  maxMemory?: number;
  dtype?: 'f32' | 'f16' | 'bf16';
  /** How AdamW stores m and v (src/train/adamw.ts stateDType); absent: f32. */
  optimizerState?: AdamWStateDType;
  /** --fuse-lm-head: the output projection fused with the cross-entropy loss (TrainConfig.fuseLmHead). */
  fuseLmHead?: boolean;
  force?: boolean;
  tokenizer?: string;
  target: string;
  /** --gemm: what the target's GEMMs multiply (GradientTarget.withGemm); absent: the target's default. */
  gemm?: TrainGemm;
}

/** Sizes such as 512MiB, 2GB, 1.5GiB or a plain number of bytes (commander's argument parser: InvalidArgumentError gives its one-line error). */
export function parseBytes(v: string): number {
  const m = /^\s*(\d+(?:\.\d+)?)\s*([kmgt]?i?b?)?\s*$/i.exec(v);
  if (!m) throw new InvalidArgumentError(`--max-memory must be a size such as 512MiB, 2GB or 1073741824, got '${v}'`);
  const unit = (m[2] ?? '').toLowerCase().replace(/b$/, '');
  const pow = { '': 0, k: 1, m: 2, g: 3, t: 4 }[unit.replace('i', '')] ?? 0;
  return Math.round(Number(m[1]) * (unit.includes('i') || unit === '' ? 1024 : 1000) ** pow);
}

export function addTrainOptions(cmd: Command, defaults: { steps: number; lr: number; seq: number }): Command {
  return cmd
    .requiredOption('-o, --output <dir>', 'package to write with the trained weights (written to a temporary name, renamed when complete)')
    .option('--steps <n>', 'optimizer steps', parseIntArg('--steps', 1), defaults.steps)
    .option('--batch <n>', 'sequences per step', parseIntArg('--batch', 1), 8)
    .option('--seq <n>', 'tokens per sequence (at most the model\'s context)', parseIntArg('--seq', 1), defaults.seq)
    .option('--lr <x>', 'peak learning rate (AdamW)', parseFloatArg('--lr', 0, 10), defaults.lr)
    .option('--min-lr <x>', 'learning rate at the end of the cosine decay (default lr/10)', parseFloatArg('--min-lr', 0, 10))
    .option('--warmup <n>', 'steps of linear warm-up (default steps/10, at most 100)', parseIntArg('--warmup', 0))
    .option('--weight-decay <x>', 'AdamW decoupled weight decay (matrices only, not norms)', parseFloatArg('--weight-decay', 0, 1), 0.1)
    .option('--clip <x>', 'clip the global gradient norm to this (0: no clipping)', parseFloatArg('--clip', 0, 1e9), 1)
    .addOption(new Option('--ckpt <policy>', 'what the backward saves or recomputes (default: moc-gcp for MoC models, gcp for dense)').choices(CHECKPOINT_POLICIES as string[]))
    .option('--trainable <spec>', 'which parameters train: all, ffn, or globs over names such as \'layers.*.w_up,norm\'', 'all')
    .option('--seed <n>', 'seed of the data order (the same seed and options give bit-identical weights)', parseIntArg('--seed'), 0)
    .option('--save-every <n>', 'write a checkpoint every n steps (weights, optimizer, data position) into --checkpoint-dir', parseIntArg('--save-every', 0), 0)
    .option('--checkpoint-dir <dir>', 'where checkpoints go (default: <output>.ckpt)')
    .option('--resume <dir>', 'continue from a checkpoint directory (same options): bit-exact, as if never stopped')
    .option('--max-memory <size>', 'refuse to start when one step plans more than this (e.g. 2GiB): its activations on --target ref; on --target cuda the device memory (the arena of activations and gradients, the weights and AdamW state)', parseBytes)
    .addOption(new Option('--dtype <type>', 'stored weight type of the output (default f32, the master weights)').choices(['f32', 'f16', 'bf16']))
    .addOption(new Option('--optimizer-state <type>', 'how AdamW stores its moments m and v: f32, bf16 (rounded to nearest even after each update, half the memory; the weights stay f32), or bf16-params (the weight matrices bf16 GEMMs read stored bf16 too; --target cuda needs --gemm bf16); a checkpoint resumes only with the same').choices([...ADAMW_STATE_DTYPES]).default('f32'))
    .option('--tokenizer <file>', 'tokenizer to use instead of the one found with the model')
    .option('--target <name>', `where the loss and gradients are computed: ${[...TRAIN_TARGETS.keys()].join(', ')} (cuda: the CUDA training executor, clipping and AdamW on the GPU; its GEMMs f32, or bf16 with --gemm bf16); checkpoints resume on either`, 'ref')
    .addOption(new Option('--gemm <type>', 'what --target cuda\'s matrix products multiply: f32 (SIMT cores; the ref target\'s arithmetic up to f32 rounding) or bf16 (tensor cores, f32 accumulation and f32 master weights, as PyTorch\'s bf16 autocast; MoC\'s products as dense GEMMs around the kept channels; speed figures in bench/NOTES.md); default f32').choices([...TRAIN_GEMMS]))
    .option('--force', 'replace the output package if it exists');
}

export function trainConfig(f: TrainFlags, model: LoadedModel, loss: LossSpec): TrainConfig {
  const isMoc = model.graph.nodes.some((n) => n.op === 'moc_select');
  checkSeqFitsContext(f.seq, model.spec.maxSeqLen);
  if (f.fuseLmHead && loss.kind !== 'cross_entropy') throw new UserError(`--fuse-lm-head fuses the output projection with next-token cross-entropy (mocc train); this run's loss is ${loss.kind}`);
  return {
    steps: f.steps, batch: f.batch, seq: f.seq, lr: f.lr, minLr: f.minLr ?? f.lr / 10, warmup: f.warmup ?? Math.min(100, Math.floor(f.steps / 10)),
    weightDecay: f.weightDecay, clip: f.clip, policy: f.ckpt ?? (isMoc ? 'moc-gcp' : 'gcp'), trainable: f.trainable, seed: f.seed, loss,
    optimizerState: f.optimizerState ?? 'f32',
    ...(f.fuseLmHead ? { fuseLmHead: true } : {}),
  };
}

/**
 * Builds the training graph (refusing a --ckpt or --trainable that does not fit the model), refuses a
 * graph or a machine the --target cannot train on, and a step whose planned activation bytes exceed
 * --max-memory: before any data is read or generated.
 */
export function checkTrainingPlan(model: LoadedModel, cfg: TrainConfig, maxMemory: number | undefined, target: GradientTarget): void {
  const graph = trainerGraph(model.graph, cfg);
  // the plan first: pure arithmetic, refused before the target opens its device
  if (maxMemory !== undefined) {
    const plan = target.plannedStepBytes(graph, cfg.batch * cfg.seq, cfg.optimizerState);
    if (plan.bytes > maxMemory) {
      throw new UserError(`one step of --batch ${cfg.batch} --seq ${cfg.seq} plans ${formatBytes(plan.bytes)} ${plan.what}, above --max-memory ${formatBytes(maxMemory)}; lower --batch or --seq, or save less with --ckpt moc-gcp-attn (gcp-attn for a dense model)`);
    }
  }
  target.check(graph, cfg.optimizerState);
}

const fmtTime = (s: number) => (s >= 3600 ? `${Math.floor(s / 3600)}h${String(Math.floor((s % 3600) / 60)).padStart(2, '0')}m` : s >= 60 ? `${Math.floor(s / 60)}m${String(Math.round(s % 60)).padStart(2, '0')}s` : `${s.toFixed(0)}s`);

/**
 * Runs the loop with progress on stderr (a line per step on a terminal, about 20 lines otherwise),
 * then writes the package. Returns the record stored in its manifest.
 */
export async function trainAndSave(trainer: Trainer, model: LoadedModel, f: TrainFlags, record: Omit<TrainingRecord, 'steps' | 'tokens' | 'finalLoss' | 'policy' | 'trainable' | 'batch' | 'seq' | 'lr' | 'seed' | 'date' | 'loss' | 'temperature'>, otherInputs: string[], extra: { rng?: () => unknown; onResume?: (rng: unknown, step: number) => void; finalEval?: (weights: Map<string, Float32Array>) => number | undefined } = {}): Promise<TrainingRecord> {
  const checkpointDir = f.checkpointDir ?? `${f.output.replace(/\/+$/, '')}.ckpt`;
  checkTrainedOutput(model, f.output, { force: f.force ?? false, otherInputs });
  if (f.saveEvery > 0 && resolve(checkpointDir) === resolve(f.output)) throw new UserError('--checkpoint-dir must differ from the output package');
  const cfg = trainer.config;
  const every = process.stderr.isTTY ? 1 : Math.max(1, Math.round(cfg.steps / 20));
  let startStep = 0;
  // Ctrl-C: finish the step under way, then stop without writing the package (checkpoints stay);
  // a second Ctrl-C stops at once.
  let interrupted = false;
  const onSigint = () => {
    if (interrupted) process.exit(130);
    interrupted = true;
    process.stderr.write('\nstopping after this step (Ctrl-C again to stop at once)\n');
  };
  process.on('SIGINT', onSigint);
  const result = await runTraining(trainer, {
    shouldStop: () => interrupted,
    saveEvery: f.saveEvery, checkpointDir, ...(f.resume ? { resume: f.resume } : {}),
    ...(extra.rng ? { rng: extra.rng } : {}),
    onResume(rng, step) {
      startStep = step;
      extra.onResume?.(rng, step);
    },
    // after a --resume checkpoint was accepted, so that a refused one gives only its one-line error
    onStart() {
      const memory = trainer.stepMemory();
      process.stderr.write(`training ${model.source}: ${cfg.steps} steps of ${cfg.batch}×${cfg.seq} tokens, ${cfg.loss.kind === 'kl_div' ? `KL to the teacher (τ ${cfg.loss.temperature})` : 'next-token cross-entropy'}, policy ${cfg.policy}, trainable ${cfg.trainable}; target ${trainer.target}, ${memory.what} ${formatBytes(memory.bytes)} per step${cfg.optimizerState === 'bf16' ? '; AdamW moments bf16' : cfg.optimizerState === 'bf16-params' ? '; weight matrices and AdamW moments bf16 (--optimizer-state bf16-params)' : ''}${cfg.fuseLmHead ? '; output projection fused with the loss' : ''}\n`);
      if (f.resume) process.stderr.write(`resumed from ${f.resume} at step ${startStep}\n`);
    },
    onStep(r, ms) {
      if (r.step % every !== 0 && r.step !== cfg.steps) return;
      const done = r.step - startStep;
      const tps = ((done * r.tokens) / ms) * 1000;
      const eta = ((cfg.steps - r.step) * (ms / done)) / 1000;
      process.stderr.write(`step ${r.step}/${cfg.steps}  loss ${r.loss.toFixed(4)}  lr ${r.lr.toExponential(2)}  |g| ${r.gradNorm.toFixed(3)}  ${tps.toFixed(0)} tok/s  ETA ${fmtTime(eta)}\n`);
    },
    onCheckpoint: (path) => process.stderr.write(`checkpoint ${path}\n`),
  });
  process.off('SIGINT', onSigint);
  if (result.stopped) {
    const last = f.saveEvery > 0 ? Math.floor(trainer.step / f.saveEvery) * f.saveEvery : 0;
    process.stderr.write(`mocc: interrupted at step ${trainer.step}; nothing written to ${f.output}${last > 0 ? `; the last checkpoint (step ${last}) is in ${checkpointDir}: run the same command with --resume ${checkpointDir}` : ' (use --save-every N to keep checkpoints)'}\n`);
    process.exit(130); // as a shell reports Ctrl-C
  }
  const tail = result.losses.slice(-Math.max(1, Math.min(10, result.losses.length)));
  const evalNll = extra.finalEval?.(trainer.weights);
  const full: TrainingRecord = {
    command: record.command, steps: cfg.steps, tokens: cfg.steps * cfg.batch * cfg.seq,
    finalLoss: tail.length ? tail.reduce((s, x) => s + x, 0) / tail.length : NaN,
    loss: cfg.loss.kind, ...(cfg.loss.kind === 'kl_div' ? { temperature: cfg.loss.temperature } : {}),
    policy: cfg.policy, trainable: cfg.trainable, batch: cfg.batch, seq: cfg.seq, lr: cfg.lr, seed: cfg.seed,
    ...(record.data ? { data: record.data } : {}), ...(record.teacher ? { teacher: record.teacher } : {}),
    ...(evalNll !== undefined ? { evalNll } : {}), date: new Date().toISOString(),
  };
  if (!result.losses.length) note('the checkpoint was already at the last step; writing its weights');
  await writeTrainedPackage(model, trainer.weights, f.output, { record: full, ...(f.dtype ? { dtype: f.dtype } : {}), force: f.force ?? false, version: VERSION, otherInputs });
  process.stderr.write(`wrote ${f.output}: ${cfg.steps} steps, final loss ${full.finalLoss.toFixed(4)}${evalNll !== undefined ? `, eval NLL ${evalNll.toFixed(4)}` : ''}\n`);
  return full;
}
