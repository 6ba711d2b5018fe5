// Lowers mocc's model graph (src/import/llama-graph.ts, after any passes) to standard ONNX, op by op:
// every IR node becomes a few primitive ONNX nodes (opset 17), so a dense graph gives plain ONNX and a
// MoC graph gives TopK on G with the kept channels' products. Activations are [batch, seq, width]:
// the IR's rows of one sequence are one batch row here, so the IR's %seq input has no ONNX
// counterpart (attention is causal within each batch row) and %pos becomes position_ids.
//
// The MoC FFN (README "MoC semantics") in two forms:
//   gather  — moc_up / moc_down read the kept rows of W_up and W_down ([F,d]) with Gather by the TopK
//             indices and multiply per token (batched MatMul over [B,S,K,d]): work ∝ K, for decoding.
//   masked  — moc_up is the dense x·W_upᵀ read at the kept channels (GatherElements), moc_down
//             scatters the kept Z into a dense [B,S,F] row of zeros (ScatterElements) and multiplies by
//             W_down densely: dense GEMMs, for prefill.
// TopK breaks ties toward the lower index (ONNX's TopK spec), as moc_select does; its indices come in
// descending-value order rather than ascending channel order, which changes only the order of the
// sum in moc_down.
import { ONNX_DTYPE } from '../../src/onnx/proto.js';
import type { Graph, Node, Operand, ParamDecl } from '../../src/ir/types.js';
import { nodeName } from '../../src/ir/types.js';
import type { RunnableModel } from '../../src/model/runnable.js';
import { paramF32 } from '../../src/model/runnable.js';
import { MODEL_INPUTS } from '../../src/model/graph-inputs.js';
import { UserError } from '../../src/util/errors.js';
import { ropeInvFreq } from '../ref/kernels.js';
import type { OnnxGraphBuilder } from './graph-builder.js';
import { HF_NAMES } from './hf-names.js';

export type MocForm = 'gather' | 'masked';

export interface LowerOptions {
  form: MocForm;
  /** Hugging Face optimum's decoder interface: attention_mask, position_ids, past/present KV per layer. */
  kvCache: boolean;
}

/** The most negative float32: what a masked attention score becomes (exp of it is 0). */
const MASKED_SCORE = -3.4028234663852886e38;

/** Which layout each param is read in: as declared, or transposed (the right-hand side of x·Wᵀ). */
type Layout = 'asis' | 'T';

