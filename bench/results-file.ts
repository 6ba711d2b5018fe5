// Where a benchmark writes its results: bench/results/ (tracked in git) only when asked with --save,
// a file given with --out, else the system's temporary directory, so a trial run never rewrites a
// committed result.
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';

export interface ResultsChoice {
  save: boolean;
  out?: string;
}

export function resultsFile(choice: ResultsChoice, root: string, name: string): string {
  if (choice.out !== undefined) return resolve(choice.out);
  return choice.save ? join(root, 'bench', 'results', name) : join(tmpdir(), name);
}
