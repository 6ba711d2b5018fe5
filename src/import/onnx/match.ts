// Finds the LLaMA structure in an ONNX dataflow graph by what the nodes compute, never by their names:
// the embedding Gather by the model input, then the residual chain (each block's output Added to the
// stream) that orders the layers; per block an RMSNorm (Pow 2 → ReduceMean → Add eps → Sqrt →
// Reciprocal/Div → Mul weight), then either attention (three MatMuls with weight matrices, two
// activation×activation MatMuls around a Softmax, RoPE's rotate-half on q and k, GQA head counts from
// the Reshapes) or the SwiGLU FFN (down(g·sigmoid(g)·u)); finally the RMSNorm and the logits MatMul,
// tied when it reads the embedding matrix transposed (or a byte-equal copy of it). Hyper-parameters come
// from constants and shapes. TorchScript's run-time shape arithmetic (Shape → Gather → Concat) is read
// where it matters (head counts, rotate-half bounds); the fused forms (opset 23, onnxruntime's
// SimplifiedLayerNormalization / SkipSimplifiedLayerNormalization / GroupQueryAttention) are in
// match-fused.ts.
import type { ModelSpec } from '../spec.js';
import { UserError } from '../../util/errors.js';
import type { OnnxGraph } from './graph.js';
import type { OnnxNode } from './model.js';
import { initializerTensor, type OnnxInitializer } from './tensors.js';
import { f32Decimal } from './f32.js';
import { thetaFromInverse } from './rope.js';
import { fusedAttention, fusedRmsNorm, SKIP_NORM, skipNorm, type FusedAttention, type FusedCtx, type ProjRef } from './match-fused.js';
import { isTransposedCopy } from './tied.js';
import { matchExportedRope, matchMocFfn, mocSelectionOf, type ExportedRope, type FfnSelect, type MatchContext } from './match-moc.js';
import type { MocSelection } from '../../model/selection.js';

/** A canonical weight: which initializer holds it, whether ONNX's [in, out] must be transposed, and which rows of the result it is (a packed q/k/v). */
export interface WeightRef {
  init: OnnxInitializer;
  transpose: boolean;
  rows?: [number, number];
}

export interface MatchedLlama {
  spec: ModelSpec;
  weights: Map<string, WeightRef>;
  /** The MoC selection the graph computes (TopK on G), absent for dense FFNs. */
  moc?: MocSelection;
}

/** ONNX graphs with a dynamic sequence axis do not record a context length; RoPE here works at any position. */
export const DEFAULT_MAX_SEQ_LEN = 2048;

export { f32Decimal } from './f32.js';

interface Norm { eps: number; weight: OnnxInitializer; out: string }
interface Attention extends FusedAttention { wo: OnnxInitializer; own?: ExportedRope }
/** upRows: W_up stored [F, d]; select: the MoC selection (match-moc.ts). */
interface Ffn { gate: OnnxInitializer; up: OnnxInitializer; down: OnnxInitializer; upRows?: boolean; select?: FfnSelect }

