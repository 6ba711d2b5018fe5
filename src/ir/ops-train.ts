// The training ops: the losses, and the ops the gradient rules (grad-rules.ts) emit. They join the
// inference ops in one table (ops.ts: OPS); a target that trains declares them like any other op.
//
// Losses are means over the rows whose target is ≥ 0 (a row with target -1 predicts nothing: a
// sequence's last row, padding); a batch with no such row has loss 0. They return f32[1] and keep
// nothing of their own: the backward op (…_grad) recomputes the softmax from the logits, which the
// forward has anyway, so no [T,V] probability tensor is ever saved.
import type { TensorType } from './types.js';
import { typeToString } from './types.js';
import { ATTENTION_ATTRS, checkAttention, checkRope, expectDim, expectFloat, expectRank, expectRows, f32, fail, num, ROPE_ATTRS, type OpSpec } from './op-spec.js';

const scalar = (t: TensorType, what: string) => {
  if (t.shape.length !== 1 || t.shape[0] !== 1) fail(`${what} must be f32[1], got ${typeToString(t)}`);
};
const sameShape = (a: TensorType, b: TensorType, what: string) => {
  if (a.shape.length !== b.shape.length || a.shape.some((d, i) => d !== b.shape[i])) fail(`${what}: ${typeToString(a)} vs ${typeToString(b)}`);
};
const expectIdx = (idx: TensorType, rows: TensorType, what = 'idx') => {
  if (idx.dtype !== 'i32') fail(`${what} must be i32, got ${typeToString(idx)}`);
  expectRank(idx, 2, what);
  expectDim(idx.shape[0]!, rows.shape[0]!, `${what} rows`);
};
/** logits [T,V] with targets i32[T]. */
const checkLogits = (logits: TensorType, targets: TensorType) => {
  expectRank(logits, 2, 'logits');
  expectFloat(logits, 'logits');
  expectRows(targets, logits, 'targets');
};
/** x [T,d], weight [V,d], targets i32[T], chunk_rows ≥ 1. */
const checkLmHead = (x: TensorType, w: TensorType, targets: TensorType, attrs: Readonly<Record<string, unknown>>) => {
  expectRank(x, 2, 'x'); expectFloat(x, 'x');
  expectRank(w, 2, 'weight'); expectFloat(w, 'weight');
  expectDim(x.shape[1]!, w.shape[1]!, 'lm_head_loss inner dimension');
  expectRows(targets, x, 'targets');
  const c = attrs.chunk_rows;
  if (!(Number.isInteger(c) && (c as number) >= 1)) fail(`chunk_rows must be an integer ≥ 1, got ${String(c)}`);
};
/** matmul's a [M,K] · b [K,N] → f32 [M,N]. */
const matmulType = (a: TensorType, b: TensorType): TensorType => {
  expectRank(a, 2, 'a'); expectRank(b, 2, 'b'); expectFloat(a, 'a'); expectFloat(b, 'b');
  expectDim(a.shape[1]!, b.shape[0]!, 'matmul inner dimension');
  return f32(a.shape[0]!, b.shape[1]!);
};
const positive = (attrs: Readonly<Record<string, unknown>>, k: string) => {
  if (!((attrs[k] as number) > 0)) fail(`${k} must be positive, got ${String(attrs[k])}`);
};

