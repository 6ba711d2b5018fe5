// The op table: one entry per op with its arity, attributes and shape/dtype rule.
// Adding an op means adding an entry here and a kernel in every target that declares it.
import type { AttrValue, TensorType } from './types.js';
import { typeToString } from './types.js';
import { ATTENTION_ATTRS, checkAttention, checkRope, expectDim, expectFloat, expectRank, expectRows, f32, fail, num, ROPE_ATTRS, type AttrSpec, type OpSpec } from './op-spec.js';
import { TRAINING_OPS } from './ops-train.js';

export type { AttrKind, AttrSpec } from './op-spec.js';

export interface OpDef {
  name: string;
  /** Input names, for error messages and docs. */
  inputs: string[];
  /** Takes one or more inputs, all described by `inputs[0]` (concat). */
  variadic?: boolean;
  attrs: Record<string, AttrSpec>;
  /**
   * The input that output 0 is written over, of output 0's type: the node consumes it (an
   * accumulate-in-place op, matmul_acc's acc). verify.ts: it is a value that no later node reads,
   * not a graph output, not another input of the node; the memory plan (passes/memory-plan.ts) gives
   * output 0 its storage, so a target may write the result where the input is.
   */
  consumes?: number;
  /** Computes the output types from the input types and attributes; throws a plain message on mismatch. */
  infer(inputs: TensorType[], attrs: Readonly<Record<string, AttrValue>>): TensorType[];
  doc: string;
}
// Gradient rules live beside this table, in grad.ts.

/** Number of channels moc_select keeps: K, or for a:b blocks a per full block plus min(a, tail). */
export function selectedCount(dFfn: number, attrs: Readonly<Record<string, AttrValue>>): number {
  if (attrs.k !== undefined) return attrs.k as number;
  const a = attrs.a as number;
  const b = attrs.b as number;
  return a * Math.floor(dFfn / b) + Math.min(a, dFfn % b);
}

function sameShapeElementwise(ins: TensorType[]): TensorType {
  const [a, b] = ins as [TensorType, TensorType];
  expectFloat(a, 'lhs');
  expectFloat(b, 'rhs');
  if (a.shape.length !== b.shape.length || a.shape.some((d, i) => d !== b.shape[i])) fail(`shapes differ: ${typeToString(a)} vs ${typeToString(b)}`);
  return f32(...a.shape);
}
function unaryFloat(ins: TensorType[]): TensorType {
  expectFloat(ins[0]!, 'x');
  return f32(...ins[0]!.shape);
}

