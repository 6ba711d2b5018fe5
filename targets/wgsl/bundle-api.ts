// The public types of a web bundle (`mocc compile --target wgsl`). Declarations only, no code and no
// imports: the bundle ships this file as lib/targets/wgsl/bundle-api.d.ts, verbatim, and its
// mocc-model.d.ts re-exports these types. runtime/bundle-entry.ts implements them, so the compiler
// checks the implementation against exactly what the bundle declares.

/** What the bundle holds (mocc-model.js exports it as MODEL). */
export interface ModelInfo {
  /** The file or directory the bundle was compiled from. */
  readonly name: string;
  readonly dim: number;
  readonly dFfn: number;
  readonly layers: number;
  readonly heads: number;
  readonly kvHeads: number;
  readonly vocab: number;
  readonly context: number;
  readonly bosId: number;
  readonly eosId: number;
  /** Dense FFNs, or MoC with K channels kept per layer (Top-K, or a:b per block for 'pattern'). */
  readonly moc: { readonly mode: 'dense' | 'topk' | 'pattern'; readonly perLayerK: readonly number[]; readonly pattern?: string };
}

export interface LoadOptions {
  /** WebGPU entry point; default navigator.gpu. */
  gpu?: GPU;
  /** Reads a bundle file by relative path; default fetch() next to mocc-model.js. */
  read?: (path: string) => Promise<ArrayBuffer>;
  /** Weights and constants uploaded so far. */
  onProgress?: (done: number, total: number) => void;
}

export interface GenerateOptions {
  /** New tokens at most (default 64; stops at end of text). Must be at least 1. */
  maxTokens?: number;
  /** Each piece of text as soon as its token is chosen. */
  onText?: (text: string) => void;
  /** Stops generating (after the token being made) when aborted; the result holds what was made. */
  signal?: AbortSignal;
}

export interface Generation {
  text: string;
  tokens: number[];
  tokensPerSecond: number;
}

export interface MoccModel {
  /** The adapter it runs on, in words. */
  readonly adapter: string;
  /** Greedy continuation of prompt. */
  generate(prompt: string, options?: GenerateOptions): Promise<Generation>;
  close(): void;
}

/** runtime/bundle-entry.ts's loadBundle: the bundle's files are read relative to `base`. */
export type LoadBundle = (model: ModelInfo, base: URL, options?: LoadOptions) => Promise<MoccModel>;
