// Hugging Face tokenizer.json, encoded through @huggingface/tokenizers; token bytes are computed from the vocabulary
// itself (byte-level BPE or metaspace/byte-fallback pieces) so that streaming decode is exact.
import { existsSync, readFileSync, statSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { Tokenizer as HfLibTokenizer } from '@huggingface/tokenizers';
import { UserError } from '../util/errors.js';
import { decodeByPieces, type Tokenizer } from './tokenizer.js';

const utf8 = new TextEncoder();
const utf8Decoder = new TextDecoder('utf-8', { fatal: false, ignoreBOM: true });
const BYTE_PIECE = /^<0x([0-9A-Fa-f]{2})>$/;
const EMPTY = new Uint8Array(0);
const LONE_SURROGATE = /[\ud800-\udbff](?![\udc00-\udfff])|(?<![\ud800-\udbff])[\udc00-\udfff]/g;

/** GPT-2's byte ↔ printable-unicode table (the "Ġ" for space). */
function byteLevelDecoderTable(): Map<string, number> {
  const bs: number[] = [];
  for (let b = 0x21; b <= 0x7e; b++) bs.push(b);
  for (let b = 0xa1; b <= 0xac; b++) bs.push(b);
  for (let b = 0xae; b <= 0xff; b++) bs.push(b);
  const cs = bs.slice();
  let n = 0;
  for (let b = 0; b < 256; b++) {
    if (!bs.includes(b)) { bs.push(b); cs.push(256 + n); n++; }
  }
  const m = new Map<string, number>();
  bs.forEach((b, i) => m.set(String.fromCharCode(cs[i]!), b));
  return m;
}
const BYTE_LEVEL = byteLevelDecoderTable();

type Json = Record<string, unknown>;
const isObj = (v: unknown): v is Json => typeof v === 'object' && v !== null && !Array.isArray(v);

/** Decoder components, Sequence flattened. */
function decoderParts(dec: unknown): Json[] {
  if (!isObj(dec)) return [];
  if (dec.type === 'Sequence' && Array.isArray(dec.decoders)) return dec.decoders.flatMap(decoderParts);
  return [dec];
}

/** How a token's bytes are recovered from its vocabulary string. */
type PieceMode =
  | { kind: 'bytelevel' }
  | { kind: 'metaspace'; replacement: string; byteFallback: boolean; stripAfterBos: boolean }
  | { kind: 'other' };

function pieceMode(json: Json): PieceMode {
  const parts = decoderParts(json.decoder);
  const model = isObj(json.model) ? json.model : {};
  if (parts.some((p) => p.type === 'ByteLevel')) return { kind: 'bytelevel' };
  const meta = parts.find((p) => p.type === 'Metaspace');
  const replaceMeta = parts.find((p) => p.type === 'Replace' && isObj(p.pattern) && p.pattern.String === '\u2581' && p.content === ' ');
  const byteFallback = model.byte_fallback === true || parts.some((p) => p.type === 'ByteFallback');
  if (meta || replaceMeta || byteFallback) {
    const replacement = meta && typeof meta.replacement === 'string' ? meta.replacement : '\u2581';
    const metaStrips = meta !== undefined && meta.prepend_scheme !== 'never' && meta.add_prefix_space !== false;
    const strip = parts.some((p) => p.type === 'Strip' && p.content === ' ' && typeof p.start === 'number' && p.start > 0);
    return { kind: 'metaspace', replacement, byteFallback, stripAfterBos: metaStrips || strip };
  }
  return { kind: 'other' };
}

function tokenContent(v: unknown): string | undefined {
  if (typeof v === 'string') return v;
  if (isObj(v) && typeof v.content === 'string') return v.content;
  return undefined;
}

export interface HfTokenizerOptions {
  /** Override the BOS / EOS ids (e.g. from the model's config.json bos_token_id / eos_token_id). */
  bosId?: number;
  eosId?: number;
}

export class HfTokenizer implements Tokenizer {
  readonly kind = 'hf' as const;
  readonly vocabSize: number;
  readonly bosId: number;
  readonly eosId: number;
  private readonly lib: HfLibTokenizer;
  private readonly mode: PieceMode;
  private readonly json: Json;
  /** id → bytes cache (context-free part of pieceBytes). */
  private readonly cache = new Map<number, Uint8Array>();
  private readonly specialIds = new Set<number>();
  private readonly addedContent = new Map<number, string>();

  /**
   * @param tokenizerJson the tokenizer.json text (kept verbatim for serialize())
   * @param config tokenizer_config.json contents, if any (bos/eos token names and library options)
   */
  constructor(private readonly tokenizerJson: Uint8Array, config: Json = {}, opts: HfTokenizerOptions = {}, where = 'tokenizer.json') {
    let json: unknown;
    try {
      json = JSON.parse(utf8Decoder.decode(tokenizerJson));
    } catch (e) {
      throw new UserError(`${where}: not valid JSON: ${(e as Error).message}`);
    }
    if (!isObj(json) || !isObj(json.model)) throw new UserError(`${where}: not a Hugging Face tokenizer.json (no "model" object)`);
    this.json = json;
    const added = Array.isArray(json.added_tokens) ? json.added_tokens : [];
    try {
      this.lib = new HfLibTokenizer({ ...json, added_tokens: added }, config);
    } catch (e) {
      throw new UserError(`${where}: @huggingface/tokenizers cannot load it: ${(e as Error).message}`);
    }
    this.mode = pieceMode(json);
    for (const t of added) {
      if (!isObj(t) || typeof t.id !== 'number' || typeof t.content !== 'string') continue;
      this.addedContent.set(t.id, t.content);
      if (t.special === true) this.specialIds.add(t.id);
    }
    let maxId = -1;
    for (const id of this.lib.get_vocab(true).values()) maxId = Math.max(maxId, id);
    for (const id of this.addedContent.keys()) maxId = Math.max(maxId, id);
    this.vocabSize = maxId + 1;

    const idOf = (name: string | undefined): number | undefined => (name === undefined ? undefined : this.lib.token_to_id(name));
    // The BOS the post-processor would add: the first special token of TemplateProcessing's "single" template.
    let templateBos: number | undefined;
    const pp = json.post_processor;
    const templates = isObj(pp) && pp.type === 'Sequence' && Array.isArray(pp.processors) ? pp.processors : [pp];
    for (const t of templates) {
      if (!isObj(t) || t.type !== 'TemplateProcessing' || !Array.isArray(t.single)) continue;
      const first = t.single[0];
      if (isObj(first) && isObj(first.SpecialToken) && typeof first.SpecialToken.id === 'string') templateBos = idOf(first.SpecialToken.id);
    }
    const firstKnown = (...names: string[]): number | undefined => {
      for (const n of names) { const id = idOf(n); if (id !== undefined) return id; }
      return undefined;
    };
    const eos = opts.eosId ?? idOf(tokenContent(config.eos_token))
      ?? firstKnown('</s>', '<|end_of_text|>', '<|endoftext|>', '<|eot_id|>', '<|im_end|>', '<eos>');
    // Without any BOS token (GPT-2 style vocabularies) the EOS / <|endoftext|> token doubles as BOS, as in GPT-2.
    const bos = opts.bosId ?? idOf(tokenContent(config.bos_token)) ?? templateBos
      ?? firstKnown('<s>', '<|begin_of_text|>', '<bos>', '<|startoftext|>') ?? eos;
    this.bosId = bos ?? 0;
    this.eosId = eos ?? 0;
  }

  encode(text: string, opts: { bos?: boolean } = {}): number[] {
    const out: number[] = [];
    if (opts.bos ?? true) out.push(this.bosId);
    if (text.length === 0) return out;
    const clean = text.replace(LONE_SURROGATE, '\ufffd');
    let ids: number[];
    try {
      ids = this.lib.encode(clean, { add_special_tokens: false }).ids;
    } catch {
      // The library failed on this text (it should not): fall back to one encode per character, unk where it fails.
      ids = [];
      for (const ch of clean) {
        try { ids.push(...this.lib.encode(ch, { add_special_tokens: false }).ids); } catch { /* dropped */ }
      }
    }
    for (const id of ids) out.push(typeof id === 'number' && id >= 0 ? id : 0);
    return out;
  }

  /** Bytes of a token regardless of context. */
  private tokenBytes(id: number): Uint8Array {
    const hit = this.cache.get(id);
    if (hit) return hit;
    let bytes: Uint8Array;
    const added = this.addedContent.get(id);
    if (this.specialIds.has(id)) bytes = EMPTY;
    else if (added !== undefined) bytes = utf8.encode(added);
    else {
      const piece = this.lib.id_to_token(id);
      if (piece === undefined) bytes = EMPTY;
      else if (this.mode.kind === 'bytelevel') {
        const arr: number[] = [];
        for (const ch of piece) {
          const b = BYTE_LEVEL.get(ch);
          if (b !== undefined) arr.push(b);
          else arr.push(...utf8.encode(ch));
        }
        bytes = Uint8Array.from(arr);
      } else if (this.mode.kind === 'metaspace') {
        const m = this.mode.byteFallback ? BYTE_PIECE.exec(piece) : null;
        bytes = m ? Uint8Array.of(parseInt(m[1]!, 16)) : utf8.encode(piece.replaceAll(this.mode.replacement, ' '));
      } else {
        bytes = utf8.encode(this.safeDecode([id]));
      }
    }
    this.cache.set(id, bytes);
    return bytes;
  }

  private safeDecode(ids: number[]): string {
    try {
      return this.lib.decode(ids, { clean_up_tokenization_spaces: false });
    } catch {
      return '';
    }
  }

  pieceBytes(prev: number, id: number): Uint8Array {
    if (!Number.isInteger(id) || id < 0 || id >= this.vocabSize) return EMPTY;
    if (this.mode.kind === 'other' && !this.addedContent.has(id) && prev >= 0 && !this.specialIds.has(prev)) {
      // Unknown decoder (e.g. WordPiece "##"): the text this token adds after prev, as the library decodes it.
      const p = this.safeDecode([prev]);
      const s = this.safeDecode([prev, id]);
      if (s.startsWith(p)) return utf8.encode(s.slice(p.length));
    }
    const bytes = this.tokenBytes(id);
    if (this.mode.kind === 'metaspace' && this.mode.stripAfterBos && prev === this.bosId && bytes[0] === 0x20
      && !this.addedContent.has(id) && BYTE_PIECE.exec(this.lib.id_to_token(id) ?? '') === null) {
      return bytes.slice(1);
    }
    return bytes.slice();
  }

  decode(ids: number[]): string {
    return decodeByPieces(this, ids);
  }

  /** The tokenizer.json bytes as loaded (tokenizer_config.json is not included: pass bos/eos ids on reload). */
  serialize(): { file: string; bytes: Uint8Array } {
    return { file: 'tokenizer.json', bytes: this.tokenizerJson.slice() };
  }
}

/** Loads tokenizer.json, and tokenizer_config.json when it sits beside it. */
export function loadHfTokenizer(tokenizerJsonPath: string, opts: HfTokenizerOptions = {}): HfTokenizer {
  let bytes: Uint8Array;
  try {
    if (!statSync(tokenizerJsonPath).isFile()) throw new UserError(`${tokenizerJsonPath}: not a file (expected tokenizer.json)`);
    bytes = readFileSync(tokenizerJsonPath);
  } catch (e) {
    if (e instanceof UserError) throw e;
    throw new UserError(`${tokenizerJsonPath}: cannot read tokenizer file: ${(e as Error).message}`);
  }
  let config: Json = {};
  const cfgPath = join(dirname(tokenizerJsonPath), 'tokenizer_config.json');
  if (existsSync(cfgPath)) {
    try {
      const c: unknown = JSON.parse(readFileSync(cfgPath, 'utf8'));
      if (isObj(c)) config = c;
    } catch (e) {
      throw new UserError(`${cfgPath}: cannot parse: ${(e as Error).message}`);
    }
  }
  return new HfTokenizer(bytes, config, opts, tokenizerJsonPath);
}
