import test from 'ava';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { HfTokenizer, loadHfTokenizer } from '../../src/tokenizer/hf.js';
import { loadTokenizerFile, tokenizerFromSerialized } from '../../src/tokenizer/load.js';
import { UserError } from '../../src/util/errors.js';

const enc = new TextEncoder();

/** A tiny llama-style (metaspace + byte fallback BPE) tokenizer.json, written the way HF's LlamaTokenizerFast saves it. */
function llamaStyleJson(): { json: object; vocab: Record<string, number> } {
  const vocab: Record<string, number> = { '<unk>': 0, '<s>': 1, '</s>': 2 };
  for (let b = 0; b < 256; b++) vocab[`<0x${b.toString(16).toUpperCase().padStart(2, '0')}>`] = 3 + b;
  let next = 259;
  for (const c of ['▁', 'h', 'e', 'l', 'o', 'w', 'r', 'd', 'a']) vocab[c] = next++;
  const merges: [string, string][] = [['h', 'e'], ['l', 'l'], ['he', 'll'], ['hell', 'o'], ['▁', 'hello'], ['o', 'r'], ['w', 'or'], ['wor', 'l'], ['worl', 'd'], ['▁', 'world']];
  for (const [a, b] of merges) vocab[a + b] = next++;
  const special = (id: number, content: string) => ({ id, content, single_word: false, lstrip: false, rstrip: false, normalized: false, special: true });
  const json = {
    version: '1.0',
    truncation: null,
    padding: null,
    added_tokens: [special(0, '<unk>'), special(1, '<s>'), special(2, '</s>')],
    normalizer: { type: 'Sequence', normalizers: [{ type: 'Prepend', prepend: '▁' }, { type: 'Replace', pattern: { String: ' ' }, content: '▁' }] },
    pre_tokenizer: null,
    post_processor: {
      type: 'TemplateProcessing',
      single: [{ SpecialToken: { id: '<s>', type_id: 0 } }, { Sequence: { id: 'A', type_id: 0 } }],
      pair: [{ SpecialToken: { id: '<s>', type_id: 0 } }, { Sequence: { id: 'A', type_id: 0 } }, { SpecialToken: { id: '<s>', type_id: 1 } }, { Sequence: { id: 'B', type_id: 1 } }],
      special_tokens: { '<s>': { id: '<s>', ids: [1], tokens: ['<s>'] } },
    },
    decoder: { type: 'Sequence', decoders: [{ type: 'Replace', pattern: { String: '▁' }, content: ' ' }, { type: 'ByteFallback' }, { type: 'Fuse' }, { type: 'Strip', content: ' ', start: 1, stop: 0 }] },
    model: { type: 'BPE', dropout: null, unk_token: '<unk>', continuing_subword_prefix: null, end_of_word_suffix: null, fuse_unk: true, byte_fallback: true, ignore_merges: false, vocab, merges },
  };
  return { json, vocab };
}

/** GPT-2's printable stand-in for each byte (written out independently of the code under test). */
function gpt2ByteChar(b: number): string {
  const printable = (x: number) => (x >= 0x21 && x <= 0x7e) || (x >= 0xa1 && x <= 0xac) || (x >= 0xae && x <= 0xff);
  if (printable(b)) return String.fromCharCode(b);
  let n = 0;
  for (let x = 0; x < b; x++) if (!printable(x)) n++;
  return String.fromCharCode(256 + n);
}

