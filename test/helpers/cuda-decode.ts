// The CUDA decode path as the model tests drive it, shared by cuda-model.test.ts and
// cuda-moc-topk.test.ts so both compare the same token-by-token schedule against HF's logits.
import type { CudaSession } from '../../targets/cuda/runtime.js';

/** The decode path from a fresh start: 4 tokens of prefill, then one token at a time through the captured graph; all rows' logits. */
export function stepwiseLogits(s: CudaSession, toks: readonly number[]): Float32Array {
  s.reset();
  const rows = [s.forward(toks.slice(0, 4))];
  for (const tok of toks.slice(4)) rows.push(s.forward([tok]));
  const out = new Float32Array(rows.reduce((n, r) => n + r.length, 0));
  let o = 0;
  for (const row of rows) (out.set(row, o), (o += row.length));
  return out;
}
