// SentencePiece-style score-merge tokenizer with byte fallback: the llama2.c algorithm (run.c encode/decode),
// used for llama2.c tokenizer.bin files and for GGUF's embedded 'llama' vocabularies. No Node APIs:
// the WebGPU bundle runs it in browsers (reading a file is load.ts's job).
import { UserError } from '../util/errors.js';
import { decodeByPieces, type Tokenizer } from './tokenizer.js';

const utf8 = new TextEncoder();
const BYTE_PIECE = /^<0x([0-9A-Fa-f]{2})>$/;
const EMPTY = new Uint8Array(0);

/** Bytes → a string with one char per byte, a bijection used as a Map key for byte pieces. */
function bytesKey(b: Uint8Array): string {
  let s = '';
  for (let i = 0; i < b.length; i++) s += String.fromCharCode(b[i]!);
  return s;
}

/** One merge candidate: the adjacent pair (left, right) of the linked list, as it was when pushed. */
interface Candidate {
  score: number;
  /** Original position of the left symbol: orders candidates left to right. */
  pos: number;
  left: number;
  right: number;
  leftId: number;
  rightId: number;
  merged: number;
}

/** Max-heap on score; on equal scores the leftmost pair first (llama2.c picks the first best pair). */
class CandidateHeap {
  private items: Candidate[] = [];
  get size(): number { return this.items.length; }
  private better(a: Candidate, b: Candidate): boolean {
    return a.score > b.score || (a.score === b.score && a.pos < b.pos);
  }
  push(c: Candidate): void {
    const h = this.items;
    h.push(c);
    let i = h.length - 1;
    while (i > 0) {
      const p = (i - 1) >> 1;
      if (!this.better(h[i]!, h[p]!)) break;
      [h[i], h[p]] = [h[p]!, h[i]!];
      i = p;
    }
  }
  pop(): Candidate | undefined {
    const h = this.items;
    if (h.length === 0) return undefined;
    const top = h[0]!;
    const last = h.pop()!;
    if (h.length > 0) {
      h[0] = last;
      let i = 0;
      for (;;) {
        const l = 2 * i + 1, r = l + 1;
        let m = i;
        if (l < h.length && this.better(h[l]!, h[m]!)) m = l;
        if (r < h.length && this.better(h[r]!, h[m]!)) m = r;
        if (m === i) break;
        [h[i], h[m]] = [h[m]!, h[i]!];
        i = m;
      }
    }
    return top;
  }
}

export interface SpmOptions {
  /** Id of the unknown token (used when even a byte-fallback token is missing). Default 0. */
  unkId?: number;
}

export class SpmTokenizer implements Tokenizer {
  readonly kind = 'spm' as const;
  readonly vocabSize: number;
  readonly unkId: number;
  /** Raw bytes of each piece, exactly as stored (llama2.c: spaces as ' ', BOS as "\n<s>\n"). */
  readonly pieces: readonly Uint8Array[];
  readonly scores: Float32Array;
  /** Piece bytes (as a byte-per-char key) → id, for text pieces only (no byte-fallback or control tokens). */
  private readonly lookup = new Map<string, number>();
  private readonly keys: string[];
  /** byte value → id of its `<0xNN>` token, or -1. */
  private readonly byteIds = new Int32Array(256).fill(-1);
  /** id → the single byte a `<0xNN>` piece stands for, or -1. */
  private readonly byteOf: Int16Array;

  constructor(pieces: readonly Uint8Array[], scores: ArrayLike<number>, readonly bosId: number, readonly eosId: number, opts: SpmOptions = {}) {
    if (pieces.length !== scores.length) throw new UserError(`SPM vocabulary has ${pieces.length} pieces but ${scores.length} scores`);
    if (pieces.length === 0) throw new UserError('SPM vocabulary is empty');
    this.vocabSize = pieces.length;
    this.unkId = opts.unkId ?? 0;
    this.pieces = pieces.map((p) => p.slice());
    this.scores = Float32Array.from(scores);
    this.byteOf = new Int16Array(pieces.length).fill(-1);
    this.keys = this.pieces.map(bytesKey);
    for (let id = 0; id < pieces.length; id++) {
      const key = this.keys[id]!;
      const m = BYTE_PIECE.exec(key);
      if (m) {
        const b = parseInt(m[1]!, 16);
        this.byteOf[id] = b;
        if (this.byteIds[b] === -1) this.byteIds[b] = id;
        continue;
      }
      // Control tokens never match text (sentencepiece semantics; llama2.c would, in pathological cases).
      if (id === bosId || id === eosId || id === this.unkId) continue;
      if (!this.lookup.has(key)) this.lookup.set(key, id);
    }
  }

  /** Pieces as strings (▁ in GGUF / HF vocabularies is taken as a space) or raw bytes. */
  static fromVocab(pieces: string[] | Uint8Array[], scores: number[] | ArrayLike<number>, bosId: number, eosId: number, opts: SpmOptions = {}): SpmTokenizer {
    const bytes = (pieces as (string | Uint8Array)[]).map((p) => (typeof p === 'string' ? utf8.encode(p.replaceAll('\u2581', ' ')) : p));
    return new SpmTokenizer(bytes, scores, bosId, eosId, opts);
  }

  private idOf(key: string): number | undefined {
    return this.lookup.get(key);
  }

