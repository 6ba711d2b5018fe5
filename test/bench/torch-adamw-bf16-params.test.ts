// src/train/adamw.ts's 'bf16-params' mode against PyTorch: bench/gpu/check_adamw_bf16_params.py
// recomputes each of our steps (1) as the rule in torch f32 ops and (2) with torch's fused AdamW on
// bf16 tensors (what bench/gpu/torch_train.py trains with); its docstring says what each computes and
// the bounds. Our host AdamW runs 5 steps over random tensors of awkward sizes (two bf16 matrices, one
// f32 vector); the script gets the state before and after each step (test/helpers/torch-adamw.ts).
// Needs python3 with torch; without it the test is skipped.
import { AdamW, roundBf16Params } from '../../src/train/adamw.js';
import { rng, randomFrom } from '../helpers/random.js';
import { ADAMW_CHECK_PARAMS, checkStepsWithTorch, elements, torchTest } from '../helpers/torch-adamw.js';

torchTest('AdamW with bf16 params: 5 host steps agree with torch f32 arithmetic + bf16 rounding and with torch fused AdamW on bf16 (check_adamw_bf16_params.py)', (t) => {
  const r = rng(7);
  const BF16 = new Set(['w', 'one']);
  const opt = new AdamW(ADAMW_CHECK_PARAMS.map((p) => ({ name: p.name, size: elements(p.shape), shape: p.shape })), { stateDType: 'bf16-params', bf16Params: BF16 });
  const weights = new Map(ADAMW_CHECK_PARAMS.map((p) => [p.name, randomFrom(elements(p.shape), r, 1.5)]));
  roundBf16Params(weights, BF16);
  checkStepsWithTorch(t, r, opt, weights, 'check_adamw_bf16_params.py', (name) => ({ bf16: BF16.has(name) }));
});
