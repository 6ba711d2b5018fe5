// Runs the built CLI (dist/cli/mocc.js) as a user would, in a child process.
import { spawnSync } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { ROOT } from './fixtures.js';

export interface CliResult {
  code: number | null;
  stdout: string;
  stderr: string;
}

export function mocc(...args: string[]): CliResult {
  return moccWithEnv({}, ...args);
}

/** mocc with these environment variables added to the test's own. */
export function moccWithEnv(env: Record<string, string>, ...args: string[]): CliResult {
  const r = spawnSync(process.execPath, [join(ROOT, 'dist/cli/mocc.js'), ...args], { encoding: 'utf8', timeout: 120_000, env: { ...process.env, ...env } });
  return { code: r.status, stdout: r.stdout, stderr: r.stderr };
}

/** A fresh temporary directory, removed when the test ends. */
export function tempDir(t: { teardown(fn: () => void): void }): string {
  const d = mkdtempSync(join(tmpdir(), 'mocc-test-'));
  t.teardown(() => rmSync(d, { recursive: true, force: true }));
  return d;
}
