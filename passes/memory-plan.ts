// memory-plan: liveness over a graph's schedule (its node order) → one arena with an offset per
// value, and the activation bytes by category at the peak. Used for training graphs (autodiff.ts
// then checkpoint.ts), where the node order is the schedule the ref target runs, freeing each value
// after its last use (targets/ref/train.ts frees by this same liveness).
// Invariants:
//  - A value lives from the step that defines it (graph inputs: before step 0) to its last read;
//    graph outputs (the loss, the weight gradients) live to the end.
//  - Two values whose lifetimes overlap never overlap in the arena (checkArena() verifies it).
//  - peakBytes is the most bytes live at once: a lower bound on any arena; arenaBytes (greedy by
//    size, as TFLite's planner) is what one arena with these offsets takes, at least peakBytes.
//  - Params are not activations: weights are not counted; weight gradients are counted apart.
//  - In place: the output of a node that consumes an input (src/ir/ops.ts OpDef.consumes: matmul_acc's
//    acc, which verify.ts guarantees no later node reads) takes that input's storage (Lifetime.shares):
//    one storage holds the chain of values in turn, at one offset, counted once (the output from the
//    step after its node). checkArena checks each link: the input's last read is the node, same bytes.
import type { Graph, Node, TensorType } from '../src/ir/types.js';
import { elementBytes } from '../src/util/dtype.js';
import { opDef } from '../src/ir/ops.js';
import { forwardNodes } from './autodiff.js';

/**
 * What an activation is for, by the forward node that first reads it (so a layer's FFN input counts as FFN).
 * A saved copy the checkpoint pass makes (the u16 MoC indices) counts as the value it stores.
 */
export type Category = 'ffn' | 'attention' | 'norms' | 'logits/loss' | 'embedding' | 'inputs' | 'backward' | 'weight gradients';
export const CATEGORIES: readonly Category[] = ['ffn', 'attention', 'norms', 'logits/loss', 'embedding', 'inputs', 'backward', 'weight gradients'];

export interface Lifetime {
  name: string;
  bytes: number;
  /** Step that defines it (-1: a graph input). */
  def: number;
  /** Last step that reads it (nodes.length: a graph output, live to the end). */
  lastUse: number;
  category: Category;
  /** The value whose storage this one takes (header: in place): that value's last read is this one's def. */
  shares?: string;
}

export interface MemoryPlan {
  values: Lifetime[];
  /** Most bytes live at once, weight gradients excluded, and the step where that happens. */
  peakBytes: number;
  peakStep: number;
  /** Bytes by category live at the peak step. */
  atPeak: Record<Category, number>;
  /** Bytes of the weight gradients (the training graph's outputs after the loss). */
  gradientBytes: number;
  /** One arena holding every value (weight gradients included) at `offsets`. */
  arenaBytes: number;
  offsets: Map<string, number>;
}

const ALIGN = 64;
const align = (n: number) => Math.ceil(n / ALIGN) * ALIGN;

/**
 * The bytes a value of type t takes where it is stored, the symbolic dims bound (e.g. { T: batch·seq }).
 * The default is the logical size; a device with its own layout passes its own (the CUDA training
 * executor's rows are padded: targets/cuda/train/values.ts), so its arena is planned in its bytes.
 */
export type ValueBytes = (t: TensorType, dims: Record<string, number>) => number;

/** The logical byte size of a value's type: elements × element bytes. */
export const logicalBytes: ValueBytes = (t, dims) => {
  let n = elementBytes(t.dtype);
  for (const d of t.shape) n *= boundDim(d, dims);
  return n;
};

/** A dimension's value with the symbolic dims bound. */
export function boundDim(d: number | string, dims: Record<string, number>): number {
  const v = typeof d === 'number' ? d : dims[d];
  if (v === undefined) throw new Error(`memory plan: dimension ${d} is not bound`);
  return v;
}

/**
 * Which part of the model a forward node belongs to. The FFN is found by structure, as
 * swiglu-to-moc finds it: the MoC ops, SiLU/sigmoid/products, the linears feeding them (gate, up)
 * and the linear fed by a product (down).
 */
