// What every target offers: the ops it supports and a session that runs a model with a KV cache.
import type { Graph } from '../src/ir/types.js';
import type { ModelSpec } from '../src/import/spec.js';
import type { TensorSource } from '../src/import/tensor.js';
import type { Tokenizer } from '../src/tokenizer/tokenizer.js';
import type { Manifest } from '../src/package/manifest.js';

/** A model ready to run: its graph, its weights by name, and its hyper-parameters. */
export interface RunnableModel {
  graph: Graph;
  weights: ReadonlyMap<string, TensorSource>;
  spec: ModelSpec;
}

/** A value, or a promise of one: WebGPU reads results back asynchronously, the ref and CUDA targets do not. */
export type Awaitable<T> = T | Promise<T>;

export interface ModelSession {
  /** Tokens already in the KV cache. */
  readonly position: number;
  /** Runs `tokens` after the cached ones; returns logits [tokens.length, vocab], row-major. */
  forward(tokens: readonly number[]): Awaitable<Float32Array>;
  /** Empties the KV cache. */
  reset(): void;
  /**
   * Optional fast path for greedy decoding: feeds `first` (the token just chosen), then returns the
   * next n greedy tokens, computed without a host round trip per token where the target can.
   * With onToken, tokens are reported as made; returning false stops (that token is not kept).
   */
  greedy?(first: number, n: number, onToken?: (token: number) => boolean | void): Awaitable<number[]>;
  /** Frees device memory now rather than at exit (targets that hold any). */
  close?(): void;
}

export interface CompileOptions {
  /** cuda: the PTX architecture. */
  arch?: string;
  /** What the model is called (e.g. its file or directory name), for pages that show it. */
  name?: string;
  /** Dense or MoC, and K per layer, for pages that show it. */
  moc?: Manifest['moc'];
}

export interface Target {
  readonly name: string;
  readonly description: string;
  readonly ops: ReadonlySet<string>;
  createSession(model: RunnableModel): Awaitable<ModelSession>;
  /** Writes what a deployment needs (kernels, launch manifest) to outDir; absent for interpreters. */
  compile?(model: RunnableModel & { tokenizer?: Tokenizer }, outDir: string, options?: CompileOptions): { kernels: number; launches: number };
}
