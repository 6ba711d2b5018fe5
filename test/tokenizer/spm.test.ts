import test from 'ava';
import { mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { UserError } from '../../src/util/errors.js';
import { loadTokenizerFile, tokenizerFromSerialized } from '../../src/tokenizer/load.js';
import { SpmTokenizer } from '../../src/tokenizer/spm.js';
import { loadLlama2cTokenizer } from '../../src/tokenizer/load.js';

const fixture = (p: string) => fileURLToPath(new URL(`../../fixtures/stories260K/${p}`, import.meta.url));
const TOK = fixture('llama2c/tok512.bin');
const reference = JSON.parse(readFileSync(fixture('reference/reference.json'), 'utf8')) as {
  prompt: string;
  prompt_ids: number[];
  greedy_text: string;
  sequences: Record<string, { tokens: number[] }>;
};
const tmp = mkdtempSync(join(tmpdir(), 'mocc-spm-'));

test('tok512.bin encodes the prompt exactly as the Hugging Face reference', (t) => {
  const tok = loadLlama2cTokenizer(TOK, 512);
  t.is(tok.kind, 'spm');
  t.is(tok.vocabSize, 512);
  t.is(tok.bosId, 1);
  t.is(tok.eosId, 2);
  t.is(reference.prompt, 'Once upon a time');
  t.deepEqual(tok.encode('Once upon a time'), [1, 403, 407, 261, 378]);
  t.deepEqual(tok.encode(reference.prompt), reference.prompt_ids);
  t.deepEqual(tok.encode('Once upon a time', { bos: false }), [403, 407, 261, 378]);
  t.deepEqual(tok.encode(''), [1]);
});

test('decoding the reference greedy tokens gives the reference greedy text', (t) => {
  const tok = loadLlama2cTokenizer(TOK, 512);
  const toks = reference.sequences.greedy_once_upon!.tokens;
  t.is(tok.decode(toks), reference.greedy_text);
  // The same through pieceBytes, streamed.
  const d = new TextDecoder();
  let s = '';
  for (let i = 1; i < toks.length; i++) s += d.decode(tok.pieceBytes(toks[i - 1]!, toks[i]!), { stream: true });
  t.is(s + d.decode(), reference.greedy_text);
});

test('pieceBytes: leading space dropped only after BOS; <0xNN> pieces give their byte', (t) => {
  const tok = loadLlama2cTokenizer(TOK, 512);
  const enc = new TextEncoder();
  // Token 403 is "Once" with its leading space (prompt ids above).
  t.deepEqual([...tok.pieceBytes(1, 403)], [...enc.encode('Once')]);
  t.deepEqual([...tok.pieceBytes(407, 403)], [...enc.encode(' Once')]);
  // tok512: ids 3..258 are the byte-fallback tokens <0x00>..<0xFF> (fixtures/README.md).
  t.deepEqual([...tok.pieceBytes(1, 3 + 0x0a)], [0x0a]);
  t.deepEqual([...tok.pieceBytes(5, 3 + 0xf0)], [0xf0]);
  t.is(tok.pieceBytes(5, 99999).length, 0);
  t.is(tok.pieceBytes(5, -1).length, 0);
});

test('byte fallback: é and emoji round-trip; odd strings never throw', (t) => {
  const tok = loadLlama2cTokenizer(TOK, 512);
  const emoji = tok.encode('😀', { bos: false });
  // " " dummy prefix, then F0 9F 98 80 as byte tokens (id = byte + 3 in tok512).
  t.deepEqual(emoji.slice(1), [3 + 0xf0, 3 + 0x9f, 3 + 0x98, 3 + 0x80]);
  for (const s of ['café', 'héllo wörld 😀!', '日本語のテキスト', 'tab\there\nnew line', '\u0000', 'a\u0000b', '  two  spaces  ']) {
    const ids = tok.encode(s);
    t.true(ids.every((id) => Number.isInteger(id) && id >= 0 && id < 512), s);
    t.is(tok.decode(ids), s, JSON.stringify(s));
  }
  // Lone surrogates cannot be UTF-8: they become U+FFFD, without throwing.
  t.is(tok.decode(tok.encode('a\ud800b')), 'a\ufffdb');
  t.is(tok.decode(tok.encode('\udc00')), '\ufffd');
});

test('a vocabulary without byte tokens falls back to unk, never throws', (t) => {
  const tok = SpmTokenizer.fromVocab(['<unk>', '<s>', '</s>', '▁', 'a', 'b', '▁a'], [0, 0, 0, -1, -2, -3, -4], 1, 2);
  t.deepEqual(tok.encode('a'), [1, 6]);
  t.deepEqual(tok.encode('aé', { bos: false }), [6, 0, 0]);
  t.deepEqual(tok.encode('ba', { bos: false }), [3, 5, 4]);
  t.is(tok.decode([1, 6, 5]), 'ab');
});

test('merge order: highest score first, leftmost on ties', (t) => {
  // "abc": ab (-1) beats bc (-2) → [ab, c]; with bc better → [a, bc]; equal scores → leftmost pair (ab).
  const mk = (ab: number, bc: number) => SpmTokenizer.fromVocab(['<unk>', '<s>', '</s>', ' ', 'a', 'b', 'c', 'ab', 'bc'], [0, 0, 0, -9, -9, -9, -9, ab, bc], 1, 2);
  t.deepEqual(mk(-1, -2).encode('abc', { bos: false }), [3, 7, 6]);
  t.deepEqual(mk(-2, -1).encode('abc', { bos: false }), [3, 4, 8]);
  t.deepEqual(mk(-1, -1).encode('abc', { bos: false }), [3, 7, 6]);
});

test('serialize() writes the llama2.c format and reloads identically', (t) => {
  const tok = loadLlama2cTokenizer(TOK, 512);
  const s = tok.serialize();
  t.is(s.file, 'tokenizer.bin');
  // tok512.bin itself is in this format: serialization reproduces it byte for byte.
  t.deepEqual(Buffer.from(s.bytes), readFileSync(TOK));
  const p = join(tmp, 'tokenizer.bin');
  writeFileSync(p, s.bytes);
  const again = loadLlama2cTokenizer(p, 512);
  t.deepEqual(again.encode(reference.greedy_text), tok.encode(reference.greedy_text));
  const viaLoad = tokenizerFromSerialized(s.file, s.bytes);
  t.is(viaLoad.vocabSize, 512);
  t.deepEqual(viaLoad.encode('Once upon a time'), [1, 403, 407, 261, 378]);
  // A vocabulary built from strings serializes too (▁ becomes a space, as llama2.c stores it).
  const small = SpmTokenizer.fromVocab(['<unk>', '<s>', '</s>', '▁', 'a', '▁a'], [0, 0, 0, -1, -2, -3], 1, 2);
  const back = tokenizerFromSerialized('tokenizer.bin', small.serialize().bytes);
  t.deepEqual(back.encode('a a'), small.encode('a a'));
  t.deepEqual(back.encode('a a'), [1, 5, 5]);
});

test('loadTokenizerFile: .bin with and without a vocab size; errors are UserErrors', (t) => {
  const a = loadTokenizerFile(TOK, 512);
  const b = loadTokenizerFile(TOK);
  t.is(a.kind, 'spm');
  t.is(b.vocabSize, 512);
  t.deepEqual(b.encode('Once upon a time'), [1, 403, 407, 261, 378]);
  t.throws(() => loadTokenizerFile(join(tmp, 'missing.bin'), 512), { instanceOf: UserError });
  t.throws(() => loadTokenizerFile(tmp, 512), { instanceOf: UserError });
  // Truncated: ask for more tokens than the file has, or cut it mid-token.
  t.throws(() => loadTokenizerFile(TOK, 513), { instanceOf: UserError, message: /truncated/ });
  const bytes = readFileSync(TOK);
  const cut = join(tmp, 'cut.bin');
  writeFileSync(cut, bytes.subarray(0, 1000));
  t.throws(() => loadLlama2cTokenizer(cut, 512), { instanceOf: UserError });
  t.throws(() => loadLlama2cTokenizer(cut), { instanceOf: UserError });
  const bad = join(tmp, 'bad.bin');
  const junk = Buffer.alloc(20);
  junk.writeInt32LE(10, 0);
  junk.writeFloatLE(0, 4);
  junk.writeInt32LE(-5, 8);
  writeFileSync(bad, junk);
  t.throws(() => loadLlama2cTokenizer(bad), { instanceOf: UserError });
  writeFileSync(bad, Buffer.alloc(2));
  t.throws(() => loadLlama2cTokenizer(bad, 4), { instanceOf: UserError });
  t.throws(() => tokenizerFromSerialized('tokenizer.xyz', new Uint8Array(4)), { instanceOf: UserError });
});

test('encoding a few KB is fast', (t) => {
  const tok = loadLlama2cTokenizer(TOK, 512);
  const text = reference.greedy_text.repeat(40); // ~25 KB
  const t0 = performance.now();
  const ids = tok.encode(text);
  t.true(performance.now() - t0 < 1000);
  t.is(tok.decode(ids), text);
});