export function lowerToOnnx(model: RunnableModel, b: OnnxGraphBuilder, opts: LowerOptions): void {
  const { graph: g, spec } = model;
  const names = new Map<string, string>();
  const get = (o: Operand): string => {
    if (o.kind === 'param') return param(o.name, 'asis');
    const n = names.get(o.name);
    if (n === undefined) throw new Error(`ONNX export: value %${o.name} has no ONNX value`);
    return n;
  };

  // Params: each one initializer, in the layout its readers want; a param read both ways (the tied
  // embedding: rows for Gather, transposed for the logits MatMul) is stored once and transposed by a node.
  const layouts = paramLayouts(g, opts.form);
  const params = new Map(g.params.map((p) => [p.name, p]));
  const stored = new Map<string, string>();
  const param = (name: string, want: Layout): string => {
    const p = params.get(name)!;
    const key = `${name}:${want}`;
    let v = stored.get(key);
    if (v) return v;
    const both = layouts.get(name)!.size > 1;
    if (want === 'T' && both) v = b.op('Transpose', [param(name, 'asis')], `${name}.T`, { perm: [1, 0] });
    else v = storeParam(model, p, want, b);
    stored.set(key, v);
    return v;
  };

  // Graph inputs.
  const dyn = { batch: 'batch_size', seq: 'sequence_length', past: 'past_sequence_length', total: 'total_sequence_length' };
  const inputIds = b.input(HF_NAMES.inputIds, ONNX_DTYPE.INT64, [dyn.batch, dyn.seq]);
  const attentionMask = opts.kvCache ? b.input(HF_NAMES.attentionMask, ONNX_DTYPE.INT64, [dyn.batch, dyn.total]) : undefined;
  const positionIds = opts.kvCache ? b.input(HF_NAMES.positionIds, ONNX_DTYPE.INT64, [dyn.batch, dyn.seq]) : undefined;
  // The IR's inputs: tokens are input_ids, pos the positions (rope reads them through ropeAt), and seq
  // (sequence ids) is the batch axis itself.
  names.set(MODEL_INPUTS.tokens, inputIds);
  const layers = g.nodes.filter((n) => n.op === 'attention');
  // The output names are fixed: keep them from the names made for IR values.
  b.reserve([HF_NAMES.logits, ...layers.flatMap((_, l) => [HF_NAMES.presentKey(l), HF_NAMES.presentValue(l)])]);
  const types = new Map(g.nodes.flatMap((m) => m.outputs.map((o) => [o.name, o.type] as const)));
  const pastNames = (l: number): [string, string] => [HF_NAMES.pastKey(l), HF_NAMES.pastValue(l)];
  if (opts.kvCache) {
    layers.forEach((n, l) => {
      for (const name of pastNames(l)) b.input(name, ONNX_DTYPE.FLOAT, [dyn.batch, n.attrs.kv_heads as number, dyn.past, n.attrs.head_dim as number]);
    });
  }

  // Values every layer shares, made on first use: sequence length, positions, the attention mask.
  let seqLen: string | undefined;
  const sequenceLength = () => (seqLen ??= b.op('Gather', [b.op('Shape', [inputIds], 'input_shape'), b.int64([1], true)], 'seq_len', { axis: 0 }));
  let positions: string | undefined;
  const getPositions = () => (positions ??= positionIds
    ?? b.op('Unsqueeze', [b.op('Range', [b.int64([0], true), sequenceLength(), b.int64([1], true)], 'positions'), b.int64([0])], 'position_ids'));
  let mask: string | undefined;
  const attentionMask5 = (): string => {
    if (mask) return mask;
    // Row i (key index past+i) sees key j when j ≤ past+i and, with a mask input, attention_mask[b,j] = 1.
    const past = opts.kvCache
      ? b.op('Gather', [b.op('Shape', [HF_NAMES.pastKey(0)], 'past_shape'), b.int64([2], true)], 'past_len', { axis: 0 })
      : b.int64([0], true);
    const total = opts.kvCache ? b.op('Add', [past, sequenceLength()], 'total_len') : sequenceLength();
    const qIdx = b.op('Unsqueeze', [b.op('Range', [past, total, b.int64([1], true)], 'q_index'), b.int64([1])], 'q_index_col');
    const kIdx = b.op('Range', [b.int64([0], true), total, b.int64([1], true)], 'k_index');
    const causal = b.op('LessOrEqual', [kIdx, qIdx], 'causal');
    if (attentionMask) {
      const pad = b.op('Unsqueeze', [b.op('Cast', [attentionMask], 'mask_bool', { to: ONNX_DTYPE.BOOL }), b.int64([1])], 'mask_rows');
      mask = b.op('Unsqueeze', [b.op('And', [causal, pad], 'allowed'), b.int64([1, 2])], 'allowed5');
    } else {
      mask = b.op('Unsqueeze', [causal, b.int64([0, 1, 2])], 'allowed5');
    }
    return mask;
  };
  // cos/sin of each position's angles, gathered by position and shaped to broadcast over heads.
  const ropeTables = new Map<string, { cos: string; sin: string }>();
  const ropeAt = (n: Node): { cos: string; sin: string } => {
    const a = n.attrs;
    const style = a.style as 'half' | 'interleaved';
    const key = `${a.head_dim}/${a.theta}/${a.scaling ?? ''}/${a.factor ?? ''}/${a.low_freq_factor ?? ''}/${a.high_freq_factor ?? ''}/${a.original_max_pos ?? ''}/${style}`;
    let t = ropeTables.get(key);
    if (t) return t;
    const hd = a.head_dim as number, half = hd / 2;
    const inv = ropeInvFreq({
      heads: 1, headDim: hd, theta: a.theta as number, style,
      ...(a.scaling === 'llama3' ? { llama3: { factor: a.factor as number, lowFreqFactor: a.low_freq_factor as number, highFreqFactor: a.high_freq_factor as number, originalMaxPos: a.original_max_pos as number } } : {}),
    });
    const maxPos = spec.maxSeqLen;
    const cos = new Float32Array(maxPos * half), sin = new Float32Array(maxPos * half);
    for (let p = 0; p < maxPos; p++) {
      for (let i = 0; i < half; i++) {
        cos[p * half + i] = Math.cos(p * inv[i]!);
        sin[p * half + i] = Math.sin(p * inv[i]!);
      }
    }
    // [B,S,half] → [B,S,1,1,half] ('half': x viewed [B,S,H,2,half]) or [B,S,1,half,1] ('interleaved': [B,S,H,half,2]).
    const axes = b.int64(style === 'half' ? [2, 3] : [2, 4]);
    const table = (vals: Float32Array, what: string) => b.op('Unsqueeze', [
      b.op('Gather', [b.initializer(`rope_${what}`, ONNX_DTYPE.FLOAT, [maxPos, half], new Uint8Array(vals.buffer)), getPositions()], `rope_${what}_at`, { axis: 0 }), axes,
    ], `rope_${what}_b`);
    t = { cos: table(cos, 'cos'), sin: table(sin, 'sin') };
    ropeTables.set(key, t);
    return t;
  };

  const mocTopK = new Map<string, { g: string; values: string }>();
  let layer = 0;
  for (const n of g.nodes) {
    const out = nodeName(n);
    const set = (v: string) => names.set(out, v);
    const ins = n.inputs;
    switch (n.op) {
      case 'embedding':
        set(b.op('Gather', [param(ins[0]!.name, 'asis'), get(ins[1]!)], out, { axis: 0 }));
        break;
      case 'rmsnorm': {
        const x = get(ins[0]!);
        const ms = b.op('ReduceMean', [b.op('Mul', [x, x], `${out}.sq`)], `${out}.ms`, { axes: [-1], keepdims: 1 });
        const den = b.op('Sqrt', [b.op('Add', [ms, b.float(n.attrs.eps as number)], `${out}.mse`)], `${out}.rms`);
        set(b.op('Mul', [b.op('Div', [x, den], `${out}.normed`), get(ins[1]!)], out));
        break;
      }
      case 'linear':
      case 'logits':
        set(b.op('MatMul', [get(ins[0]!), paramOrValue(ins[1]!, 'T')], out));
        break;
      case 'rope': {
        const { cos, sin } = ropeAt(n);
        const heads = n.attrs.heads as number, hd = n.attrs.head_dim as number;
        const half = n.attrs.style === 'half';
        const pairAxis = half ? 3 : 4;
        const x5 = b.op('Reshape', [get(ins[0]!), b.int64(half ? [0, 0, heads, 2, hd / 2] : [0, 0, heads, hd / 2, 2])], `${out}.pairs`);
        const [x1, x2] = b.node('Split', [x5], [`${out}.x1`, `${out}.x2`], { axis: pairAxis }) as [string, string];
        const r1 = b.op('Sub', [b.op('Mul', [x1, cos], `${out}.x1c`), b.op('Mul', [x2, sin], `${out}.x2s`)], `${out}.r1`);
        const r2 = b.op('Add', [b.op('Mul', [x1, sin], `${out}.x1s`), b.op('Mul', [x2, cos], `${out}.x2c`)], `${out}.r2`);
        set(b.op('Reshape', [b.op('Concat', [r1, r2], `${out}.rot`, { axis: pairAxis }), b.int64([0, 0, heads * hd])], out));
        break;
      }
      case 'attention':
        set(attention(b, n, get(ins[0]!), get(ins[1]!), get(ins[2]!), attentionMask5(), opts.kvCache ? layer : undefined));
        layer++;
        break;
      case 'silu': {
        const x = get(ins[0]!);
        set(b.op('Mul', [x, b.op('Sigmoid', [x], `${out}.sig`)], out));
        break;
      }
      case 'sigmoid': set(b.op('Sigmoid', [get(ins[0]!)], out)); break;
      case 'mul': set(b.op('Mul', [get(ins[0]!), get(ins[1]!)], out)); break;
      case 'add': set(b.op('Add', [get(ins[0]!), get(ins[1]!)], out)); break;
      case 'transpose':
        if (ins[0]!.kind !== 'param') throw new UserError(`ONNX export: transpose of an activation (%${out}) is not supported`);
        set(param(ins[0]!.name, 'T'));
        break;
      case 'split': {
        const outs = b.node('Split', [get(ins[0]!)], n.outputs.map((o) => o.name), { axis: -1 });
        n.outputs.forEach((o, i) => names.set(o.name, outs[i]!));
        break;
      }
      case 'moc_select': {
        const gv = get(ins[0]!);
        const f = types.get(ins[0]!.name)?.shape[1] as number;
        if (n.attrs.k !== undefined) {
          const [values, idx] = b.node('TopK', [gv, b.int64([n.attrs.k as number])], [`${out}.values`, out], { axis: -1, largest: 1, sorted: 1 }) as [string, string];
          mocTopK.set(out, { g: gv, values });
          set(idx);
        } else {
          set(blockTopK(b, gv, f, n.attrs.a as number, n.attrs.b as number, out));
        }
        break;
      }
      case 'moc_gather': {
        const gv = get(ins[0]!);
        const sel = ins[1]!.kind === 'value' ? mocTopK.get(ins[1]!.name) : undefined;
        // TopK already returned G at the kept channels: reuse them rather than gather again.
        set(sel && sel.g === gv ? sel.values : b.op('GatherElements', [gv, get(ins[1]!)], out, { axis: -1 }));
        break;
      }
      case 'moc_up': {
        const x = get(ins[0]!), idx = get(ins[2]!);
        if (opts.form === 'gather') {
          const rows = b.op('Gather', [paramOrValue(ins[1]!, 'asis'), idx], `${out}.rows`, { axis: 0 });
          const prod = b.op('MatMul', [rows, b.op('Unsqueeze', [x, b.int64([3])], `${out}.xcol`)], `${out}.prod`);
          set(b.op('Squeeze', [prod, b.int64([3])], out));
        } else {
          const dense = b.op('MatMul', [x, paramOrValue(ins[1]!, 'T')], `${out}.dense`);
          set(b.op('GatherElements', [dense, idx], out, { axis: -1 }));
        }
        break;
      }
      case 'moc_down': {
        const z = get(ins[0]!), idx = get(ins[2]!);
        const w = paramOrValue(ins[1]!, 'asis');
        if (opts.form === 'gather') {
          const rows = b.op('Gather', [w, idx], `${out}.rows`, { axis: 0 });
          const prod = b.op('MatMul', [b.op('Unsqueeze', [z, b.int64([2])], `${out}.zrow`), rows], `${out}.prod`);
          set(b.op('Squeeze', [prod, b.int64([2])], out));
        } else {
          const f = ins[1]!.kind === 'param' ? (params.get(ins[1]!.name)!.type.shape[0] as number) : undefined;
          if (f === undefined) throw new UserError(`ONNX export: moc_down %${out} reads W_down through a node; the masked form needs it as a param`);
          const shape = b.op('Concat', [b.op('Shape', [z], `${out}.bs`, { start: 0, end: 2 }), b.int64([f])], `${out}.dense_shape`, { axis: 0 });
          const zeros = b.op('ConstantOfShape', [shape], `${out}.zeros`, { value: { tensor: { dims: [1], dataType: ONNX_DTYPE.FLOAT, rawData: new Uint8Array(4) } } });
          const dense = b.op('ScatterElements', [zeros, idx, z], `${out}.z_dense`, { axis: -1 });
          set(b.op('MatMul', [dense, w], out));
        }
        break;
      }
      default:
        throw new UserError(`ONNX export: op ${n.op} (%${out}) has no ONNX lowering`);
    }
  }

  const vocab = spec.vocabSize;
  if (g.outputs.length !== 1) throw new UserError(`ONNX export: the graph has ${g.outputs.length} outputs; a model graph has one, the logits`);
  b.node('Identity', [names.get(g.outputs[0]!)!], [HF_NAMES.logits], {}, true);
  b.output(HF_NAMES.logits, ONNX_DTYPE.FLOAT, [dyn.batch, dyn.seq, vocab]);
  if (opts.kvCache) {
    layers.forEach((n, l) => {
      for (const name of [HF_NAMES.presentKey(l), HF_NAMES.presentValue(l)]) b.output(name, ONNX_DTYPE.FLOAT, [dyn.batch, n.attrs.kv_heads as number, dyn.total, n.attrs.head_dim as number]);
    });
  }

  function paramOrValue(o: Operand, want: Layout): string {
    if (o.kind === 'param') return param(o.name, want);
    if (want === 'asis') return get(o);
    return b.op('Transpose', [get(o)], `${o.name}.T`, { perm: [1, 0] });
  }
}

