// `mocc train --fuse-lm-head` on the ref target: the output projection and the cross-entropy run as
// lm_head_loss in row blocks (passes/loss.ts), which on ref gives the unfused run's weights bit for bit
// (targets/ref/lm-head-loss.ts), plans fewer activation bytes (no [T, V] logits), is recorded in the
// checkpoint, and a run does not resume with the other setting.
import test from 'ava';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { mocc, tempDir } from '../helpers/cli.js';
import { CHECKPOINTS, LLAMA2C_TOKENIZER, ROOT } from '../helpers/fixtures.js';

const DATA = `${ROOT}fixtures/tinystories/validation-head.txt`;
const MOC_K32 = [CHECKPOINTS.hf, '--k', '32', '--tokenizer', LLAMA2C_TOKENIZER];
const ARGS = ['--data', DATA, '--steps', '4', '--batch', '2', '--seq', '32', '--lr', '1e-2', '--seed', '3', '--target', 'ref'];
/** The start line's planned bytes per step ("… <what> 1.23 MiB per step"), in bytes. */
function plannedBytes(stderr: string): number {
  const m = /([\d.]+) (B|KiB|MiB|GiB) per step/.exec(stderr);
  if (!m) throw new Error(`no planned bytes in: ${stderr}`);
  return Number(m[1]) * 1024 ** ['B', 'KiB', 'MiB', 'GiB'].indexOf(m[2]!);
}

test('train --fuse-lm-head on ref: the same weights bit for bit, fewer planned bytes, recorded and compared on resume', (t) => {
  const dir = tempDir(t);
  const plain = join(dir, 'plain'), fused = join(dir, 'fused'), ckpt = join(dir, 'ckpt');
  const r0 = mocc('train', ...MOC_K32, ...ARGS, '--save-every', '2', '--checkpoint-dir', ckpt, '-o', plain);
  t.is(r0.code, 0, r0.stderr);
  const r1 = mocc('train', ...MOC_K32, ...ARGS, '--fuse-lm-head', '-o', fused);
  t.is(r1.code, 0, r1.stderr);
  t.regex(r1.stderr, /output projection fused with the loss/);
  t.notRegex(r0.stderr, /output projection fused/);
  t.true(readFileSync(join(plain, 'weights.safetensors')).equals(readFileSync(join(fused, 'weights.safetensors'))), 'fused and unfused weights identical, byte for byte');
  t.true(plannedBytes(r1.stderr) < plannedBytes(r0.stderr), `fused plans less: ${plannedBytes(r1.stderr)} vs ${plannedBytes(r0.stderr)}`);
  // an unfused checkpoint does not resume fused
  const r2 = mocc('train', ...MOC_K32, ...ARGS, '--fuse-lm-head', '--resume', ckpt, '-o', join(dir, 'refused'));
  t.not(r2.code, 0);
  t.regex(r2.stderr, /--fuseLmHead \(false there, true now\)/);
});

test('recover has no --fuse-lm-head (its loss is the KL to the teacher)', (t) => {
  const r = mocc('recover', ...MOC_K32, '--teacher', CHECKPOINTS.hf, '--fuse-lm-head', '-o', join(tempDir(t), 'x'));
  t.not(r.code, 0);
  t.regex(r.stderr, /fuse-lm-head/);
});
