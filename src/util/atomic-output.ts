// The one rule for every command that writes (convert, compile, logits): never delete or overwrite an
// input, and never leave a half-written output. The output is written under a temporary sibling name
// (.NAME.mocc-tmp-PID) and renamed into place only when complete; on failure, or on SIGINT/SIGTERM,
// the temporary is removed and whatever was at the output path before is left as it was.
import { existsSync, mkdirSync, realpathSync, renameSync, rmSync, statSync } from 'node:fs';
import { basename, dirname, join, relative, resolve, isAbsolute } from 'node:path';
import { UserError } from './errors.js';

export interface OutputOptions {
  /** Every file or directory the command reads: the output may not be, contain, or lie inside any of them. */
  inputs: readonly string[];
  /** Replace an existing output (of the same kind: file for file, directory for directory). */
  force?: boolean;
  /** What is written: a directory (the writer fills the temporary directory) or one file. */
  kind: 'directory' | 'file';
}

/** Temporary outputs being written now; the signal handler removes them. */
const active = new Set<string>();

/** The path with symbolic links resolved, also for a path that does not exist yet (its nearest existing ancestor is resolved). */
function canonical(p: string): string {
  const abs = resolve(p);
  let head = abs;
  const tail: string[] = [];
  for (;;) {
    try {
      return join(realpathSync(head), ...tail);
    } catch {
      const up = dirname(head);
      if (up === head) return abs;
      tail.unshift(basename(head));
      head = up;
    }
  }
}

/** True when `inner` is `outer` or lies inside it. */
function within(inner: string, outer: string): boolean {
  const r = relative(outer, inner);
  return r === '' || (!r.startsWith('..') && !isAbsolute(r));
}

/** Refuses an output that would destroy or write into an input, or replace something without --force. */
export function checkOutput(output: string, opts: OutputOptions): void {
  const out = canonical(output);
  for (const input of opts.inputs) {
    const inp = canonical(input);
    if (within(inp, out)) {
      throw new UserError(`output ${output} ${inp === out ? 'is' : 'contains'} the input ${input}; choose an output path outside the inputs`);
    }
    if (within(out, inp)) throw new UserError(`output ${output} is inside the input ${input}; choose an output path outside the inputs`);
  }
  if (!existsSync(output)) return;
  if (!opts.force) throw new UserError(`${output} already exists (use --force to replace it)`);
  const isDir = statSync(output).isDirectory();
  if (isDir !== (opts.kind === 'directory')) {
    throw new UserError(`${output} is a ${isDir ? 'directory' : 'file'}, and this command writes a ${opts.kind}; --force replaces only a ${opts.kind}`);
  }
}

let handlersInstalled = false;
function onSignal(sig: NodeJS.Signals): void {
  for (const tmp of active) rmSync(tmp, { recursive: true, force: true });
  process.stderr.write(`\nmocc: interrupted (${sig}); nothing was written\n`);
  process.exit(130);
}
function track(tmp: string): void {
  active.add(tmp);
  if (!handlersInstalled) {
    process.on('SIGINT', onSignal);
    process.on('SIGTERM', onSignal);
    handlersInstalled = true;
  }
}
function untrack(tmp: string): void {
  active.delete(tmp);
  if (active.size === 0 && handlersInstalled) {
    process.off('SIGINT', onSignal);
    process.off('SIGTERM', onSignal);
    handlersInstalled = false;
  }
}

/** The temporary outputs being written now (for tests and for callers with their own signal handling). */
export function activeTemporaries(): string[] {
  return [...active];
}

/**
 * Checks the output (checkOutput), then calls `write` with a temporary path beside it: a fresh empty
 * directory for kind 'directory', a path to create for kind 'file'. When `write` succeeds the
 * temporary replaces the output; when it throws, the temporary is removed and the error passes on.
 */
export async function writeOutput<T>(output: string, opts: OutputOptions, write: (tmp: string) => T | Promise<T>): Promise<T> {
  checkOutput(output, opts);
  const out = resolve(output);
  const tmp = join(dirname(out), `.${basename(out)}.mocc-tmp-${process.pid}`);
  try {
    mkdirSync(dirname(out), { recursive: true });
    rmSync(tmp, { recursive: true, force: true });
    if (opts.kind === 'directory') mkdirSync(tmp);
  } catch (e) {
    throw new UserError(`cannot create ${output}: ${(e as Error).message}`);
  }
  track(tmp);
  try {
    const result = await write(tmp);
    if (existsSync(out)) {
      // Replace (--force, checked above): move the old one aside first, so a failed rename loses nothing.
      const old = `${tmp}-old`;
      renameSync(out, old);
      renameSync(tmp, out);
      rmSync(old, { recursive: true, force: true });
    } else {
      renameSync(tmp, out);
    }
    return result;
  } catch (e) {
    rmSync(tmp, { recursive: true, force: true });
    throw e;
  } finally {
    untrack(tmp);
  }
}
