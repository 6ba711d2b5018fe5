// The IR's data model: an immutable SSA graph of tensor ops over named, lazily-loaded weights.
import type { DType } from '../util/dtype.js';

/** A dimension: a number, or a symbol bound at run time ('T' = tokens in this call). */
export type Dim = number | string;

export interface TensorType {
  readonly dtype: DType;
  readonly shape: readonly Dim[];
}

/** An operand is an SSA value (%name) or a weight (@name). */
export type Operand = { readonly kind: 'value'; readonly name: string } | { readonly kind: 'weight'; readonly name: string };

export type AttrValue = number | string | boolean;

export interface Node {
  /** The SSA value this node defines. */
  readonly name: string;
  readonly op: string;
  readonly inputs: readonly Operand[];
  readonly attrs: Readonly<Record<string, AttrValue>>;
  readonly type: TensorType;
  /** Free-form annotations passes attach, e.g. ckpt=save|recompute for gradient checkpointing. */
  readonly annotations: Readonly<Record<string, string>>;
}

export interface ValueDecl {
  readonly name: string;
  readonly type: TensorType;
}

export interface Graph {
  readonly name: string;
  readonly inputs: readonly ValueDecl[];
  /** Weights are named constants: declared with a type here, loaded by name from a weight store. */
  readonly weights: readonly ValueDecl[];
  readonly nodes: readonly Node[];
  readonly outputs: readonly string[];
}

export const value = (name: string): Operand => ({ kind: 'value', name });
export const weight = (name: string): Operand => ({ kind: 'weight', name });

export function sameDim(a: Dim, b: Dim): boolean {
  return a === b;
}

export function typeToString(t: TensorType): string {
  return `${t.dtype}[${t.shape.join(',')}]`;
}

export function sameType(a: TensorType, b: TensorType): boolean {
  return a.dtype === b.dtype && a.shape.length === b.shape.length && a.shape.every((d, i) => sameDim(d, b.shape[i]!));
}
