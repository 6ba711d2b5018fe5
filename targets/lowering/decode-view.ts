// The decode graph as the GPU lowerings read it. Their kernels keep one KV cache per layer on the
// device, append to it and attend over it, at the session's position counter (positions past,
// past+1, … — the decode graph's contract for %pos). So the explicit form
//   %k_all = kv_write(%k_cache, %k, %pos); %v_all = kv_write(%v_cache, %v, %pos)
//   %attn  = kv_attention(%q, %k_all, %v_all, %pos)            (caches: states, next = *_all)
// is read as one node attention(%q, %k, %v) {layer}, the layer being the cache pair's index, and
// rope(%x, %pos) as rope(%x). Anything else that reads %pos or the caches is refused.
import { UserError } from '../../src/util/errors.js';
import type { Graph, Node as IrNode, Operand, TensorType } from '../../src/ir/types.js';
import { single } from '../../src/ir/types.js';
import { MODEL_INPUTS } from '../../src/model/graph-inputs.js';

/**
 * A node as the lowerings see it: every op they lower has one output, so a node is named by it
 * and has its type (a node with several outputs is refused).
 */
export interface Node {
  readonly name: string;
  readonly op: string;
  readonly inputs: readonly Operand[];
  readonly attrs: IrNode['attrs'];
  readonly type: TensorType;
}

/** The nodes of decode graph g as the lowerings read them (see above); `capacity` is the caches' row count. */
export function decodeView(g: Graph, target: string, capacity: number): Node[] {
  const fail = (n: IrNode, why: string): never => {
    throw new UserError(`${target} target: cannot lower %${n.outputs[0]?.name ?? '?'} = ${n.op}: ${why}`);
  };
  const isPos = (o: Operand | undefined) => o?.kind === 'value' && o.name === MODEL_INPUTS.pos;
  const stateByName = new Map(g.states.map((s) => [s.name, s]));
  const producer = new Map(g.nodes.flatMap((n) => n.outputs.map((o) => [o.name, n] as const)));
  const reads = new Map<string, number>();
  for (const n of g.nodes) for (const o of n.inputs) if (o.kind === 'value') reads.set(o.name, (reads.get(o.name) ?? 0) + 1);
  for (const o of g.outputs) reads.set(o, (reads.get(o) ?? 0) + 1);
  /** The x of kv_write(cache, x, pos) feeding a kv_attention: checks the cache is state updated by it alone. */
  const appended = (n: IrNode, o: Operand): Operand => {
    const w = o.kind === 'value' ? producer.get(o.name) : undefined;
    if (w?.op !== 'kv_write') return fail(n, 'keys and values must come from kv_write');
    const cache = w.inputs[0]!, out = single(w).name;
    const s = cache.kind === 'value' ? stateByName.get(cache.name) : undefined;
    if (!s || s.next !== out || reads.get(cache.name) !== 1 || reads.get(out) !== 1) fail(n, 'each kv_write must append to its own state cache, read only by this attention');
    if (s!.type.shape[0] !== capacity) fail(n, `cache %${s!.name} has ${s!.type.shape[0]} rows, the model's context is ${capacity}`);
    if (!isPos(w.inputs[2])) fail(n, `kv_write must write at %${MODEL_INPUTS.pos}`);
    return w.inputs[1]!;
  };
  let layer = 0;
  const nodes: Node[] = [];
  for (const n of g.nodes) {
    if (n.outputs.length !== 1) fail(n, `${n.outputs.length} outputs (the GPU targets lower single-output ops)`);
    const { name, type } = single(n);
    if (n.op === 'kv_write') continue; // part of its kv_attention
    if (n.op === 'kv_attention') {
      if (!isPos(n.inputs[3])) fail(n, `attention positions must be %${MODEL_INPUTS.pos}`);
      const inputs = [n.inputs[0]!, appended(n, n.inputs[1]!), appended(n, n.inputs[2]!)];
      nodes.push({ name, op: 'attention', inputs, attrs: { ...n.attrs, layer: layer++ }, type });
      continue;
    }
    if (n.op === 'attention') fail(n, 'attention over whole sequences (a model graph): lower its decode graph (passes/kv-cache.ts)');
    if (n.op === 'rope') {
      if (!isPos(n.inputs[1])) fail(n, `rope positions must be %${MODEL_INPUTS.pos}`);
      nodes.push({ name, op: n.op, inputs: [n.inputs[0]!], attrs: n.attrs, type });
      continue;
    }
    if (n.inputs.some(isPos)) fail(n, `only rope, kv_write and kv_attention may read %${MODEL_INPUTS.pos}`);
    nodes.push({ name, op: n.op, inputs: n.inputs, attrs: n.attrs, type });
  }
  return nodes;
}