export function nodeCategories(g: Graph, forward: Set<Node>): Map<Node, Category> {
  const producer = new Map<string, Node>();
  for (const n of g.nodes) for (const o of n.outputs) producer.set(o.name, n);
  const readers = new Map<string, Node[]>();
  for (const n of g.nodes) if (forward.has(n)) for (const o of n.inputs) if (o.kind === 'value') readers.set(o.name, [...(readers.get(o.name) ?? []), n]);
  const FFN_OPS = new Set(['moc_select', 'moc_gather', 'moc_up', 'moc_down', 'silu', 'sigmoid', 'mul']);
  const cat = new Map<Node, Category>();
  for (const n of forward) {
    let c: Category;
    if (FFN_OPS.has(n.op)) c = 'ffn';
    else if (n.op === 'linear') {
      const feedsFfn = (readers.get(n.outputs[0]!.name) ?? []).some((r) => FFN_OPS.has(r.op));
      const fromProduct = n.inputs[0]!.kind === 'value' && producer.get(n.inputs[0]!.name)?.op === 'mul';
      c = feedsFfn || fromProduct ? 'ffn' : 'attention';
    } else if (n.op === 'rope' || n.op === 'attention') c = 'attention';
    else if (n.op === 'rmsnorm' || n.op === 'add') c = 'norms';
    else if (n.op === 'embedding') c = 'embedding';
    else c = 'logits/loss';
    cat.set(n, c);
  }
  return cat;
}

/** Lifetimes of every value of g (a training graph: output 0 the loss, then the weight gradients). */
export function lifetimes(g: Graph, dims: Record<string, number>, bytesOf: ValueBytes = logicalBytes): Lifetime[] {
  const forward = forwardNodes(g);
  const cats = nodeCategories(g, forward);
  const end = g.nodes.length;
  const gradOutputs = new Set(g.outputs.slice(1));
  const firstReader = new Map<string, Node>();
  const last = new Map<string, number>();
  g.nodes.forEach((n, i) => {
    for (const o of n.inputs) {
      if (o.kind !== 'value') continue;
      if (!firstReader.has(o.name)) firstReader.set(o.name, n);
      last.set(o.name, i);
    }
  });
  for (const o of g.outputs) last.set(o, end);
  const values: Lifetime[] = [];
  const categoryOf = new Map<string, Category>();
  for (const i of g.inputs) values.push({ name: i.name, bytes: bytesOf(i.type, dims), def: -1, lastUse: last.get(i.name) ?? -1, category: 'inputs' });
  g.nodes.forEach((n, step) => {
    // A node outside the forward that checkpoint.ts marked save (index_narrow) stores a forward
    // value in another form: it counts where that value does (the u16 MoC indices are FFN).
    const stored = !forward.has(n) && n.ckpt === 'save' && n.inputs[0]?.kind === 'value' ? categoryOf.get(n.inputs[0].name) : undefined;
    const consumed = opDef(n.op).consumes, into = consumed === undefined ? undefined : n.inputs[consumed];
    for (const o of n.outputs) {
      const reader = firstReader.get(o.name);
      const category: Category = gradOutputs.has(o.name) ? 'weight gradients'
        : stored ?? (!forward.has(n) ? 'backward'
        : reader && forward.has(reader) ? cats.get(reader)! : cats.get(n)!);
      categoryOf.set(o.name, category);
      const shares = o === n.outputs[0] && into?.kind === 'value' ? { shares: into.name } : {};
      values.push({ name: o.name, bytes: bytesOf(o.type, dims), def: step, lastUse: last.get(o.name) ?? step, category, ...shares });
    }
  });
  return values;
}

export function planMemory(g: Graph, dims: Record<string, number>, bytesOf: ValueBytes = logicalBytes): MemoryPlan {
  const values = lifetimes(g, dims, bytesOf);
  // Live bytes per step: a value counts at steps def..lastUse (its defining step included).
  const steps = g.nodes.length + 1;
  const delta = new Float64Array(steps + 2);
  const acts = values.filter((v) => v.category !== 'weight gradients');
  for (const v of acts) {
    const [from, to] = counted(v);
    if (to < from) continue;
    delta[from + 1] += v.bytes;
    delta[to + 2] -= v.bytes;
  }
  let live = 0, peakBytes = 0, peakStep = -1;
  for (let s = 0; s <= steps; s++) {
    live += delta[s]!;
    if (live > peakBytes) [peakBytes, peakStep] = [live, s - 1];
  }
  const atPeak = Object.fromEntries(CATEGORIES.map((c) => [c, 0])) as Record<Category, number>;
  for (const v of values) if (counted(v)[0] <= peakStep && counted(v)[1] >= peakStep) atPeak[v.category] += v.bytes;
  const gradientBytes = values.filter((v) => v.category === 'weight gradients').reduce((s, v) => s + v.bytes, 0);
  const { offsets, arenaBytes } = greedyBySize(values);
  return { values, peakBytes, peakStep, atPeak, gradientBytes, arenaBytes, offsets };
}

