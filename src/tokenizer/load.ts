// Loading a tokenizer from a user-given file, and reloading what Tokenizer.serialize() stored in a package.
import { readFileSync, statSync } from 'node:fs';
import { UserError } from '../util/errors.js';
import { HfTokenizer, loadHfTokenizer } from './hf.js';
import { parseLlama2cTokenizer, type Llama2cTokenizerOptions, type SpmTokenizer } from './spm.js';
import type { Tokenizer } from './tokenizer.js';

export interface TokenizerLoadOptions {
  /** BOS / EOS ids to use (e.g. the model spec's); defaults: llama2.c 1/2, tokenizer.json from its own tokens. */
  bosId?: number;
  eosId?: number;
}

/**
 * `.json` → Hugging Face tokenizer.json (tokenizer_config.json beside it is read too); anything else → llama2.c
 * tokenizer.bin, reading vocabSize tokens, or every token up to the end of the file when vocabSize is not given.
 */
export function loadTokenizerFile(path: string, vocabSize?: number, opts: TokenizerLoadOptions = {}): Tokenizer {
  let isFile: boolean;
  try {
    isFile = statSync(path).isFile();
  } catch (e) {
    throw new UserError(`${path}: cannot read tokenizer file: ${(e as Error).message}`);
  }
  if (!isFile) throw new UserError(`${path}: not a file (expected tokenizer.json or a llama2.c tokenizer.bin)`);
  if (path.toLowerCase().endsWith('.json')) return loadHfTokenizer(path, opts);
  return loadLlama2cTokenizer(path, vocabSize, opts);
}

/** Rebuilds a tokenizer from serialize()'s {file, bytes}: 'tokenizer.json' → HF, 'tokenizer.bin' → llama2.c. */
export function tokenizerFromSerialized(file: string, bytes: Uint8Array, opts: TokenizerLoadOptions & { vocabSize?: number } = {}): Tokenizer {
  const base = file.split(/[\\/]/).pop() ?? file;
  if (base.toLowerCase().endsWith('.json')) return new HfTokenizer(bytes, {}, opts, file);
  if (base.toLowerCase().endsWith('.bin')) return parseLlama2cTokenizer(bytes, opts.vocabSize, file, opts);
  throw new UserError(`${file}: unknown stored tokenizer kind (expected tokenizer.json or tokenizer.bin)`);
}

/** Loads a llama2.c tokenizer.bin (BOS 1, EOS 2 unless opts say otherwise). */
export function loadLlama2cTokenizer(path: string, vocabSize?: number, opts: Llama2cTokenizerOptions = {}): SpmTokenizer {
  let bytes: Uint8Array;
  try {
    if (!statSync(path).isFile()) throw new UserError(`${path}: not a file (expected a llama2.c tokenizer.bin)`);
    bytes = readFileSync(path);
  } catch (e) {
    if (e instanceof UserError) throw e;
    throw new UserError(`${path}: cannot read tokenizer file: ${(e as Error).message}`);
  }
  return parseLlama2cTokenizer(bytes, vocabSize, path, opts);
}
