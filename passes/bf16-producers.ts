// bf16-producers: after bf16-gemm-operands (the CUDA training executor's bf16 path), makes the
// producer of a value that ONLY casts read write that value as bf16 itself, and drops the casts.
//
// Why. bf16-gemm-operands rounds a GEMM operand v with an explicit `cast`; when every reader of v is
// such a cast (v exists only to be cast), the f32 tensor is written once and read once for nothing:
// the cast kernel moves 6 bytes an element (4 read, 2 written) and is a launch, the producer writes 4
// bytes an element where 2 would do, and the arena holds v's f32 bytes from its producer to the cast.
// On the 1B preset, MoC K = 1024 moc-gcp, such casts move 40 of the 55 GB of activation casts a step
// (bench/cast-census.ts: moc_scatter's dG, rope_grad's dq/dk, rmsnorm, attention, attention_grad,
// cross_entropy_grad).
//
// What it rewrites. A node p whose op is in src/ir/ops.ts BF16_OUTPUT_OPS (the ops that can write
// bf16: dtype="bf16" rounds their one output once, to nearest even, as cast does), with an f32
// output v such that
//   - v is read, and every reader is a `cast` to bf16 (bf16-gemm-operands' casts: one, in practice);
//   - neither v nor a cast's output is a graph output or a state's next value (their names and
//     types are the graph's interface);
// gets dtype="bf16" and v's declared type becomes bf16; each cast of v is removed and its readers
// read v instead. A node that already writes bf16 has no f32 output and is left alone.
//
// Invariants: every output is bit-identical to the input graph's on any target: the producer
// computes the same f32 values and rounds each the way the cast did (round-to-nearest-even), and
// the readers read the same bf16 numbers. Node order stays a valid schedule (v is defined before
// every cast of it, so before every reader of a cast). Only launches, traffic and the memory plan
// change: v's bf16 bytes live from p to the casts' last reader, where v's f32 bytes lived from p to
// the last cast and the cast's bf16 bytes from it to its last reader — no step holds more.
import type { Graph, Node, Operand } from '../src/ir/types.js';
import { BF16_OUTPUT_OPS } from '../src/ir/ops.js';
import type { Pass } from './pass.js';

const isBf16Cast = (n: Node) => n.op === 'cast' && n.attrs.dtype === 'bf16';

/** The values whose producer will write bf16 (header), each with the names of the casts of it. */
export function bf16ProducerValues(g: Graph): Map<string, string[]> {
  const readers = new Map<string, Node[]>();
  for (const n of g.nodes) for (const o of n.inputs) if (o.kind === 'value') readers.set(o.name, [...(readers.get(o.name) ?? []), n]);
  const iface = new Set([...g.outputs, ...g.states.map((s) => s.next)]);
  const found = new Map<string, string[]>();
  for (const p of g.nodes) {
    if (!BF16_OUTPUT_OPS.has(p.op) || p.attrs.dtype !== undefined || p.outputs.length !== 1) continue;
    const v = p.outputs[0]!;
    const rs = readers.get(v.name) ?? [];
    if (v.type.dtype !== 'f32' || rs.length === 0 || iface.has(v.name) || !rs.every(isBf16Cast)) continue;
    const casts = rs.map((c) => c.outputs[0]!.name);
    if (casts.some((c) => iface.has(c))) continue;
    found.set(v.name, casts);
  }
  return found;
}

export const bf16Producers: Pass = {
  name: 'bf16-producers',
  run(g: Graph): Graph {
    const found = bf16ProducerValues(g);
    if (found.size === 0) return g;
    /** A removed cast's output → the value it cast (now bf16 itself). */
    const castOf = new Map([...found].flatMap(([v, casts]) => casts.map((c) => [c, v] as const)));
    const read = (o: Operand): Operand => (o.kind === 'value' && castOf.has(o.name) ? { kind: 'value', name: castOf.get(o.name)! } : o);
    const nodes = g.nodes.flatMap((n): Node[] => {
      if (isBf16Cast(n) && castOf.has(n.outputs[0]!.name)) return [];
      const out = n.outputs[0];
      if (out && found.has(out.name)) return [{ ...n, attrs: { ...n.attrs, dtype: 'bf16' }, outputs: [{ ...out, type: { ...out.type, dtype: 'bf16' } }] }];
      return [n.inputs.some((o) => o.kind === 'value' && castOf.has(o.name)) ? { ...n, inputs: n.inputs.map(read) } : n];
    });
    return { ...g, nodes };
  },
};
