// src/train/adamw.ts's bf16 moment storage against PyTorch: bench/gpu/check_adamw_bf16_state.py
// recomputes each of our steps in torch f32 ops with m, v rounded through torch.bfloat16 (torch has no
// stock AdamW of f32 parameters with bf16 moments; the script's docstring says what it computes and
// the bound). Our host AdamW runs 5 steps over random tensors of awkward sizes; the script gets the
// state before and after each step (test/helpers/torch-adamw.ts). Needs python3 with torch; without it
// the test is skipped.
import { AdamW } from '../../src/train/adamw.js';
import { rng, randomFrom } from '../helpers/random.js';
import { ADAMW_CHECK_PARAMS, checkStepsWithTorch, elements, torchTest } from '../helpers/torch-adamw.js';

torchTest('AdamW with bf16 moments: 5 host steps agree with torch f32 arithmetic + bf16 rounding (check_adamw_bf16_state.py)', (t) => {
  const r = rng(7);
  const opt = new AdamW(ADAMW_CHECK_PARAMS.map((p) => ({ name: p.name, size: elements(p.shape), shape: p.shape })), { stateDType: 'bf16' });
  const weights = new Map(ADAMW_CHECK_PARAMS.map((p) => [p.name, randomFrom(elements(p.shape), r, 1.5)]));
  checkStepsWithTorch(t, r, opt, weights, 'check_adamw_bf16_state.py');
});
