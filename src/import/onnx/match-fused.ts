// The fused forms of LLaMA's pieces, found by dataflow like the rest of match.ts: opset 23's
// RMSNormalization / RotaryEmbedding / Attention, and onnxruntime's SimplifiedLayerNormalization,
// SkipSimplifiedLayerNormalization (the residual Add and the next norm in one node) and
// GroupQueryAttention (rotary inside, q/k/v packed in one MatMul as onnxruntime-genai's builder writes).
// Hyper-parameters come from attributes and, for RoPE, from the angle step of the cos/sin caches.
import type { OnnxGraph } from './graph.js';
import { numAttr, type OnnxNode } from './model.js';
import { f32Decimal } from './f32.js';
import { inverseFromCaches, thetaFromInverse } from './rope.js';
import { initializerTensor, type OnnxInitializer } from './tensors.js';

/** What match.ts lends: the graph, producers seen through Identity/Cast, value identity modulo casts, failure. */
export interface FusedCtx {
  g: OnnxGraph;
  prod: (v: string) => OnnxNode | undefined;
  same: (a: string | undefined, b: string) => boolean;
  fail: (msg: string) => never;
}

export interface FusedNorm { eps: number; weight: OnnxInitializer; out: string }
/** A projection weight; `rows` picks rows of its [out, in] form (one of q, k, v in a packed matrix). */
export interface ProjRef { init: OnnxInitializer; rows?: [number, number] }
export interface FusedAttention { wq: ProjRef; wk: ProjRef; wv: ProjRef; heads: number; kvHeads: number; headDim: number; theta: number }

const NORMS = new Set(['RMSNormalization', 'SimplifiedLayerNormalization']);
export const SKIP_NORM = 'SkipSimplifiedLayerNormalization';

function normOf(c: FusedCtx, n: OnnxNode, weightInput: number, dim: number): FusedNorm | undefined {
  const axis = numAttr(n, 'axis') ?? -1;
  const weight = c.g.inits.get(n.inputs[weightInput] ?? '');
  if (!(axis === -1 || axis === 2) || !weight || weight.dims.length !== 1 || weight.dims[0] !== dim || !n.outputs[0]) return undefined;
  return { eps: f32Decimal(numAttr(n, 'epsilon') ?? 1e-5), weight, out: n.outputs[0] };
}

/** RMSNormalization or SimplifiedLayerNormalization of r (one of r's consumers), over the last axis. */
export function fusedRmsNorm(c: FusedCtx, r: string, users: OnnxNode[], dim: number): FusedNorm | undefined {
  const n = users.find((u) => NORMS.has(u.op) && c.same(u.inputs[0], r));
  return n && normOf(c, n, 1, dim);
}

/** SkipSimplifiedLayerNormalization(r, branch, w): the norm (1st output) of the residual sum (4th output, '' when unused). */
export function skipNorm(c: FusedCtx, n: OnnxNode, dim: number): FusedNorm & { sum: string } {
  const norm = normOf(c, n, 2, dim) ?? c.fail(`node ${n.index} (${SKIP_NORM}) has no [${dim}] weight initializer`);
  return { ...norm, sum: n.outputs[3] ?? '' };
}

/** theta from cos/sin caches [positions, head_dim/2] (initializers): row 1 holds the angles inv[i]. */
function cacheTheta(c: FusedCtx, where: string, cosV: string | undefined, sinV: string | undefined, hd: number): number {
  const [cos, sin] = [c.g.matrix(cosV), c.g.matrix(sinV)];
  if (!cos || !sin || cos.dims[1] !== hd / 2 || sin.dims[1] !== hd / 2 || cos.dims[0]! < 2) return c.fail(`${where}: the RoPE cos/sin caches are not [positions, ${hd / 2}] initializers`);
  const row = (i: OnnxInitializer) => initializerTensor(i, c.g.model.path).readRowsF32(1, 2);
  const theta = thetaFromInverse(inverseFromCaches(row(cos), row(sin)), hd);
  return typeof theta === 'number' ? theta : c.fail(`${where}: ${theta}`);
}

