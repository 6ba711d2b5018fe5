// A fuzz worker process: receives cases from the harness one at a time, writes each case's files into a
// fresh directory, runs it, and reports how it ended. The harness kills and replaces it on a hang or crash.
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { makeCase, type CaseId } from './cases.js';
import { classify, convertAndReadBack, type CaseResult } from './target.js';

export type WorkerJob = { id: CaseId } | { path: string };

const root = mkdtempSync(join(tmpdir(), 'mocc-fuzz-'));
process.on('exit', () => rmSync(root, { recursive: true, force: true }));
process.on('disconnect', () => process.exit(0));
let n = 0;

async function run(job: WorkerJob): Promise<CaseResult> {
  const dir = join(root, `c${n++}`);
  mkdirSync(dir);
  const t0 = performance.now();
  try {
    let path: string;
    if ('id' in job) {
      let c;
      try {
        c = makeCase(job.id);
      } catch (e) {
        throw new Error(`fuzz case generator failed (a harness bug): ${(e as Error).stack}`);
      }
      for (const [rel, bytes] of Object.entries(c.files)) {
        mkdirSync(dirname(join(dir, rel)), { recursive: true });
        writeFileSync(join(dir, rel), bytes);
      }
      path = join(dir, c.open);
    } else {
      path = job.path;
    }
    await convertAndReadBack(path, dir);
    return { outcome: 'ok', ms: performance.now() - t0 };
  } catch (e) {
    return { ...classify(e), ms: performance.now() - t0 };
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

process.on('message', (job: WorkerJob) => {
  void run(job).then((r) => process.send!(r));
});
process.send!({ ready: true });
