// Builds graphs op by op, inferring each node's type from the op table.
import { opDef } from './ops.js';
import type { AttrValue, Graph, Node, Operand, TensorType, ValueDecl } from './types.js';
import { typeToString } from './types.js';

export class GraphBuilder {
  private readonly inputs: ValueDecl[] = [];
  private readonly weights = new Map<string, ValueDecl>();
  private readonly nodes: Node[] = [];
  private readonly types = new Map<string, TensorType>();
  private readonly used = new Set<string>();

  constructor(readonly name: string) {}

  input(name: string, type: TensorType): Operand {
    this.define(name, type);
    this.inputs.push({ name, type });
    return { kind: 'value', name };
  }

  weight(name: string, type: TensorType): Operand {
    const prev = this.weights.get(name);
    if (prev && typeToString(prev.type) !== typeToString(type)) throw new Error(`weight @${name} declared twice with different types`);
    if (!prev) this.weights.set(name, { name, type });
    return { kind: 'weight', name };
  }

  typeOf(o: Operand): TensorType {
    const t = o.kind === 'weight' ? this.weights.get(o.name)?.type : this.types.get(o.name);
    if (!t) throw new Error(`${o.kind === 'weight' ? '@' : '%'}${o.name} is not defined`);
    return t;
  }

  /** Adds a node; `name` is made unique if taken. Returns the new value. */
  op(op: string, inputs: Operand[], attrs: Record<string, AttrValue> = {}, name?: string, annotations: Record<string, string> = {}): Operand {
    const def = opDef(op);
    const type = def.infer(inputs.map((i) => this.typeOf(i)), attrs);
    const unique = this.fresh(name ?? op);
    this.define(unique, type);
    this.nodes.push({ name: unique, op, inputs, attrs, type, annotations });
    return { kind: 'value', name: unique };
  }

  /** Appends an already-typed node verbatim (passes copying nodes across). */
  copy(node: Node): void {
    this.define(node.name, node.type);
    this.nodes.push(node);
  }

  declareWeights(decls: readonly ValueDecl[]): void {
    for (const w of decls) this.weight(w.name, w.type);
  }

  fresh(base: string): string {
    if (!this.used.has(base)) return base;
    for (let i = 1; ; i++) if (!this.used.has(`${base}.${i}`)) return `${base}.${i}`;
  }

  finish(outputs: Operand[]): Graph {
    return {
      name: this.name,
      inputs: [...this.inputs],
      weights: [...this.weights.values()],
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
