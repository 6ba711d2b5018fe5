// The verifier: SSA form, known ops, valid attributes, every declared output type equal to the op
// table's rule, parameters declared once, checkpoint annotations of a known kind, and an input an op
// consumes (OpDef.consumes) read by nothing after it.
import { opDef, type OpDef } from './ops.js';
import type { Graph, TensorType } from './types.js';
import { CHECKPOINTS, operandToString, sameType, typeToString } from './types.js';

export class VerifyError extends Error {
  override name = 'VerifyError';
}

export function verifyGraph(g: Graph): void {
  const types = new Map<string, TensorType>();
  const params = new Map<string, TensorType>();
  const err = (msg: string): never => {
    throw new VerifyError(`graph ${g.name}: ${msg}`);
  };
  for (const p of g.params) {
    if (params.has(p.name)) err(`param @${p.name} declared twice`);
    params.set(p.name, p.type);
  }
  for (const i of [...g.inputs, ...g.states]) {
    if (types.has(i.name)) err(`%${i.name} defined twice`);
    types.set(i.name, i.type);
  }
  for (const n of g.nodes) {
    const where = `${n.outputs.map((o) => `%${o.name}`).join(', ')} = ${n.op}`;
    for (const o of n.outputs) if (types.has(o.name)) err(`${where}: %${o.name} defined twice`);
    let def: OpDef;
    try {
      def = opDef(n.op);
    } catch (e) {
      return err(`${where}: ${(e as Error).message}`);
    }
    if (def.variadic ? n.inputs.length === 0 : n.inputs.length !== def.inputs.length) err(`${where}: takes ${def.inputs.length} inputs (${def.inputs.join(', ')}), got ${n.inputs.length}`);
    const inTypes = n.inputs.map((o) => {
      const t = o.kind === 'param' ? params.get(o.name) : types.get(o.name);
      if (!t) err(`${where}: ${operandToString(o)} is used before it is defined`);
      return t!;
    });
    for (const [k, v] of Object.entries(n.attrs)) {
      const spec = def.attrs[k];
      if (!spec) err(`${where}: unknown attribute '${k}'`);
      const ok = spec!.kind === 'string' ? typeof v === 'string' : spec!.kind === 'bool' ? typeof v === 'boolean' : spec!.kind === 'int' ? Number.isInteger(v) : typeof v === 'number';
      if (!ok) err(`${where}: attribute ${k} must be ${spec!.kind}, got ${JSON.stringify(v)}`);
    }
    for (const [k, spec] of Object.entries(def.attrs)) if (!spec.optional && n.attrs[k] === undefined) err(`${where}: missing attribute '${k}'`);
    if (n.ckpt !== undefined && !CHECKPOINTS.includes(n.ckpt)) err(`${where}: ckpt must be ${CHECKPOINTS.join(' or ')}, got ${JSON.stringify(n.ckpt)}`);
    let inferred: TensorType[];
    try {
      inferred = def.infer(inTypes, n.attrs);
    } catch (e) {
      return err(`${where}: ${(e as Error).message}`);
    }
    if (inferred.length !== n.outputs.length) err(`${where}: declares ${n.outputs.length} outputs but the op gives ${inferred.length}`);
    n.outputs.forEach((o, i) => {
      if (!sameType(inferred[i]!, o.type)) err(`${where}: declared ${typeToString(o.type)} but the op gives ${typeToString(inferred[i]!)}${n.outputs.length > 1 ? ` for %${o.name}` : ''}`);
      types.set(o.name, o.type);
    });
  }
  checkConsumed(g, err);
  if (g.outputs.length === 0) err('no outputs');
  for (const o of g.outputs) if (!types.has(o)) err(`output %${o} is not defined`);
  for (const s of g.states) {
    const t = types.get(s.next);
    if (!t) err(`state %${s.name}: next value %${s.next} is not defined`);
    if (!sameType(t!, s.type)) err(`state %${s.name} is ${typeToString(s.type)} but its next value %${s.next} is ${typeToString(t!)}`);
  }
}

/**
 * An op's consumed input (OpDef.consumes: its output is written over it) must be a value (not a
 * param), of output 0's type, read by no later node and by no other input of the node, and not a
 * graph output or a state's next value: nothing may read it after the node overwrote it.
 */
function checkConsumed(g: Graph, err: (msg: string) => never): void {
  const lastRead = new Map<string, number>();
  g.nodes.forEach((n, i) => n.inputs.forEach((o) => o.kind === 'value' && lastRead.set(o.name, i)));
  const kept = new Set([...g.outputs, ...g.states.map((s) => s.next)]);
  g.nodes.forEach((n, i) => {
    const slot = opDef(n.op).consumes;
    if (slot === undefined) return;
    const o = n.inputs[slot]!, where = `${n.outputs.map((x) => `%${x.name}`).join(', ')} = ${n.op}`;
    if (o.kind !== 'value') err(`${where}: consumes its input ${slot}, which must be a value, not ${operandToString(o)}`);
    if (lastRead.get(o.name) !== i) err(`${where}: consumes %${o.name}, which a later node reads`);
    if (kept.has(o.name)) err(`${where}: consumes %${o.name}, which the graph keeps (an output or a state's next value)`);
    if (n.inputs.some((x, j) => j !== slot && x.kind === 'value' && x.name === o.name)) err(`${where}: consumes %${o.name}, which it also reads as another input`);
  });
}
