// Assertions on a finished CLI run (test/helpers/cli.ts).
import type { ExecutionContext } from 'ava';
import type { CliResult } from './cli.js';

/** Exit 1 and exactly one stderr line `mocc: …` matching `what`, no stack trace (notes aside). */
export function userError(t: ExecutionContext, r: CliResult, what: RegExp): void {
  t.is(r.code, 1, `exit code (stderr: ${r.stderr})`);
  const lines = r.stderr.trimEnd().split('\n').filter((l) => !l.startsWith('mocc: note: '));
  t.is(lines.length, 1, `one line: ${JSON.stringify(r.stderr)}`);
  t.true(lines[0]!.startsWith('mocc: '), `starts with "mocc: ": ${JSON.stringify(r.stderr)}`);
  t.regex(lines[0]!, what);
  t.notRegex(r.stderr, /\n\s+at /, 'no stack trace');
}
