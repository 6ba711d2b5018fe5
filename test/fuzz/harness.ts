// Runs fuzz cases in a worker process under a watchdog: a case that runs past the time limit, or whose
// worker grows past the memory limit (resident set, so ArrayBuffers count too) or dies, is killed and
// recorded, and a fresh worker takes the next case. Failures are re-run once alone, with 3× the time,
// to tell a real hang from a busy machine.
import { fork, type ChildProcess } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { extname } from 'node:path';
import { fileURLToPath } from 'node:url';
import { caseName, FORMATS, type CaseId, type FuzzFormat } from './cases.js';
import { FAILURES, type CaseResult, type Outcome } from './target.js';
import type { WorkerJob } from './worker.js';

export interface HarnessOptions {
  /** Per-case time limit (ms). */
  timeoutMs?: number;
  /** The worker's V8 heap limit (MB). */
  heapMb?: number;
  /** The worker's resident-set limit (MB), checked every 50 ms. */
  rssMb?: number;
}

const WORKER = fileURLToPath(new URL(`./worker${extname(fileURLToPath(import.meta.url))}`, import.meta.url));

function rssMb(pid: number): number {
  try {
    // statm: size resident ... in pages (4 KiB on Linux x86-64 and arm64 defaults).
    return (Number(readFileSync(`/proc/${pid}/statm`, 'utf8').split(' ')[1]) * 4096) / 2 ** 20;
  } catch {
    return 0;
  }
}

export class Harness {
  private child: ChildProcess | null = null;
  private ready: Promise<void> | null = null;
  readonly timeoutMs: number;
  private readonly heapMb: number;
  private readonly rssMb: number;

  constructor(o: HarnessOptions = {}) {
    this.timeoutMs = o.timeoutMs ?? 10_000;
    this.heapMb = o.heapMb ?? 300;
    this.rssMb = o.rssMb ?? 1024;
  }

  private start(): Promise<void> {
    const execArgv = [...process.execArgv.filter((a) => !a.startsWith('--max-old-space-size')), `--max-old-space-size=${this.heapMb}`];
    const child = fork(WORKER, [], { execArgv, serialization: 'advanced', stdio: ['ignore', 'ignore', 'pipe', 'ipc'] });
    child.stderr!.resume(); // a dying worker's messages are not the verdict; its exit is
    this.child = child;
    return new Promise((resolve, reject) => {
      child.once('message', () => resolve());
      child.once('exit', (code) => reject(new Error(`fuzz worker exited (${code}) before it was ready`)));
    });
  }

  /** Runs one case (or a saved reproducer's path) and says how it ended. */
  async run(job: WorkerJob, timeoutMs = this.timeoutMs): Promise<CaseResult> {
    if (!this.child) this.ready = this.start();
    await this.ready;
    const child = this.child!;
    return new Promise<CaseResult>((resolve) => {
      let settled = false;
      const finish = (r: CaseResult, kill: boolean): void => {
        if (settled) return;
        settled = true;
        clearTimeout(timer);
        clearInterval(poll);
        child.off('message', onMessage);
        child.off('exit', onExit);
        if (kill) {
          child.kill('SIGKILL');
          this.child = null;
        }
        resolve(r);
      };
      const onMessage = (r: CaseResult): void => finish(r, false);
      const onExit = (code: number | null, signal: string | null): void => {
        this.child = null;
        finish({ outcome: 'crash', message: `worker exited with ${signal ?? `code ${code}`} (heap limit ${this.heapMb} MB?)` }, false);
      };
      const timer = setTimeout(() => finish({ outcome: 'timeout', message: `no result after ${timeoutMs} ms` }, true), timeoutMs);
      const poll = setInterval(() => {
        const mb = rssMb(child.pid!);
        if (mb > this.rssMb) finish({ outcome: 'memory', message: `worker resident set ${mb.toFixed(0)} MB > ${this.rssMb} MB` }, true);
      }, 50);
      child.on('message', onMessage);
      child.once('exit', onExit);
      child.send(job);
    });
  }

  /** A failure re-run alone in a fresh worker with 3× the time: confirmed, or 'ok'/'user-error' if it was only slow. */
  async confirm(job: WorkerJob, first: CaseResult): Promise<CaseResult> {
    if (first.outcome !== 'timeout' && first.outcome !== 'memory' && first.outcome !== 'crash') return first;
    this.stop();
    return this.run(job, this.timeoutMs * 3);
  }

  stop(): void {
    this.child?.kill('SIGKILL');
    this.child = null;
  }
}

export interface FuzzSummary {
  /** format → outcome → count. */
  counts: Record<FuzzFormat, Partial<Record<Outcome, number>>>;
  failures: Array<{ id: CaseId; result: CaseResult }>;
  /** The slowest case per format (ms, in the worker). */
  slowest: Record<FuzzFormat, { ms: number; id: string }>;
  total: number;
}

/** Runs `cases` cases per format, indices start..start+cases-1, formats interleaved. */
export async function fuzz(opts: HarnessOptions & {
  seed: number; cases: number; start?: number; formats?: readonly FuzzFormat[];
  onProgress?: (s: FuzzSummary) => void; onFailure?: (id: CaseId, r: CaseResult) => void;
}): Promise<FuzzSummary> {
  const formats = opts.formats ?? FORMATS;
  const h = new Harness(opts);
  const s: FuzzSummary = {
    counts: Object.fromEntries(formats.map((f) => [f, {}])) as FuzzSummary['counts'],
    failures: [],
    slowest: Object.fromEntries(formats.map((f) => [f, { ms: 0, id: '' }])) as FuzzSummary['slowest'],
    total: 0,
  };
  try {
    for (let i = 0; i < opts.cases; i++) {
      for (const format of formats) {
        const id: CaseId = { format, seed: opts.seed, index: (opts.start ?? 0) + i };
        let r = await h.run({ id });
        if (FAILURES.includes(r.outcome)) r = await h.confirm({ id }, r);
        s.counts[format][r.outcome] = (s.counts[format][r.outcome] ?? 0) + 1;
        if (FAILURES.includes(r.outcome)) {
          s.failures.push({ id, result: r });
          opts.onFailure?.(id, r);
        }
        if ((r.ms ?? 0) > s.slowest[format].ms) s.slowest[format] = { ms: r.ms!, id: caseName(id) };
        s.total++;
      }
      if (opts.onProgress && (i + 1) % 500 === 0) opts.onProgress(s);
    }
  } finally {
    h.stop();
  }
  return s;
}
