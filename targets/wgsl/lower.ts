// Lowers an IR graph to a WGSL dispatch program: one kernel per op, with these fusions, found by
// structure on the facts shared with the CUDA target (targets/lowering/), each with a plain fallback:
//  - silu(a)·b into one elementwise kernel;
//  - MoC's gather + up projection + SiLU(G)·U into one kernel (moc_up_silu); with the gpu kernels a
//    Top-K MoC FFN becomes three dispatches in all (kernels/moc-fused.ts);
//  - a residual add(a, b) into the GEMV or MoC down reduction that produces b, when b has no other reader;
//  - attention's KV-cache append is its own dispatch (the attention kernel reads the whole cache).
// Weights too large for one storage binding (the adapter's maxStorageBufferBindingSize) are bound
// in row ranges by several dispatches, for the ops that read them by rows (GEMVs, embedding).
// Then a buffer plan reuses activation buffers once their last reader has run (targets/buffer-plan.ts).
import { type ModelSpec } from '../../src/import/spec.js';
import { UserError } from '../../src/util/errors.js';
import type { Graph, Operand } from '../../src/ir/types.js';
import { bufArgIds, planBuffers, remapBufArgs } from '../buffer-plan.js';
import { GraphFacts, type Node } from '../lowering/analysis.js';
import { DeviceInputs } from '../lowering/device-inputs.js';
import { residualAdd, siluMuls } from '../lowering/fusion.js';
import { fusedMocFfns } from './fusions.js';
import { weightRowBytes, type Variant, type WgslKernel } from './kernel.js';
import { argmax, attention, elementwise, embedding, gemv, kvAppend, rmsnorm, rope } from './kernels/dense.js';
import { mocDown, mocDownReduce, mocDownSlices, mocGather, mocUp, mocUpSilu, patternSelect, topkSelect } from './kernels/moc.js';
import { HIST_BINS, maskWords, mocDownMasked, mocSelectUp } from './kernels/moc-fused.js';
import type { Dispatch, WArg, WeightDecl, WgslProgram } from './program.js';

export const WGSL_OPS = new Set(['embedding', 'rmsnorm', 'linear', 'logits', 'rope', 'attention', 'kv_write', 'kv_attention', 'silu', 'mul', 'add', 'transpose', 'moc_select', 'moc_gather', 'moc_up', 'moc_down']);

export interface WgslLowerOptions {
  variant: Variant;
  /** The device's maxStorageBufferBindingSize; bigger weights are bound in row ranges. */
  maxBindingBytes?: number;
}

/** WebGPU's guaranteed minimum (128 MiB): what a browser gives without asking for more. */
export const DEFAULT_MAX_BINDING = 128 * 1024 * 1024;
/** WebGPU's minStorageBufferOffsetAlignment at its most: binding offsets are multiples of it. */
const BINDING_OFFSET_ALIGN = 256;
const gcd = (a: number, b: number): number => (b === 0 ? a : gcd(b, a % b));

interface VBuf {
  width: number;
  dtype: 'f32' | 'i32';
  key: string;
}

