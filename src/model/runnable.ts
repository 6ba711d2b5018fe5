// What a target runs: a model (graph, weights, hyper-parameters) and a session over it. Declared here,
// beside the model, so that the code which drives sessions (src/run) needs nothing from targets/.
import type { Graph } from '../ir/types.js';
import type { ModelSpec } from '../import/spec.js';
import type { TensorSource } from '../import/tensor.js';

/** A model ready to run: its graph, its weights by name, and its hyper-parameters. */
export interface RunnableModel {
  /** The model graph (pure; sessions run the decode graph passes/kv-cache.ts derives from it). */
  graph: Graph;
  weights: ReadonlyMap<string, TensorSource>;
  spec: ModelSpec;
}

/** A value, or a promise of one: WebGPU reads results back asynchronously, the ref and CUDA targets do not. */
export type Awaitable<T> = T | Promise<T>;

export interface ForwardOptions {
  /** Return only the last token's logits [vocab]. */
  lastOnly?: boolean;
}

/** The last row of logits [T, vocab] (the whole array when T = 1). */
export function lastRow(logits: Float32Array, tokens: number): Float32Array {
  return tokens === 1 ? logits : logits.subarray(logits.length - logits.length / tokens);
}

/** session.forward for the synchronous targets (ref, cuda): `who` names the caller in the error an asynchronous one (wgsl) gets. */
export function forwardSync(session: ModelSession, tokens: readonly number[], who: string, options?: ForwardOptions): Float32Array {
  const logits = session.forward(tokens, options);
  if (logits instanceof Promise) throw new Error(`${who}: the session is asynchronous`);
  return logits;
}

export interface ModelSession {
  /** Tokens already in the KV cache (the decode graph's state). */
  readonly position: number;
  /**
   * Runs `tokens` after the cached ones; returns logits [tokens.length, vocab], row-major, or with
   * `lastOnly` the last token's row alone [vocab] (what a prompt's prefill needs: the CUDA target
   * then copies one row back instead of T).
   */
  forward(tokens: readonly number[], options?: ForwardOptions): Awaitable<Float32Array>;
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

/** The float32 values of param `p` in the param's own layout (the weight store holds a `transposed` param's transpose). */
export function paramF32(weights: RunnableModel['weights'], p: Graph['params'][number]): Float32Array {
  const src = weights.get(p.name);
  if (!src) throw new Error(`param @${p.name} is not in the model's weights`);
  const w = src.toFloat32();
  if (!p.transposed) return w;
  const [rows, cols] = src.shape as [number, number];
  const out = new Float32Array(w.length);
  for (let r = 0; r < rows; r++) for (let c = 0; c < cols; c++) out[c * rows + r] = w[r * cols + c]!;
  return out;
}
