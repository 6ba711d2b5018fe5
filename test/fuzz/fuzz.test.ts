// The fuzzer in the test suite: a short seeded run across the four formats (the long one is
// `node --import tsx test/fuzz/run.ts --cases 25000`), and every saved reproducer replayed. Each case
// runs in a worker process under a time, heap and resident-set limit (harness.ts); a case passes when
// mocc converts it or refuses it with a one-line UserError.
import test from 'ava';
import { join } from 'node:path';
import { caseName, FORMATS } from './cases.js';
import { fuzz, Harness } from './harness.js';
import { savedReproducers } from './reproducers.js';
import { FAILURES } from './target.js';

/** Per format; FUZZ_CASES / FUZZ_SEED change the run (the default is fixed, so the suite is deterministic). */
const CASES = Number(process.env['FUZZ_CASES'] ?? 300);
const SEED = Number(process.env['FUZZ_SEED'] ?? 20260513);

test('short fuzz run: every case converts or ends in a one-line user error', async (t) => {
  const s = await fuzz({ seed: SEED, cases: CASES });
  t.is(s.total, CASES * FORMATS.length);
  const failures = s.failures.map((f) => `${caseName(f.id)} ${f.result.outcome}: ${f.result.message} (replay: node --import tsx test/fuzz/run.ts --replay ${caseName(f.id)})`);
  t.deepEqual(failures, []);
  // The mutators must reach past the first check: some cases of every format still convert, and some are refused.
  for (const f of FORMATS) {
    t.true((s.counts[f]['user-error'] ?? 0) > 0, `${f}: some cases refused`);
    t.true((s.counts[f]['ok'] ?? 0) > 0 || f === 'llama2c', `${f}: some cases still convert`);
  }
});

test('saved reproducers: each converts or ends in a one-line user error', async (t) => {
  const saved = savedReproducers();
  t.true(saved.length >= 10);
  const h = new Harness();
  try {
    for (const { dir, saved: s } of saved) {
      const r = await h.confirm({ path: join(dir, s.open) }, await h.run({ path: join(dir, s.open) }));
      t.false(FAILURES.includes(r.outcome), `${s.id} (found: ${s.found.outcome}): now ${r.outcome}: ${r.message}`);
    }
  } finally {
    h.stop();
  }
});
