// Asserting user errors: a UserError whose message names the problem, on one line.
import type { ExecutionContext } from 'ava';
import { UserError } from '../../src/util/errors.js';

export function throwsUser(t: ExecutionContext, fn: () => unknown, fragment: string | RegExp): void {
  const err = t.throws(fn, { instanceOf: UserError });
  if (!err) return;
  if (typeof fragment === 'string') t.true(err.message.includes(fragment), `message "${err.message}" lacks "${fragment}"`);
  else t.regex(err.message, fragment);
  t.false(err.message.includes('\n'), 'one line');
}
