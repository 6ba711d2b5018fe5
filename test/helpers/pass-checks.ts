// Checks shared by the tests of the graph passes that run on the CUDA executor's training graphs
// (passes/bf16-gemm-operands.ts, bf16-producers.ts, matmul-accumulate.ts): the before/after IR-text
// check of a rewrite, and bit-for-bit equality of two runs' outputs.
import type { ExecutionContext } from 'ava';
import { parseGraph } from '../../src/ir/parse.js';
import { printGraph } from '../../src/ir/print.js';
import { verifyGraph } from '../../src/ir/verify.js';
import type { Pass } from '../../passes/pass.js';

/** `pass` turns the IR text `before` into `after` (both verify), and a second run changes nothing (`again` says why). */
export function assertRewrite(t: ExecutionContext, pass: Pass, before: string, after: string, again = 'a second run finds nothing more'): void {
  const g = parseGraph(before);
  verifyGraph(g);
  const out = pass.run(g);
  verifyGraph(out);
  t.is(printGraph(out), after);
  t.is(printGraph(pass.run(out)), after, again);
}

/** Each output of `got` has the bytes of the same output of `want` (named by `names`, the graph's outputs). */
export function sameBits(t: ExecutionContext, got: readonly ArrayLike<number>[], want: readonly ArrayLike<number>[], names: readonly string[]): void {
  t.is(got.length, want.length);
  got.forEach((v, i) => {
    const a = v as Float32Array, b = want[i] as Float32Array;
    t.true(Buffer.from(a.buffer, a.byteOffset, a.byteLength).equals(Buffer.from(b.buffer, b.byteOffset, b.byteLength)), `output %${names[i]} bit-identical`);
  });
}
