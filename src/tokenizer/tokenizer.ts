// The tokenizer interface every command uses; SPM (llama2.c / GGUF) and HF tokenizer.json implement it.

export interface Tokenizer {
  readonly vocabSize: number;
  readonly bosId: number;
  readonly eosId: number;
  /** Encodes text; with bos (default true) the BOS id comes first. Never throws on odd bytes (byte fallback). */
  encode(text: string, opts?: { bos?: boolean }): number[];
  /**
   * The bytes that token `id` adds when it follows token `prev` (SPM drops a piece's leading space
   * right after BOS). Bytes, not a string: a byte-fallback token can be half a UTF-8 character, so
   * streaming callers feed these to a TextDecoder with {stream: true}.
   */
  pieceBytes(prev: number, id: number): Uint8Array;
  /** Decodes a whole sequence (the first id is taken as the context, as in llama2.c). */
  decode(ids: number[]): string;
  /** A description for the package manifest: which kind and where it came from. */
  readonly kind: 'spm' | 'hf';
  /** Serialized form to store in a package (see src/tokenizer/load.ts). */
  serialize(): { file: string; bytes: Uint8Array };
}

/** decode() for any tokenizer: the pieces of ids[1..], each in the context of the one before, as UTF-8. */
export function decodeByPieces(tok: Pick<Tokenizer, 'pieceBytes'>, ids: number[]): string {
  const parts: Uint8Array[] = [];
  for (let i = 1; i < ids.length; i++) parts.push(tok.pieceBytes(ids[i - 1]!, ids[i]!));
  const all = new Uint8Array(parts.reduce((n, p) => n + p.length, 0));
  parts.reduce((o, p) => (all.set(p, o), o + p.length), 0); // not Buffer.concat: this runs in browsers too
  return new TextDecoder('utf-8', { ignoreBOM: true }).decode(all);
}