/** A tiny GPT-2-style byte-level BPE tokenizer.json. */
function byteLevelJson(): { json: object; vocab: Record<string, number> } {
  const vocab: Record<string, number> = {};
  for (let b = 0; b < 256; b++) vocab[gpt2ByteChar(b)] = b;
  let next = 256;
  const merges: string[] = ['h e', 'l l', 'he ll', 'hell o', 'Ġ w', 'o r', 'Ġw or', 'Ġwor l', 'Ġworl d'];
  for (const m of merges) vocab[m.replace(' ', '')] = next++;
  vocab['<|endoftext|>'] = next;
  const json = {
    version: '1.0',
    added_tokens: [{ id: next, content: '<|endoftext|>', single_word: false, lstrip: false, rstrip: false, normalized: false, special: true }],
    normalizer: null,
    pre_tokenizer: { type: 'ByteLevel', add_prefix_space: false, trim_offsets: true, use_regex: true },
    post_processor: { type: 'ByteLevel', add_prefix_space: true, trim_offsets: false, use_regex: true },
    decoder: { type: 'ByteLevel', add_prefix_space: true, trim_offsets: true, use_regex: true },
    model: { type: 'BPE', dropout: null, unk_token: null, continuing_subword_prefix: '', end_of_word_suffix: '', fuse_unk: false, byte_fallback: false, vocab, merges },
  };
  return { json, vocab };
}

function writeJson(obj: object, config?: object): string {
  const dir = mkdtempSync(join(tmpdir(), 'mocc-hf-tok-'));
  const p = join(dir, 'tokenizer.json');
  writeFileSync(p, JSON.stringify(obj));
  if (config) writeFileSync(join(dir, 'tokenizer_config.json'), JSON.stringify(config));
  return p;
}

/** Streams pieceBytes through a TextDecoder, as a generation loop would. */
function streamDecode(tok: HfTokenizer, ids: number[]): string {
  const d = new TextDecoder('utf-8', { fatal: false });
  let s = '';
  for (let i = 1; i < ids.length; i++) s += d.decode(tok.pieceBytes(ids[i - 1]!, ids[i]!), { stream: true });
  return s + d.decode();
}

test('llama-style tokenizer.json: encode matches hand-computed ids, decode round-trips', (t) => {
  const { json, vocab } = llamaStyleJson();
  const tok = loadHfTokenizer(writeJson(json, { bos_token: '<s>', eos_token: '</s>' }));
  t.is(tok.kind, 'hf');
  t.is(tok.bosId, 1);
  t.is(tok.eosId, 2);
  t.is(tok.vocabSize, Object.keys(vocab).length);
  const ids = tok.encode('hello world');
  t.deepEqual(ids, [1, vocab['▁hello']!, vocab['▁world']!]);
  t.deepEqual(tok.encode('hello world', { bos: false }), [vocab['▁hello']!, vocab['▁world']!]);
  t.is(tok.decode(ids), 'hello world');
  t.is(streamDecode(tok, ids), 'hello world');
  // Leading space dropped only right after BOS.
  t.deepEqual([...tok.pieceBytes(1, vocab['▁world']!)], [...enc.encode('world')]);
  t.deepEqual([...tok.pieceBytes(vocab['▁hello']!, vocab['▁world']!)], [...enc.encode(' world')]);
  for (const s of ['hello', 'world hello', 'ah', 'a  b', 'hello\nworld']) t.is(tok.decode(tok.encode(s)), s, JSON.stringify(s));
});

test('llama-style tokenizer.json: byte fallback streams multi-byte characters exactly', (t) => {
  const { json, vocab } = llamaStyleJson();
  const tok = loadHfTokenizer(writeJson(json));
  const ids = tok.encode('hé');
  // ▁, h, then é = C3 A9 as byte tokens (3 + byte).
  t.deepEqual(ids, [1, vocab['▁']!, vocab['h']!, 3 + 0xc3, 3 + 0xa9]);
  t.deepEqual([...tok.pieceBytes(vocab['h']!, 3 + 0xc3)], [0xc3]);
  t.deepEqual([...tok.pieceBytes(3 + 0xc3, 3 + 0xa9)], [0xa9]);
  t.is(tok.decode(ids), 'hé');
  t.is(streamDecode(tok, ids), 'hé');
  for (const s of ['😀 hello', 'wörld', '\u0000', 'a\ud800b', '']) {
    t.notThrows(() => tok.encode(s));
    const back = tok.decode(tok.encode(s));
    t.is(back, s.includes('\ud800') ? s.replace('\ud800', '\ufffd') : s, JSON.stringify(s));
  }
});