export function matchLlama(g: OnnxGraph): MatchedLlama {
  const fail = (msg: string): never => {
    throw new UserError(`${g.model.path}: not a LLaMA graph mocc recognises: ${msg}`);
  };
  const out = (n: OnnxNode): string => n.outputs[0] ?? '';
  /** Consumers of v, looking through Identity and float Casts (exporters insert them around norms). */
  const usersOf = (v: string): OnnxNode[] => g.users(v).flatMap((n) => (n.op === 'Identity' || n.op === 'Cast' ? usersOf(out(n)) : [n]));
  /** The producer of v, looking back through Identity and Cast. */
  const prod = (v: string): OnnxNode | undefined => {
    const p = g.producer.get(v);
    return p && (p.op === 'Identity' || p.op === 'Cast') ? prod(p.inputs[0]!) : p;
  };
  /** v with Identity and Cast producers stripped: TorchScript casts around norms (`same` compares so). */
  const root = (v: string): string => {
    const p = g.producer.get(v);
    return p && (p.op === 'Identity' || p.op === 'Cast') ? root(p.inputs[0]!) : v;
  };
  const same = (a: string | undefined, b: string): boolean => a !== undefined && root(a) === root(b);
  const other = (n: OnnxNode, v: string): string => (same(n.inputs[0], v) ? n.inputs[1]! : n.inputs[0]!);
  const only = (nodes: OnnxNode[], op: string): OnnxNode | undefined => {
    const m = nodes.filter((n) => n.op === op);
    return m.length === 1 ? m[0] : undefined;
  };

  // --- embedding: Gather(E [V, d], input ids) ---
  const ids = g.model.inputs.filter((i) => g.dynamic(i));
  const gather = ids.flatMap((i) => g.users(i)).find((n) => n.op === 'Gather' && g.matrix(n.inputs[0]) && ids.includes(n.inputs[1]!));
  if (!gather) return fail('no embedding (a Gather of a [vocab, dim] initializer by the model input)');
  const emb = g.matrix(gather.inputs[0])!;
  const [vocab, dim] = emb.dims as [number, number];

  const ctx: FusedCtx & MatchContext = { g, prod, usersOf, same, fail };

  // --- RMSNorm on a stream value r ---
  const rmsNorm = (r: string): Norm | undefined => {
    const fused = fusedRmsNorm(ctx, r, usersOf(r), dim);
    if (fused) return fused;
    const sq = usersOf(r).find((n) => (n.op === 'Pow' && same(n.inputs[0], r) && g.scalar(n.inputs[1]) === 2) || (n.op === 'Mul' && same(n.inputs[0], r) && same(n.inputs[1], r)));
    if (!sq) return undefined;
    const mean = only(usersOf(out(sq)), 'ReduceMean');
    if (!mean) return undefined;
    const axesAttr = mean.attrs.get('axes');
    const axes = mean.inputs[1] ? g.consts.get(mean.inputs[1])?.data : axesAttr?.kind === 'ints' ? axesAttr.value : undefined;
    if (!axes || axes.length !== 1 || !(axes[0] === -1 || axes[0] === 2)) return undefined;
    const addEps = only(usersOf(out(mean)), 'Add');
    const eps = addEps && g.scalar(other(addEps, out(mean)));
    if (!addEps || eps === undefined) return undefined;
    const sqrt = only(usersOf(out(addEps)), 'Sqrt');
    if (!sqrt) return undefined;
    let normed: string | undefined;
    for (const n of usersOf(out(sqrt))) {
      if (n.op === 'Div' && same(n.inputs[0], r)) normed = out(n); // r / sqrt(...)
      if (n.op === 'Reciprocal' || (n.op === 'Div' && g.scalar(n.inputs[0]) === 1)) {
        const mul = usersOf(out(n)).find((m) => m.op === 'Mul' && m.inputs.some((i) => same(i, r)));
        if (mul) normed = out(mul);
      }
    }
    if (!normed) return undefined;
    const scale = usersOf(normed).find((m) => m.op === 'Mul' && g.inits.get(other(m, normed!))?.dims.length === 1);
    const weight = scale && g.inits.get(other(scale, normed));
    if (!scale || !weight || weight.dims[0] !== dim) return undefined;
    return { eps: f32Decimal(eps), weight, out: out(scale) };
  };

  const projections = (n: string): OnnxNode[] => usersOf(n).filter((m) => m.op === 'MatMul' && m.inputs[0] === n && g.matrix(m.inputs[1]));
  const weightOf = (m: OnnxNode): OnnxInitializer => g.matrix(m.inputs[1])!;
  /**
   * The constant tail of a shape value: all of it when it folds, else the folded trailing inputs of the
   * Concat that builds it (TorchScript computes the batch and sequence entries from Shape at run time).
   */
  const shapeTail = (v: string): number[] | undefined => {
    const c = g.consts.get(v);
    if (c) return c.data;
    const cat = prod(v);
    if (cat?.op !== 'Concat') return undefined;
    const tail: number[] = [];
    for (const i of [...cat.inputs].reverse()) {
      const k = g.consts.get(i);
      if (!k) break;
      tail.unshift(...k.data);
    }
    return tail;
  };
  /** [a, b] of the last two dims of a Reshape applied to the output of projection m (heads, head_dim); -1 heads are its width / head_dim. */
  const headShape = (m: OnnxNode): [number, number] | undefined => {
    const width = weightOf(m).dims[1]!;
    for (const n of usersOf(out(m))) {
      const s = n.op === 'Reshape' ? shapeTail(n.inputs[1]!) : undefined;
      if (!s || s.length < 2 || !(s.at(-1)! > 0)) continue;
      const [a, b] = [s.at(-2)!, s.at(-1)!];
      if (a > 0) return [a, b];
      if (a === -1 && width % b === 0) return [width / b, b];
    }
    return undefined;
  };

  const attention = (layer: number, norm: Norm, mms: OnnxNode[], branch: string): Attention => {
    const where = `layer ${layer} attention`;
    const o = prod(branch);
    if (!o || o.op !== 'MatMul' || !g.matrix(o.inputs[1])) return fail(`${where}: the residual branch is not a MatMul with a weight matrix`);
    const below = g.descendants(norm.out);
    const block = new Set([...g.ancestors(o.inputs[0]!)].filter((n) => below.has(n)));
    const fused = [...block].find((n) => (n.op === 'Attention' && n.domain === '') || (n.op === 'GroupQueryAttention' && n.domain === 'com.microsoft'));
    if (fused) {
      const a = fusedAttention(ctx, where, fused, mms);
      const wo = weightOf(o);
      if (wo.dims[0] !== a.heads * a.headDim || wo.dims[1] !== dim) fail(`${where}: the output projection [${wo.dims}] disagrees with ${a.heads} heads of ${a.headDim}`);
      return { ...a, wo };
    }
    if (mms.length !== 3) fail(`layer ${layer}: expected the q, k, v projections after the attention norm, found ${mms.length} weight MatMuls`);
    const dyn = [...block].filter((n) => n.op === 'MatMul' && !g.matrix(n.inputs[1]) && !mms.includes(n));
    if (dyn.length !== 2) return fail(`${where}: expected two activation MatMuls (scores and weighted values), found ${dyn.length}`);
    const [s, pv] = g.reaches(out(dyn[0]!), dyn[1]!.inputs[0]!) ? [dyn[0]!, dyn[1]!] : [dyn[1]!, dyn[0]!];
    const softmax = [...block].find((n) => n.op === 'Softmax' && g.reaches(out(s), n.inputs[0]!) && g.reaches(out(n), pv.inputs[0]!));
    if (!softmax) return fail(`${where}: no Softmax between the score and value MatMuls`);
    const pick = (target: string, what: string): OnnxNode => {
      const f = mms.filter((m) => g.reaches(out(m), target));
      return f.length === 1 ? f[0]! : fail(`${where}: cannot tell the ${what} projection (${f.length} reach it)`);
    };
    const q = pick(s.inputs[0]!, 'query');
    const k = pick(s.inputs[1]!, 'key');
    const v = pick(pv.inputs[1]!, 'value');
    if (new Set([q, k, v]).size !== 3) return fail(`${where}: the query, key and value projections are not three distinct MatMuls`);
    // mocc's own export views q and k as rotation pairs (match-moc.ts); other forms Reshape to [heads, head_dim].
    const own = matchExportedRope(ctx, where, out(q), out(k), { q: weightOf(q).dims[1]!, k: weightOf(k).dims[1]! });
    const qs = own ? [own.heads, own.headDim] : headShape(q) ?? fail(`${where}: no Reshape of the queries into [heads, head_dim]`);
    const ks = own ? [own.kvHeads, own.headDim] : headShape(k) ?? fail(`${where}: no Reshape of the keys into [kv_heads, head_dim]`);
    const [heads, headDim] = qs;
    const kvHeads = ks[0];
    if (ks[1] !== headDim || heads % kvHeads !== 0) return fail(`${where}: ${heads} query heads and ${kvHeads} key heads of sizes ${headDim} and ${ks[1]} do not form grouped-query attention`);
    const [wq, wk, wv, wo] = [weightOf(q), weightOf(k), weightOf(v), weightOf(o)];
    if (wq.dims[1] !== heads * headDim || wk.dims[1] !== kvHeads * headDim || wv.dims[1] !== kvHeads * headDim || wo.dims[0] !== heads * headDim || wo.dims[1] !== dim) {
      return fail(`${where}: projection shapes [${wq.dims}] [${wk.dims}] [${wv.dims}] [${wo.dims}] disagree with ${heads}/${kvHeads} heads of ${headDim}`);
    }
    for (const [proj, target, what] of own ? [] : [[q, s.inputs[0]!, 'queries'], [k, s.inputs[1]!, 'keys']] as const) {
      if (!rotateHalf(proj, target, headDim)) fail(`${where}: no RoPE rotate-half (Slice, Neg, Concat) on the ${what}`);
    }
    // Softmax scale: float scalar Muls/Divs on the q and k paths and on the scores must make
    // 1/sqrt(head_dim) (integer ones are shape arithmetic, e.g. TorchScript's repeat_kv sizes).
    let scale = 1;
    for (const n of block) {
      if ((n.op !== 'Mul' && n.op !== 'Div') || !g.reaches(out(n), softmax.inputs[0]!) || pv === n) continue;
      const [x, y] = n.inputs as [string, string];
      if (!(g.consts.get(y) ?? g.consts.get(x))?.float) continue;
      if (g.dynamic(x) && g.scalar(y) !== undefined) scale *= n.op === 'Div' ? 1 / g.scalar(y)! : g.scalar(y)!;
      else if (n.op === 'Mul' && g.dynamic(y) && g.scalar(x) !== undefined) scale *= g.scalar(x)!;
    }
    if (Math.abs(scale * Math.sqrt(headDim) - 1) > 1e-5) fail(`${where}: attention scale ${scale} is not 1/sqrt(head_dim ${headDim})`);
    return { wq: { init: wq }, wk: { init: wk }, wv: { init: wv }, wo, heads, kvHeads, headDim, theta: own ? own.theta : ropeTheta(where, s.inputs[0]!, headDim), ...(own ? { own } : {}) };
  };

  /** Concat(Neg(Slice(x, hd/2..)), Slice(x, 0..hd/2)) on the last axis, on the way from proj to target. */
  const rotateHalf = (proj: OnnxNode, target: string, hd: number): boolean => {
    /** A Slice bound: a constant, or TorchScript's x.shape[-1] // 2 computed at run time (that is hd / 2). */
    const bound = (v: string | undefined, x: string): number | undefined => {
      const k = g.scalar(v);
      if (k !== undefined || v === undefined) return k;
      let p = prod(v);
      while (p && (p.op === 'Unsqueeze' || p.op === 'Squeeze')) p = prod(p.inputs[0]!);
      if (p?.op !== 'Div' || g.scalar(p.inputs[1]) !== 2) return undefined;
      const dimOf = prod(p.inputs[0]!);
      const shape = dimOf?.op === 'Gather' ? prod(dimOf.inputs[0]!) : undefined;
      const axis = dimOf && g.scalar(dimOf.inputs[1]);
      return shape?.op === 'Shape' && same(shape.inputs[0], x) && (axis === -1 || axis === 3) ? hd / 2 : undefined;
    };
    const sliceOf = (v: string): { from: string; start: number; end: number } | undefined => {
      const n = prod(v);
      if (!n || n.op !== 'Slice') return undefined;
      const [st, en, ax] = [bound(n.inputs[1], n.inputs[0]!), bound(n.inputs[2], n.inputs[0]!), n.inputs[3] ? g.scalar(n.inputs[3]) : 0];
      if (st === undefined || en === undefined || !(ax === -1 || ax === 3)) return undefined;
      return { from: n.inputs[0]!, start: st, end: Math.min(en, hd) };
    };
    return [...g.descendants(out(proj))].some((c) => {
      if (c.op !== 'Concat' || c.inputs.length !== 2 || !g.reaches(out(c), target)) return false;
      const neg = prod(c.inputs[0]!);
      const hi = neg?.op === 'Neg' ? sliceOf(neg.inputs[0]!) : undefined;
      const lo = sliceOf(c.inputs[1]!);
      return !!hi && !!lo && hi.from === lo.from && lo.start === 0 && lo.end === hd / 2 && hi.start === hd / 2 && hi.end === hd && g.reaches(out(proj), hi.from);
    });
  };

  /** theta from the inverse frequencies behind the Cos table that reaches `target`: inv[i] = theta^(-2i/hd). */
  const ropeTheta = (where: string, target: string, hd: number): number => {
    const cos = [...g.ancestors(target)].find((n) => n.op === 'Cos');
    if (!cos) return fail(`${where}: no Cos table for RoPE`);
    const cat = prod(cos.inputs[0]!);
    if (!cat || cat.op !== 'Concat' || cat.inputs.length !== 2 || cat.inputs[0] !== cat.inputs[1]) return fail(`${where}: RoPE angles are not concat(freqs, freqs) (only the rotate-half layout is supported)`);
    const half = hd / 2;
    const inv = [...g.ancestors(cos.inputs[0]!)].flatMap((n) => n.inputs.map((i) => g.consts.get(i))).find((c) => c && c.float && c.data.length === half && c.data[0] === 1);
    if (!inv || half < 2) return fail(`${where}: no RoPE inverse-frequency constant of ${half} values`);
    const theta = thetaFromInverse(inv.data, hd);
    return typeof theta === 'number' ? theta : fail(`${where}: ${theta}`);
  };

  const ffn = (layer: number, mms: OnnxNode[], branch: string): Ffn => {
    const where = `layer ${layer} FFN`;
    const down = prod(branch);
    if (!down || down.op !== 'MatMul' || !g.matrix(down.inputs[1])) return fail(`${where}: the residual branch is not a MatMul with a weight matrix`);
    const z = prod(down.inputs[0]!);
    if (!z || z.op !== 'Mul') return fail(`${where}: the down projection's input is not a product`);
    const mmOf = (v: string) => mms.find((m) => out(m) === v || prod(v) === m);
    for (const [a, b] of [[z.inputs[0]!, z.inputs[1]!], [z.inputs[1]!, z.inputs[0]!]]) {
      const silu = prod(a);
      if (!silu || silu.op !== 'Mul') continue;
      for (const [x, sg] of [[silu.inputs[0]!, silu.inputs[1]!], [silu.inputs[1]!, silu.inputs[0]!]]) {
        const sig = prod(sg);
        if (sig?.op !== 'Sigmoid' || sig.inputs[0] !== x) continue;
        const gate = mmOf(x);
        const up = mmOf(b);
        if (gate && up && gate !== up) return { gate: weightOf(gate), up: weightOf(up), down: weightOf(down) };
      }
    }
    return fail(`${where}: no SwiGLU down(g·sigmoid(g)·u) over the two projections`);
  };

  // --- the residual chain ---
  const blocks: Array<{ norm: Norm; attn?: Attention; ffn?: Ffn }> = [];
  // The residual Add is an Add, or onnxruntime's SkipSimplifiedLayerNormalization, which also norms the sum.
  let r = out(gather);
  let final: Norm | undefined;
  let next: Norm | undefined = rmsNorm(r);
  for (;;) {
    const norm = next ?? fail(`no RMSNorm on the residual stream after ${blocks.length} blocks`);
    const adds = usersOf(r).filter((n) => n.op === 'Add' || (n.op === SKIP_NORM && n.domain === 'com.microsoft' && (same(n.inputs[0], r) || same(n.inputs[1], r))));
    if (adds.length === 0) {
      final = norm;
      break;
    }
    if (adds.length > 1) fail(`the residual stream after ${blocks.length} blocks is added to ${adds.length} values`);
    const add = adds[0]!;
    const branch = other(add, r);
    const mms = projections(norm.out);
    const layer = Math.floor(blocks.length / 2);
    if (blocks.length % 2 === 0) {
      blocks.push({ norm, attn: attention(layer, norm, mms, branch) });
    } else {
      const moc = matchMocFfn(ctx, layer, norm.out, branch); // TopK on G: a MoC FFN as mocc exports it
      if (moc) blocks.push({ norm, ffn: moc });
      else {
        if (mms.length !== 2) fail(`layer ${layer}: expected the gate and up projections after the FFN norm, found ${mms.length} weight MatMuls`);
        blocks.push({ norm, ffn: ffn(layer, mms, branch) });
      }
    }
    if (add.op === 'Add') {
      r = out(add);
      next = rmsNorm(r);
    } else {
      const s = skipNorm(ctx, add, dim);
      [r, next] = [s.sum, s];
    }
  }
  if (blocks.length === 0) fail('no residual chain (no block output is added back to the embedding)');
  if (blocks.length % 2 !== 0) fail(`the last layer has attention but no FFN`);

  // --- logits ---
  const head = usersOf(final.out).find((n) => n.op === 'MatMul' && n.inputs[0] === final!.out);
  if (!head || !g.model.outputs.some((o) => g.reaches(out(head), o))) return fail('no logits MatMul after the final norm');
  let output: WeightRef | undefined;
  const direct = g.matrix(head.inputs[1]);
  const tp = prod(head.inputs[1]!);
  if (direct) output = isTransposedCopy(initializerTensor(direct, g.model.path), initializerTensor(emb, g.model.path)) ? undefined : { init: direct, transpose: true };
  else if (tp?.op === 'Transpose' && g.matrix(tp.inputs[0])) {
    const perm = tp.attrs.get('perm');
    if (perm && !(perm.kind === 'ints' && perm.value.join() === '1,0')) fail('the logits weight is transposed with an unexpected perm');
    const w = g.matrix(tp.inputs[0])!;
    output = w === emb ? undefined : { init: w, transpose: false };
  } else return fail('the logits MatMul does not read a weight matrix');
  if (output && (output.transpose ? output.init.dims[1] : output.init.dims[0]) !== vocab) fail(`the logits weight [${output.init.dims}] disagrees with the vocabulary ${vocab}`);

  // --- spec and weights ---
  const attns = blocks.filter((b) => b.attn).map((b) => b.attn!);
  const ffns = blocks.filter((b) => b.ffn).map((b) => b.ffn!);
  const a0 = attns[0]!;
  for (const [i, a] of attns.entries()) {
    if (a.heads !== a0.heads || a.kvHeads !== a0.kvHeads || a.headDim !== a0.headDim || a.theta !== a0.theta || a.own?.style !== a0.own?.style || a.own?.maxSeqLen !== a0.own?.maxSeqLen) fail(`layer ${i} has other attention hyper-parameters than layer 0`);
  }
  const eps = final.eps;
  if (blocks.some((b) => b.norm.eps !== eps)) fail('the RMSNorms use different eps');
  const dFfn = ffns[0]!.gate.dims[1]!;
  const weights = new Map<string, WeightRef>([['tok_embeddings', { init: emb, transpose: false }], ['norm', { init: final.weight, transpose: false }]]);
  for (let l = 0; l < attns.length; l++) {
    const p = `layers.${l}.`;
    const a = attns[l]!;
    const f = ffns[l]!;
    const t = (init: OnnxInitializer): WeightRef => ({ init, transpose: true });
    weights.set(p + 'attn_norm', { init: blocks[2 * l]!.norm.weight, transpose: false });
    weights.set(p + 'ffn_norm', { init: blocks[2 * l + 1]!.norm.weight, transpose: false });
    const proj = (w: ProjRef): WeightRef => ({ ...t(w.init), ...(w.rows ? { rows: w.rows } : {}) });
    weights.set(p + 'wq', proj(a.wq)).set(p + 'wk', proj(a.wk)).set(p + 'wv', proj(a.wv)).set(p + 'wo', t(a.wo));
    weights.set(p + 'w_gate', t(f.gate)).set(p + 'w_up', f.upRows ? { init: f.up, transpose: false } : t(f.up)).set(p + 'w_down', t(f.down));
  }
  if (output) weights.set('output', output);
  const moc = mocSelectionOf(ctx, ffns.map((f) => f.select));
  return {
    ...(moc ? { moc } : {}),
    spec: {
      arch: 'llama', dim, nLayers: attns.length, nHeads: a0.heads, nKvHeads: a0.kvHeads, headDim: a0.headDim, dFfn, vocabSize: vocab,
      normEps: eps, maxSeqLen: a0.own?.maxSeqLen ?? DEFAULT_MAX_SEQ_LEN, rope: { theta: a0.theta, style: a0.own?.style ?? 'half' }, tiedEmbeddings: !output,
      // No tokenizer ids are in the graph: LLaMA's (and the HF importer's defaults).
      bosId: 1, eosId: 2,
    },
    weights,
  };
}
