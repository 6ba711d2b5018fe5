// Reading --data / --eval for train, recover and eval: one rule for when a tokenizer is needed
// (text is; token-id files .u16/.u32, or --data-format tokens-*, are not), checked per file.
import type { Tokenizer } from '../src/tokenizer/tokenizer.js';
import { readTokenData, type DataFormat, type TokenData } from '../src/train/data.js';
import { UserError } from '../src/util/errors.js';

export interface DataReader {
  tokenizer: Tokenizer | undefined;
  vocabSize: number;
  /** The model's BOS id: where documents start in a token-id file. */
  bosId: number;
  format?: DataFormat;
  /** The message when a text file comes without a tokenizer (says where one was looked for). */
  noTokenizer: string;
}

/** A reader of data files: the same tokenizer, vocabulary and format flag for each. */
export function dataReader(r: DataReader): (file: string) => TokenData {
  return (file) => {
    const tokenIds = r.format ? r.format.startsWith('tokens') : /\.u(16|32)$/.test(file);
    if (!r.tokenizer && !tokenIds) throw new UserError(r.noTokenizer);
    return readTokenData(file, r.tokenizer, { vocabSize: r.vocabSize, bosId: r.bosId, ...(r.format ? { format: r.format } : {}) });
  };
}

/** "<model> has no tokenizer (where it looked): give --tokenizer FILE, or token ids as FILE.u16". */
export function noTokenizerMessage(m: { source: string; tokenizerSearch?: string }): string {
  return `${m.source} has no tokenizer${m.tokenizerSearch ? ` (${m.tokenizerSearch})` : ''}: give --tokenizer FILE, or token ids as --data FILE.u16`;
}
