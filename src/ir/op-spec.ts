// What an op-table entry is, and the checks its shape rules share (ops.ts: inference ops;
// ops-train.ts: the ops autodiff and the losses add). Each rule throws a plain message on mismatch;
// the verifier (verify.ts) prefixes it with the node.
import type { AttrValue, Dim, TensorType } from './types.js';
import { typeToString } from './types.js';

export type AttrKind = 'int' | 'float' | 'string' | 'bool';

export interface AttrSpec {
  kind: AttrKind;
  optional?: boolean;
}

/** An op as written in the table below: `infer` gives the one output type, or a list for several. */
export interface OpSpec {
  name: string;
  /** Input names, for error messages and docs. */
  inputs: string[];
  /** Takes one or more inputs, all described by `inputs[0]` (concat). */
  variadic?: boolean;
  attrs: Record<string, AttrSpec>;
  /** The input that output 0 is written over (OpDef.consumes: an accumulate-in-place op). */
  consumes?: number;
  infer(inputs: TensorType[], attrs: Readonly<Record<string, AttrValue>>): TensorType | TensorType[];
  doc: string;
}

/** The attributes of rope and of its gradient (rope_grad): one list. */
export const ROPE_ATTRS: Record<string, AttrSpec> = {
  heads: { kind: 'int' }, head_dim: { kind: 'int' }, theta: { kind: 'float' }, style: { kind: 'string' },
  scaling: { kind: 'string', optional: true }, factor: { kind: 'float', optional: true },
  low_freq_factor: { kind: 'float', optional: true }, high_freq_factor: { kind: 'float', optional: true },
  original_max_pos: { kind: 'int', optional: true },
};
/** The attributes of the attention ops. */
export const ATTENTION_ATTRS: Record<string, AttrSpec> = { heads: { kind: 'int' }, kv_heads: { kind: 'int' }, head_dim: { kind: 'int' } };

/** The checks rope and rope_grad share: x [T, heads·hd] rotated at pos i32[T]. */
export function checkRope(x: TensorType, pos: TensorType, attrs: Readonly<Record<string, AttrValue>>): void {
  expectRank(x, 2, 'x');
  expectRows(pos, x, 'pos');
  if (attrs.style !== 'half' && attrs.style !== 'interleaved') fail(`rope style must be half or interleaved, got ${String(attrs.style)}`);
  if (attrs.scaling !== undefined && attrs.scaling !== 'llama3') fail(`rope scaling must be llama3, got ${String(attrs.scaling)}`);
  expectDim(x.shape[1]!, num(attrs, 'heads') * num(attrs, 'head_dim'), 'rope width = heads·head_dim');
}

/** The checks attention and attention_grad share. */
export function checkAttention([q, k, v, seq]: TensorType[], attrs: Readonly<Record<string, AttrValue>>): void {
  expectRows(seq!, q!, 'seq');
  const hd = num(attrs, 'head_dim');
  expectDim(q!.shape[1]!, num(attrs, 'heads') * hd, 'q width');
  expectDim(k!.shape[1]!, num(attrs, 'kv_heads') * hd, 'k width');
  expectDim(v!.shape[1]!, num(attrs, 'kv_heads') * hd, 'v width');
  if (num(attrs, 'heads') % num(attrs, 'kv_heads') !== 0) fail('heads must be a multiple of kv_heads');
  expectDim(q!.shape[0]!, k!.shape[0]!, 'q/k tokens');
}


export const FLOATS = new Set(['f32', 'f16', 'bf16']);

export function fail(msg: string): never {
  throw new Error(msg);
}
export function expectFloat(t: TensorType, what: string): void {
  if (!FLOATS.has(t.dtype)) fail(`${what} must be a float tensor, got ${typeToString(t)}`);
}
export function expectRank(t: TensorType, rank: number, what: string): void {
  if (t.shape.length !== rank) fail(`${what} must have rank ${rank}, got ${typeToString(t)}`);
}
export function expectDim(a: Dim, b: Dim, what: string): void {
  if (a !== b) fail(`${what}: ${a} ≠ ${b}`);
}
/** An i32[T] per-row vector (positions, sequence ids) for the rows of x. */
export function expectRows(v: TensorType, x: TensorType, what: string): void {
  if (v.dtype !== 'i32') fail(`${what} must be i32, got ${typeToString(v)}`);
  expectRank(v, 1, what);
  expectDim(v.shape[0]!, x.shape[0]!, `${what} rows`);
}
export function num(attrs: Readonly<Record<string, AttrValue>>, k: string): number {
  return attrs[k] as number;
}
export const f32 = (...shape: Dim[]): TensorType => ({ dtype: 'f32', shape });

