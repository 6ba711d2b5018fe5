// Tied logits written twice: the TorchScript exporter (and onnxruntime-genai's builder) store the logits
// weight as its own [dim, vocab] initializer even when it is the embedding [vocab, dim] transposed. The
// two are compared by their stored bytes, in column blocks, so memory stays at one block of each.
import { bytesFor } from '../../util/dtype.js';
import type { TensorSource } from '../tensor.js';

/** Vocabulary entries compared per block (one block of the embedding is read at a time). */
const BLOCK = 1024;

/** Whether `head` ([dim, vocab]) holds exactly the bytes of `emb` ([vocab, dim]) transposed, in the same dtype. */
export function isTransposedCopy(head: TensorSource, emb: TensorSource): boolean {
  const [dim, vocab] = head.shape as [number, number];
  if (head.dtype !== emb.dtype || emb.shape[0] !== vocab || emb.shape[1] !== dim) return false;
  const eb = bytesFor(head.dtype, 1);
  for (let r0 = 0; r0 < vocab; r0 += BLOCK) {
    const r1 = Math.min(vocab, r0 + BLOCK);
    const e = emb.readBytes(r0 * dim * eb, r1 * dim * eb); // rows r0..r1 of the embedding
    for (let i = 0; i < dim; i++) {
      const h = head.readBytes((i * vocab + r0) * eb, (i * vocab + r1) * eb); // head[i, r0..r1]
      for (let r = 0; r < r1 - r0; r++) {
        for (let b = 0; b < eb; b++) if (h[r * eb + b] !== e[(r * dim + i) * eb + b]) return false;
      }
    }
  }
  return true;
}
