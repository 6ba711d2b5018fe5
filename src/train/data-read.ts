// Reading training / evaluation data (`mocc train --data`, `mocc eval --data`) into documents of token
// ids: plain text, JSONL with a `text` field, or pre-tokenized uint16 / uint32 token files.
import { createHash } from 'node:crypto';
import { readFileSync, statSync } from 'node:fs';
import { extname } from 'node:path';
import type { Tokenizer } from '../tokenizer/tokenizer.js';
import { UserError } from '../util/errors.js';
import { describeBinary, firstInvalidUtf8, looksBinary } from './binary.js';
import { jsonlTexts, looksLikeJsonl, plainTextDocuments } from './text-formats.js';

export type DataFormat = 'text' | 'jsonl' | 'tokens-u16' | 'tokens-u32';
export const DATA_FORMATS: readonly DataFormat[] = ['text', 'jsonl', 'tokens-u16', 'tokens-u32'];

export interface TokenData {
  /** documents as token ids, each starting with BOS */
  documents: Int32Array[];
  /** sha256 hex of the file's bytes */
  checksum: string;
  format: DataFormat;
  /** Where the data came from (the file path), for messages; absent for data built in memory. */
  source?: string;
}

export interface ReadTokenDataOptions {
  /** Skips detection (which looks at the extension, then the content). */
  format?: DataFormat;
  /** Ids must be below this (default: the tokenizer's vocabSize), e.g. the model's vocab size. */
  vocabSize?: number;
  /** Where documents start in a token-id file read without a tokenizer (the model's BOS id). */
  bosId?: number;
}

/** The sum of the documents' lengths: what a training window is cut from. */
export function tokenCount(data: Pick<TokenData, 'documents'>): number {
  return data.documents.reduce((n, d) => n + d.length, 0);
}

/**
 * Data built in memory (e.g. text a teacher model generated): each document must start with BOS. Its
 * checksum is that of the same ids written as a .u32 token file, so reading that file back matches.
 */
export function tokenDataFromDocuments(documents: Int32Array[], source?: string): TokenData {
  const hash = createHash('sha256');
  for (const d of documents) {
    const le = new Uint8Array(d.length * 4);
    const view = new DataView(le.buffer);
    d.forEach((id, i) => view.setUint32(i * 4, id, true));
    hash.update(le);
  }
  return { documents, checksum: hash.digest('hex'), format: 'tokens-u32', ...(source === undefined ? {} : { source }) };
}

/**
 * Reads a data file: plain UTF-8 text (documents separated by blank lines or `<|endoftext|>`), JSONL
 * (every non-blank line an object with a string `text`, one document each), or token ids (uint16 /
 * uint32 little-endian, recognised by the extension .u16 / .u32; documents start at each BOS id).
 * Text documents are trimmed and encoded with the tokenizer, BOS first. Every bad input is a UserError.
 */
export function readTokenData(path: string, tokenizer: Tokenizer | undefined, opts: ReadTokenDataOptions = {}): TokenData {
  const vocabSize = opts.vocabSize ?? tokenizer?.vocabSize;
  const bosId = tokenizer?.bosId ?? opts.bosId;
  if (vocabSize === undefined || bosId === undefined) throw new Error('readTokenData: without a tokenizer, give vocabSize and bosId');
  const bytes = readDataFile(path);
  const checksum = createHash('sha256').update(bytes).digest('hex');
  const tokenFormat = opts.format ?? formatFromExtension(path);
  if (tokenFormat === 'tokens-u16' || tokenFormat === 'tokens-u32') {
    const documents = tokenFileDocuments(path, bytes, tokenFormat === 'tokens-u16' ? 2 : 4, bosId, vocabSize);
    return { documents, checksum, format: tokenFormat, source: path };
  }
  const text = decodeText(path, bytes);
  const format = tokenFormat ?? (looksLikeJsonl(text) ? 'jsonl' : 'text');
  const texts = format === 'jsonl' ? jsonlTexts(path, text) : plainTextDocuments(text);
  if (texts.length === 0) throw new UserError(`${path}: no documents (${format === 'jsonl' ? 'every "text" is blank' : 'only whitespace'})`);
  if (!tokenizer) throw new UserError(`${path} is ${format === 'jsonl' ? 'JSONL' : 'text'}: encoding it needs a tokenizer (give --tokenizer FILE, or token ids as FILE.u16)`);
  const documents = texts.map((t) => Int32Array.from(tokenizer.encode(t, { bos: true })));
  checkIds(path, documents, vocabSize, (d, id) => `document ${d + 1} encodes to token id ${id}`);
  return { documents, checksum, format, source: path };
}