test('byte-level (GPT-2 style) tokenizer.json: encode, streaming bytes, round trip', (t) => {
  const { json, vocab } = byteLevelJson();
  const tok = loadHfTokenizer(writeJson(json));
  const eot = vocab['<|endoftext|>']!;
  t.is(tok.eosId, eot);
  t.is(tok.bosId, eot); // no BOS token: <|endoftext|> doubles as BOS (GPT-2 convention)
  const ids = tok.encode('hello world');
  t.deepEqual(ids, [eot, vocab['hello']!, vocab['Ġworld']!]);
  t.is(tok.decode(ids), 'hello world');
  // A leading space is kept after BOS for byte-level vocabularies.
  t.deepEqual([...tok.pieceBytes(eot, vocab['Ġworld']!)], [...enc.encode(' world')]);
  // 'é' is two byte tokens; each yields exactly its byte.
  const e = tok.encode('é', { bos: false });
  t.deepEqual(e, [0xc3, 0xa9]);
  t.deepEqual([...tok.pieceBytes(0, 0xc3)], [0xc3]);
  t.deepEqual([...tok.pieceBytes(0xc3, 0xa9)], [0xa9]);
  for (const s of ['hello  world', ' héllo\n😀', 'tab\there', '\u0000', '']) {
    const ids2 = tok.encode(s);
    t.is(tok.decode(ids2), s, JSON.stringify(s));
    t.is(streamDecode(tok, ids2), s, JSON.stringify(s));
  }
  t.is(tok.decode(tok.encode('x\udfffy')), 'x\ufffdy');
  // Special tokens add no text.
  t.is(tok.pieceBytes(vocab['hello']!, eot).length, 0);
});

test('serialize() returns the tokenizer.json bytes, and they reload to the same tokenizer', (t) => {
  const { json } = llamaStyleJson();
  const p = writeJson(json);
  const tok = loadHfTokenizer(p);
  const s = tok.serialize();
  t.is(s.file, 'tokenizer.json');
  t.deepEqual(JSON.parse(new TextDecoder().decode(s.bytes)), json);
  const again = new HfTokenizer(s.bytes);
  t.deepEqual(again.encode('hello world hé'), tok.encode('hello world hé'));
  t.is(again.bosId, 1);
  const viaLoad = tokenizerFromSerialized(s.file, s.bytes, { bosId: 1, eosId: 2 });
  t.is(viaLoad.kind, 'hf');
  t.deepEqual(viaLoad.encode('hello world hé'), tok.encode('hello world hé'));
});

test('loadTokenizerFile picks HfTokenizer for .json; bos/eos overrides apply', (t) => {
  const { json, vocab } = byteLevelJson();
  const p = writeJson(json);
  const tok = loadTokenizerFile(p);
  t.true(tok instanceof HfTokenizer);
  t.deepEqual(tok.encode('hello'), [vocab['<|endoftext|>']!, vocab['hello']!]);
  const o = loadTokenizerFile(p, undefined, { bosId: 7, eosId: 8 });
  t.is(o.bosId, 7);
  t.is(o.eosId, 8);
  t.deepEqual(o.encode('hello'), [7, vocab['hello']!]);
  t.throws(() => loadTokenizerFile('/nonexistent/x.json'), { instanceOf: UserError });
});

test('bad tokenizer.json files are UserErrors', (t) => {
  t.throws(() => loadHfTokenizer('/nonexistent/tokenizer.json'), { instanceOf: UserError });
  const dir = mkdtempSync(join(tmpdir(), 'mocc-hf-tok-'));
  const p = join(dir, 'tokenizer.json');
  writeFileSync(p, '{not json');
  t.throws(() => loadHfTokenizer(p), { instanceOf: UserError });
  writeFileSync(p, '{"version": "1.0"}');
  t.throws(() => loadHfTokenizer(p), { instanceOf: UserError, message: /model/ });
});
