// Opens any supported checkpoint by what its content is (detect.ts), and finds its tokenizer.
import { existsSync, readdirSync, readFileSync, statSync } from 'node:fs';
import { basename, dirname, join, resolve } from 'node:path';
import { loadTokenizerFile } from '../tokenizer/load.js';
import { parseLlama2cTokenizer } from '../tokenizer/spm.js';
import { detectFormat, unreadableMessage, type DetectedFormat } from './detect.js';
import { importGguf } from './gguf.js';
import type { DequantDType } from './quant-tensor.js';
import { importHf } from './hf.js';
import { importLlama2c } from './llama2c.js';
import { importOnnx } from './onnx/index.js';
import type { Checkpoint } from './spec.js';
import { UserError } from '../util/errors.js';

export interface OpenOptions {
  /** A tokenizer file that overrides the one found with the checkpoint. */
  tokenizer?: string;
  /** What GGUF block-quantized tensors are dequantized to (default: importGguf's). */
  dequantTo?: DequantDType;
}

export interface OpenedCheckpoint extends Checkpoint {
  /** Where a tokenizer was looked for and not found, in words (for the "no tokenizer" message). */
  tokenizerSearch?: string;
}

/** Names a llama2.c tokenizer beside a checkpoint is looked for under first. */
const LLAMA2C_TOKENIZER = 'tokenizer.bin';
/** Bigger .bin files beside a checkpoint are not read as tokenizer candidates (32000 tokens take ~0.5 MB). */
const MAX_TOKENIZER_BYTES = 16 << 20;

/**
 * The llama2.c tokenizer beside `ckptPath`: tokenizer.bin, else the one .bin file there (other than the
 * checkpoint) that parses to the end as a llama2.c tokenizer with exactly `vocab` tokens (e.g. tok512.bin).
 */
function llama2cTokenizerBeside(ckptPath: string, vocab: number): string | undefined {
  const dir = dirname(ckptPath);
  const named = join(dir, LLAMA2C_TOKENIZER);
  if (existsSync(named)) return named;
  const self = resolve(ckptPath);
  const found = readdirSync(dir).filter((n) => n.toLowerCase().endsWith('.bin')).map((n) => join(dir, n)).filter((p) => {
    if (resolve(p) === self) return false;
    try {
      const st = statSync(p);
      if (!st.isFile() || st.size > MAX_TOKENIZER_BYTES) return false;
      return parseLlama2cTokenizer(readFileSync(p), undefined, p).vocabSize === vocab;
    } catch {
      return false;
    }
  });
  return found.length === 1 ? found[0] : undefined;
}

/**
 * HF directory (config.json) | GGUF file | ONNX file | llama2.c .bin, told apart by content. The tokenizer:
 * --tokenizer, else the one inside the checkpoint (GGUF), else tokenizer.json in an HF directory or beside
 * an ONNX file, else a
 * llama2.c tokenizer beside a llama2.c file (tokenizer.bin, or the single .bin there that is one).
 */
export function openCheckpoint(path: string, opts: OpenOptions = {}, detected: DetectedFormat = detectFormat(path)): OpenedCheckpoint {
  let ck: OpenedCheckpoint;
  let beside: (() => string | undefined) | undefined;
  switch (detected.kind) {
    case 'hf':
      ck = importHf(path);
      beside = () => (existsSync(join(path, 'tokenizer.json')) ? join(path, 'tokenizer.json') : undefined);
      ck.tokenizerSearch = `no tokenizer.json in ${path}`;
      break;
    case 'gguf':
      ck = importGguf(path, opts.dequantTo ? { dequantTo: opts.dequantTo } : {});
      ck.tokenizerSearch = `${basename(path)} holds no tokenizer`;
      break;
    case 'llama2c':
      ck = importLlama2c(path);
      beside = () => llama2cTokenizerBeside(path, ck.spec.vocabSize);
      ck.tokenizerSearch = `no ${LLAMA2C_TOKENIZER}, nor a single llama2.c tokenizer .bin with ${ck.spec.vocabSize} tokens, beside ${basename(path)}`;
      break;
    case 'onnx': {
      ck = importOnnx(path);
      const tokJson = join(dirname(path), 'tokenizer.json');
      beside = () => (existsSync(tokJson) ? tokJson : undefined);
      ck.tokenizerSearch = `no tokenizer.json beside ${basename(path)}`;
      break;
    }
    default:
      throw new UserError(unreadableMessage(path, detected));
  }
  try {
    const tokPath = opts.tokenizer ?? (!ck.tokenizer ? beside?.() : undefined);
    if (tokPath) {
      ck.tokenizer = loadTokenizerFile(tokPath, ck.spec.vocabSize, { bosId: ck.spec.bosId, eosId: ck.spec.eosId });
      ck.tokenizerFile = tokPath;
    }
    if (ck.tokenizer && ck.tokenizer.vocabSize > ck.spec.vocabSize) {
      throw new UserError(`tokenizer has ${ck.tokenizer.vocabSize} tokens but the model's vocabulary is ${ck.spec.vocabSize}`);
    }
  } catch (e) {
    ck.close();
    throw e;
  }
  return ck;
}
