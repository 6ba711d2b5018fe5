// The forms mocc's own ONNX export writes (targets/onnx/lower.ts), found by dataflow like the rest of
// match.ts, so that re-importing an exported MoC model recovers it:
//   RoPE   — x viewed [B,S,H,2,hd/2] (rotate-half) or [B,S,H,hd/2,2] (interleaved), Split into x1, x2,
//            then x1·cos − x2·sin and x1·sin + x2·cos Concatenated back, with cos and sin Gathered by
//            position from [max_pos, hd/2] tables (theta is read back from the tables' angles).
//   MoC    — TopK on G = x·W_gate (K channels), or TopK on G viewed [B,S,F/b,b] plus each block's
//            first channel (pattern a:b); then either the gather form (kept rows of W_up / W_down
//            Gathered by the indices) or the masked form (dense x·W_upᵀ read with GatherElements, Z
//            ScatterElements'd into a zero row and multiplied by W_down).
import type { OnnxGraph } from './graph.js';
import { intAttr, type OnnxNode } from './model.js';
import { inverseFromCaches, thetaFromInverse } from './rope.js';
import { initializerValues, type OnnxInitializer } from './tensors.js';

/** What match.ts lends these matchers: the graph and its Identity/Cast-transparent walks. */
export interface MatchContext {
  g: OnnxGraph;
  prod(v: string): OnnxNode | undefined;
  usersOf(v: string): OnnxNode[];
  fail(msg: string): never;
}

/** One FFN's channel selection as the graph computes it. */
export type FfnSelect = { k: number } | { a: number; b: number };

export interface MocFfn {
  gate: OnnxInitializer;
  up: OnnxInitializer;
  down: OnnxInitializer;
  /** W_up stored [F, d] (a kept channel is one row: the gather form) rather than ONNX's [d, F]. */
  upRows: boolean;
  select: FfnSelect;
}

export interface ExportedRope {
  heads: number;
  kvHeads: number;
  headDim: number;
  theta: number;
  style: 'half' | 'interleaved';
  /** Rows of the cos/sin tables: the positions the export can run. */
  maxSeqLen: number;
}

const out = (n: OnnxNode): string => n.outputs[0] ?? '';

/**
 * The MoC FFN between the FFN norm's output x and the residual branch, or undefined when no TopK lies
 * between them (a dense FFN: match.ts's SwiGLU matcher takes it). A TopK whose surroundings are not
 * one of the exporter's two forms is an error naming the layer.
 */
