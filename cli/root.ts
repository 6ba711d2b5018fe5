// The project's root folder (where package.json and fixtures/ live), from source or from dist/.
import { existsSync, readFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

export function projectRoot(): string {
  let dir = dirname(fileURLToPath(import.meta.url));
  for (;;) {
    const pj = join(dir, 'package.json');
    if (existsSync(pj) && (JSON.parse(readFileSync(pj, 'utf8')) as { name?: string }).name === 'mocc') return dir;
    const up = dirname(dir);
    if (up === dir) throw new Error('cannot find the mocc project root');
    dir = up;
  }
}