export function lowerToWgsl(g: Graph, spec: ModelSpec, options: WgslLowerOptions): WgslProgram {
  const { variant } = options;
  const maxBinding = options.maxBindingBytes ?? DEFAULT_MAX_BINDING;
  const facts = new GraphFacts(g, 'wgsl', spec.maxSeqLen);
  const useCount = (v: string) => facts.useCount(v);
  const width = (n: Node) => facts.width(n), widthOf = (o: Operand) => facts.widthOf(o), fail = (n: Node, why: string) => facts.fail(n, why);
  const inputs = new DeviceInputs(facts);

  const kernels: WgslProgram['kernels'] = {};
  const use = (k: WgslKernel) => ((kernels[k.key] = { code: k.code, bindings: k.bindings }), k);
  const vbufs: VBuf[] = [];
  const bufOf = new Map<string, number>();
  const steps: Dispatch[] = [];
  const skip = new Set<string>();

  const out = (n: Node): WArg => {
    vbufs.push({ width: width(n), dtype: n.type.dtype === 'i32' ? 'i32' : 'f32', key: `${n.type.dtype === 'i32' ? 'i32' : 'f32'}:${width(n)}` });
    bufOf.set(n.name, vbufs.length - 1);
    return { kind: 'buf', id: vbufs.length - 1 };
  };
  /** A buffer no IR value names (intermediate results of a two-kernel op). */
  const scratch = (width: number): WArg => {
    vbufs.push({ width, dtype: 'f32', key: `f32:${width}` });
    return { kind: 'buf', id: vbufs.length - 1 };
  };
  const buf = (o: Operand, n: Node): WArg => {
    const id = o.kind === 'value' ? bufOf.get(o.name) : undefined;
    return id === undefined ? fail(n, `operand ${o.kind === 'param' ? '@' : '%'}${o.name} has no buffer`) : { kind: 'buf', id };
  };
  /**
   * When n's only reader is add(a, n) (either order) and a already has a buffer, n's kernel adds a
   * itself: returns the add's output buffer and a's buffer, and the add is skipped. (The CUDA
   * target accumulates into a's buffer in place instead, so it also needs a dead after n.)
   */
  const foldAdd = (n: Node): { y: WArg; res: WArg } | undefined => {
    const r = residualAdd(facts, n.name);
    if (!r || !bufOf.has(r.other)) return undefined;
    skip.add(r.add.name);
    return { y: out(r.add), res: { kind: 'buf', id: bufOf.get(r.other)! } };
  };
  const dispatch = (k: WgslKernel, args: WArg[], n: Node) => steps.push({ kernel: use(k).key, grid: k.grid, args, node: n.name });

  /** A weight operand, or the host-computed transpose of one, with its shape as stored. */
  const weightOf = (o: Operand, n: Node): { arg: WArg; decl: WeightDecl } => {
    const { arg, name, dtype, rows, cols } = inputs.weight(o, n);
    return { arg, decl: { name, dtype, rows, cols } };
  };
  /** Row ranges of a weight that each fit one binding (one range when the whole weight fits). */
  const rowRanges = (w: WeightDecl): { start: number; rows: number }[] => {
    const rowBytes = weightRowBytes(w.dtype, w.cols);
    if (rowBytes * w.rows <= maxBinding) return [{ start: 0, rows: w.rows }];
    const align = BINDING_OFFSET_ALIGN / gcd(rowBytes, BINDING_OFFSET_ALIGN); // rows, so each range starts 256-byte aligned
    const per = Math.floor(maxBinding / rowBytes / align) * align;
    if (per === 0) throw new UserError(`wgsl target: ${align} rows of ${w.name} (${align * rowBytes} bytes) exceed this device's storage-binding limit of ${maxBinding} bytes`);
    const out: { start: number; rows: number }[] = [];
    for (let s = 0; s < w.rows; s += per) out.push({ start: s, rows: Math.min(per, w.rows - s) });
    return out;
  };
  const rangeArg = (arg: WArg, r: { start: number; rows: number }, whole: number): WArg =>
    (arg.kind === 'weight' && r.rows !== whole ? { ...arg, rowStart: r.start, rows: r.rows } : arg);

  // silu(a)·b, silu read once: one kernel. MoC's SiLU(gather(G, idx))·moc_up(x, W_up, idx): one kernel.
  const siluMulOf = siluMuls(facts);
  const mocUpOf = new Map<string, { gather: Node; up: Node }>();
  for (const [mul, s] of siluMulOf) {
    skip.add(s.silu.name);
    if (!s.moc) continue;
    mocUpOf.set(mul, s.moc);
    skip.add(s.moc.gather.name).add(s.moc.up.name);
  }

  // The gpu kernels run a Top-K MoC FFN in three dispatches (fusions.ts); `h` and `mask` are the
  // state mocSelectUp leaves for mocDownMasked.
  interface FusedMoc { select: Node; h?: WArg; mask?: WArg }
  const fusedByGate = new Map<string, FusedMoc>(), fusedByMul = new Map<string, FusedMoc>(), fusedByDown = new Map<string, FusedMoc>();
  for (const ffn of variant === 'gpu' ? fusedMocFfns(facts, mocUpOf) : []) {
    const fused: FusedMoc = { select: ffn.select };
    fusedByGate.set(ffn.gate.name, fused);
    fusedByMul.set(ffn.mul, fused);
    fusedByDown.set(ffn.down.name, fused);
    skip.add(ffn.select.name);
  }

  const tokens = facts.tokenInput();

  for (const n of facts.nodes) {
    if (skip.has(n.name)) continue;
    switch (n.op) {
      case 'embedding': {
        if (n.inputs[1]!.name !== tokens.name) fail(n, 'embedding must read the token input');
        const w = weightOf(n.inputs[0]!, n);
        const y = out(n);
        for (const r of rowRanges(w.decl)) dispatch(embedding(w.decl.dtype, width(n), r.rows, r.start, variant), [y, rangeArg(w.arg, r, w.decl.rows), { kind: 'tokens' }], n);
        break;
      }
      case 'rmsnorm': {
        const w = weightOf(n.inputs[1]!, n);
        const x = buf(n.inputs[0]!, n);
        dispatch(rmsnorm(w.decl.dtype, width(n), n.attrs.eps as number, variant), [out(n), x, w.arg], n);
        break;
      }
      case 'linear':
      case 'logits': {
        const w = weightOf(n.inputs[1]!, n);
        const x = buf(n.inputs[0]!, n);
        const fold = n.op === 'linear' ? foldAdd(n) : undefined;
        const y = fold?.y ?? out(n);
        const inDim = widthOf(n.inputs[0]!);
        const hist = fusedByGate.has(n.name);
        for (const r of rowRanges(w.decl)) {
          const spec = { dtype: w.decl.dtype, inDim, outDim: r.rows, outStride: width(n), rowBase: r.start, variant, residual: Boolean(fold), hist };
          dispatch(gemv(spec), [y, x, rangeArg(w.arg, r, w.decl.rows), ...(fold ? [fold.res] : []), ...(hist ? [{ kind: 'hist' } as const] : [])], n);
        }
        break;
      }
      case 'rope': {
        const x = n.inputs[0]!;
        if (x.kind !== 'value' || useCount(x.name) !== 1) fail(n, 'rope must be the only reader of its input (it rotates in place)');
        const id = bufOf.get(x.name)!;
        bufOf.set(n.name, id);
        dispatch(rope(n.attrs.heads as number, n.attrs.head_dim as number, n.attrs.style as 'half' | 'interleaved', variant), [{ kind: 'buf', id }, { kind: 'const', name: inputs.ropeTable(n) }], n);
        break;
      }
      case 'attention': {
        const layer = n.attrs.layer as number, heads = n.attrs.heads as number, kvh = n.attrs.kv_heads as number, hd = n.attrs.head_dim as number;
        const [q, k, v] = n.inputs.map((o) => buf(o, n)) as [WArg, WArg, WArg];
        const kc: WArg = { kind: 'kv', layer, which: 'k' }, vc: WArg = { kind: 'kv', layer, which: 'v' };
        dispatch(kvAppend(kvh * hd), [kc, vc, k, v], n);
        dispatch(attention(heads, kvh, hd, variant), [out(n), q, kc, vc], n);
        break;
      }
      case 'silu':
        dispatch(elementwise('silu', width(n)), [out(n), buf(n.inputs[0]!, n)], n);
        break;
      case 'mul': {
        const moc = mocUpOf.get(n.name);
        const fused = fusedByMul.get(n.name);
        if (moc && fused) {
          const w = weightOf(moc.up.inputs[1]!, n);
          const F = widthOf(moc.gather.inputs[0]!);
          fused.h = scratch(F);
          fused.mask = scratch(maskWords(F));
          const kernel = mocSelectUp(w.decl.dtype, widthOf(moc.up.inputs[0]!), F, fused.select.attrs.k as number);
          dispatch(kernel, [fused.h, fused.mask, buf(moc.up.inputs[0]!, n), w.arg, buf(moc.gather.inputs[0]!, n), { kind: 'hist' }], n);
          break;
        }
        if (moc) {
          const w = weightOf(moc.up.inputs[1]!, n);
          const [x, idx, gate] = [buf(moc.up.inputs[0]!, n), buf(moc.up.inputs[2]!, n), buf(moc.gather.inputs[0]!, n)];
          dispatch(mocUpSilu(w.decl.dtype, widthOf(moc.up.inputs[0]!), widthOf(moc.gather.inputs[0]!), width(n), variant), [out(n), x, w.arg, idx, gate], n);
          break;
        }
        const sm = siluMulOf.get(n.name);
        if (sm) dispatch(elementwise('silu_mul', width(n)), [out(n), buf(sm.silu.inputs[0]!, n), buf(sm.other, n)], n);
        else dispatch(elementwise('mul', width(n)), [out(n), buf(n.inputs[0]!, n), buf(n.inputs[1]!, n)], n);
        break;
      }
      case 'add':
        dispatch(elementwise('add', width(n)), [out(n), buf(n.inputs[0]!, n), buf(n.inputs[1]!, n)], n);
        break;
      case 'transpose':
        if (n.inputs[0]!.kind !== 'param') fail(n, 'only transposes of weights are supported (computed on the host)');
        break; // read through weightOf by its consumer
      case 'moc_select': {
        const f = widthOf(n.inputs[0]!);
        const gate = buf(n.inputs[0]!, n);
        const k = n.attrs.k !== undefined ? topkSelect(f, n.attrs.k as number, variant) : patternSelect(f, n.attrs.a as number, n.attrs.b as number, variant);
        dispatch(k, [out(n), gate], n);
        break;
      }
      case 'moc_gather':
        dispatch(mocGather(widthOf(n.inputs[0]!), width(n), variant), [out(n), buf(n.inputs[0]!, n), buf(n.inputs[1]!, n)], n);
        break;
      case 'moc_up': {
        const w = weightOf(n.inputs[1]!, n);
        dispatch(mocUp(w.decl.dtype, widthOf(n.inputs[0]!), width(n), variant), [out(n), buf(n.inputs[0]!, n), w.arg, buf(n.inputs[2]!, n)], n);
        break;
      }
      case 'moc_down': {
        const fused = fusedByDown.get(n.name);
        if (fused) {
          const w = weightOf(n.inputs[1]!, n);
          const fold = foldAdd(n);
          const kernel = mocDownMasked(w.decl.dtype, width(n), w.decl.rows, fused.select.attrs.k as number, Boolean(fold));
          dispatch(kernel, [fold?.y ?? out(n), { kind: 'hist' }, fused.h!, fused.mask!, w.arg, ...(fold ? [fold.res] : [])], n);
          break;
        }
        // partial sums over slices of the kept channels, then their sum in a fixed order
        const w = weightOf(n.inputs[1]!, n);
        const d = width(n), kKeep = widthOf(n.inputs[0]!), slices = mocDownSlices(kKeep);
        const partial = scratch(slices * d);
        dispatch(mocDown(w.decl.dtype, d, kKeep, variant), [partial, buf(n.inputs[0]!, n), w.arg, buf(n.inputs[2]!, n)], n);
        const fold = foldAdd(n);
        dispatch(mocDownReduce(d, slices, variant, Boolean(fold)), [fold?.y ?? out(n), partial, ...(fold ? [fold.res] : [])], n);
        break;
      }
      default:
        fail(n, 'no WGSL kernel for this op');
    }
  }

  const logitsVirtual = bufOf.get(g.outputs[0]!);
  if (logitsVirtual === undefined) throw new UserError('wgsl target: the graph output has no buffer');
  const plan = planBuffers(vbufs, steps.length, (i) => bufArgIds(steps[i]!.args));
  const remap = (d: Dispatch): Dispatch => ({ ...d, args: remapBufArgs(d.args, plan.map) });
  const logits = plan.map.get(logitsVirtual)!;
  const tail = argmax(spec.vocabSize, variant);
  use(tail);
  return {
    format: 'mocc-wgsl-program', version: 1, variant, kernels,
    steps: steps.map(remap),
    greedyTail: [{ kernel: tail.key, grid: tail.grid, args: [{ kind: 'tokens' }, { kind: 'buf', id: logits }], node: 'argmax' }],
    buffers: plan.buffers.map(({ id, width, dtype }) => ({ id, width, dtype })),
    weights: [...inputs.weights.values()],
    consts: [...inputs.consts.values()],
    kvCache: { layers: spec.nLayers, width: spec.nKvHeads * spec.headDim, capacity: spec.maxSeqLen },
    logits: { buf: logits, vocab: spec.vocabSize },
    ...(fusedByGate.size ? { histBins: HIST_BINS } : {}),
  };
}