/** GQA attention over [B,S,H·hd] q and [B,S,KV·hd] k, v: scores [B,KV,G,S,L] by broadcasting the KV heads. */
function attention(b: OnnxGraphBuilder, n: Node, q: string, k: string, v: string, allowed: string, layer: number | undefined): string {
  const out = nodeName(n);
  const heads = n.attrs.heads as number, kvHeads = n.attrs.kv_heads as number, hd = n.attrs.head_dim as number;
  const group = heads / kvHeads;
  // Query head h = j·group + i uses KV head j (transformers' repeat_kv order).
  const q5 = b.op('Transpose', [b.op('Reshape', [q, b.int64([0, 0, kvHeads, group, hd])], `${out}.q5`)], `${out}.qh`, { perm: [0, 2, 3, 1, 4] });
  const heads4 = (x: string, what: string) => b.op('Transpose', [b.op('Reshape', [x, b.int64([0, 0, kvHeads, hd])], `${out}.${what}4`)], `${out}.${what}h`, { perm: [0, 2, 1, 3] });
  let kAll = heads4(k, 'k'), vAll = heads4(v, 'v');
  if (layer !== undefined) {
    kAll = b.node('Concat', [HF_NAMES.pastKey(layer), kAll], [HF_NAMES.presentKey(layer)], { axis: 2 }, true)[0]!;
    vAll = b.node('Concat', [HF_NAMES.pastValue(layer), vAll], [HF_NAMES.presentValue(layer)], { axis: 2 }, true)[0]!;
  }
  const k5 = b.op('Unsqueeze', [kAll, b.int64([2])], `${out}.k5`);
  const v5 = b.op('Unsqueeze', [vAll, b.int64([2])], `${out}.v5`);
  const scores = b.op('Mul', [b.op('MatMul', [q5, b.op('Transpose', [k5], `${out}.kT`, { perm: [0, 1, 2, 4, 3] })], `${out}.qk`), b.float(1 / Math.sqrt(hd))], `${out}.scores`);
  const masked = b.op('Where', [allowed, scores, b.float(MASKED_SCORE)], `${out}.masked`);
  const probs = b.op('Softmax', [masked], `${out}.probs`, { axis: -1 });
  const ctx = b.op('Transpose', [b.op('MatMul', [probs, v5], `${out}.ctx5`)], `${out}.ctx`, { perm: [0, 3, 1, 2, 4] });
  return b.op('Reshape', [ctx, b.int64([0, 0, heads * hd])], out);
}

