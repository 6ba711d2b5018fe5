// The training loop around a Trainer: steps until the configured count, a checkpoint every N steps
// (src/train/train-state.ts: atomic, so a killed run loses at most N steps), resuming from one, and a
// report after each step. Yields to the event loop between steps so signals and output get through.
import { loadTrainState, saveTrainState } from '../src/train/train-state.js';
import { UserError } from '../src/util/errors.js';
import type { StepResult, Trainer } from './trainer.js';

export interface LoopOptions {
  /** Write a checkpoint into checkpointDir every this many steps (0: never). */
  saveEvery: number;
  checkpointDir?: string;
  /** A checkpoint directory (or step folder) to continue from. */
  resume?: string;
  /** Called once the run can start (after a resume's checkpoint was read and accepted), before the first step. */
  onStart?(): void;
  /** Checked after each step: true ends the loop early (e.g. on Ctrl-C); the result says so. */
  shouldStop?(): boolean;
  onStep?(r: StepResult, elapsedMs: number): void;
  onCheckpoint?(path: string, step: number): void;
  /** Extra state to store with each checkpoint (e.g. a generator's), and to get back on resume. */
  rng?: () => unknown;
  onResume?(rng: unknown, step: number): void;
}

export interface LoopResult {
  /** The losses of the steps this process ran (not those before a resume). */
  losses: number[];
  /** Ended by shouldStop before the last step. */
  stopped: boolean;
  tokens: number;
}

export async function runTraining(trainer: Trainer, opts: LoopOptions): Promise<LoopResult> {
  if (opts.saveEvery > 0 && !opts.checkpointDir) throw new Error('runTraining: saveEvery needs a checkpointDir');
  if (opts.resume) {
    const st = await loadTrainState(opts.resume);
    if (st.step > trainer.config.steps) throw new UserError(`the checkpoint is at step ${st.step}, past this run's --steps ${trainer.config.steps}`);
    trainer.restore(st);
    opts.onResume?.(st.rng, st.step);
  }
  opts.onStart?.();
  const t0 = performance.now();
  const losses: number[] = [];
  let tokens = 0;
  let stopped = false;
  while (trainer.step < trainer.config.steps) {
    if (opts.shouldStop?.()) {
      stopped = true;
      break;
    }
    const r = trainer.trainStep();
    losses.push(r.loss);
    tokens += r.tokens;
    opts.onStep?.(r, performance.now() - t0);
    if (opts.saveEvery > 0 && r.step % opts.saveEvery === 0 && r.step < trainer.config.steps) {
      const path = await saveTrainState(opts.checkpointDir!, trainer.state({ rng: opts.rng?.() ?? null }));
      opts.onCheckpoint?.(path, r.step);
    }
    await new Promise((resolve) => setImmediate(resolve));
  }
  return { losses, tokens, stopped };
}
