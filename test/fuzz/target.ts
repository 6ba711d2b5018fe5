// What one fuzz case runs, in-process: everything `mocc convert` does with a checkpoint, then the
// package read back. A case passes when this succeeds or throws a UserError whose message is one
// printable line; anything else (another error, a multi-line message, a hang, a blow-up) is a bug.
import { rmSync } from 'node:fs';
import { join } from 'node:path';
import { isDeepStrictEqual } from 'node:util';
import { openCheckpoint } from '../../src/import/open.js';
import { checkpointGraph } from '../../driver/load.js';
import { openPackage } from '../../src/package/read.js';
import { writePackage } from '../../src/package/write.js';

export type Outcome = 'ok' | 'user-error' | 'bad-message' | 'internal-error' | 'timeout' | 'crash' | 'memory';
export const FAILURES: readonly Outcome[] = ['bad-message', 'internal-error', 'timeout', 'crash', 'memory'];

export interface CaseResult {
  outcome: Outcome;
  /** The error message (user errors) or the first stack lines (anything else). */
  message?: string;
  ms?: number;
}

export async function convertAndReadBack(path: string, scratch: string): Promise<void> {
  const ck = openCheckpoint(path);
  try {
    const graph = checkpointGraph(ck.spec, (n) => ck.weights.get(n)!.dtype, { kRatio: 0.19 });
    for (const t of ck.weights.values()) t.toFloat32();
    ck.tokenizer?.encode('Once upon a time 🦙\n');
    const out = join(scratch, 'pkg');
    const manifest = await writePackage(ck, graph, out, { force: true });
    // The manifest is JSON: a config value JSON cannot hold (Infinity, NaN) would come back different.
    if (!isDeepStrictEqual(JSON.parse(JSON.stringify(manifest.config)), manifest.config)) throw new Error('the model config does not round-trip through manifest.json');
    const pkg = openPackage(out);
    try {
      for (const p of pkg.graph.params) pkg.weights.get(p.name)!.toFloat32();
    } finally {
      pkg.close();
      rmSync(out, { recursive: true, force: true });
    }
  } finally {
    ck.close();
  }
}

/** Sorts an error into an outcome. */
export function classify(e: unknown): CaseResult {
  const err = e as Error;
  if (err instanceof Error && err.name === 'UserError') {
    // The CLI prints `mocc: <message>`: it must be one line without control characters (a terminal would act on them).
    const ok = err.message.length > 0 && !/[\u0000-\u001f\u007f\u2028\u2029]/.test(err.message);
    return { outcome: ok ? 'user-error' : 'bad-message', message: err.message };
  }
  return { outcome: 'internal-error', message: String(err?.stack ?? err).split('\n').slice(0, 6).join('\n') };
}
