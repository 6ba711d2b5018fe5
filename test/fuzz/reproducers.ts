// Saved reproducers: a failing case's files written under test/fuzz/reproducers/<format>-<seed>-<index>/,
// with case.json (its id, what mocc opens, how it failed when saved). Saved as bytes, so they keep
// testing the same input even after the mutators change; fuzz.test.ts replays every one.
import { existsSync, mkdirSync, readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { caseName, makeCase, type CaseId } from './cases.js';
import type { CaseResult } from './target.js';

export const REPRODUCERS = fileURLToPath(new URL('./reproducers/', import.meta.url));

export interface SavedCase {
  id: string;
  /** Path mocc opens, relative to the reproducer's directory. */
  open: string;
  /** How it ended when saved (before the fix). */
  found: CaseResult;
  note?: string;
}

export function saveReproducer(id: CaseId, found: CaseResult, note?: string): string {
  const dir = join(REPRODUCERS, caseName(id).replace(/:/g, '-'));
  const c = makeCase(id);
  for (const [rel, bytes] of Object.entries(c.files)) {
    mkdirSync(dirname(join(dir, rel)), { recursive: true });
    writeFileSync(join(dir, rel), bytes);
  }
  const saved: SavedCase = { id: caseName(id), open: c.open, found, ...(note ? { note } : {}) };
  writeFileSync(join(dir, 'case.json'), JSON.stringify(saved, null, 2) + '\n');
  return dir;
}

export function savedReproducers(): Array<{ dir: string; saved: SavedCase }> {
  if (!existsSync(REPRODUCERS)) return [];
  return readdirSync(REPRODUCERS).filter((d) => existsSync(join(REPRODUCERS, d, 'case.json'))).sort().map((d) => ({
    dir: join(REPRODUCERS, d),
    saved: JSON.parse(readFileSync(join(REPRODUCERS, d, 'case.json'), 'utf8')) as SavedCase,
  }));
}
