// The readable text form (.mir). Grammar, one item per line:
//   graph NAME
//     input %x : i32[T]
//     state %c : f32[512,32] next %c2   (kept between calls, replaced by %c2 after each)
//     param @w : f32[512,64]            (trainable)
//     param @n : f32[64] {frozen}
//     param @d : f32[172,64] {transposed}  (the weight store holds it as [64,172])
//     %y = op(%x, @w) {attr=1, s="half"} : f32[T,64] [ckpt=save]
//     %a, %b = split(%y) {parts=2} : f32[T,32], f32[T,32]
//     output %y
//   end
import type { AttrValue, Graph, Node, ParamDecl } from './types.js';
import { operandToString, typeToString } from './types.js';

export { operandToString };

export function attrToString(v: AttrValue): string {
  if (typeof v === 'string') return JSON.stringify(v);
  if (typeof v === 'boolean') return v ? 'true' : 'false';
  return String(v); // JavaScript's shortest round-trip decimal
}

export function nodeToString(n: Node): string {
  const attrs = Object.keys(n.attrs).sort().map((k) => `${k}=${attrToString(n.attrs[k]!)}`);
  return (
    `${n.outputs.map((o) => `%${o.name}`).join(', ')} = ${n.op}(${n.inputs.map(operandToString).join(', ')})` +
    (attrs.length ? ` {${attrs.join(', ')}}` : '') +
    ` : ${n.outputs.map((o) => typeToString(o.type)).join(', ')}` +
    (n.ckpt ? ` [ckpt=${n.ckpt}]` : '')
  );
}

export function paramToString(p: ParamDecl): string {
  const flags = [...(p.trainable ? [] : ['frozen']), ...(p.transposed ? ['transposed'] : [])];
  return `param @${p.name} : ${typeToString(p.type)}${flags.length ? ` {${flags.join(', ')}}` : ''}`;
}

export function printGraph(g: Graph): string {
  const lines = [`graph ${g.name}`];
  for (const i of g.inputs) lines.push(`  input %${i.name} : ${typeToString(i.type)}`);
  for (const s of g.states) lines.push(`  state %${s.name} : ${typeToString(s.type)} next %${s.next}`);
  for (const p of g.params) lines.push(`  ${paramToString(p)}`);
  for (const n of g.nodes) lines.push(`  ${nodeToString(n)}`);
  for (const o of g.outputs) lines.push(`  output %${o}`);
  lines.push('end');
  return lines.join('\n') + '\n';
}
