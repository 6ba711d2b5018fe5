// Opens any supported checkpoint by looking at what the path is, and finds its tokenizer.
import { existsSync, openSync, readSync, closeSync, statSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { loadTokenizerFile } from '../tokenizer/load.js';
import { importGguf } from './gguf.js';
import type { DequantDType } from './quant-tensor.js';
import { importHf } from './hf.js';
import { importLlama2c } from './llama2c.js';
import type { Checkpoint } from './spec.js';
import { UserError } from './spec.js';

function magic(path: string): string {
  const fd = openSync(path, 'r');
  try {
    const b = Buffer.alloc(4);
    readSync(fd, b, 0, 4, 0);
    return b.toString('latin1');
  } finally {
    closeSync(fd);
  }
}

export interface OpenOptions {
  /** A tokenizer file that overrides the one found with the checkpoint. */
  tokenizer?: string;
  /** What GGUF block-quantized tensors are dequantized to (default: importGguf's). */
  dequantTo?: DequantDType;
}

/**
 * HF directory (config.json) | GGUF file | llama2.c .bin. The tokenizer: --tokenizer, else the one inside
 * the checkpoint (GGUF), else tokenizer.json in an HF directory, else tokenizer.bin beside a llama2.c file.
 */
export function openCheckpoint(path: string, opts: OpenOptions = {}): Checkpoint {
  if (!existsSync(path)) throw new UserError(`${path}: no such file or directory`);
  let ck: Checkpoint;
  let besideTokenizer: string | undefined;
  if (statSync(path).isDirectory()) {
    if (!existsSync(join(path, 'config.json'))) throw new UserError(`${path}: a directory, but no config.json (expected a Hugging Face checkpoint or a mocc package)`);
    ck = importHf(path);
    besideTokenizer = join(path, 'tokenizer.json');
  } else if (path.endsWith('.onnx')) {
    throw new UserError(`${path}: ONNX import is not supported yet (supported: Hugging Face directories, GGUF, llama2.c .bin)`);
  } else if (magic(path) === 'GGUF') {
    ck = importGguf(path, opts.dequantTo ? { dequantTo: opts.dequantTo } : {});
  } else {
    ck = importLlama2c(path);
    besideTokenizer = join(dirname(path), 'tokenizer.bin');
  }
  try {
    const tokPath = opts.tokenizer ?? (!ck.tokenizer && besideTokenizer && existsSync(besideTokenizer) ? besideTokenizer : undefined);
    if (tokPath) ck.tokenizer = loadTokenizerFile(tokPath, ck.spec.vocabSize, { bosId: ck.spec.bosId, eosId: ck.spec.eosId });
    if (ck.tokenizer && ck.tokenizer.vocabSize > ck.spec.vocabSize) {
      throw new UserError(`tokenizer has ${ck.tokenizer.vocabSize} tokens but the model's vocabulary is ${ck.spec.vocabSize}`);
    }
  } catch (e) {
    ck.close();
    throw e;
  }
  return ck;
}
