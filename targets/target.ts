// What every target offers: the ops it supports and a session that runs a model with a KV cache.
import type { Graph } from '../src/ir/types.js';
import type { ModelSpec } from '../src/import/spec.js';
import type { TensorSource } from '../src/import/tensor.js';

/** A model ready to run: its graph, its weights by name, and its hyper-parameters. */
export interface RunnableModel {
  graph: Graph;
  weights: ReadonlyMap<string, TensorSource>;
  spec: ModelSpec;
}

export interface ModelSession {
  /** Tokens already in the KV cache. */
  readonly position: number;
  /** Runs `tokens` after the cached ones; returns logits [tokens.length, vocab], row-major. */
  forward(tokens: readonly number[]): Float32Array;
  /** Empties the KV cache. */
  reset(): void;
  /**
   * Optional fast path for greedy decoding: feeds `first` (the token just chosen), then returns the
   * next n greedy tokens, computed without a host round trip per token where the target can.
   * With onToken, tokens are reported as made; returning false stops (that token is not kept).
   */
  greedy?(first: number, n: number, onToken?: (token: number) => boolean | void): number[];
}

export interface Target {
  readonly name: string;
  readonly description: string;
  readonly ops: ReadonlySet<string>;
  createSession(model: RunnableModel): ModelSession;
  /** Writes what a deployment needs (kernels, launch manifest) to outDir; absent for interpreters. */
  compile?(model: RunnableModel, outDir: string, options?: { arch?: string }): { kernels: number; launches: number };
}
