// Training: a model's training graph (driver/training-graph.ts) run step by step over float32 master
// weights, its loss and gradients computed by a gradient backend (driver/gradient-backend.ts: ref or
// cuda), then global-norm clipping and AdamW at a warm-up + cosine schedule (src/train/). Where the
// weights, gradients and moments live and where clipping and AdamW run is a step runner's business
// (driver/step-runner.ts): on the host for ref, on the GPU for cuda, where a step downloads only the
// loss and the norm. The loop, schedule, divergence check and checkpoints are this file's, for both.
// Deterministic: the same model, data, options and seed give bit-identical weights, and
// a run restored from a checkpoint (state() → restore()) continues exactly as if never stopped —
// everything a step depends on is in the state: weights, moments, step, the sampler's generator.
import type { Graph } from '../src/ir/types.js';
import { TRAIN_INPUTS, MODEL_INPUTS } from '../src/model/graph-inputs.js';
import { mocSummary } from '../src/package/moc-summary.js';
import type { RunnableModel } from '../src/model/runnable.js';
import { modelWeights } from './evaluate.js';
import { checkSeqFitsContext, WindowSampler, type SamplerState, type TokenBatch, type TokenData } from '../src/train/data.js';
import { checkSchedule, learningRate } from '../src/train/schedule.js';
import type { TrainState } from '../src/train/train-state.js';
import type { AdamWStateDType } from '../src/train/adamw.js';
import { UserError } from '../src/util/errors.js';
import type { CheckpointPolicy } from '../passes/checkpoint.js';
import type { LossSpec } from '../passes/loss.js';
import { planMemory } from '../passes/memory-plan.js';
import { refGradients, type GradientBackend, type GradientTarget } from './gradient-backend.js';
import { hostStepRunner, type StepRunner } from './step-runner.js';
import { trainingGraph } from './training-graph.js';

/** Everything that decides a run's result; stored in its checkpoints and compared on resume. */
export interface TrainConfig {
  steps: number;
  batch: number;
  seq: number;
  lr: number;
  minLr: number;
  warmup: number;
  weightDecay: number;
  /** Global gradient-norm limit (0: no clipping). */
  clip: number;
  policy: CheckpointPolicy;
  trainable: string;
  seed: number;
  loss: LossSpec;
  /**
   * How AdamW stores its moments (src/train/adamw.ts stateDType); absent: 'f32'. Compared on resume
   * like every other field (a checkpoint from before this option has f32 moments): a run does not
   * resume with the other mode, since it would then match neither an f32 nor a bf16 run.
   */
  optimizerState?: AdamWStateDType;
  /**
   * Cross-entropy only: the output projection fused with the loss in row blocks (trainingGraph's
   * fuseLmHead: the [T, V] logits never exist whole); absent: false. On ref the weights are bit-identical
   * either way; on cuda dW's sum is blocked, so it is compared on resume like the rest.
   */
  fuseLmHead?: boolean;
}

/** The training graph a Trainer runs for this config (also built alone to check a run before any data is read). */
export function trainerGraph(model: Graph, config: TrainConfig): Graph {
  return trainingGraph(model, { loss: config.loss, policy: config.policy, trainable: config.trainable, ...(config.fuseLmHead ? { fuseLmHead: true } : {}) });
}

/** Planned peak activation bytes of one step of this training graph (passes/memory-plan.ts). */
export function plannedPeakBytes(graph: Graph, config: Pick<TrainConfig, 'batch' | 'seq'>): number {
  return planMemory(graph, { T: config.batch * config.seq }).peakBytes;
}

/** Teacher logits [rows, V] for a batch (distillation: `mocc recover`). */
export type TeacherLogits = (batch: TokenBatch) => Float32Array;

export interface StepResult {
  step: number;
  loss: number;
  /** Global gradient norm before clipping. */
  gradNorm: number;
  lr: number;
  tokens: number;
}

export class Trainer {
  readonly graph: Graph;
  /** The master weights on the host: every param of the model (the runner's, copied in by `weights` when they live on a device). */
  private readonly hostWeights: Map<string, Float32Array>;
  /** Whether the runner's weights may have moved since hostWeights last saw them (any step begun since; a device runner's then differ). */
  private hostStale = false;
  /** Holds the weights, gradients and AdamW state and takes the two halves of each step (driver/step-runner.ts). */
  private readonly runner: StepRunner;
  private sampler: WindowSampler;
  private stepsDone = 0;
  /** Which FFN channels the model keeps (dense, or K per layer): stored in checkpoints, so a resume with other --k is refused. */
  private readonly moc: ReturnType<typeof mocSummary>;
  /** Computes each step's loss and gradients; not part of the state, so a checkpoint resumes on any target. */
  private readonly gradients: GradientBackend;
  /** The gradient target's name (ref, cuda). */
  readonly target: string;

  constructor(model: RunnableModel, private readonly data: TokenData, readonly config: TrainConfig, private readonly teacher?: TeacherLogits, target: GradientTarget = refGradients) {
    checkSchedule({ lr: config.lr, minLr: config.minLr, warmup: config.warmup, steps: config.steps });
    checkSeqFitsContext(config.seq, model.spec.maxSeqLen);
    if (config.loss.kind === 'kl_div' && !teacher) throw new Error('a distillation loss needs teacher logits');
    this.moc = mocSummary(model.graph, model.spec);
    this.graph = trainerGraph(model.graph, config);
    this.hostWeights = modelWeights(model);
    this.sampler = new WindowSampler(data, { batch: config.batch, seq: config.seq, seed: config.seed });
    this.target = target.name;
    target.check(this.graph, config.optimizerState);
    this.gradients = target.create(this.graph);
    const init = { weights: this.hostWeights, rows: config.batch * config.seq, weightDecay: config.weightDecay, maxNorm: config.clip, stateDType: config.optimizerState ?? 'f32' };
    try {
      this.runner = this.gradients.deviceTraining?.(init) ?? hostStepRunner(this.gradients, this.graph, init);
    } catch (e) {
      this.gradients.dispose();
      throw e;
    }
  }

