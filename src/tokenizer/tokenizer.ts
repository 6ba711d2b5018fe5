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
