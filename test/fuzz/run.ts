// The long fuzz run, and replaying one case:
//   node --import tsx test/fuzz/run.ts --cases 25000 --seed 1          (25,000 cases per format)
//   node --import tsx test/fuzz/run.ts --replay gguf:1:1234 [--save "what it found"]
// Prints counts per format and outcome, the slowest case per format, and every failure with the
// command that replays it. Exits 1 if any case failed.
import { parseArgs } from 'node:util';
import { caseName, FORMATS, parseCaseName, type FuzzFormat } from './cases.js';
import { fuzz, Harness, type FuzzSummary } from './harness.js';
import { saveReproducer } from './reproducers.js';
import { FAILURES } from './target.js';

const { values: a } = parseArgs({
  options: {
    cases: { type: 'string', default: '1000' },
    seed: { type: 'string', default: '1' },
    start: { type: 'string', default: '0' },
    format: { type: 'string', multiple: true },
    timeout: { type: 'string', default: '10000' },
    replay: { type: 'string' },
    save: { type: 'string' },
  },
});
const timeoutMs = Number(a.timeout);

function report(s: FuzzSummary): void {
  for (const [f, c] of Object.entries(s.counts)) {
    const parts = Object.entries(c).map(([o, n]) => `${o} ${n}`).join(', ');
    process.stdout.write(`${f.padEnd(12)} ${parts}; slowest ${s.slowest[f as FuzzFormat].ms.toFixed(0)} ms (${s.slowest[f as FuzzFormat].id})\n`);
  }
}

if (a.replay) {
  const id = parseCaseName(a.replay);
  const h = new Harness({ timeoutMs });
  const r = await h.confirm({ id }, await h.run({ id }));
  h.stop();
  process.stdout.write(`${caseName(id)}: ${r.outcome}${r.ms !== undefined ? ` (${r.ms.toFixed(0)} ms)` : ''}\n${r.message ?? ''}\n`);
  if (a.save !== undefined) process.stdout.write(`saved ${saveReproducer(id, r, a.save || undefined)}\n`);
  process.exitCode = FAILURES.includes(r.outcome) ? 1 : 0;
} else {
  const formats = (a.format ?? [...FORMATS]) as FuzzFormat[];
  for (const f of formats) if (!(FORMATS as readonly string[]).includes(f)) throw new Error(`unknown format ${f} (${FORMATS.join(', ')})`);
  const t0 = performance.now();
  const s = await fuzz({
    seed: Number(a.seed), cases: Number(a.cases), start: Number(a.start), formats, timeoutMs,
    onProgress: (p) => process.stderr.write(`${p.total} cases, ${p.failures.length} failures, ${((performance.now() - t0) / 1000).toFixed(0)} s\n`),
    onFailure: (id, r) => process.stderr.write(`FAIL ${caseName(id)} ${r.outcome}: ${r.message?.split('\n')[0]}\n`),
  });
  process.stdout.write(`${s.total} cases (seed ${a.seed}, indices ${a.start}..${Number(a.start) + Number(a.cases) - 1} per format) in ${((performance.now() - t0) / 1000).toFixed(0)} s\n`);
  report(s);
  for (const f of s.failures) {
    process.stdout.write(`FAIL ${caseName(f.id)} ${f.result.outcome}: ${f.result.message?.split('\n')[0]}\n  replay: node --import tsx test/fuzz/run.ts --replay ${caseName(f.id)}\n`);
  }
  process.exitCode = s.failures.length ? 1 : 0;
}
