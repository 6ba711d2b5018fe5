// `mocc train --optimizer-state bf16` on the ref target (the host AdamW, src/train/adamw.ts stateDType
// 'bf16': the oracle the CUDA optimizer is checked against): the run trains, its checkpoint records the
// mode in the run options and keeps the moments as f32 arrays holding bf16 values, a --resume with the
// same flag gives the uninterrupted run's weights byte for byte, a --resume with the other mode is
// refused naming it, and the mode changes the result (it is not a no-op).
import test from 'ava';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { loadTrainState } from '../../src/train/train-state.js';
import { mocc, tempDir } from '../helpers/cli.js';
import { CHECKPOINTS, LLAMA2C_TOKENIZER, ROOT } from '../helpers/fixtures.js';

const DATA = `${ROOT}fixtures/tinystories/validation-head.txt`;
const MOC_K32 = [CHECKPOINTS.hf, '--k', '32', '--tokenizer', LLAMA2C_TOKENIZER];
const ARGS = ['--data', DATA, '--steps', '4', '--batch', '2', '--seq', '16', '--lr', '1e-2', '--seed', '5', '--target', 'ref'];

test('train --optimizer-state bf16 on ref: checkpoint records it, resume is bit-exact, the other mode is refused', async (t) => {
  const dir = tempDir(t);
  const whole = join(dir, 'whole'), ckpt = join(dir, 'ckpt');
  const r0 = mocc('train', ...MOC_K32, ...ARGS, '--optimizer-state', 'bf16', '--save-every', '2', '--checkpoint-dir', ckpt, '-o', whole);
  t.is(r0.code, 0, r0.stderr);
  t.regex(r0.stderr, /AdamW moments bf16/);

  const st = await loadTrainState(join(ckpt, 'step-000002'));
  t.is(st.step, 2);
  t.is((st.options as { optimizerState?: string }).optimizerState, 'bf16');
  let moments = 0, notBf16 = 0;
  for (const map of [st.optimizer.m, st.optimizer.v]) {
    for (const a of map.values()) {
      const bits = new Uint32Array(a.buffer, a.byteOffset, a.length);
      moments += a.filter((x) => x !== 0).length;
      notBf16 += bits.filter((b) => (b & 0xffff) !== 0).length;
    }
  }
  t.true(moments > 1000, `${moments} nonzero moments`);
  t.is(notBf16, 0, 'every saved moment is a bf16 value (stored as f32)');

  // resume from step 2 with the same options: the same weights as the run never stopped
  const resumed = join(dir, 'resumed');
  const r1 = mocc('train', ...MOC_K32, ...ARGS, '--optimizer-state', 'bf16', '--resume', ckpt, '-o', resumed);
  t.is(r1.code, 0, r1.stderr);
  t.regex(r1.stderr, /resumed from .* at step 2/);
  t.true(readFileSync(join(whole, 'weights.safetensors')).equals(readFileSync(join(resumed, 'weights.safetensors'))), 'weights identical, byte for byte');

  // the default mode (f32) does not resume a bf16 checkpoint
  const r2 = mocc('train', ...MOC_K32, ...ARGS, '--resume', ckpt, '-o', join(dir, 'refused'));
  t.not(r2.code, 0);
  t.regex(r2.stderr, /--optimizerState \("bf16" there, "f32" now\)/);

  // f32 moments give other weights
  const f32 = join(dir, 'f32');
  const r3 = mocc('train', ...MOC_K32, ...ARGS, '--optimizer-state', 'f32', '-o', f32);
  t.is(r3.code, 0, r3.stderr);
  t.false(readFileSync(join(whole, 'weights.safetensors')).equals(readFileSync(join(f32, 'weights.safetensors'))), 'bf16 moments change the result');
});

test('train --optimizer-state rejects other values', (t) => {
  const r = mocc('train', ...MOC_K32, ...ARGS, '--optimizer-state', 'f16', '-o', join(tempDir(t), 'x'));
  t.not(r.code, 0);
  t.regex(r.stderr, /optimizer-state.*f16|f16.*optimizer-state/);
});
