// What every target offers: the ops it supports and a session that runs a model with a KV cache.
import type { Tokenizer } from '../src/tokenizer/tokenizer.js';
import type { Manifest } from '../src/package/manifest.js';

// The model and session interfaces live beside the model (src/model/runnable.ts): src/run drives sessions
// without importing targets/.
export type { Awaitable, ModelSession, RunnableModel } from '../src/model/runnable.js';
import type { ModelSession, RunnableModel, Awaitable } from '../src/model/runnable.js';

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
