// The verifier: SSA form, known ops, valid attributes, and every declared type equal to the op table's rule.
import { opDef } from './ops.js';
import type { Graph, TensorType } from './types.js';
import { sameType, typeToString } from './types.js';

export class VerifyError extends Error {
  override name = 'VerifyError';
}

export function verifyGraph(g: Graph): void {
  const types = new Map<string, TensorType>();
  const weights = new Map<string, TensorType>();
  const err = (msg: string): never => {
    throw new VerifyError(`graph ${g.name}: ${msg}`);
  };
  for (const w of g.weights) {
    if (weights.has(w.name)) err(`weight @${w.name} declared twice`);
    weights.set(w.name, w.type);
  }
  for (const i of g.inputs) {
    if (types.has(i.name)) err(`%${i.name} defined twice`);
    types.set(i.name, i.type);
  }
  for (const n of g.nodes) {
    const where = `%${n.name} = ${n.op}`;
    if (types.has(n.name)) err(`${where}: %${n.name} defined twice`);
    let def;
    try {
      def = opDef(n.op);
    } catch (e) {
      err(`${where}: ${(e as Error).message}`);
    }
    if (n.inputs.length !== def!.inputs.length) err(`${where}: takes ${def!.inputs.length} inputs (${def!.inputs.join(', ')}), got ${n.inputs.length}`);
    const inTypes = n.inputs.map((o) => {
      const t = o.kind === 'weight' ? weights.get(o.name) : types.get(o.name);
      if (!t) err(`${where}: ${o.kind === 'weight' ? '@' : '%'}${o.name} is used before it is defined`);
      return t!;
    });
    for (const [k, v] of Object.entries(n.attrs)) {
      const spec = def!.attrs[k];
      if (!spec) err(`${where}: unknown attribute '${k}'`);
      const ok = spec!.kind === 'string' ? typeof v === 'string' : spec!.kind === 'bool' ? typeof v === 'boolean' : spec!.kind === 'int' ? Number.isInteger(v) : typeof v === 'number';
      if (!ok) err(`${where}: attribute ${k} must be ${spec!.kind}, got ${JSON.stringify(v)}`);
    }
    for (const [k, spec] of Object.entries(def!.attrs)) if (!spec.optional && n.attrs[k] === undefined) err(`${where}: missing attribute '${k}'`);
    let inferred: TensorType;
    try {
      inferred = def!.infer(inTypes, n.attrs);
    } catch (e) {
      return err(`${where}: ${(e as Error).message}`);
    }
    if (!sameType(inferred, n.type)) err(`${where}: declared ${typeToString(n.type)} but the op gives ${typeToString(inferred)}`);
    types.set(n.name, n.type);
  }
  if (g.outputs.length === 0) err('no outputs');
  for (const o of g.outputs) if (!types.has(o)) err(`output %${o} is not defined`);
}