function readDataFile(path: string): Uint8Array {
  let bytes: Uint8Array;
  try {
    if (!statSync(path).isFile()) throw new UserError(`${path}: not a file (expected a data file: text, JSONL, .u16 or .u32 tokens)`);
    bytes = readFileSync(path);
  } catch (e) {
    if (e instanceof UserError) throw e;
    throw new UserError(`${path}: cannot read data file: ${(e as NodeJS.ErrnoException).code ?? (e as Error).message}`);
  }
  if (bytes.length === 0) throw new UserError(`${path}: data file is empty`);
  return bytes;
}

function formatFromExtension(path: string): DataFormat | undefined {
  switch (extname(path).toLowerCase()) {
    case '.u16': return 'tokens-u16';
    case '.u32': return 'tokens-u32';
    case '.jsonl': return 'jsonl';
    default: return undefined;
  }
}

/** UTF-8 text, or a UserError that says what the bytes look like instead. */
function decodeText(path: string, bytes: Uint8Array): string {
  const bad = firstInvalidUtf8(bytes);
  if (bad >= 0) throw new UserError(`${path}: not UTF-8 text (invalid byte at offset ${bad}): ${describeBinary(bytes)}`);
  if (looksBinary(bytes)) throw new UserError(`${path}: not text: ${describeBinary(bytes)}`);
  return new TextDecoder('utf-8').decode(bytes); // drops a leading byte-order mark
}

/**
 * Token ids, little-endian, `width` bytes each, cut into documents at each BOS id (the llama2.c
 * pretokenized layout: BOS opens every story). A first run of ids before any BOS is a document too,
 * with BOS put in front; a document of BOS alone (nothing to predict) is dropped.
 */
function tokenFileDocuments(path: string, bytes: Uint8Array, width: 2 | 4, bosId: number, vocabSize: number): Int32Array[] {
  const kind = `uint${width * 8}`;
  if (bytes.length % width !== 0) {
    throw new UserError(`${path}: ${bytes.length} bytes is not a whole number of ${kind} token ids (${width} bytes each)`);
  }
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const n = bytes.length / width;
  const ids = new Int32Array(n);
  for (let i = 0; i < n; i++) {
    const id = width === 2 ? view.getUint16(i * width, true) : view.getUint32(i * width, true);
    if (id >= vocabSize) {
      throw new UserError(`${path}: token id ${id} at byte offset ${i * width} is not below the vocabulary size ${vocabSize} (is this a ${kind} token file?)`);
    }
    ids[i] = id;
  }
  const documents: Int32Array[] = [];
  let start = 0;
  const flush = (end: number): void => {
    if (end === start) return;
    const first = ids[start] === bosId;
    if (first && end - start === 1) return;
    if (first) documents.push(ids.subarray(start, end)); // views of one array: no copy of a large file
    else {
      const d = new Int32Array(end - start + 1);
      d[0] = bosId;
      d.set(ids.subarray(start, end), 1);
      documents.push(d);
    }
  };
  for (let i = 1; i < n; i++) {
    if (ids[i] === bosId) { flush(i); start = i; }
  }
  flush(n);
  if (documents.length === 0) throw new UserError(`${path}: no documents (${n} ${kind} ids, none but BOS ${bosId})`);
  return documents;
}

/** Every id below vocabSize (a tokenizer larger than the model's vocabulary could break this). */
function checkIds(path: string, documents: Int32Array[], vocabSize: number, what: (doc: number, id: number) => string): void {
  documents.forEach((d, i) => {
    for (const id of d) if (id >= vocabSize) throw new UserError(`${path}: ${what(i, id)}, not below the vocabulary size ${vocabSize}`);
  });
}
