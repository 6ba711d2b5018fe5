// fixtures/train/adamw-reference.json (fixtures/gen/make_adamw_reference.py): a few steps of PyTorch's
// clip_grad_norm_ + torch.optim.AdamW, read by the host AdamW's test and the CUDA kernels' test.
import { readFileSync } from 'node:fs';
import { ROOT } from './fixtures.js';

export interface AdamWFixture {
  settings: { lr: number; minLr: number; warmup: number; steps: number; run_steps: number; beta1: number; beta2: number; eps: number; weightDecay: number; maxNorm: number };
  params: Array<{ name: string; shape: number[]; decays: boolean }>;
  initial: Record<string, number[]>;
  grads: Array<Record<string, number[]>>;
  lrs: number[];
  norms: number[];
  final: Record<string, number[]>;
  exp_avg: Record<string, number[]>;
  exp_avg_sq: Record<string, number[]>;
  step: number[];
}

export const readAdamWFixture = (): AdamWFixture => JSON.parse(readFileSync(`${ROOT}fixtures/train/adamw-reference.json`, 'utf8')) as AdamWFixture;
