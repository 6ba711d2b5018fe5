// What every command shares: option parsing helpers, model selection flags, errors, progress.
import { InvalidArgumentError, type Command } from 'commander';
import cliProgress from 'cli-progress';
import { UserError } from '../src/util/errors.js';
import type { MocSelection } from '../src/model/selection.js';
import { kFromRatio } from '../passes/swiglu-to-moc.js';

export function parseIntArg(name: string, min = -Infinity, max = Infinity) {
  return (v: string): number => {
    const n = Number(v);
    if (!/^-?\d+$/.test(v.trim()) || n < min || n > max) throw new InvalidArgumentError(`${name} must be a whole number${min > -Infinity ? ` ≥ ${min}` : ''}${max < Infinity ? ` ≤ ${max}` : ''}`);
    return n;
  };
}

export function parseFloatArg(name: string, min = -Infinity, max = Infinity) {
  return (v: string): number => {
    const n = Number(v);
    if (v.trim() === '' || !Number.isFinite(n) || n < min || n > max) throw new InvalidArgumentError(`${name} must be a number in [${min}, ${max}]`);
    return n;
  };
}

export function parseTokenList(v: string): number[] {
  const ids = v.split(',').map((s) => s.trim()).filter((s) => s !== '');
  if (ids.length === 0 || ids.some((s) => !/^\d+$/.test(s))) throw new InvalidArgumentError('expected comma-separated token ids, e.g. 1,403,407');
  return ids.map(Number);
}

/** Adds --k / --k-ratio / --pattern / --dense. */
export function addSelectionOptions(cmd: Command, what: string): Command {
  return cmd
    .option('--k <N|N,N,...>', `keep the K largest gate channels per token (${what}); a comma list gives one K per layer`)
    .option('--k-ratio <r>', 'keep round(r·d_ffn) channels per layer, 0 < r ≤ 1 (0.19 is the paper\'s setting)')
    .option('--pattern <a:b>', 'grouped selection: in every block of b consecutive channels keep the a largest')
    .option('--dense', 'keep the FFNs dense (no MoC rewrite)');
}

export interface SelectionFlags {
  k?: string;
  kRatio?: string;
  pattern?: string;
  dense?: boolean;
}

/**
 * Reads the selection flags; with none given, undefined: the command's default applies, which is the
 * checkpoint's own selection when it has one (driver/load.ts checkpointSelection).
 */
export function selectionFromFlags(f: SelectionFlags): MocSelection | 'dense' | undefined {
  const given = [f.k !== undefined, f.kRatio !== undefined, f.pattern !== undefined, f.dense === true].filter(Boolean).length;
  if (given > 1) throw new UserError('give only one of --k, --k-ratio, --pattern, --dense');
  if (f.dense) return 'dense';
  if (f.k !== undefined) {
    const parts = f.k.split(',').map((s) => s.trim());
    if (parts.some((p) => !/^-?\d+$/.test(p))) throw new UserError(`--k must be a whole number or a comma list of them, got '${f.k}'`);
    const ks = parts.map(Number);
    return { k: ks.length === 1 ? ks[0]! : ks };
  }
  if (f.kRatio !== undefined) {
    const r = Number(f.kRatio);
    if (!Number.isFinite(r)) throw new UserError(`--k-ratio must be a number in (0, 1], got '${f.kRatio}'`);
    return { kRatio: r };
  }
  if (f.pattern !== undefined) {
    const m = /^(\d+):(\d+)$/.exec(f.pattern.trim());
    if (!m) throw new UserError(`--pattern must look like a:b (e.g. 2:8), got '${f.pattern}'`);
    return { pattern: { a: Number(m[1]), b: Number(m[2]) } };
  }
  return undefined;
}

/** A remark on stderr that is not an error: `mocc: note: …`. */
export function note(text: string): void {
  process.stderr.write(`mocc: note: ${text}\n`);
}

/** Says so when --k-ratio is so small that round(r·d_ffn) is 0 and K becomes 1. */
export function noteKRatio(f: SelectionFlags, dFfn: number): void {
  if (f.kRatio === undefined) return;
  const r = Number(f.kRatio);
  if (r > 0 && r <= 1 && kFromRatio(r, dFfn) !== Math.round(r * dFfn)) {
    note(`--k-ratio ${f.kRatio} × d_ffn ${dFfn} = ${+(r * dFfn).toPrecision(3)} channels rounds to 0; keeping K = 1 (the least MoC keeps)`);
  }
}

/** A progress bar on a terminal; silent otherwise (logs and CI stay clean). */
export function progressBar(label: string): { update(done: number, total: number): void; stop(): void } {
  if (!process.stderr.isTTY) return { update() {}, stop() {} };
  const bar = new cliProgress.SingleBar(
    { stream: process.stderr, format: `${label} [{bar}] {percentage}% | {done}/{all} MiB | ETA {eta}s`, hideCursor: true },
    cliProgress.Presets.shades_classic,
  );
  let started = false;
  const mib = (b: number) => (b / 2 ** 20).toFixed(1);
  return {
    update(done, total) {
      if (!started) {
        bar.start(total, 0, { done: '0', all: mib(total) });
        started = true;
      }
      bar.update(done, { done: mib(done), all: mib(total) });
    },
    stop() {
      if (started) bar.stop();
    },
  };
}

/** Runs a command body; user errors print one line and exit 1, anything else exits 2 with the stack under MOCC_DEBUG. */
export function action<A extends unknown[]>(fn: (...args: A) => Promise<void> | void) {
  return async (...args: A): Promise<void> => {
    try {
      await fn(...args);
    } catch (e) {
      const err = e as Error;
      if (err instanceof UserError || err.name === 'UserError') {
        process.stderr.write(`mocc: ${err.message}\n`);
        process.exitCode = 1;
      } else {
        process.stderr.write(`mocc: ${err.message}\n${process.env.MOCC_DEBUG ? err.stack + '\n' : '(set MOCC_DEBUG=1 for the stack trace)\n'}`);
        process.exitCode = 2;
      }
    }
  };
}