const defs: OpSpec[] = [
  {
    name: 'embedding', inputs: ['table', 'tokens'], attrs: {},
    doc: 'rows of table [V,d] picked by tokens i32[T] → [T,d]',
    infer([table, tokens]) {
      expectFloat(table!, 'table'); expectRank(table!, 2, 'table'); expectRank(tokens!, 1, 'tokens');
      if (tokens!.dtype !== 'i32') fail(`tokens must be i32, got ${typeToString(tokens!)}`);
      return f32(tokens!.shape[0]!, table!.shape[1]!);
    },
  },
  {
    name: 'rmsnorm', inputs: ['x', 'weight'], attrs: { eps: { kind: 'float' } },
    doc: 'x / sqrt(mean(x²) + eps) · weight, over the last axis',
    infer([x, w]) {
      expectFloat(x!, 'x'); expectRank(w!, 1, 'weight');
      expectDim(x!.shape[x!.shape.length - 1]!, w!.shape[0]!, 'rmsnorm width');
      return f32(...x!.shape);
    },
  },
  {
    name: 'linear', inputs: ['x', 'weight'], attrs: {},
    doc: 'x [T,in] · weightᵀ, weight stored [out,in]',
    infer([x, w]) {
      expectRank(x!, 2, 'x'); expectRank(w!, 2, 'weight'); expectFloat(w!, 'weight');
      expectDim(x!.shape[1]!, w!.shape[1]!, 'linear inner dimension');
      return f32(x!.shape[0]!, w!.shape[0]!);
    },
  },
  {
    name: 'rope', inputs: ['x', 'pos'], attrs: ROPE_ATTRS,
    doc: "rotary embedding of each row x[t] at position pos[t] (i32[T]); style 'half' (pairs i, i+hd/2) or 'interleaved' (pairs 2i, 2i+1)",
    infer([x, pos], attrs) {
      checkRope(x!, pos!, attrs);
      return f32(...x!.shape);
    },
  },
  {
    name: 'attention', inputs: ['q', 'k', 'v', 'seq'], attrs: ATTENTION_ATTRS,
    doc: 'causal GQA attention within each sequence: row t attends to rows s ≤ t with seq[s] = seq[t] (a sequence\'s rows contiguous, in order)',
    infer(ins, attrs) {
      checkAttention(ins, attrs);
      return f32(...ins[0]!.shape);
    },
  },
  {
    name: 'kv_write', inputs: ['cache', 'x', 'pos'], attrs: {},
    doc: 'the cache [C,w] with row pos[t] replaced by x[t]: appending to a KV cache, as a pure op',
    infer([cache, x, pos]) {
      expectRank(cache!, 2, 'cache'); expectRank(x!, 2, 'x'); expectFloat(x!, 'x');
      expectDim(cache!.shape[1]!, x!.shape[1]!, 'cache width');
      expectRows(pos!, x!, 'pos');
      return f32(...cache!.shape);
    },
  },
  {
    name: 'kv_attention', inputs: ['q', 'k_cache', 'v_cache', 'pos'], attrs: ATTENTION_ATTRS,
    doc: 'causal GQA attention of q over cached keys/values [C,kv_heads·hd]: row t attends to cache rows 0..pos[t] (decoding one sequence)',
    infer([q, k, v, pos], attrs) {
      const hd = num(attrs, 'head_dim');
      expectDim(q!.shape[1]!, num(attrs, 'heads') * hd, 'q width');
      expectDim(k!.shape[1]!, num(attrs, 'kv_heads') * hd, 'k_cache width');
      expectDim(v!.shape[1]!, num(attrs, 'kv_heads') * hd, 'v_cache width');
      expectDim(k!.shape[0]!, v!.shape[0]!, 'cache capacity');
      if (num(attrs, 'heads') % num(attrs, 'kv_heads') !== 0) fail('heads must be a multiple of kv_heads');
      expectRows(pos!, q!, 'pos');
      return f32(...q!.shape);
    },
  },
  {
    name: 'logits', inputs: ['x', 'weight'], attrs: {},
    doc: 'the final projection to the vocabulary, x [T,d] · weightᵀ with weight [V,d]; its own op so targets can compute only the rows they need and fuse sampling',
    infer([x, w]) {
      expectRank(x!, 2, 'x'); expectRank(w!, 2, 'weight'); expectFloat(w!, 'weight');
      expectDim(x!.shape[1]!, w!.shape[1]!, 'logits inner dimension');
      return f32(x!.shape[0]!, w!.shape[0]!);
    },
  },
  { name: 'silu', inputs: ['x'], attrs: {}, doc: 'x·sigmoid(x)', infer: unaryFloat },
  { name: 'sigmoid', inputs: ['x'], attrs: {}, doc: '1/(1+e^-x)', infer: unaryFloat },
  { name: 'mul', inputs: ['a', 'b'], attrs: {}, doc: 'elementwise product', infer: sameShapeElementwise },
  { name: 'add', inputs: ['a', 'b'], attrs: {}, doc: 'elementwise sum', infer: sameShapeElementwise },
  {
    name: 'transpose', inputs: ['x'], attrs: {},
    doc: 'swaps the two axes of a matrix; on a param the GPU targets compute it on the host and packages store it',
    infer([x]) {
      expectRank(x!, 2, 'x');
      return { dtype: x!.dtype, shape: [x!.shape[1]!, x!.shape[0]!] };
    },
  },
  {
    name: 'moc_select', inputs: ['g'],
    attrs: { k: { kind: 'int', optional: true }, a: { kind: 'int', optional: true }, b: { kind: 'int', optional: true } },
    doc: 'per row, indices of the K largest values (ties → lower index), or the a largest of every b consecutive; ascending channel order',
    infer([g], attrs) {
      expectRank(g!, 2, 'g');
      const f = g!.shape[1]!;
      if (typeof f !== 'number') fail('moc_select needs a static channel count');
      const byK = attrs.k !== undefined;
      const byPattern = attrs.a !== undefined || attrs.b !== undefined;
      if (byK === byPattern) fail('moc_select takes either k or a:b');
      if (byK && !(num(attrs, 'k') >= 1 && num(attrs, 'k') <= f)) fail(`k must be in 1..${f}, got ${attrs.k}`);
      if (byPattern && !(num(attrs, 'a') >= 1 && num(attrs, 'b') >= num(attrs, 'a'))) fail(`pattern a:b needs 1 ≤ a ≤ b, got ${attrs.a}:${attrs.b}`);
      return { dtype: 'i32', shape: [g!.shape[0]!, selectedCount(f, attrs)] };
    },
  },
  {
    name: 'moc_gather', inputs: ['g', 'idx'], attrs: {},
    doc: 'g[t, idx[t,k]] → [T,K]: the kept gate values',
    infer([g, idx]) {
      if (idx!.dtype !== 'i32') fail('idx must be i32');
      expectDim(g!.shape[0]!, idx!.shape[0]!, 'tokens');
      return f32(g!.shape[0]!, idx!.shape[1]!);
    },
  },
  {
    name: 'moc_up', inputs: ['x', 'w_up', 'idx'], attrs: {},
    doc: 'x · w_up[idx]ᵀ per token: the up projection of the kept channels only; w_up [F,d]',
    infer([x, w, idx]) {
      expectRank(w!, 2, 'w_up'); expectFloat(w!, 'w_up');
      expectDim(x!.shape[1]!, w!.shape[1]!, 'moc_up inner dimension');
      if (idx!.dtype !== 'i32') fail('idx must be i32');
      return f32(x!.shape[0]!, idx!.shape[1]!);
    },
  },
  {
    name: 'moc_down', inputs: ['z', 'w_down', 'idx'], attrs: {},
    doc: 'Σ_k z[t,k] · w_down[idx[t,k]]: the down projection from kept channels; w_down is [F,d] (a checkpoint\'s W_downᵀ) so a channel is one row',
    infer([z, w, idx]) {
      expectRank(w!, 2, 'w_down'); expectFloat(w!, 'w_down');
      expectDim(z!.shape[1]!, idx!.shape[1]!, 'kept channels');
      return f32(z!.shape[0]!, w!.shape[1]!);
    },
  },
  {
    name: 'split', inputs: ['x'], attrs: { parts: { kind: 'int' } },
    doc: 'x [R,n·w] cut along the last axis into n outputs [R,w] (several outputs: e.g. a fused QKV projection)',
    infer([x], attrs) {
      expectRank(x!, 2, 'x');
      const parts = num(attrs, 'parts'), w = x!.shape[1]!;
      if (!(parts >= 1)) fail(`parts must be at least 1, got ${parts}`);
      if (typeof w !== 'number' || w % parts !== 0) fail(`width ${w} is not a multiple of parts = ${parts}`);
      return Array.from({ length: parts }, () => ({ dtype: x!.dtype, shape: [x!.shape[0]!, w / parts] }));
    },
  },
];

