// The readable text form (.mir). Grammar, one item per line:
//   graph NAME
//     input %x : i32[T]
//     weight @w : f32[512,64]
//     %y = op(%x, @w) {attr=1, s="half"} : f32[T,64] [ckpt=save]
//     output %y
//   end
import type { AttrValue, Graph, Node, Operand } from './types.js';
import { typeToString } from './types.js';

export function operandToString(o: Operand): string {
  return (o.kind === 'weight' ? '@' : '%') + o.name;
}

export function attrToString(v: AttrValue): string {
  if (typeof v === 'string') return JSON.stringify(v);
  if (typeof v === 'boolean') return v ? 'true' : 'false';
  return String(v); // JavaScript's shortest round-trip decimal
}

export function nodeToString(n: Node): string {
  const attrs = Object.keys(n.attrs).sort().map((k) => `${k}=${attrToString(n.attrs[k]!)}`);
  const ann = Object.keys(n.annotations).sort().map((k) => `${k}=${n.annotations[k]}`);
  return (
    `%${n.name} = ${n.op}(${n.inputs.map(operandToString).join(', ')})` +
    (attrs.length ? ` {${attrs.join(', ')}}` : '') +
    ` : ${typeToString(n.type)}` +
    (ann.length ? ` [${ann.join(', ')}]` : '')
  );
}

export function printGraph(g: Graph): string {
  const lines = [`graph ${g.name}`];
  for (const i of g.inputs) lines.push(`  input %${i.name} : ${typeToString(i.type)}`);
  for (const w of g.weights) lines.push(`  weight @${w.name} : ${typeToString(w.type)}`);
  for (const n of g.nodes) lines.push(`  ${nodeToString(n)}`);
  for (const o of g.outputs) lines.push(`  output %${o}`);
  lines.push('end');
  return lines.join('\n') + '\n';
}
