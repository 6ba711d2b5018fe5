// A fuzz case from its id (format, seed, index): the same id always gives the same files.
import { ggufCase } from './mutate/gguf.js';
import { hfConfigCase, safetensorsCase } from './mutate/hf.js';
import { llama2cCase } from './mutate/llama2c.js';
import type { FuzzFiles } from './mutate/types.js';
import { caseSeed, Rng } from './prng.js';

export const FORMATS = ['hf-config', 'safetensors', 'gguf', 'llama2c'] as const;
export type FuzzFormat = (typeof FORMATS)[number];

export interface CaseId {
  format: FuzzFormat;
  seed: number;
  index: number;
}

const GENERATORS: Record<FuzzFormat, (r: Rng) => FuzzFiles> = {
  'hf-config': hfConfigCase,
  safetensors: safetensorsCase,
  gguf: ggufCase,
  llama2c: llama2cCase,
};

export function makeCase(id: CaseId): FuzzFiles {
  return GENERATORS[id.format](new Rng(caseSeed(id.format, id.seed, id.index)));
}

export function caseName(id: CaseId): string {
  return `${id.format}:${id.seed}:${id.index}`;
}

export function parseCaseName(s: string): CaseId {
  const m = /^([\w-]+):(\d+):(\d+)$/.exec(s);
  if (!m || !(FORMATS as readonly string[]).includes(m[1]!)) throw new Error(`not a case id (format:seed:index, format one of ${FORMATS.join(', ')}): ${s}`);
  return { format: m[1] as FuzzFormat, seed: Number(m[2]), index: Number(m[3]) };
}