/**
 * The ops that may write their output as bf16 (passes/bf16-producers.ts): each takes the optional
 * attribute dtype="bf16", which makes its one f32 output bf16 — the op computes the f32 values it
 * always does and rounds each once to nearest even, exactly as a `cast` of its f32 output would (the
 * ref target: eval-node.ts; the CUDA training executor: a bf16-output variant of the op's kernel).
 * Single-output ops only: one attribute names one output's dtype.
 */
export const BF16_OUTPUT_OPS: ReadonlySet<string> = new Set(['moc_scatter', 'rmsnorm', 'rope_grad', 'cross_entropy_grad']);

/** An op of BF16_OUTPUT_OPS: the optional dtype attribute, and its output f32 → bf16 when dtype="bf16". */
function withOutputDtype(d: OpSpec): OpSpec {
  if (!BF16_OUTPUT_OPS.has(d.name)) return d;
  return {
    ...d,
    attrs: { ...d.attrs, dtype: { kind: 'string', optional: true } },
    infer(ins, attrs) {
      const t = d.infer(ins, attrs);
      if (Array.isArray(t) || t.dtype !== 'f32') fail(`${d.name} with a dtype attribute must have one f32 output`);
      if (attrs.dtype === undefined) return t;
      if (attrs.dtype !== 'bf16') fail(`dtype must be bf16, got ${String(attrs.dtype)}`);
      return { dtype: 'bf16', shape: t.shape };
    },
  };
}

export const OPS: ReadonlyMap<string, OpDef> = new Map([...defs, ...TRAINING_OPS].map(withOutputDtype).map((d): [string, OpDef] => [d.name, {
  ...d,
  infer: (ins, attrs) => {
    const t = d.infer(ins, attrs);
    return Array.isArray(t) ? t : [t];
  },
}]));

export function opDef(name: string): OpDef {
  const d = OPS.get(name);
  if (!d) throw new Error(`unknown op '${name}'`);
  return d;
}