export function matchMocFfn(m: MatchContext, layer: number, x: string, branch: string): MocFfn | undefined {
  const { g, prod } = m;
  const where = `layer ${layer} MoC FFN`;
  const below = g.descendants(x);
  const block = [...g.ancestors(branch)].filter((n) => below.has(n));
  const topks = block.filter((n) => n.op === 'TopK');
  if (topks.length === 0) return undefined;
  if (topks.length > 1) return m.fail(`${where}: ${topks.length} TopK nodes in one FFN`);
  const topk = topks[0]!;
  const fail = (what: string): never => m.fail(`${where}: ${what}`);
  if (intAttr(topk, 'largest', 1) !== 1) fail('TopK keeps the smallest values');
  const kk = g.scalar(topk.inputs[1]) ?? fail('TopK\'s K is not a constant');
  const gateOf = (v: string): { mm: OnnxNode; w: OnnxInitializer } | undefined => {
    const mm = prod(v);
    const w = mm?.op === 'MatMul' && mm.inputs[0] === x ? g.matrix(mm.inputs[1]) : undefined;
    return mm && w ? { mm, w } : undefined;
  };

  // --- the selection: TopK on G, or on G viewed as blocks of b (then offset by each block's start) ---
  let gate = gateOf(topk.inputs[0]!);
  let select: FfnSelect;
  let idx: string;
  if (gate) {
    const f = gate.w.dims[1]!;
    const axis = intAttr(topk, 'axis', -1);
    if (axis !== -1 && axis !== 2) fail(`TopK on axis ${axis}, not the channel axis`);
    select = { k: kk };
    idx = topk.outputs[1]!;
    if (!(kk >= 1 && kk <= f)) fail(`TopK keeps ${kk} of ${f} channels`);
  } else {
    const blocks = prod(topk.inputs[0]!);
    gate = blocks?.op === 'Reshape' ? gateOf(blocks.inputs[0]!) : undefined;
    const shape = blocks && g.consts.get(blocks.inputs[1]!)?.data;
    if (!gate || !shape || shape.length !== 4) return fail('TopK reads neither G = x·W_gate nor G viewed as [batch, seq, blocks, b]');
    const f = gate.w.dims[1]!;
    const b = shape[3]!;
    if (!(b >= 1 && f % b === 0 && shape[2] === f / b)) fail(`G viewed as [${shape}] is not d_ffn ${f} in blocks`);
    const add = only(m.usersOf(topk.outputs[1]!), 'Add') ?? fail('the block-local TopK indices are not offset by the block starts');
    const starts = g.consts.get(add.inputs[0] === topk.outputs[1] ? add.inputs[1]! : add.inputs[0]!)?.data;
    if (!starts || starts.length !== f / b || starts.some((s, i) => s !== i * b)) fail('the block offsets are not 0, b, 2b, …');
    const flat = only(m.usersOf(out(add)), 'Reshape') ?? fail('the block indices are not flattened back to [batch, seq, K]');
    select = { a: kk, b };
    idx = out(flat);
  }

  // --- y = down(silu(G[idx]) · up(x)[idx]) ---
  const down = prod(branch);
  let z: string;
  let wDown: OnnxInitializer;
  if (down?.op === 'MatMul' && g.matrix(down.inputs[1])) { // masked: dense(Z scattered at idx) · W_down[F, d]
    wDown = g.matrix(down.inputs[1])!;
    const sc = prod(down.inputs[0]!);
    if (sc?.op !== 'ScatterElements' || sc.inputs[1] !== idx || prod(sc.inputs[0]!)?.op !== 'ConstantOfShape') return fail('the down projection reads neither kept rows of W_down nor Z scattered into zeros');
    if (sc.attrs.get('reduction')?.kind === 'string' && (sc.attrs.get('reduction') as { value: string }).value !== 'none') fail('ScatterElements adds into the zero row instead of writing');
    z = sc.inputs[2]!;
  } else { // gather: Squeeze(Unsqueeze(Z) · W_down[idx])
    const mm = down?.op === 'Squeeze' ? prod(down.inputs[0]!) : undefined;
    const rows = mm?.op === 'MatMul' ? prod(mm.inputs[1]!) : undefined;
    const zrow = mm?.op === 'MatMul' ? prod(mm.inputs[0]!) : undefined;
    if (rows?.op !== 'Gather' || rows.inputs[1] !== idx || !g.matrix(rows.inputs[0]) || zrow?.op !== 'Unsqueeze') return fail('the down projection reads neither kept rows of W_down nor Z scattered into zeros');
    wDown = g.matrix(rows.inputs[0])!;
    z = zrow.inputs[0]!;
  }
  const zMul = prod(z);
  if (zMul?.op !== 'Mul') return fail('Z is not a product of the activation and the up projection');
  const gk = (v: string): boolean => {
    if (select && 'k' in select && v === topk.outputs[0]) return true; // TopK's values are G at the kept channels
    const ge = prod(v);
    return ge?.op === 'GatherElements' && ge.inputs[0] === out(gate!.mm) && ge.inputs[1] === idx;
  };
  const siluOf = (v: string): boolean => {
    const s = prod(v);
    if (s?.op !== 'Mul') return false;
    const [p, q] = s.inputs as [string, string];
    return [[p, q], [q, p]].some(([a, sg]) => prod(sg!)?.op === 'Sigmoid' && prod(sg!)!.inputs[0] === a && gk(a!));
  };
  let up: { w: OnnxInitializer; rows: boolean } | undefined;
  for (const [act, u] of [[zMul.inputs[0]!, zMul.inputs[1]!], [zMul.inputs[1]!, zMul.inputs[0]!]]) {
    if (!siluOf(act)) continue;
    up = upOf(m, x, u, idx);
    if (up) break;
  }
  if (!up) return fail('no silu(G[idx]) · up(x)[idx] with the selected channels');
  const f = gate.w.dims[1]!;
  const d = gate.w.dims[0]!;
  const upF = up.rows ? up.w.dims[0] : up.w.dims[1];
  if (upF !== f || wDown.dims[0] !== f || wDown.dims[1] !== d) fail(`W_up [${up.w.dims}] and W_down [${wDown.dims}] disagree with W_gate [${gate.w.dims}]`);
  return { gate: gate.w, up: up.w, down: wDown, upRows: up.rows, select };
}