/** Attention (opset 23) or GroupQueryAttention (com.microsoft) node `node` of a block whose weight MatMuls after the norm are `mms`. */
export function fusedAttention(c: FusedCtx, where: string, node: OnnxNode, mms: OnnxNode[]): FusedAttention {
  const { g, prod, fail } = c;
  const proj = (v: string | undefined, what: string): OnnxNode => {
    const m = v === undefined ? undefined : prod(v);
    return m && mms.includes(m) ? m : fail(`${where}: the ${what} input of ${node.op} is not a projection of the attention norm`);
  };
  const weight = (m: OnnxNode): OnnxInitializer => g.matrix(m.inputs[1])!;
  if ((numAttr(node, 'softcap') ?? 0) !== 0) fail(`${where}: ${node.op} with softcap is not LLaMA attention`);
  const heads = numAttr(node, node.op === 'Attention' ? 'q_num_heads' : 'num_heads');
  const kvHeads = numAttr(node, 'kv_num_heads');
  if (!heads || !kvHeads || heads % kvHeads !== 0) return fail(`${where}: ${node.op} has no q/kv head counts mocc reads (3-D inputs with head-count attributes)`);
  let q: ProjRef, k: ProjRef, v: ProjRef, headDim: number, theta: number;
  if (node.op === 'Attention') {
    if (numAttr(node, 'is_causal') !== 1 && !node.inputs[3]) fail(`${where}: Attention is neither causal nor masked`);
    const rotary = (x: string, what: string, n: number): OnnxNode => {
      const r = prod(x);
      if (r?.op !== 'RotaryEmbedding' || (numAttr(r, 'interleaved') ?? 0) !== 0 || (numAttr(r, 'num_heads') ?? n) !== n || !r.inputs[3]) {
        return fail(`${where}: the ${what} are not rotated by a RotaryEmbedding (rotate-half, ${n} heads, position ids)`);
      }
      return r;
    };
    const [rq, rk] = [rotary(node.inputs[0]!, 'queries', heads), rotary(node.inputs[1]!, 'keys', kvHeads)];
    const [mq, mk, mv] = [proj(rq.inputs[0], 'query'), proj(rk.inputs[0], 'key'), proj(node.inputs[2], 'value')];
    headDim = weight(mq).dims[1]! / heads;
    for (const r of [rq, rk]) if ((numAttr(r, 'rotary_embedding_dim') ?? 0) % headDim !== 0) fail(`${where}: partial rotary embedding is not supported`);
    [q, k, v] = [{ init: weight(mq) }, { init: weight(mk) }, { init: weight(mv) }];
    theta = cacheTheta(c, where, rq.inputs[1], rq.inputs[2], headDim);
    if (rk.inputs[1] !== rq.inputs[1] && !c.same(rk.inputs[1], rq.inputs[1]!)) {
      if (cacheTheta(c, where, rk.inputs[1], rk.inputs[2], headDim) !== theta) fail(`${where}: queries and keys rotate with different RoPE tables`);
    }
  } else {
    if (numAttr(node, 'do_rotary') !== 1 || (numAttr(node, 'rotary_interleaved') ?? 0) !== 0) fail(`${where}: GroupQueryAttention without rotate-half rotary (do_rotary=1) is not supported`);
    if ((numAttr(node, 'local_window_size') ?? -1) !== -1) fail(`${where}: sliding-window GroupQueryAttention is not LLaMA attention`);
    if (node.inputs[1]) {
      const [mq, mk, mv] = [proj(node.inputs[0], 'query'), proj(node.inputs[1], 'key'), proj(node.inputs[2], 'value')];
      headDim = weight(mq).dims[1]! / heads;
      [q, k, v] = [{ init: weight(mq) }, { init: weight(mk) }, { init: weight(mv) }];
    } else {
      const packed = weight(proj(node.inputs[0], 'packed query/key/value'));
      headDim = packed.dims[1]! / (heads + 2 * kvHeads);
      const [qEnd, kEnd] = [heads * headDim, (heads + kvHeads) * headDim];
      [q, k, v] = [{ init: packed, rows: [0, qEnd] }, { init: packed, rows: [qEnd, kEnd] }, { init: packed, rows: [kEnd, packed.dims[1]!] }];
    }
    theta = cacheTheta(c, where, node.inputs[7], node.inputs[8], headDim);
  }
  if (!Number.isInteger(headDim) || headDim <= 0) fail(`${where}: projection widths do not divide into ${heads}/${kvHeads} heads`);
  const scale = numAttr(node, 'scale') ?? 0;
  if (scale !== 0 && Math.abs(scale * Math.sqrt(headDim) - 1) > 1e-5) fail(`${where}: attention scale ${scale} is not 1/sqrt(head_dim ${headDim})`);
  return { wq: q, wk: k, wv: v, heads, kvHeads, headDim, theta };
}
