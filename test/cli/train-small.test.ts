// Smaller things of `mocc train`, `mocc recover` and `mocc eval` (issue 15): --help of each names the
// flags the issue asks for and says what every flag is for; a tiny recover run records itself in the
// manifest; eval --teacher of a model against itself gives KL 0 and full top-1 agreement.
import test from 'ava';
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { mocc, tempDir } from '../helpers/cli.js';
import { CHECKPOINTS, ROOT } from '../helpers/fixtures.js';

const HEAD = `${ROOT}fixtures/tinystories/validation-head.txt`;

/** The flags of each command (section 6), beyond -o and --help. */
const FLAGS: Record<string, string[]> = {
  train: ['--data', '--steps', '--batch', '--seq', '--lr', '--ckpt', '--eval', '--save-every', '--resume', '--seed', '--trainable', '--max-memory', '--force'],
  recover: ['--teacher', '--sequences', '--data', '--steps', '--batch', '--seq', '--ckpt', '--save-every', '--resume', '--seed', '--max-memory', '--force'],
  eval: ['--data', '--teacher', '--seq', '--json'],
};

for (const [command, flags] of Object.entries(FLAGS)) {
  test(`${command} --help: exit 0, every flag with what it is for`, (t) => {
    const r = mocc(command, '--help');
    t.is(r.code, 0, r.stderr);
    t.regex(r.stdout, new RegExp(`^Usage: mocc ${command} \\[options\\] <model>`));
    // commander's layout: "  --flag <arg>   description", wrapped lines indented further
    const options = r.stdout.slice(r.stdout.indexOf('Options:'));
    const described = new Map<string, string>();
    for (const m of options.matchAll(/^ {2}(?:-\w, )?(--[\w-]+)(?: <[^>]+>)?\s{2,}(.+)$/gm)) described.set(m[1]!, m[2]!);
    for (const f of [...flags, '--output', '--help']) {
      if (command === 'eval' && f === '--output') continue;
      const d = described.get(f);
      t.truthy(d, `${f} is listed`);
      t.true((d ?? '').split(/\s+/).length >= 3, `${f} says what it is for: ${JSON.stringify(d)}`);
    }
    for (const [f, d] of described) t.true(d.split(/\s+/).length >= 3, `${f} has a description: ${JSON.stringify(d)}`);
  });
}

test('recover: a tiny run writes a package whose manifest records it', (t) => {
  const dir = tempDir(t);
  const out = join(dir, 'recovered');
  const r = mocc('recover', CHECKPOINTS.llama2c, '--k', '32', '--teacher', CHECKPOINTS.hf, '--sequences', '4', '--steps', '2', '--batch', '2', '--seq', '16', '-o', out);
  t.is(r.code, 0, r.stderr);
  t.regex(r.stderr, /the teacher wrote 4 sequences/);
  const m = JSON.parse(readFileSync(join(out, 'manifest.json'), 'utf8')) as { moc: { perLayerK: number[] }; training: Array<Record<string, unknown>> };
  t.deepEqual(m.moc.perLayerK, [32, 32, 32, 32, 32]);
  t.is(m.training.length, 1);
  t.like(m.training[0], { command: 'recover', steps: 2, batch: 2, seq: 16, loss: 'kl_div', temperature: 1, policy: 'moc-gcp', teacher: { sequences: 4 } });
  t.regex(String((m.training[0]!.teacher as { source: string }).source), /stories260K\/hf/);
  t.true(Number.isFinite(m.training[0]!.finalLoss as number));
});

test('eval --teacher: a model against itself has KL 0 and top-1 agreement 1', (t) => {
  const data = join(tempDir(t), 'some.txt');
  writeFileSync(data, readFileSync(HEAD, 'utf8').split('\n\n').slice(0, 4).join('\n\n'));
  const r = mocc('eval', CHECKPOINTS.llama2c, '--data', data, '--teacher', CHECKPOINTS.llama2c, '--json');
  t.is(r.code, 0, r.stderr);
  const j = JSON.parse(r.stdout) as { nll: number; kl: number; top1: number; tokens: number };
  t.true(j.tokens > 100, `${j.tokens} predictions`);
  t.true(Math.abs(j.kl) < 1e-6, `KL ${j.kl}`);
  t.is(j.top1, 1);
  t.true(j.nll > 0.5 && j.nll < 3, `dense stories260K NLL ${j.nll} (the fixtures README: about 1.26)`);
});