/** The steps at which v's bytes count toward the live total: def..lastUse; a value in place from the step after its def (its node's step counts the storage as the consumed input's). */
const counted = (v: Lifetime): [number, number] => [v.shares === undefined ? v.def : v.def + 1, Math.max(v.def, v.lastUse)];

const overlapsInTime = (a: Lifetime, b: Lifetime) => a.def <= Math.max(b.def, b.lastUse) && b.def <= Math.max(a.def, a.lastUse);

/** The first value of each chain of in-place values (Lifetime.shares), by name. */
function storageRoots(values: readonly Lifetime[]): Map<string, string> {
  const byName = new Map(values.map((v) => [v.name, v]));
  const roots = new Map<string, string>();
  const rootOf = (v: Lifetime): string => {
    const known = roots.get(v.name);
    if (known !== undefined) return known;
    const u = v.shares === undefined ? undefined : byName.get(v.shares);
    const r = u ? rootOf(u) : v.name;
    roots.set(v.name, r);
    return r;
  };
  for (const v of values) rootOf(v);
  return roots;
}

/**
 * Largest first, each at the lowest aligned offset clear of every placed value it overlaps in time.
 * A chain of in-place values (header) is placed as one: the root's def to the last member's last use,
 * the largest member's bytes; each member at the chain's offset.
 */
function greedyBySize(values: Lifetime[]): { offsets: Map<string, number>; arenaBytes: number } {
  const roots = storageRoots(values);
  const storages = new Map<string, Lifetime>();
  for (const v of values) {
    const r = roots.get(v.name)!, s = storages.get(r);
    const end = Math.max(v.def, v.lastUse);
    storages.set(r, s ? { ...s, bytes: Math.max(s.bytes, v.bytes), def: Math.min(s.def, v.def), lastUse: Math.max(s.lastUse, end) } : { ...v, name: r, lastUse: end });
  }
  const placed: { v: Lifetime; off: number }[] = [];
  const at = new Map<string, number>();
  let arenaBytes = 0;
  for (const v of [...storages.values()].sort((a, b) => b.bytes - a.bytes || a.def - b.def)) {
    const busy = placed.filter((p) => overlapsInTime(p.v, v)).sort((a, b) => a.off - b.off);
    let off = 0;
    for (const p of busy) {
      if (off + v.bytes <= p.off) break;
      off = Math.max(off, align(p.off + p.v.bytes));
    }
    placed.push({ v, off });
    at.set(v.name, off);
    arenaBytes = Math.max(arenaBytes, off + v.bytes);
  }
  return { offsets: new Map(values.map((v) => [v.name, at.get(roots.get(v.name)!)!])), arenaBytes };
}

/**
 * Throws if two values alive at the same step share arena bytes, unless one takes the other's storage
 * in place (header), where the link must hold: the consumed value's last read is the taker's def, it
 * is at least as large, at the same offset.
 */
export function checkArena(plan: MemoryPlan): void {
  const vs = plan.values;
  const byName = new Map(vs.map((v) => [v.name, v]));
  for (const v of vs) {
    if (v.shares === undefined) continue;
    const u = byName.get(v.shares);
    const why = !u ? 'is not planned' : u.lastUse !== v.def ? `is read at step ${u.lastUse}, after its def ${v.def}` : u.bytes < v.bytes ? 'is smaller' : plan.offsets.get(u.name) !== plan.offsets.get(v.name) ? 'is elsewhere in the arena' : undefined;
    if (why) throw new Error(`memory plan: %${v.name} takes the storage of %${v.shares}, which ${why}`);
  }
  const roots = storageRoots(vs);
  for (let i = 0; i < vs.length; i++) {
    for (let j = i + 1; j < vs.length; j++) {
      const a = vs[i]!, b = vs[j]!;
      if (!overlapsInTime(a, b) || a.bytes === 0 || b.bytes === 0 || roots.get(a.name) === roots.get(b.name)) continue;
      const oa = plan.offsets.get(a.name)!, ob = plan.offsets.get(b.name)!;
      if (oa < ob + b.bytes && ob < oa + a.bytes) throw new Error(`memory plan: %${a.name} and %${b.name} are live together and overlap in the arena`);
    }
  }
}
