// The training-data layer (src/train/data.ts) on real TinyStories text and the stories260K tokenizer:
// every format gives the same documents, training windows are deterministic and resume exactly, and
// evaluation batches count every next-token prediction once. Expected documents come from splitting
// the text here by hand and encoding with the tokenizer; targets are checked against the documents.
import test from 'ava';
import { mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { tempDir } from '../helpers/cli.js';
import { throwsUser } from '../helpers/errors.js';
import { LLAMA2C_TOKENIZER, ROOT } from '../helpers/fixtures.js';
import { loadTokenizerFile } from '../../src/tokenizer/load.js';
import {
  checkSeqFitsContext, evalBatches, predictionCount, readTokenData, tokenDataFromDocuments, WindowSampler,
  type TokenBatch, type TokenData,
} from '../../src/train/data.js';

const HEAD = `${ROOT}fixtures/tinystories/validation-head.txt`;
/** From fixtures/tinystories/README.md (sha256sum of the file). */
const HEAD_SHA256 = '54a2e3fd150fa0c5fe2fca9584e36d8dbbef9d7ab7d79ad020e9f9725df98de5';
const tok = loadTokenizerFile(LLAMA2C_TOKENIZER);
const text = readFileSync(HEAD, 'utf8');
/**
 * The file's blocks, split by hand: it has no whitespace-only lines and no triple newlines (checked with
 * python when cut). Documents are trimmed (block 58 ends in a space).
 */
const blocks = text.trimEnd().split('\n\n').map((b) => b.trim());
const expectedDocs = blocks.map((b) => tok.encode(b, { bos: true }));

function sameDocs(t: import('ava').ExecutionContext, data: TokenData, docs: number[][] = expectedDocs): void {
  t.is(data.documents.length, docs.length, 'document count');
  const bad = docs.findIndex((d, i) => d.join(',') !== Array.from(data.documents[i] ?? []).join(','));
  t.is(bad, -1, `document ${bad} differs`);
}

function writeTokens(path: string, ids: number[], width: 2 | 4): void {
  const b = Buffer.alloc(ids.length * width);
  ids.forEach((id, i) => (width === 2 ? b.writeUInt16LE(id, i * 2) : b.writeUInt32LE(id, i * 4)));
  writeFileSync(path, b);
}

test('the fixture: 98 blank-line-separated stories, every document starts with BOS', (t) => {
  t.is(blocks.length, 98);
  const data = readTokenData(HEAD, tok);
  t.is(data.format, 'text');
  t.is(data.checksum, HEAD_SHA256);
  t.is(data.source, HEAD);
  sameDocs(t, data);
  t.true(data.documents.every((d) => d[0] === tok.bosId && d.length > 1));
});

test('text with <|endoftext|> separators, CRLF line ends and extra blank lines gives the same documents', (t) => {
  const dir = tempDir(t);
  const eot = join(dir, 'eot.txt');
  writeFileSync(eot, blocks.join('<|endoftext|>'));
  sameDocs(t, readTokenData(eot, tok));
  const crlf = join(dir, 'crlf.txt');
  writeFileSync(crlf, '\r\n \r\n' + blocks.join('\r\n\r\n\t\r\n') + '\r\n');
  sameDocs(t, readTokenData(crlf, tok));
  // A line break inside a block stays inside its document.
  const inner = join(dir, 'inner.txt');
  writeFileSync(inner, 'One line.\nNext line.\n\nSecond doc.');
  sameDocs(t, readTokenData(inner, tok), [tok.encode('One line.\nNext line.', { bos: true }), tok.encode('Second doc.', { bos: true })]);
});

test('JSONL (detected by extension or by content) gives the same documents', (t) => {
  const dir = tempDir(t);
  // HF datasets rows: other fields beside text; surrounding whitespace trimmed; blank lines and blank texts skipped.
  const lines = blocks.map((b, i) => JSON.stringify({ id: i, text: i % 2 ? ` ${b}\n` : b }));
  lines.splice(5, 0, '', JSON.stringify({ id: 'blank', text: '  ' }), '   ');
  const body = lines.join('\n') + '\n';
  for (const name of ['data.jsonl', 'data.txt', 'data']) {
    const p = join(dir, name);
    writeFileSync(p, body);
    const data = readTokenData(p, tok);
    t.is(data.format, 'jsonl', name);
    sameDocs(t, data);
  }
  // One JSONL document may hold blank lines: it is not split.
  const p = join(dir, 'para.jsonl');
  writeFileSync(p, JSON.stringify({ text: 'A.\n\nB.' }) + '\n');
  sameDocs(t, readTokenData(p, tok), [tok.encode('A.\n\nB.', { bos: true })]);
  // The format option overrides detection: the same file read as plain text is one JSON-looking document
  // (the newlines are JSON escapes there, not blank lines).
  sameDocs(t, readTokenData(p, tok, { format: 'text' }), [tok.encode('{"text":"A.\\n\\nB."}', { bos: true })]);
});

test('uint16 and uint32 token files give the same documents; ids before the first BOS get one in front', (t) => {
  const dir = tempDir(t);
  const flat = expectedDocs.flat();
  for (const [name, width] of [['data.u16', 2], ['data.u32', 4], ['DATA.U16', 2]] as const) {
    const p = join(dir, name);
    writeTokens(p, flat, width);
    const data = readTokenData(p, tok);
    t.is(data.format, width === 2 ? 'tokens-u16' : 'tokens-u32', name);
    sameDocs(t, data);
  }
  // Explicit format on an unknown extension; no BOS at all → one document; repeated BOS → no empty document.
  const p = join(dir, 'ids.bin');
  writeTokens(p, [72, 73, 74, 1, 1, 80, 81, 1], 4);
  sameDocs(t, readTokenData(p, tok, { format: 'tokens-u32' }), [[1, 72, 73, 74], [1, 80, 81]]);
  // In-memory data checksums as its .u32 file does.
  writeTokens(p, flat, 4);
  const fromFile = readTokenData(p, tok, { format: 'tokens-u32' });
  t.is(tokenDataFromDocuments(expectedDocs.map((d) => Int32Array.from(d))).checksum, fromFile.checksum);
});

/** The concatenated document stream, built here from the expected documents. */
const stream = expectedDocs.flat();
const streamKey = ',' + stream.join(',') + ',';

function checkWindows(t: import('ava').ExecutionContext, b: TokenBatch, batch: number, seq: number): void {
  t.is(b.tokens.length, batch * seq);
  for (const k of ['pos', 'seq', 'targets'] as const) t.is(b[k].length, batch * seq, k);
  for (let s = 0; s < batch; s++) {
    const r0 = s * seq;
    t.deepEqual(Array.from(b.pos.subarray(r0, r0 + seq)), Array.from({ length: seq }, (_, i) => i));
    t.true(b.seq.subarray(r0, r0 + seq).every((x) => x === s));
    // seq + 1 consecutive tokens of the stream: the rows' tokens, then the last row's target.
    const window = [...b.tokens.subarray(r0, r0 + seq), b.targets[r0 + seq - 1]!];
    t.true(streamKey.includes(',' + window.join(',') + ','), `window ${s} is a slice of the document stream`);
    for (let i = 0; i + 1 < seq; i++) t.is(b.targets[r0 + i], b.tokens[r0 + i + 1]);
  }
}

test('WindowSampler: windows of the document stream, deterministic for a seed', (t) => {
  const data = readTokenData(HEAD, tok);
  const opts = { batch: 4, seq: 32, seed: 7 };
  const a = new WindowSampler(data, opts), b = new WindowSampler(data, opts), c = new WindowSampler(data, { ...opts, seed: 8 });
  const crossing = { n: 0 };
  for (let i = 0; i < 20; i++) {
    const x = a.next(), y = b.next(), z = c.next();
    checkWindows(t, x, 4, 32);
    t.deepEqual(x, y);
    t.notDeepEqual(x.tokens, z.tokens);
    for (let r = 1; r < x.tokens.length; r++) if (x.tokens[r] === tok.bosId && x.pos[r] !== 0) crossing.n++;
  }
  t.true(crossing.n > 0, 'some windows cross a document boundary');
});

test('WindowSampler: every start is reachable, including the last', (t) => {
  // 34 tokens, seq 32: windows start at 0 or 1 only.
  const docs = [Int32Array.from({ length: 34 }, (_, i) => (i === 0 ? 1 : 3 + i))];
  const s = new WindowSampler(tokenDataFromDocuments(docs), { batch: 8, seq: 32, seed: 1 });
  const starts = new Set<number>();
  for (let i = 0; i < 10; i++) {
    const b = s.next();
    for (let q = 0; q < 8; q++) starts.add(b.tokens[q * 32]! === 1 ? 0 : b.tokens[q * 32]! - 3);
  }
  t.deepEqual([...starts].sort(), [0, 1]);
  // Exactly seq + 1 tokens: the one window there is.
  const one = new WindowSampler(tokenDataFromDocuments([docs[0]!.slice(0, 33)]), { batch: 2, seq: 32, seed: 1 }).next();
  t.deepEqual(Array.from(one.targets.subarray(0, 32)), Array.from(docs[0]!.subarray(1, 33)));
});

test('WindowSampler.restore after k batches continues the identical stream (state survives JSON)', (t) => {
  const data = readTokenData(HEAD, tok);
  const opts = { batch: 3, seq: 16, seed: 12345 };
  const whole = new WindowSampler(data, opts);
  const expected = Array.from({ length: 12 }, () => whole.next());
  for (const k of [0, 1, 5]) {
    const first = new WindowSampler(data, opts);
    for (let i = 0; i < k; i++) first.next();
    const state = JSON.parse(JSON.stringify(first.state()));
    t.is(state.batches, k);
    const resumed = WindowSampler.restore(data, opts, state);
    for (let i = k; i < 12; i++) t.deepEqual(resumed.next(), expected[i], `batch ${i} after restoring at ${k}`);
    t.is(resumed.state().batches, 12);
  }
  const state = new WindowSampler(data, opts).state();
  const other = tokenDataFromDocuments(data.documents.slice(1));
  throwsUser(t, () => WindowSampler.restore(other, opts, state), /data differs from the run being resumed/);
  throwsUser(t, () => WindowSampler.restore(data, { ...opts, batch: 4 }, state), 'batch 4 × seq 16 differs from the run being resumed (batch 3 × seq 16)');
  throwsUser(t, () => WindowSampler.restore(data, opts, { ...state, rng: -1 }), 'not a window sampler state');
});

test('evalBatches: each prediction once, in document order, targets the next token of the document', (t) => {
  const data = readTokenData(HEAD, tok);
  const total = expectedDocs.reduce((n, d) => n + d.length - 1, 0);
  t.is(predictionCount(data), total);
  const seq = 20, rowsPerBatch = 64;
  t.true(expectedDocs.some((d) => d.length > 2 * seq), 'some documents are cut into several pieces');
  const batches = evalBatches(data, { seq, rowsPerBatch });
  t.deepEqual(evalBatches(data, { seq, rowsPerBatch }), batches, 'deterministic');
  let counted = 0;
  const rows: Array<{ token: number; target: number; pos: number }> = [];
  for (const b of batches) {
    t.true(b.tokens.length <= rowsPerBatch && b.tokens.length > 0);
    counted += b.targets.filter((x) => x >= 0).length;
    for (let r = 0; r < b.tokens.length; r++) {
      // seq ids start at 0 in each batch and go up by one at each new piece; a piece starts at pos 0 and has ≤ seq rows.
      if (r === 0) t.is(b.seq[r], 0);
      else t.true(b.seq[r] === b.seq[r - 1] ? b.pos[r] === b.pos[r - 1]! + 1 : b.seq[r] === b.seq[r - 1]! + 1 && b.pos[r] === 0);
      t.true(b.pos[r]! < seq);
      rows.push({ token: b.tokens[r]!, target: b.targets[r]!, pos: b.pos[r]! });
    }
  }
  t.is(counted, total);
  // Walking the documents in order: token i of each document (all but the last) predicts token i + 1.
  let r = 0;
  for (const d of expectedDocs) {
    for (let i = 0; i + 1 < d.length; i++, r++) {
      const row = rows[r]!;
      if (row.token !== d[i] || row.target !== d[i + 1] || row.pos !== i % seq) { t.fail(`row ${r}: document token ${i}`); return; }
    }
  }
  t.is(r, rows.length);
  // A batch as big as the whole data holds it all in one.
  t.is(evalBatches(data, { seq: 512, rowsPerBatch: 1 << 20 }).length, 1);
});

test('bad input: each a one-line UserError saying what is wrong', (t) => {
  const dir = tempDir(t);
  const file = (name: string, content: string | Uint8Array): string => {
    const p = join(dir, name);
    writeFileSync(p, content);
    return p;
  };
  throwsUser(t, () => readTokenData(join(dir, 'missing.txt'), tok), /missing\.txt: cannot read data file: ENOENT/);
  mkdirSync(join(dir, 'sub'));
  throwsUser(t, () => readTokenData(join(dir, 'sub'), tok), /sub: not a file/);
  throwsUser(t, () => readTokenData(file('empty.txt', ''), tok), 'empty.txt: data file is empty');
  throwsUser(t, () => readTokenData(file('blank.txt', '\n \n\t\n<|endoftext|>\n'), tok), 'blank.txt: no documents (only whitespace)');
  throwsUser(t, () => readTokenData(file('blank.jsonl', '{"text": " "}\n'), tok), 'no documents (every "text" is blank)');
  throwsUser(t, () => readTokenData(file('empty.u16', ''), tok), 'empty.u16: data file is empty');

  // Binary: compressed text, invalid UTF-8, and uint16 ids under an unknown extension (valid UTF-8 with NULs).
  const gz = new Uint8Array([0x1f, 0x8b, 0x08, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x03, 0xff, 0xfe]);
  throwsUser(t, () => readTokenData(file('data.txt.gz', gz), tok), /not UTF-8 text \(invalid byte at offset 1\): binary data \(gzip-compressed data; starts 1f 8b 08 00 00 00 00 00 …; .*\*\.u16 or \*\.u32/);
  throwsUser(t, () => readTokenData(file('utf16.txt', Buffer.from('\ufeffOnce upon a time', 'utf16le')), tok), 'utf16.txt: not UTF-8 text (invalid byte at offset 0): binary data (a UTF-16 byte-order mark (convert the file to UTF-8); starts ff fe 4f 00');
  throwsUser(t, () => readTokenData(file('cut.txt', new Uint8Array([0x61, 0x62, 0xe2, 0x82])), tok), 'invalid byte at offset 2');
  const ids = Buffer.alloc(200);
  for (let i = 0; i < 100; i++) ids.writeUInt16LE(65 + (i % 26), i * 2);
  throwsUser(t, () => readTokenData(file('ids.bin', ids), tok), /ids\.bin: not text: binary data \(starts 41 00 42 00 .*100 of the first 200 bytes are NUL\)/);

  // Token files.
  throwsUser(t, () => readTokenData(file('odd.u16', new Uint8Array(5)), tok), 'odd.u16: 5 bytes is not a whole number of uint16 token ids (2 bytes each)');
  const big = Buffer.alloc(8);
  big.writeUInt16LE(1, 0); big.writeUInt16LE(5, 2); big.writeUInt16LE(512, 4);
  throwsUser(t, () => readTokenData(file('big.u16', big), tok), 'big.u16: token id 512 at byte offset 4 is not below the vocabulary size 512');
  throwsUser(t, () => readTokenData(file('ok.u16', big.subarray(0, 4)), tok, { vocabSize: 4 }), 'token id 5 at byte offset 2 is not below the vocabulary size 4');
  throwsUser(t, () => readTokenData(file('bos.u32', new Uint8Array([1, 0, 0, 0, 1, 0, 0, 0])), tok), 'bos.u32: no documents (2 uint32 ids, none but BOS 1)');

  // Invalid JSONL, each naming the line.
  throwsUser(t, () => readTokenData(file('a.jsonl', '{"text": "a"}\n\n{"text": "b"\n'), tok), /a\.jsonl: line 3: not valid JSON \(/);
  throwsUser(t, () => readTokenData(file('b.jsonl', '{"text": "a"}\n{"story": "b", "id": 2}\n'), tok), 'b.jsonl: line 2: no "text" field (keys story, id)');
  throwsUser(t, () => readTokenData(file('c.txt', '{"text": "a"}\n{"text": 5}\n'), tok), 'c.txt: line 2: "text" is 5, not a string');
  throwsUser(t, () => readTokenData(file('d.jsonl', '{"text": "a"}\n["text"]\n'), tok), 'd.jsonl: line 2: expected a JSON object with a "text" field, got ["text"]');
  throwsUser(t, () => readTokenData(file('e.jsonl', 'just text\n'), tok), 'e.jsonl: line 1: not valid JSON');

  // Too little data for one window: says how many tokens there are and how many are needed.
  const small = file('small.txt', 'Once upon a time.');
  const n = tok.encode('Once upon a time.', { bos: true }).length;
  throwsUser(t, () => new WindowSampler(readTokenData(small, tok), { batch: 2, seq: 64, seed: 0 }), `small.txt: ${n} tokens in 1 document(s), fewer than one training window needs (seq 64 + 1 = 65)`);
  throwsUser(t, () => new WindowSampler(readTokenData(small, tok), { batch: 0, seq: 4, seed: 0 }), 'batch must be a positive integer (got 0)');
  throwsUser(t, () => checkSeqFitsContext(1024, 512), "--seq 1024 is above the model's context length 512");
  t.notThrows(() => checkSeqFitsContext(512, 512));
});
