// The gradient-rule table, beside the op table (ops.ts), in the manner of JAX's and tinygrad's:
// one entry per differentiable op. An autodiff pass walks a graph backwards and, for each node,
// calls its rule with the gradients of the node's outputs; the rule emits backward nodes through
// the context and returns one gradient per input. A gradient for a parameter operand is summed
// onto that parameter (so a parameter read twice — the tied embedding — gets one gradient).
// The rules themselves are in grad-rules.ts; opsWithoutGradRule() says which ops have none.
import { RULES } from './grad-rules.js';
import { OPS } from './ops.js';
import type { AttrValue, Node, Operand, TensorType } from './types.js';

/** What the backward pass of an op reads from the forward pass, so the forward keeps (or recomputes) it. */
export interface GradNeeds {
  /** Indices of forward inputs the backward reads (e.g. linear's x and weight). */
  inputs: number[];
  /** Indices of forward outputs the backward reads (e.g. silu's y, moc_select's indices). */
  outputs: number[];
}

/** How a rule adds backward nodes: any op of the table, with one or several outputs. */
export interface GradContext {
  /** Emits `op(inputs)` and returns its outputs as operands (one per op output). */
  emit(op: string, inputs: Operand[], attrs?: Record<string, AttrValue>): Operand[];
  /** The forward node's i-th output as an operand (only for indices listed in `needs.outputs`). */
  output(node: Node, i: number): Operand;
  /** The type of any operand (shapes are static facts, not values the backward reads). */
  typeOf(o: Operand): TensorType;
}

export interface GradRule {
  needs: GradNeeds;
  /**
   * Given the gradients of the node's outputs (null where no gradient flows into one), returns one
   * gradient per input, null where the input gets none (token ids, indices, frozen parameters).
   */
  backward(ctx: GradContext, node: Node, dOutputs: readonly (Operand | null)[]): (Operand | null)[];
}

export const GRAD_RULES: ReadonlyMap<string, GradRule> = new Map<string, GradRule>(RULES);

/**
 * Checks a gradient table against the op table: every rule names a known op, and its `needs` name
 * inputs within the op's arity and non-negative output indices. Throws a message naming the op.
 */
export function checkGradRules(rules: ReadonlyMap<string, GradRule>): void {
  for (const [op, rule] of rules) {
    const def = OPS.get(op);
    if (!def) throw new Error(`gradient rule for unknown op '${op}'`);
    const bad = rule.needs.inputs.find((i) => !(Number.isInteger(i) && i >= 0 && (def.variadic || i < def.inputs.length)));
    if (bad !== undefined) throw new Error(`gradient rule for '${op}' needs input ${bad}, but ${op} takes ${def.inputs.length}`);
    const badOut = rule.needs.outputs.find((i) => !(Number.isInteger(i) && i >= 0));
    if (badOut !== undefined) throw new Error(`gradient rule for '${op}' needs output ${badOut}`);
  }
}

/** The ops of the table that have no gradient rule yet, in table order. */
export function opsWithoutGradRule(): string[] {
  return [...OPS.keys()].filter((op) => !GRAD_RULES.has(op));
}