/**
 * moc_select {a, b}: the a largest of every block of b consecutive channels, as TopK over G viewed
 * [B,S,F/b,b] plus each block's first channel. A shorter last block has no clean form here (TopK
 * takes one K per call), so F must be a multiple of b.
 */
function blockTopK(b: OnnxGraphBuilder, g: string, f: number, a: number, block: number, out: string): string {
  if (f % block !== 0) throw new UserError(`ONNX export: pattern ${a}:${block} with d_ffn = ${f} leaves a last block of ${f % block} channels, which has no ONNX form here (export supports a:b when b divides d_ffn)`);
  const blocks = f / block;
  const g4 = b.op('Reshape', [g, b.int64([0, 0, blocks, block])], `${out}.blocks`);
  const idx = b.node('TopK', [g4, b.int64([a])], [`${out}.values`, `${out}.local`], { axis: -1, largest: 1, sorted: 1 })[1]!;
  const starts = b.initializer(`${out}.block_starts`, ONNX_DTYPE.INT64, [blocks, 1], new Uint8Array(BigInt64Array.from({ length: blocks }, (_, i) => BigInt(i * block)).buffer));
  return b.op('Reshape', [b.op('Add', [idx, starts], `${out}.global`), b.int64([0, 0, blocks * a])], out);
}

