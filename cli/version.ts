import { readFileSync } from 'node:fs';
import { projectRoot } from '../src/util/project-root.js';

export const VERSION: string = (JSON.parse(readFileSync(`${projectRoot()}/package.json`, 'utf8')) as { version: string }).version;