export const TRAINING_OPS: OpSpec[] = [
  // ---- losses
  {
    name: 'cross_entropy', inputs: ['logits', 'targets'], attrs: {},
    doc: 'mean over rows with targets[t] ≥ 0 of −log softmax(logits[t])[targets[t]] → f32[1]',
    infer([logits, targets]) {
      checkLogits(logits!, targets!);
      return f32(1);
    },
  },
  {
    name: 'cross_entropy_grad', inputs: ['logits', 'targets', 'dloss'], attrs: {},
    doc: 'd cross_entropy / d logits · dloss: (softmax − onehot(target)) · dloss / n on counted rows, 0 elsewhere',
    infer([logits, targets, dloss]) {
      checkLogits(logits!, targets!);
      scalar(dloss!, 'dloss');
      return f32(...logits!.shape);
    },
  },
  // The loss fused with the output projection (passes/loss.ts, option lmHeadChunkRows): logits = x·Wᵀ
  // and cross_entropy of them, processed chunk_rows rows at a time, so that only a [chunk_rows, V]
  // block of logits exists at a time (issue 18). Same semantics as logits → cross_entropy. The
  // gradient recomputes each block's logits from x and W (it saves nothing but x, which the logits
  // node needed too): dlogits of the block, then dx rows = dlogits·W and dW += dlogitsᵀ·x rows.
  {
    name: 'lm_head_loss', inputs: ['x', 'weight', 'targets'], attrs: { chunk_rows: { kind: 'int' } },
    doc: 'cross_entropy(x·weightᵀ, targets) → f32[1], chunk_rows rows of logits at a time',
    infer([x, w, targets], attrs) {
      checkLmHead(x!, w!, targets!, attrs);
      return f32(1);
    },
  },
  {
    name: 'lm_head_loss_grad', inputs: ['x', 'weight', 'targets', 'dloss'], attrs: { chunk_rows: { kind: 'int' } },
    doc: 'gradients of lm_head_loss: dx [T,d] = dlogits·weight and dweight [V,d] = dlogitsᵀ·x, dlogits as cross_entropy_grad\'s, chunk_rows rows at a time',
    infer([x, w, targets, dloss], attrs) {
      checkLmHead(x!, w!, targets!, attrs);
      scalar(dloss!, 'dloss');
      return [f32(...x!.shape), f32(...w!.shape)];
    },
  },
  {
    name: 'kl_div', inputs: ['student', 'teacher', 'targets'], attrs: { temperature: { kind: 'float' } },
    doc: 'distillation loss: mean over rows with targets[t] ≥ 0 of τ²·KL(softmax(teacher/τ) ‖ softmax(student/τ)) → f32[1] (τ² keeps gradient scale, as Hinton et al.)',
    infer([s, t, targets], attrs) {
      checkLogits(s!, targets!);
      sameShape(s!, t!, 'student and teacher logits differ');
      positive(attrs, 'temperature');
      return f32(1);
    },
  },
  {
    name: 'kl_div_grad', inputs: ['student', 'teacher', 'targets', 'dloss'], attrs: { temperature: { kind: 'float' } },
    doc: 'd kl_div / d student · dloss: τ·(softmax(student/τ) − softmax(teacher/τ)) · dloss / n on counted rows',
    infer([s, t, targets, dloss], attrs) {
      checkLogits(s!, targets!);
      sameShape(s!, t!, 'student and teacher logits differ');
      scalar(dloss!, 'dloss');
      positive(attrs, 'temperature');
      return f32(...s!.shape);
    },
  },
  {
    name: 'fill_like', inputs: ['x'], attrs: { value: { kind: 'float' } },
    doc: 'a float tensor of x\'s shape, every element `value` (the seed 1 of a backward pass; zero gradients)',
    infer([x]) {
      return f32(...x!.shape);
    },
  },
  // ---- gradients of the inference ops
  {
    name: 'matmul', inputs: ['a', 'b'], attrs: {},
    doc: 'a [M,K] · b [K,N] → [M,N] (dx of linear: dy · W)',
    infer: ([a, b]) => matmulType(a!, b!),
  },
  // add(acc, matmul(a, b)) as one node whose GEMM adds its product to acc where acc is stored
  // (passes/matmul-accumulate.ts, for a target whose GEMMs have an accumulate epilogue): acc is
  // consumed (OpSpec.consumes), the result takes its storage. Same numbers as the add of the matmul.
  {
    name: 'matmul_acc', inputs: ['a', 'b', 'acc'], attrs: {}, consumes: 2,
    doc: 'acc + a [M,K] · b [K,N] → [M,N], written over acc (the add of a matmul into the value it adds to: dx = dq·Wq + dk·Wk + …)',
    infer([a, b, acc]) {
      const y = matmulType(a!, b!);
      if (acc!.dtype !== 'f32') fail(`acc must be f32, got ${typeToString(acc!)}`);
      sameShape(acc!, y, 'acc and a·b differ');
      return y;
    },
  },
  {
    name: 'matmul_tn', inputs: ['a', 'b'], attrs: {},
    doc: 'aᵀ · b for a [K,M], b [K,N] → [M,N], summed over the rows (dW of linear: dyᵀ · x)',
    infer([a, b]) {
      expectRank(a!, 2, 'a'); expectRank(b!, 2, 'b'); expectFloat(a!, 'a'); expectFloat(b!, 'b');
      expectDim(a!.shape[0]!, b!.shape[0]!, 'matmul_tn rows');
      return f32(a!.shape[1]!, b!.shape[1]!);
    },
  },
  {
    name: 'embedding_grad', inputs: ['dy', 'tokens'], attrs: { rows: { kind: 'int' } },
    doc: 'the table gradient [rows,d]: row v is the sum of dy[t] over the t with tokens[t] = v',
    infer([dy, tokens], attrs) {
      expectRank(dy!, 2, 'dy'); expectRows(tokens!, dy!, 'tokens');
      return f32(num(attrs, 'rows'), dy!.shape[1]!);
    },
  },
  {
    name: 'rmsnorm_grad', inputs: ['x', 'weight', 'dy'], attrs: { eps: { kind: 'float' } },
    doc: 'gradients of rmsnorm(x, weight): dx [like x] and dweight [d], from x, weight and dy',
    infer([x, w, dy]) {
      expectRank(w!, 1, 'weight');
      sameShape(x!, dy!, 'x and dy differ');
      return [f32(...x!.shape), f32(...w!.shape)];
    },
  },
  // add(acc, rmsnorm_grad(x, weight, dy)'s dx) as one node whose kernel adds its dx to acc where acc
  // is stored (passes/matmul-accumulate.ts): acc is consumed (OpSpec.consumes), output 0 takes its
  // storage. Same numbers as the add of rmsnorm_grad's dx; dweight as rmsnorm_grad's.
  {
    name: 'rmsnorm_grad_acc', inputs: ['x', 'weight', 'dy', 'acc'], attrs: { eps: { kind: 'float' } }, consumes: 3,
    doc: 'acc + dx and dweight of rmsnorm(x, weight), dx written over acc (the residual gradient plus the norm\'s: dh + rmsnorm_grad(…))',
    infer([x, w, dy, acc]) {
      expectRank(w!, 1, 'weight');
      sameShape(x!, dy!, 'x and dy differ');
      if (acc!.dtype !== 'f32') fail(`acc must be f32, got ${typeToString(acc!)}`);
      sameShape(acc!, x!, 'acc and x differ');
      return [f32(...x!.shape), f32(...w!.shape)];
    },
  },
  {
    name: 'rope_grad', inputs: ['dy', 'pos'], attrs: ROPE_ATTRS,
    doc: 'the gradient of rope: each row rotated back by its angle (the rotation\'s transpose)',
    infer([dy, pos], attrs) {
      checkRope(dy!, pos!, attrs);
      return f32(...dy!.shape);
    },
  },
  {
    name: 'attention_grad', inputs: ['q', 'k', 'v', 'seq', 'dy'], attrs: ATTENTION_ATTRS,
    doc: 'gradients dq, dk, dv of attention(q, k, v, seq); the softmax is recomputed from q and k, never saved',
    infer(ins, attrs) {
      checkAttention(ins, attrs);
      sameShape(ins[0]!, ins[4]!, 'q and dy differ');
      return [f32(...ins[0]!.shape), f32(...ins[1]!.shape), f32(...ins[2]!.shape)];
    },
  },
  {
    name: 'silu_grad', inputs: ['x', 'dy'], attrs: {},
    doc: 'dy · silu\'(x) = dy · σ(x)·(1 + x·(1 − σ(x)))',
    infer([x, dy]) {
      sameShape(x!, dy!, 'x and dy differ');
      return f32(...x!.shape);
    },
  },
  {
    name: 'sigmoid_grad', inputs: ['x', 'dy'], attrs: {},
    doc: 'dy · σ(x)·(1 − σ(x))',
    infer([x, dy]) {
      sameShape(x!, dy!, 'x and dy differ');
      return f32(...x!.shape);
    },
  },
  {
    name: 'moc_scatter', inputs: ['dy', 'idx'], attrs: { channels: { kind: 'int' } },
    doc: 'the gradient of moc_gather: dy [T,K] placed at idx in zeros [T,channels] (only kept channels get one)',
    infer([dy, idx], attrs) {
      expectRank(dy!, 2, 'dy'); expectIdx(idx!, dy!);
      expectDim(dy!.shape[1]!, idx!.shape[1]!, 'kept channels');
      return f32(dy!.shape[0]!, num(attrs, 'channels'));
    },
  },
  {
    name: 'moc_rows_grad', inputs: ['a', 'b', 'idx'], attrs: { rows: { kind: 'int' } },
    doc: 'a weight gradient [rows,d] with row idx[t,k] += a[t,k]·b[t]: dW_up (a = dy, b = x) and dW_down (a = z, b = dy); rows never kept stay 0',
    infer([a, b, idx], attrs) {
      expectRank(a!, 2, 'a'); expectRank(b!, 2, 'b'); expectIdx(idx!, a!);
      expectDim(a!.shape[1]!, idx!.shape[1]!, 'kept channels');
      expectDim(a!.shape[0]!, b!.shape[0]!, 'rows of a and b');
      return f32(num(attrs, 'rows'), b!.shape[1]!);
    },
  },
  {
    name: 'concat', inputs: ['part'], variadic: true, attrs: {},
    doc: 'parts [R,w_i] side by side along the last axis → [R,Σw_i] (the gradient of split)',
    infer(parts) {
      let w = 0;
      for (const p of parts) {
        expectRank(p, 2, 'part');
        expectDim(p.shape[0]!, parts[0]!.shape[0]!, 'part rows');
        if (typeof p.shape[1] !== 'number') fail('concat needs static widths');
        w += p.shape[1];
      }
      return f32(parts[0]!.shape[0]!, w);
    },
  },
  // ---- saved channel indices: 16 bits when they fit (checkpoint.ts), as the MoC paper stores them
  {
    name: 'index_narrow', inputs: ['idx'], attrs: {},
    doc: 'i32 indices < 65536 stored as u16 (the form saved for backward)',
    infer([idx]) {
      if (idx!.dtype !== 'i32') fail(`idx must be i32, got ${typeToString(idx!)}`);
      return { dtype: 'u16', shape: idx!.shape };
    },
  },
  {
    name: 'index_widen', inputs: ['idx'], attrs: {},
    doc: 'u16 indices back to i32',
    infer([idx]) {
      if (idx!.dtype !== 'u16') fail(`idx must be u16, got ${typeToString(idx!)}`);
      return { dtype: 'i32', shape: idx!.shape };
    },
  },
  // ---- a GEMM operand's bf16 copy, made once for the GEMMs near each other that read it
  //      (passes/bf16-gemm-operands.ts, for a target whose GEMMs multiply bf16)
  {
    name: 'cast', inputs: ['x'], attrs: { dtype: { kind: 'string' } },
    doc: 'x rounded to `dtype` (bf16: round to nearest even), same shape',
    infer([x], attrs) {
      if (x!.dtype !== 'f32') fail(`x must be f32, got ${typeToString(x!)}`);
      if (attrs.dtype !== 'bf16') fail(`dtype must be bf16, got ${String(attrs.dtype)}`);
      return { dtype: 'bf16', shape: x!.shape };
    },
  },
];