/** For each param, the layouts its readers want (see the Layout type). */
function paramLayouts(g: Graph, form: MocForm): Map<string, Set<Layout>> {
  const m = new Map<string, Set<Layout>>(g.params.map((p) => [p.name, new Set<Layout>()]));
  for (const n of g.nodes) {
    n.inputs.forEach((o, i) => {
      if (o.kind !== 'param') return;
      const transposed = ((n.op === 'linear' || n.op === 'logits') && i === 1) || n.op === 'transpose' || (n.op === 'moc_up' && i === 1 && form === 'masked');
      m.get(o.name)!.add(transposed ? 'T' : 'asis');
    });
  }
  return m;
}

/** One initializer for param `p`, as f32 in the param's layout or its transpose. */
function storeParam(model: RunnableModel, p: ParamDecl, want: Layout, b: OnnxGraphBuilder): string {
  const w = paramF32(model.weights, p);
  const dims = p.type.shape as number[];
  if (want === 'asis') return b.initializer(p.name, ONNX_DTYPE.FLOAT, dims, new Uint8Array(w.buffer, w.byteOffset, w.byteLength));
  const [rows, cols] = dims as [number, number];
  const t = new Float32Array(w.length);
  for (let r = 0; r < rows; r++) for (let c = 0; c < cols; c++) t[c * rows + r] = w[r * cols + c]!;
  return b.initializer(`${p.name}.T`, ONNX_DTYPE.FLOAT, [cols, rows], new Uint8Array(t.buffer));
}