/** up(x) at the kept channels: Squeeze(W_up[idx] · Unsqueeze(x)) (gather) or GatherElements(x·W_upᵀ, idx) (masked). */
function upOf(m: MatchContext, x: string, u: string, idx: string): { w: OnnxInitializer; rows: boolean } | undefined {
  const { g, prod } = m;
  const n = prod(u);
  if (n?.op === 'GatherElements' && n.inputs[1] === idx) {
    const mm = prod(n.inputs[0]!);
    const w = mm?.op === 'MatMul' && mm.inputs[0] === x ? g.matrix(mm.inputs[1]) : undefined;
    return w ? { w, rows: false } : undefined;
  }
  if (n?.op !== 'Squeeze') return undefined;
  const mm = prod(n.inputs[0]!);
  const rows = mm?.op === 'MatMul' ? prod(mm.inputs[0]!) : undefined;
  const xcol = mm?.op === 'MatMul' ? prod(mm.inputs[1]!) : undefined;
  if (rows?.op !== 'Gather' || rows.inputs[1] !== idx || xcol?.op !== 'Unsqueeze' || xcol.inputs[0] !== x) return undefined;
  const w = g.matrix(rows.inputs[0]);
  return w ? { w, rows: true } : undefined;
}

function only(nodes: OnnxNode[], op: string): OnnxNode | undefined {
  const f = nodes.filter((n) => n.op === op);
  return f.length === 1 ? f[0] : undefined;
}

/** The per-model selection from every FFN's: undefined when all are dense; an error when they mix. */
export function mocSelectionOf(m: MatchContext, selects: Array<FfnSelect | undefined>): { k: number | number[] } | { pattern: { a: number; b: number } } | undefined {
  if (selects.every((s) => s === undefined)) return undefined;
  if (selects.some((s) => s === undefined)) m.fail('some FFNs select channels with TopK (MoC) and others are dense');
  const all = selects as FfnSelect[];
  if (all.every((s) => 'a' in s)) {
    const p = all[0] as { a: number; b: number };
    if (all.some((s) => (s as { a: number; b: number }).a !== p.a || (s as { a: number; b: number }).b !== p.b)) m.fail('the FFNs use different a:b patterns');
    return { pattern: { a: p.a, b: p.b } };
  }
  if (all.some((s) => 'a' in s)) m.fail('some FFNs select K channels and others an a:b pattern');
  const ks = all.map((s) => (s as { k: number }).k);
  return { k: ks.every((k) => k === ks[0]) ? ks[0]! : ks };
}

/**
 * RoPE as the exporter writes it on the query projection's output q and the key projection's output
 * k, or undefined when the projections are not viewed as rotation pairs (other exporters' forms).
 */
export function matchExportedRope(m: MatchContext, where: string, q: string, k: string, dims: { q: number; k: number }): ExportedRope | undefined {
  const a = ropeOn(m, where, q);
  if (!a) return undefined;
  const b = ropeOn(m, where, k) ?? m.fail(`${where}: the queries are rotated as rotation pairs but the keys are not`);
  if (a.half !== b.half || a.style !== b.style || a.cos !== b.cos || a.sin !== b.sin) m.fail(`${where}: the queries and keys are rotated differently`);
  const hd = 2 * a.half;
  if (dims.q !== a.heads * hd || dims.k !== b.heads * hd) m.fail(`${where}: ${a.heads} query and ${b.heads} key heads of ${hd} disagree with the projections' widths ${dims.q} and ${dims.k}`);
  return { heads: a.heads, kvHeads: b.heads, headDim: hd, theta: thetaOf(m, where, a.cos, a.sin, a.half), style: a.style, maxSeqLen: a.cos.dims[0]! };
}

