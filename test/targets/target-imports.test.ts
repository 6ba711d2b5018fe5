// No target imports another: what the GPU targets share lives in targets/lowering/ (and
// targets/buffer-plan.ts), so each target can change its kernels without touching another.
import test from 'ava';
import { readdirSync, readFileSync } from 'node:fs';
import { dirname, join, relative, resolve } from 'node:path';
import { ROOT } from '../helpers/fixtures.js';

const TARGETS = ['cuda', 'wgsl', 'ref'];

function sources(dir: string): string[] {
  return readdirSync(dir, { withFileTypes: true }).flatMap((e) => (e.isDirectory() ? sources(join(dir, e.name)) : e.name.endsWith('.ts') ? [join(dir, e.name)] : []));
}

for (const target of TARGETS) {
  test(`targets/${target} imports no other target`, (t) => {
    const dir = join(ROOT, 'targets', target);
    const crossing: string[] = [];
    for (const file of sources(dir)) {
      for (const m of readFileSync(file, 'utf8').matchAll(/(?:from|import)\s*\(?\s*'(\.[^']+)'/g)) {
        const into = relative(join(ROOT, 'targets'), resolve(dirname(file), m[1]!)).split('/')[0]!;
        if (into !== target && TARGETS.includes(into)) crossing.push(`${relative(ROOT, file)} → ${m[1]}`);
      }
    }
    t.deepEqual(crossing, []);
  });
}
