// The PyTorch side of issue 18's training benchmark (bench/gpu/torch_train.py): its MoC FFN, an autograd
// Function saving what mocc's moc / moc-gcp checkpoint policies save, is checked on the CPU by
// bench/gpu/check_torch_moc.py against plain autograd through a masked-dense FFN, and its saved bytes per
// token against passes/checkpoint.ts's table. Needs python3 with torch and transformers; without them the
// test skips (in CI too: they are the GPU machine's tools, not the compiler's).
import { spawnSync } from 'node:child_process';
import { join } from 'node:path';
import { ROOT } from '../helpers/fixtures.js';
import { testsNeeding, type Requirement } from '../helpers/requires.js';

function torchRequirement(): Requirement {
  const r = spawnSync('python3', ['-c', 'import torch, transformers'], { encoding: 'utf8' });
  return { missing: r.status === 0 ? null : 'python3 with torch and transformers not found (pip install torch transformers)', optionalInCi: true };
}

const test = testsNeeding(torchRequirement());

test('torch_train.py\'s MoC FFN: gradients equal the masked-dense reference, saved bytes follow mocc\'s policies', (t) => {
  t.timeout(120_000);
  const r = spawnSync('python3', [join(ROOT, 'bench/gpu/check_torch_moc.py')], { encoding: 'utf8', env: { ...process.env, OMP_NUM_THREADS: '1' } });
  t.is(r.status, 0, `${r.stdout}\n${r.stderr}`);
  t.regex(r.stdout, /check_torch_moc: all checks passed/);
  t.is((r.stdout.match(/^ok: /gm) ?? []).length, 6, r.stdout);
});