interface RopeOn { heads: number; half: number; style: 'half' | 'interleaved'; cos: OnnxInitializer; sin: OnnxInitializer }

function ropeOn(m: MatchContext, where: string, v: string): RopeOn | undefined {
  const { g, prod } = m;
  for (const r of m.usersOf(v)) {
    const shape = r.op === 'Reshape' ? g.consts.get(r.inputs[1]!)?.data : undefined;
    if (!shape || shape.length !== 5) continue;
    const split = only(m.usersOf(out(r)), 'Split');
    if (!split || split.outputs.length !== 2) continue;
    const axis = intAttr(split, 'axis', 0);
    const style = axis === 3 || axis === -2 ? 'half' : axis === 4 || axis === -1 ? 'interleaved' : undefined;
    if (!style || shape[style === 'half' ? 3 : 4] !== 2) continue;
    const half = shape[style === 'half' ? 4 : 3]!;
    const [x1, x2] = split.outputs as [string, string];
    // r1 = x1·cos − x2·sin: the Sub whose first operand is x1·C and second x2·S.
    const mulOf = (p: OnnxNode | undefined, x: string): string | undefined => (p?.op === 'Mul' && p.inputs.includes(x) ? (p.inputs[0] === x ? p.inputs[1] : p.inputs[0]) : undefined);
    const sub = m.usersOf(x1).map((n) => m.usersOf(out(n)).find((s) => s.op === 'Sub')).find((s) => s);
    const c = sub && mulOf(prod(sub.inputs[0]!), x1);
    const s = sub && mulOf(prod(sub.inputs[1]!), x2);
    if (!c || !s) return m.fail(`${where}: rotation pairs without x1·cos − x2·sin`);
    const table = (t: string): OnnxInitializer | undefined => {
      const un = prod(t);
      const ga = un?.op === 'Unsqueeze' ? prod(un.inputs[0]!) : un;
      const w = ga?.op === 'Gather' ? g.matrix(ga.inputs[0]) : undefined;
      return w && w.dims[1] === half ? w : undefined;
    };
    const cos = table(c), sin = table(s);
    if (!cos || !sin) return m.fail(`${where}: the rotation's cos and sin are not rows of [positions, ${half}] tables gathered by position`);
    const add = m.usersOf(x1).map((n) => m.usersOf(out(n)).find((a) => a.op === 'Add')).find((a) => a);
    const ok = add && [mulOf(prod(add.inputs[0]!), x1), mulOf(prod(add.inputs[1]!), x2)].join() === [s, c].join()
      || add && [mulOf(prod(add.inputs[1]!), x1), mulOf(prod(add.inputs[0]!), x2)].join() === [s, c].join();
    const cat = add && only(m.usersOf(out(sub)), 'Concat');
    if (!ok || !cat || cat.inputs[0] !== out(sub) || cat.inputs[1] !== out(add!) || intAttr(cat, 'axis', 0) !== axis) return m.fail(`${where}: rotation pairs without [x1·cos − x2·sin, x1·sin + x2·cos]`);
    return { heads: shape[2]!, half, style, cos, sin };
  }
  return undefined;
}

/** theta from the tables' angles at position 1 (rope.ts, as for the fused forms' caches). */
function thetaOf(m: MatchContext, where: string, cosT: OnnxInitializer, sinT: OnnxInitializer, half: number): number {
  const cos = initializerValues(cosT), sin = initializerValues(sinT);
  if (!cos || !sin || cosT.dims[0]! < 2 || half < 2) return m.fail(`${where}: the RoPE tables are unreadable or too small to read theta from`);
  const theta = thetaFromInverse(inverseFromCaches(cos.slice(half, 2 * half), sin.slice(half, 2 * half)), 2 * half);
  return typeof theta === 'string' ? m.fail(`${where}: ${theta}`) : theta;
}
