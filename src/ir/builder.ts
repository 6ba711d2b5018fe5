// Builds graphs op by op, inferring each node's output types from the op table.
import { opDef } from './ops.js';
import type { AttrValue, Checkpoint, Graph, Node, Operand, ParamDecl, StateDecl, TensorType, ValueDecl } from './types.js';
import { operandToString, typeToString } from './types.js';

export interface OpOptions {
  ckpt?: Checkpoint;
}

export class GraphBuilder {
  private readonly inputs: ValueDecl[] = [];
  private readonly states: Omit<StateDecl, 'next'>[] = [];
  private readonly params = new Map<string, ParamDecl>();
  private readonly nodes: Node[] = [];
  private readonly types = new Map<string, TensorType>();
  private readonly used = new Set<string>();

  constructor(readonly name: string) {}

  input(name: string, type: TensorType): Operand {
    this.define(name, type);
    this.inputs.push({ name, type });
    return { kind: 'value', name };
  }

  /** Declares graph state, read like an input; finish() is told which value replaces it after a call. */
  state(name: string, type: TensorType): Operand {
    this.define(name, type);
    this.states.push({ name, type });
    return { kind: 'value', name };
  }

  /** Declares a parameter (once; a second read of it passes the same type) and returns it as an operand. */
  param(name: string, type: TensorType, trainable = true, transposed = false): Operand {
    const prev = this.params.get(name);
    if (prev && (typeToString(prev.type) !== typeToString(type) || prev.trainable !== trainable || !!prev.transposed !== transposed)) throw new Error(`param @${name} declared twice differently`);
    if (!prev) this.params.set(name, { name, type, trainable, ...(transposed ? { transposed } : {}) });
    return { kind: 'param', name };
  }

  typeOf(o: Operand): TensorType {
    const t = o.kind === 'param' ? this.params.get(o.name)?.type : this.types.get(o.name);
    if (!t) throw new Error(`${operandToString(o)} is not defined`);
    return t;
  }

  /** Adds a single-output node; `name` is made unique if taken. Returns the new value. */
  op(op: string, inputs: Operand[], attrs: Record<string, AttrValue> = {}, name?: string, opts: OpOptions = {}): Operand {
    const outs = this.opN(op, inputs, attrs, [name ?? op], opts);
    if (outs.length !== 1) throw new Error(`${op} has ${outs.length} outputs: use opN`);
    return outs[0]!;
  }

  /** Adds a node with one or more outputs, named from `names` (made unique; missing ones from the first name, or the op). */
  opN(op: string, inputs: Operand[], attrs: Record<string, AttrValue> = {}, names: string[] = [], opts: OpOptions = {}): Operand[] {
    const types = opDef(op).infer(inputs.map((i) => this.typeOf(i)), attrs);
    const outputs = types.map((type, i) => {
      // Unnamed outputs after a named first one are named after it (%d.h, %d.h.1), else after the op.
      const name = this.fresh(names[i] ?? (i > 0 && names[0] ? `${names[0]}.${i}` : types.length > 1 ? `${op}.${i}` : op));
      this.define(name, type);
      return { name, type };
    });
    this.nodes.push({ op, inputs, attrs, outputs, ...(opts.ckpt ? { ckpt: opts.ckpt } : {}) });
    return outputs.map((o) => ({ kind: 'value', name: o.name }));
  }

  /** Appends an already-typed node verbatim (passes copying nodes across). */
  copy(node: Node): void {
    for (const o of node.outputs) this.define(o.name, o.type);
    this.nodes.push(node);
  }

  declareParams(decls: readonly ParamDecl[]): void {
    for (const p of decls) this.param(p.name, p.type, p.trainable, !!p.transposed);
  }

  fresh(base: string): string {
    if (!this.used.has(base)) return base;
    for (let i = 1; ; i++) if (!this.used.has(`${base}.${i}`)) return `${base}.${i}`;
  }

  /** The graph, with its outputs and, for each declared state (by name), the value that replaces it. */
  finish(outputs: Operand[], next: Record<string, Operand> = {}): Graph {
    for (const s of this.states) if (!next[s.name]) throw new Error(`state %${s.name} has no next value`);
    return {
      name: this.name,
      inputs: [...this.inputs],
      states: this.states.map((s) => ({ ...s, next: next[s.name]!.name })),
      params: [...this.params.values()],
      nodes: [...this.nodes],
      outputs: outputs.map((o) => o.name),
    };
  }

  private define(name: string, type: TensorType): void {
    if (this.used.has(name)) throw new Error(`%${name} defined twice`);
    this.used.add(name);
    this.types.set(name, type);
  }
}
