// Decoding: prefill the prompt, then one token at a time through the KV cache.
import type { ModelSession } from '../model/runnable.js';
import { sampleToken, seededRandom } from './sample.js';

export interface GenerateOptions {
  maxTokens: number;
  temperature?: number;
  topP?: number;
  seed?: number;
  /** Stop when this token is produced (it is not emitted). */
  eosId?: number;
  /**
   * Called with each new token as soon as it is chosen. Returning false (or a promise of false) stops
   * decoding after that token. On the step-by-step path a returned promise is awaited, so a caller can
   * let the event loop run (e.g. to hear that stdout's reader went away) before the next token.
   */
  onToken?: (token: number, previous: number) => boolean | void | Promise<boolean | void>;
}

/** Returns the new tokens (not the prompt). */
export async function generate(session: ModelSession, prompt: readonly number[], opts: GenerateOptions): Promise<number[]> {
  if (prompt.length === 0) throw new Error('the prompt has no tokens');
  const sampling = { temperature: opts.temperature ?? 0, topP: opts.topP ?? 1, random: seededRandom(opts.seed ?? 0) };
  session.reset();
  let logits = await session.forward(prompt, { lastOnly: true });
  let last = logits;
  let prev = prompt[prompt.length - 1]!;
  const out: number[] = [];
  // Greedy: let a target that can decode on its own do so (it reports each token; EOS stops it).
  if (sampling.temperature <= 0 && session.greedy && opts.maxTokens > 1) {
    const first = sampleToken(last, sampling);
    if (first === opts.eosId) return [];
    if ((await opts.onToken?.(first, prev)) === false) return [first];
    let p = first;
    // The target reports tokens synchronously: a promise returned here is not awaited (only false stops).
    const report = opts.onToken || opts.eosId !== undefined
      ? (t: number) => {
        if (t === opts.eosId) return false;
        const go = opts.onToken?.(t, p);
        p = t;
        return go !== false;
      }
      : undefined;
    return [first, ...(await session.greedy(first, opts.maxTokens - 1, report))];
  }
  while (out.length < opts.maxTokens) {
    const next = sampleToken(last, sampling);
    if (next === opts.eosId) break;
    out.push(next);
    if ((await opts.onToken?.(next, prev)) === false) break;
    prev = next;
    if (out.length === opts.maxTokens) break;
    logits = await session.forward([next]);
    last = logits;
  }
  return out;
}
