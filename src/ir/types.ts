// The IR's data model: an immutable SSA graph of pure tensor ops over declared parameters.
import type { DType } from '../util/dtype.js';

/** A dimension: a number, or a symbol bound at run time ('T' = rows, i.e. tokens, in this call). */
export type Dim = number | string;

export interface TensorType {
  readonly dtype: DType;
  readonly shape: readonly Dim[];
}

/** An operand is an SSA value (%name) or a parameter (@name). */
export type Operand = { readonly kind: 'value'; readonly name: string } | { readonly kind: 'param'; readonly name: string };

export type AttrValue = number | string | boolean;

/** Gradient checkpointing: keep a node's outputs for the backward pass, or recompute them there. */
export type Checkpoint = 'save' | 'recompute';
export const CHECKPOINTS: readonly Checkpoint[] = ['save', 'recompute'];

export interface ValueDecl {
  readonly name: string;
  readonly type: TensorType;
}

export interface Node {
  readonly op: string;
  readonly inputs: readonly Operand[];
  readonly attrs: Readonly<Record<string, AttrValue>>;
  /** The SSA values this node defines, in the order of the op's outputs (most ops have one). */
  readonly outputs: readonly ValueDecl[];
  readonly ckpt?: Checkpoint;
}

/**
 * A parameter: one stored tensor, loaded by name from a weight store, in the layout the kernels read.
 * Trainable unless frozen; a gradient lands on the parameter itself, summed over all its reads.
 */
export interface ParamDecl extends ValueDecl {
  readonly trainable: boolean;
  /**
   * The weight store holds this param's transpose (a checkpoint's W_down is [d, d_ffn]; MoC reads the
   * param as [d_ffn, d], a channel a row). Whoever loads it transposes; a package stores it in the
   * param's own layout, without the flag (src/package/materialize.ts).
   */
  readonly transposed?: boolean;
}

/**
 * Graph state (a decode graph's KV cache): a value the caller keeps between calls. It is read like an
 * input, and after the call it is replaced by the value `next` (an SSA value of the same type).
 */
export interface StateDecl extends ValueDecl {
  readonly next: string;
}

export interface Graph {
  readonly name: string;
  readonly inputs: readonly ValueDecl[];
  /** State carried between calls; empty for a model graph (pure: training, prefill of whole sequences). */
  readonly states: readonly StateDecl[];
  readonly params: readonly ParamDecl[];
  readonly nodes: readonly Node[];
  readonly outputs: readonly string[];
}

export const value = (name: string): Operand => ({ kind: 'value', name });
export const param = (name: string): Operand => ({ kind: 'param', name });

/** The one output of a single-output node; throws for a node with several (callers that handle only those). */
export function single(n: Node): ValueDecl {
  if (n.outputs.length !== 1) throw new Error(`${n.op} node %${n.outputs[0]?.name ?? '?'} has ${n.outputs.length} outputs, expected one`);
  return n.outputs[0]!;
}

/** A node's first output names it in messages and program steps. */
export function nodeName(n: Node): string {
  return n.outputs[0]!.name;
}

export function operandToString(o: Operand): string {
  return (o.kind === 'param' ? '@' : '%') + o.name;
}

export function sameDim(a: Dim, b: Dim): boolean {
  return a === b;
}

export function typeToString(t: TensorType): string {
  return `${t.dtype}[${t.shape.join(',')}]`;
}

export function sameType(a: TensorType, b: TensorType): boolean {
  return a.dtype === b.dtype && a.shape.length === b.shape.length && a.shape.every((d, i) => sameDim(d, b.shape[i]!));
}
