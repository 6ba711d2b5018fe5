// The learning-rate schedule: linear warm-up, then cosine decay, exactly as llama2.c's train.py get_lr
// (nanoGPT's before 2024). With s the number of optimizer steps already taken (0 for the first step):
//   s < warmup:              lr · s / warmup
//   s ≥ steps:               minLr
//   otherwise:               minLr + ½(1 + cos(π · (s − warmup) / (steps − warmup))) · (lr − minLr)
// As in llama2.c the first step's rate is 0 when warmup > 0. llama2.c returns minLr only for s > steps;
// at s = steps its cosine branch gives cos(π) = −1 and so minLr too, except when steps = warmup, where
// it divides by zero; here s ≥ steps gives minLr, so that case is defined.
import { UserError } from '../util/errors.js';

export interface LrSchedule {
  /** The peak rate, reached at the end of warm-up. */
  lr: number;
  /** The rate at `steps` and after. */
  minLr: number;
  /** Steps of linear warm-up from 0. */
  warmup: number;
  /** The step at which the cosine decay reaches minLr (llama2.c's lr_decay_iters). */
  steps: number;
}

/** Refuses a schedule that the formula above cannot take (the values come from command-line flags). */
export function checkSchedule(s: LrSchedule): void {
  if (!Number.isFinite(s.lr) || s.lr < 0) throw new UserError(`learning rate ${s.lr} must be a finite number ≥ 0`);
  if (!Number.isFinite(s.minLr) || s.minLr < 0 || s.minLr > s.lr) throw new UserError(`minimum learning rate ${s.minLr} must lie between 0 and the learning rate ${s.lr}`);
  if (!Number.isSafeInteger(s.warmup) || s.warmup < 0) throw new UserError(`warm-up ${s.warmup} must be a whole number of steps ≥ 0`);
  if (!Number.isSafeInteger(s.steps) || s.steps < 0) throw new UserError(`step count ${s.steps} must be a whole number ≥ 0`);
}

/** The learning rate for the step taken after `step` steps (see the formula at the top of this file). */
export function learningRate(step: number, s: LrSchedule): number {
  if (!Number.isSafeInteger(step) || step < 0) throw new Error(`learningRate: step ${step} is not an integer ≥ 0`);
  if (step < s.warmup) return (s.lr * step) / s.warmup;
  if (step >= s.steps) return s.minLr;
  const ratio = (step - s.warmup) / (s.steps - s.warmup);
  const coeff = 0.5 * (1.0 + Math.cos(Math.PI * ratio));
  return s.minLr + coeff * (s.lr - s.minLr);
}
