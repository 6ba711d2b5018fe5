// A llama2.c / SentencePiece-style tokenizer (src/tokenizer/spm.ts) as a Hugging Face tokenizer.json
// (tokenizers' BPE model) plus tokenizer_config.json, so transformers.js encodes and decodes text
// exactly as mocc does. Hand-written: no maintained JS library converts a llama2.c tokenizer.bin.
//
// Why BPE and not Unigram: mocc's algorithm (llama2.c run.c) merges adjacent symbols greedily, the
// pair whose merged piece has the highest score first, leftmost on ties. Tokenizers' BPE merges the
// pair of lowest rank first, leftmost on ties; so the merges are every (left, right) of text pieces
// whose concatenation is a piece, ranked by that piece's score, highest first. Unigram would pick the
// best segmentation (Viterbi), a different algorithm. The rest is the layout Hugging Face's own
// LlamaConverter writes: normalizer Prepend("▁") + Replace(" " → "▁") for the dummy prefix, BPE with
// byte_fallback (a character with no piece becomes its UTF-8 bytes' <0xNN> tokens, as mocc does per
// codepoint), decoder Replace("▁" → " ") + ByteFallback + Fuse + Strip one leading space (mocc drops
// the first piece's leading space after BOS), and TemplateProcessing for the BOS.
// One known difference: two different pairs that overlap (share a symbol) and make pieces of equal
// score are taken leftmost first by mocc but in rank order here; llama2.c vocabularies give every
// merged piece its own score, so only a piece reachable by two splits at once could meet it.
import type { ModelSpec } from '../../src/import/spec.js';
import type { SpmTokenizer } from '../../src/tokenizer/spm.js';

const SPACE = '\u2581';
const BYTE_PIECE = /^<0x([0-9A-Fa-f]{2})>$/;

export interface HfTokenizerFiles {
  'tokenizer.json': object;
  'tokenizer_config.json': object;
}

/** The two files, or a reason (one line) why this vocabulary has no tokenizer.json form. */
export function spmToHfTokenizer(tok: SpmTokenizer, spec: Pick<ModelSpec, 'maxSeqLen'>): HfTokenizerFiles | { why: string } {
  const fatal = new TextDecoder('utf-8', { fatal: true, ignoreBOM: true });
  const control = new Set([tok.unkId, tok.bosId, tok.eosId]);
  const names: string[] = [];
  const textIds = new Map<string, number>(); // a text piece (with ▁) → its id: the first, as mocc's lookup
  for (let id = 0; id < tok.vocabSize; id++) {
    let s: string;
    try {
      s = fatal.decode(tok.pieces[id]!);
    } catch {
      return { why: `piece ${id} is not UTF-8 text` };
    }
    const byte = BYTE_PIECE.exec(s);
    if (control.has(id)) s = s.trim(); // llama2.c stores BOS as "\n<s>\n"
    else if (byte) s = `<0x${byte[1]!.toUpperCase()}>`;
    else {
      s = s.replaceAll(' ', SPACE);
      if (!textIds.has(s)) textIds.set(s, id);
    }
    names.push(s);
  }
  const vocab: Record<string, number> = {};
  for (const [id, s] of names.entries()) {
    // A later duplicate of a text piece is never produced by mocc (its lookup keeps the first): it gets
    // a name no text makes. Any other clash has no tokenizer.json form.
    if (s in vocab && textIds.has(s) && textIds.get(s) !== id) names[id] = `<mocc_unused_${id}>`;
    else if (s in vocab) return { why: `piece ${id} (${JSON.stringify(s)}) appears twice in the vocabulary` };
    vocab[names[id]!] = id;
  }

  const merges: Array<{ pair: [string, string]; score: number; id: number }> = [];
  for (const [s, id] of textIds) {
    const cps = Array.from(s);
    for (let i = 1; i < cps.length; i++) {
      const left = cps.slice(0, i).join(''), right = cps.slice(i).join('');
      if (textIds.has(left) && textIds.has(right)) merges.push({ pair: [left, right], score: tok.scores[id]!, id });
    }
  }
  merges.sort((a, b) => b.score - a.score || a.id - b.id);

  const [unk, bos, eos] = [names[tok.unkId]!, names[tok.bosId]!, names[tok.eosId]!];
  const special = (id: number) => ({ id, content: names[id]!, single_word: false, lstrip: false, rstrip: false, normalized: false, special: true });
  return {
    'tokenizer.json': {
      version: '1.0',
      truncation: null,
      padding: null,
      added_tokens: [...control].sort((a, b) => a - b).map(special),
      normalizer: { type: 'Sequence', normalizers: [{ type: 'Prepend', prepend: SPACE }, { type: 'Replace', pattern: { String: ' ' }, content: SPACE }] },
      pre_tokenizer: null,
      post_processor: {
        type: 'TemplateProcessing',
        single: [{ SpecialToken: { id: bos, type_id: 0 } }, { Sequence: { id: 'A', type_id: 0 } }],
        pair: [{ SpecialToken: { id: bos, type_id: 0 } }, { Sequence: { id: 'A', type_id: 0 } }, { SpecialToken: { id: bos, type_id: 1 } }, { Sequence: { id: 'B', type_id: 1 } }],
        special_tokens: { [bos]: { id: bos, ids: [tok.bosId], tokens: [bos] } },
      },
      decoder: {
        type: 'Sequence',
        decoders: [
          { type: 'Replace', pattern: { String: SPACE }, content: ' ' },
          { type: 'ByteFallback' },
          { type: 'Fuse' },
          { type: 'Strip', content: ' ', start: 1, stop: 0 },
        ],
      },
      model: {
        type: 'BPE', dropout: null, unk_token: unk, continuing_subword_prefix: null, end_of_word_suffix: null,
        fuse_unk: true, byte_fallback: true, ignore_merges: false, vocab, merges: merges.map((m) => m.pair),
      },
    },
    'tokenizer_config.json': {
      tokenizer_class: 'LlamaTokenizer',
      add_bos_token: true,
      add_eos_token: false,
      bos_token: bos,
      eos_token: eos,
      unk_token: unk,
      // Decoding must give mocc's text: no " ." → "." clean-up.
      clean_up_tokenization_spaces: false,
      legacy: true,
      model_max_length: spec.maxSeqLen,
    },
  };
}