  encode(text: string, opts: { bos?: boolean } = {}): number[] {
    const out: number[] = [];
    if (opts.bos ?? true) out.push(this.bosId);
    if (text.length === 0) return out;
    // Initial symbols: the dummy-prefix " ", then each codepoint as its piece or its bytes.
    const ids: number[] = [];
    const pushText = (s: string): void => {
      const id = this.idOf(bytesKey(utf8.encode(s)));
      if (id !== undefined) { ids.push(id); return; }
      for (const b of utf8.encode(s)) {
        const bid = this.byteIds[b]!;
        ids.push(bid >= 0 ? bid : this.unkId);
      }
    };
    pushText(' ');
    // for..of iterates codepoints; a lone surrogate comes out alone and TextEncoder makes it U+FFFD.
    for (const cp of text) pushText(cp);

    const n = ids.length;
    const next = new Int32Array(n), prev = new Int32Array(n);
    const alive = new Uint8Array(n).fill(1);
    for (let i = 0; i < n; i++) { next[i] = i + 1 < n ? i + 1 : -1; prev[i] = i - 1; }
    const heap = new CandidateHeap();
    const tryPair = (l: number, r: number): void => {
      if (l < 0 || r < 0) return;
      const lid = ids[l]!, rid = ids[r]!;
      const key = (this.keys[lid] ?? '') + (this.keys[rid] ?? '');
      const merged = this.idOf(key);
      if (merged === undefined) return;
      heap.push({ score: this.scores[merged]!, pos: l, left: l, right: r, leftId: lid, rightId: rid, merged });
    };
    for (let i = 0; i + 1 < n; i++) tryPair(i, i + 1);
    while (heap.size > 0) {
      const c = heap.pop()!;
      const { left: l, right: r } = c;
      // Stale: a side was merged away, or the pair changed since it was pushed.
      if (!alive[l] || !alive[r] || next[l] !== r || ids[l] !== c.leftId || ids[r] !== c.rightId) continue;
      ids[l] = c.merged;
      alive[r] = 0;
      const rn = next[r]!;
      next[l] = rn;
      if (rn >= 0) prev[rn] = l;
      tryPair(prev[l]!, l);
      tryPair(l, rn);
    }
    for (let i = 0; i >= 0 && i < n; i = next[i]!) out.push(ids[i]!);
    return out;
  }

  pieceBytes(prev: number, id: number): Uint8Array {
    if (!Number.isInteger(id) || id < 0 || id >= this.vocabSize) return EMPTY;
    if (id === this.bosId || id === this.eosId) return EMPTY;
    const b = this.byteOf[id]!;
    if (b >= 0) return Uint8Array.of(b);
    const piece = this.pieces[id]!;
    if (prev === this.bosId && piece[0] === 0x20) return piece.slice(1);
    return piece.slice();
  }

  decode(ids: number[]): string {
    return decodeByPieces(this, ids);
  }

  /** llama2.c tokenizer.bin: int32 max_token_length, then per token f32 score, int32 len, bytes. */
  serialize(): { file: string; bytes: Uint8Array } {
    let size = 4, maxLen = 0;
    for (const p of this.pieces) { size += 8 + p.length; maxLen = Math.max(maxLen, p.length); }
    const bytes = new Uint8Array(size);
    const dv = new DataView(bytes.buffer);
    dv.setInt32(0, maxLen, true);
    let o = 4;
    for (let i = 0; i < this.vocabSize; i++) {
      const p = this.pieces[i]!;
      dv.setFloat32(o, this.scores[i]!, true);
      dv.setInt32(o + 4, p.length, true);
      bytes.set(p, o + 8);
      o += 8 + p.length;
    }
    return { file: 'tokenizer.bin', bytes };
  }
}

export interface Llama2cTokenizerOptions {
  bosId?: number;
  eosId?: number;
  unkId?: number;
}

/**
 * Parses a llama2.c tokenizer.bin. With vocabSize, exactly that many tokens are read (trailing bytes ignored, as
 * llama2.c does); without it, tokens are read until the end of the data.
 */
export function parseLlama2cTokenizer(bytes: Uint8Array, vocabSize: number | undefined, where: string, opts: Llama2cTokenizerOptions = {}): SpmTokenizer {
  if (vocabSize !== undefined && (!Number.isInteger(vocabSize) || vocabSize <= 0)) {
    throw new UserError(`${where}: bad vocabulary size ${vocabSize}`);
  }
  const dv = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  if (bytes.length < 4) throw new UserError(`${where}: not a llama2.c tokenizer file (${bytes.length} bytes, too short for a header)`);
  const maxLen = dv.getInt32(0, true);
  if (maxLen < 0) throw new UserError(`${where}: not a llama2.c tokenizer file (max_token_length ${maxLen})`);
  const pieces: Uint8Array[] = [];
  const scores: number[] = [];
  let o = 4;
  while (vocabSize === undefined ? o < bytes.length : pieces.length < vocabSize) {
    const i = pieces.length;
    if (o + 8 > bytes.length) {
      throw new UserError(`${where}: truncated llama2.c tokenizer file: ended at token ${i}` + (vocabSize !== undefined ? ` of ${vocabSize}` : ` (byte ${o} of ${bytes.length})`));
    }
    const score = dv.getFloat32(o, true);
    const len = dv.getInt32(o + 4, true);
    o += 8;
    if (len < 0 || o + len > bytes.length) {
      throw new UserError(`${where}: bad or truncated llama2.c tokenizer file: token ${i} claims ${len} bytes at byte ${o}, file has ${bytes.length}`);
    }
    if (len > maxLen) throw new UserError(`${where}: bad llama2.c tokenizer file: token ${i} is ${len} bytes, longer than max_token_length ${maxLen}`);
    pieces.push(bytes.slice(o, o + len));
    scores.push(score);
    o += len;
  }
  if (pieces.length === 0) throw new UserError(`${where}: llama2.c tokenizer file has no tokens`);
  return new SpmTokenizer(pieces, scores, opts.bosId ?? 1, opts.eosId ?? 2, { unkId: opts.unkId ?? 0 });
}