  /**
   * The current master weights, every param of the model. On the host runner these are the arrays the
   * optimizer updates; on a device runner a copy downloaded when a step has changed them since the
   * last call (changing it trains nothing: restore() is how weights go in).
   */
  get weights(): Map<string, Float32Array> {
    if (this.hostStale) {
      for (const [name, w] of this.runner.weights()) {
        const h = this.hostWeights.get(name);
        if (h && h !== w) h.set(w);
      }
      this.hostStale = false;
    }
    return this.hostWeights;
  }

  get step(): number {
    return this.stepsDone;
  }

  plannedPeakBytes(): number {
    return plannedPeakBytes(this.graph, this.config);
  }

  /** The bytes one step takes on this trainer's target, and what that number is (ref: the planned peak activations; cuda: the executor's arena). */
  stepMemory(): { bytes: number; what: string } {
    return this.gradients.stepMemory(this.config.batch * this.config.seq);
  }

  /** Frees what the target holds (device memory). */
  dispose(): void {
    this.runner.dispose();
    this.gradients.dispose();
  }

  /** One optimizer step on the next batch. */
  trainStep(): StepResult {
    const batch = this.sampler.next();
    const rows = batch.tokens.length;
    const inputs = {
      [MODEL_INPUTS.tokens]: batch.tokens, [MODEL_INPUTS.pos]: batch.pos, [MODEL_INPUTS.seq]: batch.seq, [TRAIN_INPUTS.targets]: batch.targets,
      ...(this.config.loss.kind === 'kl_div' ? { [TRAIN_INPUTS.teacher]: this.teacher!(batch) } : {}),
    };
    this.hostStale = true; // from here on, read the weights back from the runner (a diverged step too: what it left is what counts)
    const { loss, gradNorm } = this.runner.gradients(inputs, rows);
    if (!Number.isFinite(loss) || (this.config.clip > 0 && !Number.isFinite(gradNorm))) {
      throw new UserError(`training diverged at step ${this.stepsDone + 1}: loss ${loss}, gradient norm ${gradNorm} (lower --lr, or keep --clip on)`);
    }
    const lr = learningRate(this.stepsDone, { lr: this.config.lr, minLr: this.config.minLr, warmup: this.config.warmup, steps: this.config.steps });
    this.runner.update(lr);
    this.stepsDone++;
    return { step: this.stepsDone, loss, gradNorm, lr, tokens: rows };
  }

  /** Everything a checkpoint needs to continue bit-exactly (copies: training may go on). */
  state(extra: { rng?: unknown } = {}): TrainState {
    return {
      step: this.stepsDone,
      weights: new Map([...this.weights].map(([k, v]) => [k, v.slice()])),
      optimizer: this.runner.optimizerState(),
      sampler: this.sampler.state(),
      rng: extra.rng ?? null,
      options: { ...this.config, moc: this.moc },
    };
  }

  /** Continues from a checkpoint of a run with the same configuration and data. */
  restore(st: TrainState): void {
    const saved = st.options as TrainConfig & { moc?: unknown };
    if (JSON.stringify(saved?.moc) !== JSON.stringify(this.moc)) {
      const k = (m: unknown) => { const s = m as typeof this.moc | undefined; return s ? (s.mode === 'dense' ? 'dense' : s.pattern ? `pattern ${s.pattern}` : `K ${s.perLayerK.join(',')}`) : 'unknown'; };
      throw new UserError(`the checkpoint was made for a model with other FFN channels kept (${k(saved?.moc)} there, ${k(this.moc)} now); resume with the same model and --k/--k-ratio/--pattern`);
    }
    // the moments' dtype defaults to f32 and the head to unfused on both sides (checkpoints and configs from before the options)
    const withDefaults = (c: Partial<TrainConfig> | undefined) => ({ ...c, optimizerState: c?.optimizerState ?? 'f32', fuseLmHead: c?.fuseLmHead ?? false }) as Partial<TrainConfig>;
    const was = withDefaults(saved), now = withDefaults(this.config);
    const differs = (Object.keys(now) as (keyof TrainConfig)[]).filter((k) => JSON.stringify(was[k]) !== JSON.stringify(now[k]));
    if (differs.length) throw new UserError(`the checkpoint was made with different ${differs.map((k) => `--${k} (${JSON.stringify(was[k])} there, ${JSON.stringify(now[k])} now)`).join(', ')}; resume with the same options`);
    for (const [name, w] of this.hostWeights) {
      const s = st.weights.get(name);
      if (!s || s.length !== w.length) throw new UserError(`the checkpoint does not hold weight ${name} of this model (${s ? `${s.length} values, not ${w.length}` : 'missing'})`);
    }
    for (const [name, w] of this.hostWeights) w.set(st.weights.get(name)!);
    this.runner.load(this.hostWeights, st.optimizer);
    this.hostStale = false;
    this.sampler = WindowSampler.restore(this.data, { batch: this.config.batch, seq: this.config.seq, seed: this.config.seed }, st.sampler as SamplerState);
    this.stepsDone = st.step;
  }
}
