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
}

export interface Target {
  readonly name: string;
  readonly description: string;
  readonly ops: ReadonlySet<string>;
  createSession(model: RunnableModel): ModelSession;
}
