// Which parameters a 'bf16-params' run (src/train/adamw.ts, --optimizer-state bf16-params) stores in
// bf16: the one rule, shared by the host AdamW (driver/step-runner.ts), the CUDA executor's param
// buffers (targets/cuda/train/executor.ts), the optimizer and the memory accounting.
//
// A parameter is stored bf16 when it is a matrix (2-D) and EVERY node reading it reads it as an
// operand of a GEMM that rounds that operand to bf16 anyway (the CUDA executor's bf16 GEMMs,
// targets/cuda/train/ops-bf16.ts and ops-moc-bf16.ts, cast both operands f32 → bf16 before the
// tensor-core product): storing it bf16 loses nothing those readers see, and they can read it
// directly instead of casting it (no cast launch, no scratch copy). The operands (BF16_GEMM_OPERANDS):
//   linear / logits  y = x·Wᵀ       inputs 0 (x) and 1 (W)
//   matmul           y = a·b        inputs 0, 1      (the backward's dx = dy·W)
//   matmul_acc       y = acc + a·b  inputs 0, 1      (matmul folded with an add: passes/matmul-accumulate.ts)
//   matmul_tn        y = aᵀ·b       inputs 0, 1      (dW = dyᵀ·x: no param in practice)
//   moc_up           z = gather(x·Wᵀ)  inputs 0 (x), 1 (W)
//   moc_down         y = scatter(z)·W  input 1 (W)   (input 0 is scattered first, idx 2 is i32)
//   moc_rows_grad    out = scatter(a)ᵀ·b  input 1 (b) (a is scattered first)
//   lm_head_loss, lm_head_loss_grad   the fused output projection + loss (--fuse-lm-head): inputs 0 (x)
//                    and 1 (W), both cast before its block GEMMs (ops-lm-head-bf16.ts); so the head's
//                    W is stored bf16 when fused as when unfused (logits), unless tied to the embedding
// Any other reader (embedding's gather, rmsnorm and its gradient, elementwise ops) keeps the param
// f32: an embedding table tied to the logits stays f32, so do all 1-D params. A param no node reads
// stays f32, and so does a frozen one (not p.trainable: AdamW never updates it, so it keeps the dtype
// it was given in; only trainable params change storage). On the 1B preset every attention / FFN matrix qualifies: nearly all
// of its 1.34e9 parameters (driver/train-memory.ts counts the bytes).
import type { Graph } from '../ir/types.js';
import { adamwStoresBf16Params, type AdamWStateDType } from './adamw.js';

/** Per op, the input positions a bf16 GEMM reads as a bf16-rounded operand (header). */
export const BF16_GEMM_OPERANDS: Readonly<Record<string, readonly number[]>> = {
  linear: [0, 1],
  logits: [0, 1],
  matmul: [0, 1],
  matmul_acc: [0, 1],
  matmul_tn: [0, 1],
  moc_up: [0, 1],
  moc_down: [1],
  moc_rows_grad: [1],
  lm_head_loss: [0, 1],
  lm_head_loss_grad: [0, 1],
};

/** The params of `g` a 'bf16-params' run stores bf16 (header: trainable, 2-D, read only as bf16 GEMM operands). */
export function bf16StoredParams(g: Graph): Set<string> {
  const ok = new Map<string, boolean>();
  for (const n of g.nodes) {
    n.inputs.forEach((x, i) => {
      if (x.kind !== 'param') return;
      const gemm = BF16_GEMM_OPERANDS[n.op]?.includes(i) ?? false;
      ok.set(x.name, (ok.get(x.name) ?? true) && gemm);
    });
  }
  return new Set(g.params.filter((p) => p.trainable && p.type.shape.length === 2 && ok.get(p.name) === true).map((p) => p.name));
}

/** The params of `g` stored bf16 in optimizer mode `mode` (adamw.ts; default 'f32'): bf16StoredParams' in 'bf16-params', none in the others. */
export function bf16ParamsInMode(g: Graph, mode: AdamWStateDType = 'f32'): Set<string> {
  return adamwStoresBf16Params(mode) ? bf16StoredParams(g) : new Set();
}
