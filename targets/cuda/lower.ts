// Lowers an IR graph to a CUDA launch program: one or two kernels per op, with the fusions a
// LLaMA step needs, then a buffer plan that reuses activation buffers once their last reader has run.
// Fusions (each found by structure on the facts shared with the WGSL target, targets/lowering/, or
// by cuda/fusions.ts for those only CUDA has kernels for; each with a plain fallback):
//  - RMSNorm into the GEMVs that read it (every reader must be one);
//  - residual adds into the producing GEMV / MoC reduction;
//  - GEMVs sharing an input into one launch (Q/K/V);
//  - a dense FFN's gate, up and SiLU·mul into one GEMV over paired rows;
//  - RoPE of q and k with the KV-cache append;
//  - MoC's Top-K into the gate GEMV's last block of each row, with mocTopk 'gate';
//  - MoC's gather + up projection + SiLU(G)·U + gathered down projection into one launch (then a
//    reduction that adds the residual, or with mocMerge 'tail' that launch's last blocks); that launch warms the L2 with the rows of the channels it
//    guesses will be kept while Top-K still runs (from the threshold Top-K left in the last call).
import { UserError } from '../../src/util/errors.js';
import type { Graph, Operand } from '../../src/ir/types.js';
import type { ModelSpec } from '../../src/import/spec.js';
import { kvStore, kvStoreGrid, rope, ropeStore, ropeStoreGrid, ROPE_THREADS } from './ptx/attention.js';
import { attentionCombine, attentionSplit, combineThreads, partialWidth, splitLayout, SPLIT_THREADS, type DecodeAttentionSpec } from './ptx/decode-attention.js';
import { kvCacheDtype, type KvCacheOption } from './kv-cache.js';
import { argmax, elementwise, embedding, gemv, gemvGrid, gemvLayout, gemvMulti, gemvMultiGrid, posAdvance, rmsnorm, rmsnormThreads, type GemvSpec, type Kernel } from './ptx/dense.js';
import { pad8, type WeightDType } from './ptx/layout.js';
import { downPartial, downReduce, downSplit, DOWN_THREADS, mocScatterSilu, SCATTER_THREADS, mocUpDown, mocTailCounters, patternSelect, reduceGrid, REDUCE_THREADS, selectShape, topkSelect, upDownSplit } from './ptx/moc.js';
import { gateTopkCounters, gateTopkFits, gemvTopk } from './ptx/gate-topk.js';
import { mergeCounterSizes, type Arg, type BufferDecl, type CounterRegion, type CounterSizes, type Launch, type Program, type Step } from './program.js';
import { bufArgIds, planBuffers as planBufferIds, remapBufArgs } from '../buffer-plan.js';
import { GraphFacts, type Node } from '../lowering/analysis.js';
import { DeviceInputs } from '../lowering/device-inputs.js';
import { residualAdd, siluMuls } from '../lowering/fusion.js';
import { ffnPairs, foldedNorms, gateTopks, mocUpDowns, mocUps, qkvProjections, ropedAttentions, tauSlots, type FoldedNorm } from './fusions.js';
import { castGrid, castRows, CAST_THREADS } from './ptx/cast.js';
import { attention, ATTN_WARPS } from './ptx/attention-single.js';
import { flashAttention, FA_ROWS, FA_THREADS, type FlashAttentionSpec } from './ptx/flash-attention.js';
import { gemm, GEMM_DEFAULT, gemmThreads, type GemmEpilogue, type GemmSpec } from './ptx/gemm.js';
import { gemmF32, GEMM_F32_DEFAULT, GEMM_F32_PREFIX, gemmF32Threads, type GemmF32Epilogue } from './ptx/gemm-f32.js';
import { gemm90, gemm90Bm, GEMM90_DEFAULT, gemm90SharedBytes, gemm90Threads, type Gemm90Spec } from './ptx/gemm-sm90.js';

export const CUDA_OPS = new Set(['embedding', 'rmsnorm', 'linear', 'logits', 'rope', 'attention', 'kv_write', 'kv_attention', 'silu', 'mul', 'add', 'transpose', 'moc_select', 'moc_gather', 'moc_up', 'moc_down']);

interface VBuf {
  width: number;
  rowsPerToken: number;
  dtype: BufferDecl['dtype'];
}

export interface LowerOptions {
  /**
   * The fused MoC up·down kernel, while Top-K still runs, warms the L2 with the up/down rows of
   * the channels likely kept, from the threshold that Top-K left in the previous call
   * (UpDownSpec.warm). Default on; off to measure what it gives.
   */
  warm?: boolean;
  /** Lower a prefill program for calls of many tokens (Program.prefill); default on. */
  prefill?: boolean;
  /**
   * The KV cache's element type; 'auto' (the default): the key/value projections' weight dtype
   * when bf16 or f16, else f32 (see kv-cache.ts).
   */
  kvCache?: KvCacheOption;
  /**
   * Decode attention: 'split' (default; decode-attention.ts, any cache dtype) or 'single' (one block
   * per head and token, attention-single.ts: the kernel verified on the H100 before issue 16, f32
   * cache only; with a 16-bit cache 'split' is used anyway).
   */
  decodeAttention?: 'split' | 'single';
  /** The split decode attention's blocks per query row (DecodeAttentionSpec.blocks); default decode-attention.ts's. */
  decodeBlocks?: number;
  /**
   * Who merges the split decode attention's partials (DecodeAttentionSpec.merge): 'combine-kernel'
   * (default) a second launch a layer, 'last-block' the split kernel's last block of each (row,
   * head), over merge counters (Arg 'counters' region 'attention', Program.counters). 'last-block' passed its
   * H100 tests (session 12: 45 kernel cases, stories260K against HF) and is what sessions use
   * (targets/cuda/index.ts optInLowering, where the measurement is); lowerToCuda's default, which
   * compile writes, keeps the combine kernel.
   */
  decodeMerge?: 'combine-kernel' | 'last-block';
  /**
   * The split decode attention reads its first rounds of cached rows before it waits for the QKV
   * kernel (DecodeAttentionSpec.early). Opt-in until decode-context has measured it (session 13).
   */
  decodeEarly?: boolean;
  /**
   * Who adds the fused MoC up·down kernel's partials into y (UpDownSpec.merge): 'reduce-kernel'
   * (default) downReduce as a second launch a layer; 'tail', the up·down kernel's last R blocks of
   * each token row (R = downReduce's block count, 32 at d = 2048), each doing downReduce blocks' work
   * in its order (the same bits), over counters (Arg 'counters' region 'moc'): one launch a layer
   * fewer. Opt-in until decode-context has measured it (MOCC_CUDA_MOC_TAIL=1, targets/cuda/index.ts).
   */
  mocMerge?: 'reduce-kernel' | 'tail';
  /**
   * Who runs MoC's Top-K (moc_select with k) over the gate GEMV's G in the decode lowering: 'kernel'
   * (default) moc_topk, a launch of one block; 'gate', the gate GEMV's last block of each token row
   * to finish (gate-topk.ts gemvTopk, over per-row counters, Arg 'counters' region 'topk'), the same
   * idx and τ bits: one launch a layer fewer. Where G is not a plain GEMV's output, or F is past
   * gateTopkFits, moc_topk stays. Combines with mocMerge 'tail'. Opt-in until decode-context has
   * measured it (MOCC_CUDA_MOC_TOPK=1, targets/cuda/index.ts).
   */
  mocTopk?: 'kernel' | 'gate';
  /**
   * The prefill program's linears Y (+)= X·Wᵀ with an f32 Y run on the Hopper GEMM (gemm-sm90.ts:
   * wgmma, TMA; an sm_90a module, compute capability 9.0 only) instead of gemm.ts's (see
   * hopperGemm). Default off here (lowering knows no device); createCudaSession sets it on a 9.0
   * device (targets/cuda/index.ts wgmmaWanted).
   */
  wgmma?: boolean;
  /**
   * A prefill program for a model whose linears all have f32 weights (without it such a model has
   * none: its prompts run through the decode steps with T rows): every linear as gemm-f32.ts's SIMT
   * GEMM over the f32 activations (nothing rounded), attention as the decode steps' split attention
   * with T rows (flash attention rounds to 16 bits), the MoC FFN as the decode steps' fused kernels
   * with T rows (see case 'moc_down'). Off here (lowerToCuda's default, as compile uses); a model with
   * some 16-bit linear lowers the same either way. createCudaSession sets it (MOCC_CUDA_PREFILL_F32=0: not),
   * and the session runs it from F32_PREFILL_MIN_TOKENS tokens.
   */
  prefillF32?: boolean;
}

/**
 * The Hopper GEMM for a prefill GEMM in gemm.ts's layout `layout` ('xwt': a linear; 'xw': the MoC
 * down projection over W_downᵀ), or undefined to keep gemm.ts's: only when options.wgmma asks for
 * it, and only the epilogues gemm-sm90.ts has for an f32 Y ('store', 'accumulate'). Its tile is
 * GEMM90_DEFAULT on every shape: the gemm bench (session 12, H100) measured 128×256 with 4 stages
 * fastest on each of its shapes and layouts (85–94% of cuBLAS on the aligned X·Wᵀ shapes); 128×128
 * with 6 stages was 11–17 points of cuBLAS behind on those and about 38% slower on dX and dW.
 */
export function hopperGemm(options: LowerOptions, dtype: 'bf16' | 'f16', epilogue: GemmEpilogue, layout: 'xwt' | 'xw' = 'xwt'): Gemm90Spec | undefined {
  if (!options.wgmma || (epilogue !== 'store' && epilogue !== 'accumulate')) return undefined;
  return { dtype, out: 'f32', ...GEMM90_DEFAULT, ...(layout !== 'xwt' ? { layout } : {}), ...(epilogue === 'accumulate' ? { epilogue } : {}) };
}

/**
 * The decode launches (GEMVs, T rows each) and, when some linear has bf16/f16 weights, a prefill
 * program for calls of many tokens that runs those linears as tensor-core GEMMs (Program.prefill);
 * with options.prefillF32, also when they all have f32 weights (f32 SIMT GEMMs).
 */
export function lowerToCuda(g: Graph, spec: ModelSpec, options: LowerOptions = {}): Program {
  const p = lowerPass(g, spec, options, 'decode');
  if (options.prefill === false) return p;
  const pre = lowerPass(g, spec, options, 'prefill');
  // without 16-bit linears (and prefillF32) the prefill lowering has no GEMM and would only repeat the decode launches
  if (!pre.steps.some((s) => s.kind === 'launch' && s.kernel.startsWith('gemm'))) return p;
  const counters = mergeCounterSizes(p.counters, pre.counters);
  const consts = new Map(p.consts.map((c) => [c.name, c]));
  for (const c of pre.consts) consts.set(c.name, c);
  return {
    ...p,
    kernels: new Map([...p.kernels, ...pre.kernels]),
    weights: [...new Set([...p.weights, ...pre.weights])],
    consts: [...consts.values()],
    ...(pre.kernelsSm90a ? { kernelsSm90a: pre.kernelsSm90a } : {}),
    ...(counters ? { counters } : {}),
    prefill: { minTokens: prefillMinTokens(pre), steps: pre.steps, buffers: pre.buffers, logits: pre.logits },
  };
}

/**
 * The fewest tokens a call needs to run the prefill program. Tensor-core GEMMs win from 2 tokens. The
 * f32 SIMT GEMMs (gemm-f32.ts; one 64-row tile, so a few tokens cost as many FLOPs as 64) lose to
 * the decode GEMVs below a few dozen: measured on the H100, 1B preset in f32 (bench/NOTES.md,
 * session 13), dense 34.3 ms against 23.1 at 16 tokens, 38.4 against 187 at 128; about 1.5 ms a
 * token for the GEMVs against a flat ~35 ms up to 128 puts the crossover near 24 tokens.
 */
export const F32_PREFILL_MIN_TOKENS = 32;
const prefillMinTokens = (pre: Program): number => (pre.steps.some((s) => s.kind === 'launch' && s.kernel.startsWith(GEMM_F32_PREFIX)) ? F32_PREFILL_MIN_TOKENS : 2);

/**
 * One lowering of the graph. 'decode': GEMVs with RMSNorm folded in, fused Q/K/V and gate/up
 * launches. 'prefill': linears with 16-bit weights as tensor-core GEMMs (gemm.ts) over 16-bit
 * copies of their inputs (cast.ts; one per value, shared by its readers), attention as flash
 * attention (flash-attention.ts), RMSNorm as its own launch, no select hints; the MoC FFN's up
 * and down as dense GEMMs around its kept channels (see case 'moc_down'). With options.prefillF32 and
 * no 16-bit linear: the f32 prefill (f32Prefill below).
 */
function lowerPass(g: Graph, spec: ModelSpec, options: LowerOptions, mode: 'decode' | 'prefill'): Program {
  const prefill = mode === 'prefill';
  const facts = new GraphFacts(g, 'cuda', spec.maxSeqLen);
  /**
   * The f32 prefill (LowerOptions.prefillF32): only where no linear has 16-bit weights, so a model
   * that has a tensor-core prefill keeps it unchanged. Its linears are gemm-f32.ts GEMMs on the f32
   * activations and its attention the split decode attention with T rows: nothing in it rounds below
   * f32, so its logits can match an f32 reference as the decode steps' do.
   */
  const f32Prefill = prefill && options.prefillF32 === true && !facts.nodes.some((n) => {
    if (n.op !== 'linear' && n.op !== 'logits') return false;
    const dtype = facts.weightRead(n.inputs[1]!)?.dtype;
    return dtype === 'bf16' || dtype === 'f16';
  });
  const producer = (o: Operand | undefined) => facts.producer(o), useCount = (v: string) => facts.useCount(v);
  const width = (n: Node) => facts.width(n), widthOf = (o: Operand) => facts.widthOf(o), fail = (n: Node, why: string) => facts.fail(n, why);
  const inputs = new DeviceInputs(facts);
  const kvDtype = kvCacheDtype(facts, options.kvCache);

  const kernels = new Map<string, string>();
  const counters: CounterSizes = {}; // u32 merge counters (Arg 'counters') per region, as many as the launches need
  /** Arg 'counters' of `region`, which holds at least n counters. */
  const countersArg = (region: CounterRegion, n: number): Arg => {
    counters[region] = Math.max(counters[region] ?? 0, n);
    return { kind: 'counters', region };
  };
  const maxRows = spec.maxSeqLen; // rows a call can have (the 'linear' case's `spec` is its GEMV's)
  const use = (k: Kernel) => (kernels.set(k.name, k.text), k.name);
  const kernelsSm90a = new Map<string, string>();
  const vbufs: VBuf[] = [];
  const newBuf = (width: number, dtype: VBuf['dtype'] = 'f32', rowsPerToken = 1) => (vbufs.push({ width, rowsPerToken, dtype }), vbufs.length - 1);
  const bufOf = new Map<string, number>();
  const steps: Step[] = [];
  const launch = (l: Omit<Launch, 'node'>, n: Node) => steps.push({ kind: 'launch', ...l, node: n.name });
  const buf = (o: Operand, n: Node): Arg => {
    const id = o.kind === 'value' ? bufOf.get(o.name) : undefined;
    if (id === undefined) return fail(n, `operand ${o.kind === 'param' ? '@' : '%'}${o.name} has no device buffer`);
    return { kind: 'buf', id };
  };

  // What this lowering fuses (fusions.ts), found before any kernel is chosen.
  const siluMulOf = siluMuls(facts);
  const mocUpOf = mocUps(siluMulOf);
  const ffnPairOf = prefill ? new Map<string, { gate: Node; up: Node }>() : ffnPairs(facts, mocUpOf);
  const mocDownOf = mocUpDowns(facts, mocUpOf);
  // Top-K in the gate GEMV's last block (LowerOptions.mocTopk): by the gate linear's name, its Top-K
  const topkOf = !prefill && options.mocTopk === 'gate' ? gateTopks(facts, gateTopkFits) : new Map<string, Node>();
  const tauSlotOf = !prefill && (options.warm ?? true) ? tauSlots(facts, mocDownOf) : new Map<string, number>();
  const ropeOf = ropedAttentions(facts);
  const qkvOf = qkvProjections(facts, ropeOf);
  const qkvFused = new Set<string>();
  // RMSNorm read only by GEMVs: each reader normalizes x itself, and the norm's input is then read
  // by those GEMVs, which buffer reuse and the add-folding must know (`uses`).
  const { normOf, readers: uses } = prefill ? { normOf: new Map<string, FoldedNorm>(), readers: (v: string) => facts.readers(v) } : foldedNorms(facts, mocUpOf);
  /** Nodes whose work another node's launch does (or that need none). */
  const skip = new Set<string>();
  for (const s of siluMulOf.values()) skip.add(s.silu.name);
  for (const m of mocUpOf.values()) skip.add(m.gather.name).add(m.up.name);
  for (const p of ffnPairOf.values()) skip.add(p.gate.name).add(p.up.name);
  for (const d of mocDownOf.values()) skip.add(d.mul.name);
  for (const r of ropeOf.values()) skip.add(r.q.name).add(r.k.name);
  for (const name of normOf.keys()) skip.add(name);

  /**
   * add(a, b) that can be folded into b's producer: b read only by the add, a has a buffer and is
   * read by nothing after b's producer — so the producer can accumulate into a's buffer in place
   * (the WGSL target writes a new buffer instead, and needs no such liveness condition).
   */
  const foldedAdd = (producerIndex: number, out: string): { add: Node; into: string } | undefined => {
    const r = residualAdd(facts, out);
    if (!r || !bufOf.has(r.other)) return undefined;
    const addIndex = facts.readers(out)[0]!;
    if (uses(r.other).some((i) => i > producerIndex && i !== addIndex)) return undefined;
    return { add: r.add, into: r.other };
  };
  /**
   * When node i's only reader is add(a, ·) that can be folded (see foldedAdd), the kernel adds into
   * a's buffer instead: the add is skipped and its value lives in that buffer. Returns that buffer.
   */
  const accumulateInto = (i: number, n: Node): Arg | undefined => {
    const fold = foldedAdd(i, n.name);
    if (!fold) return undefined;
    const id = bufOf.get(fold.into)!;
    bufOf.set(fold.add.name, id);
    skip.add(fold.add.name);
    return { kind: 'buf', id };
  };
  /** A GEMV's input operand: the buffer to read, and the RMSNorm to apply on the fly if it was folded. */
  const gemvInput = (o: Operand, n: Node): { x: Arg; norm?: { arg: Arg; dtype: WeightDType; eps: number } } => {
    const folded = o.kind === 'value' ? normOf.get(o.name) : undefined;
    if (!folded) return { x: buf(o, n) };
    const w = inputs.weight(folded.weight, n);
    return { x: buf(folded.src, n), norm: { arg: w.arg, dtype: w.dtype, eps: folded.eps } };
  };

  /**
   * The 16-bit type of the GEMMs that read node n's value, when every reader is a linear (or the
   * logits) over 16-bit weights of one type and in the prefill becomes a GEMM on that type's copy of
   * n: then n's kernel can write that copy itself (registered in halfOf) instead of f32 and a cast.
   */
  const gemmOnlyInput = (n: Node): 'bf16' | 'f16' | undefined => {
    const readers = facts.readerNodes(n.name);
    const types = new Set(readers.map((r) => ((r.op === 'linear' || r.op === 'logits') && r.inputs[0]!.name === n.name && r.inputs[1]!.kind === 'param' ? facts.weight(r.inputs[1]!.name).dtype : 'other')));
    const [only] = types;
    return types.size === 1 && (only === 'bf16' || only === 'f16') ? only : undefined;
  };
  /** A `dtype` buffer for node n's value, registered as the 16-bit copy its GEMM readers take (gemmOnlyInput). */
  const halfOut = (n: Node, dtype: 'bf16' | 'f16'): Arg => {
    const id = newBuf(width(n), dtype);
    halfOf.set(`${n.name}:${dtype}`, id);
    return { kind: 'buf', id };
  };
  /** A 16-bit copy of operand o for the GEMMs that read it: one cast launch per value and dtype, at its first GEMM reader. */
  const halfOf = new Map<string, number>();
  const gemmInput = (o: Operand, dtype: 'bf16' | 'f16', n: Node): Arg => {
    const key = `${o.name}:${dtype}`;
    let id = halfOf.get(key);
    if (id === undefined) {
      const w = widthOf(o);
      id = newBuf(w, dtype);
      halfOf.set(key, id);
      launch({ kernel: use(castRows(dtype, w)), grid: [castGrid(w), 'T', 1], block: CAST_THREADS, args: [{ kind: 'buf', id }, buf(o, n)] }, n);
    }
    return { kind: 'buf', id };
  };
  /** gemm.ts's kernel for Y[T, outDim] over a reduction of inDim, in the layout and epilogue of gs. */
  const gemmSm80 = (gs: GemmSpec, y: Arg, x: Arg, w: Arg, outDim: number, inDim: number, n: Node) =>
    launch({ kernel: use(gemm(gs)), grid: [Math.ceil(outDim / gs.bn), { tilesOfT: gs.bm }, 1], block: gemmThreads(gs),
      args: [y, x, w, { kind: 'T' }, { kind: 'u32', value: outDim }, { kind: 'u32', value: inDim }] }, n);
  /**
   * Y[T, outDim] (+)= X[T, inDim] · Wᵀ, W [outDim, inDim] (gemm.ts's 'xwt'), or with layout 'xw'
   * Y (+)= X · W, W [inDim, outDim]; xh the 16-bit X: on the Hopper GEMM where hopperGemm says so,
   * else gemm.ts's.
   */
  const prefillGemm = (y: Arg, xh: Arg, w: Arg, dtype: 'bf16' | 'f16', epilogue: GemmEpilogue, outDim: number, inDim: number, n: Node, layout: 'xwt' | 'xw' = 'xwt') => {
    const h = hopperGemm(options, dtype, epilogue, layout);
    if (!h) return gemmSm80({ dtype, ...GEMM_DEFAULT, ...(layout !== 'xwt' ? { layout } : {}), epilogue }, y, xh, w, outDim, inDim, n);
    const sizes: Arg[] = [{ kind: 'T' }, { kind: 'u32', value: outDim }, { kind: 'u32', value: inDim }];
    const k = gemm90(h);
    kernelsSm90a.set(k.name, k.text);
    const map = (of: Arg, rows: 'T' | number, operand: 'x' | 'w'): Arg => ({ kind: 'tmap', of, rows, k: inDim, operand, gemm: h });
    launch({ kernel: k.name, grid: [{ persistentTiles: { bm: gemm90Bm(h), bn: h.bn, n: outDim } }, 1, 1], block: gemm90Threads(h), shared: gemm90SharedBytes(h),
      args: [y, map(xh, 'T', 'x'), map(w, outDim, 'w'), ...sizes] }, n);
  };

  /** Y[T, outDim] (+)= X[T, inDim] · Wᵀ in f32 on CUDA cores (gemm-f32.ts: gemm.ts's 'xwt' contract, parameters and grid). */
  const gemmF32Xwt = (y: Arg, x: Arg, w: Arg, epilogue: GemmF32Epilogue, outDim: number, inDim: number, n: Node) => {
    const gs = { ...GEMM_F32_DEFAULT, epilogue };
    launch({ kernel: use(gemmF32(gs)), grid: [Math.ceil(outDim / gs.bn), { tilesOfT: gs.bm }, 1], block: gemmF32Threads(gs),
      args: [y, x, w, { kind: 'T' }, { kind: 'u32', value: outDim }, { kind: 'u32', value: inDim }] }, n);
  };

  const tokens = facts.tokenInput();
  const wdtype = (name: string): WeightDType => facts.weight(name).dtype;

  facts.nodes.forEach((n, i) => {
    if (skip.has(n.name) || bufOf.has(n.name)) return;
    const out = () => {
      const id = newBuf(width(n), n.type.dtype === 'i32' ? 'i32' : 'f32');
      bufOf.set(n.name, id);
      return { kind: 'buf', id } as Arg;
    };
    switch (n.op) {
      case 'embedding': {
        const w = inputs.weight(n.inputs[0]!, n);
        if (n.inputs[1]!.name !== tokens.name) fail(n, 'embedding must read the token input');
        launch({ kernel: use(embedding(w.dtype, width(n))), grid: [1, 'T', 1], block: 256, args: [out(), w.arg, { kind: 'tokens' }] }, n);
        return;
      }
      case 'rmsnorm': {
        const w = inputs.weight(n.inputs[1]!, n);
        const x = buf(n.inputs[0]!, n);
        // in the prefill, straight in 16 bits when only GEMMs read it (the Q/K/V, gate/up and logits inputs)
        const half = prefill ? gemmOnlyInput(n) : undefined;
        const y = half ? halfOut(n, half) : out();
        launch({ kernel: use(rmsnorm(w.dtype, width(n), n.attrs.eps as number, half)), grid: [1, 'T', 1], block: rmsnormThreads(width(n)), args: [y, x, w.arg] }, n);
        return;
      }
      case 'linear':
      case 'logits': {
        const w = inputs.weight(n.inputs[1]!, n);
        if (prefill && (w.dtype === 'bf16' || w.dtype === 'f16')) {
          // Y[T, out] (+)= X[T, in] · Wᵀ on tensor cores; W is [out, in], rows pad8(in), as gemm.ts reads it
          const xh = gemmInput(n.inputs[0]!, w.dtype, n);
          const residual = accumulateInto(i, n);
          prefillGemm(residual ?? out(), xh, w.arg, w.dtype, residual ? 'accumulate' : 'store', width(n), widthOf(n.inputs[0]!), n);
          return;
        }
        if (f32Prefill && w.dtype === 'f32') {
          // Y[T, out] (+)= X[T, in] · Wᵀ on CUDA cores, reading the f32 activations as they are
          const x = buf(n.inputs[0]!, n);
          const residual = accumulateInto(i, n);
          gemmF32Xwt(residual ?? out(), x, w.arg, residual ? 'accumulate' : 'store', width(n), widthOf(n.inputs[0]!), n);
          return;
        }
        const { x, norm } = gemvInput(n.inputs[0]!, n);
        const nspec = norm && { dtype: norm.dtype, eps: norm.eps };
        const inDim = widthOf(n.inputs[0]!);
        const residual = accumulateInto(i, n);
        const spec: GemvSpec = { dtype: w.dtype, inDim, outDim: width(n), epilogue: residual ? 'accumulate' : 'store', norm: nspec, ...gemvLayout(inDim, width(n)) };
        let y: Arg;
        if (residual) {
          y = residual;
        } else {
          // Later linears reading the same x (Q/K/V) join this launch: one kernel, not three.
          const group = n.op === 'linear' && !prefill ? facts.nodes.filter((m, j) => j > i && m.op === 'linear' && !skip.has(m.name) && m.inputs[0]!.kind === 'value' && m.inputs[0]!.name === n.inputs[0]!.name
            && m.inputs[1]!.kind === 'param' && wdtype(m.inputs[1]!.name) === w.dtype && !foldedAdd(j, m.name)) : [];
          if (group.length > 0) {
            const members = [n, ...group];
            // Q/K/V of one attention, all in this group: RoPE and the cache append happen here.
            const attn = qkvOf.get(n.name)?.attention;
            const fuse = attn && ['q', 'k', 'v'].every((role) => members.some((m) => qkvOf.get(m.name)?.attention === attn && qkvOf.get(m.name)?.role === role));
            const roped = fuse ? ropeOf.get(attn!.name)! : undefined;
            const roleOf = (m: Node) => (fuse && qkvOf.get(m.name)?.attention === attn ? qkvOf.get(m.name)!.role : undefined);
            const specs = members.map((m): GemvSpec => {
              const role = roleOf(m);
              return {
                dtype: w.dtype, inDim, outDim: width(m), epilogue: 'store', norm: nspec,
                ...(role === 'q' || role === 'k' ? { rope: { hd: roped!.q.attrs.head_dim as number, style: roped!.q.attrs.style as 'half' | 'interleaved' } } : {}),
                ...(role === 'k' || role === 'v' ? { toCache: true, cacheDtype: kvDtype } : {}),
              };
            });
            const args: Arg[] = [x, ...(norm ? [norm.arg] : [])];
            for (const m of members) {
              const role = roleOf(m);
              let y: Arg;
              if (role === 'k' || role === 'v') {
                y = { kind: 'kv', layer: attn!.attrs.layer as number, which: role };
                skip.add(m.name); // no buffer: only the cache is read later
              } else {
                const id = newBuf(width(m));
                bufOf.set(m.name, id);
                y = { kind: 'buf', id };
              }
              args.push(y, inputs.weight(m.inputs[1]!, m).arg);
            }
            if (fuse) {
              args.push({ kind: 'const', name: inputs.ropeTable(roped!.q) }, { kind: 'pos' });
              qkvFused.add(attn!.name);
            }
            launch({ kernel: use(gemvMulti(specs)), grid: [gemvMultiGrid(specs), 'T', 1], block: 256, args }, n);
            return;
          }
          y = out();
        }
        const select = residual ? undefined : topkOf.get(n.name);
        if (select && spec.epilogue === 'store') {
          // MoC's gate: the row's last block runs Top-K over G (gate-topk.ts); the select's idx lives here
          const id = newBuf(width(select), 'i32');
          bufOf.set(select.name, id);
          skip.add(select.name);
          const slot = tauSlotOf.get(select.name);
          const kKeep = select.attrs.k as number;
          launch({ kernel: use(gemvTopk(spec, kKeep, { tau: slot !== undefined })), grid: gemvGrid(spec, 0).map((d, j) => (j === 1 ? 'T' : d)) as Launch['grid'], block: 256,
            args: [y, x, w.arg, ...(norm ? [norm.arg] : []), { kind: 'buf', id }, ...(slot === undefined ? [] : [{ kind: 'tau', slot } as Arg]), countersArg('topk', gateTopkCounters(maxRows))] }, n);
          return;
        }
        launch({ kernel: use(gemv(spec)), grid: gemvGrid(spec, 0).map((d, j) => (j === 1 ? 'T' : d)) as Launch['grid'], block: 256, args: [y, x, w.arg, ...(norm ? [norm.arg] : [])] }, n);
        return;
      }
      case 'rope': {
        const x = n.inputs[0]!;
        if (x.kind !== 'value' || useCount(x.name) !== 1) fail(n, 'rope must be the only reader of its input (it rotates in place)');
        const id = bufOf.get(x.name)!;
        bufOf.set(n.name, id);
        const heads = n.attrs.heads as number, hd = n.attrs.head_dim as number;
        launch({ kernel: use(rope(heads, hd, n.attrs.style as 'half' | 'interleaved')), grid: [Math.ceil((heads * hd) / 2 / ROPE_THREADS), 'T', 1], block: ROPE_THREADS, args: [{ kind: 'buf', id }, { kind: 'const', name: inputs.ropeTable(n) }, { kind: 'pos' }] }, n);
        return;
      }
      case 'attention': {
        const layer = n.attrs.layer as number, heads = n.attrs.heads as number, kvh = n.attrs.kv_heads as number, hd = n.attrs.head_dim as number;
        const kCache: Arg = { kind: 'kv', layer, which: 'k' }, vCache: Arg = { kind: 'kv', layer, which: 'v' };
        const roped = ropeOf.get(n.name);
        let q: Arg;
        if (roped && qkvFused.has(n.name)) {
          q = buf(roped.q.inputs[0]!, n); // rotated, and k/v appended, by the Q/K/V GEMV
        } else if (roped) {
          q = buf(roped.q.inputs[0]!, n);
          const [k, v] = [buf(roped.k.inputs[0]!, n), buf(n.inputs[2]!, n)];
          launch({ kernel: use(ropeStore(heads, kvh, hd, roped.q.attrs.style as 'half' | 'interleaved', kvDtype)), grid: [ropeStoreGrid(heads, kvh, hd), 'T', 1], block: ROPE_THREADS,
            args: [q, k, v, kCache, vCache, { kind: 'const', name: inputs.ropeTable(roped.q) }, { kind: 'pos' }] }, n);
        } else {
          const [q0, k, v] = n.inputs.map((o) => buf(o, n)) as [Arg, Arg, Arg];
          q = q0;
          launch({ kernel: use(kvStore(kvh * hd, kvDtype)), grid: [kvStoreGrid(kvh * hd), 'T', 1], block: 128, args: [kCache, vCache, k, v, { kind: 'pos' }] }, n);
        }
        // (not in the f32 prefill: flash attention rounds q, P, K and V to 16 bits; it takes the split attention below)
        if (prefill && !f32Prefill && hd % 8 === 0 && hd <= 128) {
          // many queries: FlashAttention-2 on tensor cores, one CTA per 64 query rows and head (flash-attention.ts)
          // over an f32 cache, the weights' 16-bit type where they have one (kvCacheDtype 'auto'): f16 rounds finer
          // Its output straight in bf16 when only GEMMs over bf16 weights read it (the O projection): it is
          // then the 16-bit copy gemmInput would cast, one launch fewer a layer.
          const bf16Out = gemmOnlyInput(n) === 'bf16';
          const fa: FlashAttentionSpec = { heads, kvHeads: kvh, hd, cache: kvDtype, out: bf16Out ? 'bf16' : 'f32', lse: false, ...(kvDtype === 'f32' && kvCacheDtype(facts, 'auto') === 'f16' ? { operands: 'f16' as const } : {}) };
          const o = bf16Out ? halfOut(n, 'bf16') : out();
          launch({ kernel: use(flashAttention(fa)), grid: [{ tilesOfT: FA_ROWS }, heads, 1], block: FA_THREADS, args: [o, q, kCache, vCache, { kind: 'pos' }, { kind: 'T' }] }, n);
          return;
        }
        if (options.decodeAttention === 'single' && kvDtype === 'f32') {
          launch({ kernel: use(attention(heads, kvh, hd)), grid: [heads, 'T', 1], block: 32 * ATTN_WARPS, args: [out(), q, kCache, vCache, { kind: 'pos' }] }, n);
          return;
        }
        // flash-decoding: partial softmax per chunk of cached positions, then their merge (decode-attention.ts)
        const merge = options.decodeMerge === 'last-block';
        const da: DecodeAttentionSpec = { heads, kvHeads: kvh, hd, cache: kvDtype, capacity: spec.maxSeqLen, ...(options.decodeBlocks ? { blocks: options.decodeBlocks } : {}), ...(merge ? { merge: 'last-block' as const } : {}), ...(options.decodeEarly ? { early: true } : {}) };
        const splits = splitLayout(da).splits;
        const part: Arg = { kind: 'buf', id: newBuf(partialWidth(hd), 'f32', heads * splits) };
        if (merge) {
          // One set of heads × capacity counters serves every layer (and both programs): a call has
          // at most capacity rows, the layers' launches run one after another on the model's stream
          // (with programmatic launch too: a kernel reads nothing before griddepcontrol.wait, which
          // waits for the earlier kernels to complete), and each launch leaves them all at zero.
          launch({ kernel: use(attentionSplit(da)), grid: [heads, splits, 'T'], block: SPLIT_THREADS, args: [out(), part, q, kCache, vCache, { kind: 'pos' }, countersArg('attention', heads * spec.maxSeqLen)] }, n);
          return;
        }
        launch({ kernel: use(attentionSplit(da)), grid: [heads, splits, 'T'], block: SPLIT_THREADS, args: [part, q, kCache, vCache, { kind: 'pos' }] }, n);
        launch({ kernel: use(attentionCombine(da)), grid: [heads, 'T', 1], block: combineThreads(hd), args: [out(), part, { kind: 'pos' }] }, n);
        return;
      }
      case 'mul': {
        const pair = ffnPairOf.get(n.name);
        if (pair) {
          const wg = inputs.weight(pair.gate.inputs[1]!, n), wu = inputs.weight(pair.up.inputs[1]!, n);
          const { x, norm } = gemvInput(pair.gate.inputs[0]!, n);
          // one row of each matrix a warp: 2048×5464 bf16 measured 18.2 µs, 19.7 with two (ffn-decode)
          const spec: GemvSpec = { dtype: wg.dtype, inDim: widthOf(pair.gate.inputs[0]!), outDim: width(n), epilogue: 'silu_pair', norm: norm && { dtype: norm.dtype, eps: norm.eps }, rowsPerWarp: 1 };
          launch({ kernel: use(gemv(spec)), grid: gemvGrid(spec, 0).map((d, j) => (j === 1 ? 'T' : d)) as Launch['grid'], block: 256, args: [out(), x, wg.arg, wu.arg, ...(norm ? [norm.arg] : [])] }, n);
          return;
        }
        const moc = mocUpOf.get(n.name);
        if (moc) {
          const w = inputs.weight(moc.up.inputs[1]!, n);
          const { x, norm } = gemvInput(moc.up.inputs[0]!, n);
          const idx = buf(moc.up.inputs[2]!, n), gate = buf(moc.gather.inputs[0]!, n);
          const spec: GemvSpec = {
            dtype: w.dtype, inDim: widthOf(moc.up.inputs[0]!), outDim: width(n),
            gather: { wRows: facts.weight(moc.up.inputs[1]!.name).rows, gateWidth: widthOf(moc.gather.inputs[0]!) }, epilogue: 'silu_gate',
            norm: norm && { dtype: norm.dtype, eps: norm.eps },
            // one kept channel a warp: K is small, so this doubles the blocks in flight (measured 6.4 µs with 2)
            rowsPerWarp: 1, unroll: 8,
          };
          launch({ kernel: use(gemv(spec)), grid: gemvGrid(spec, 0).map((d, j) => (j === 1 ? 'T' : d)) as Launch['grid'], block: 256, args: [out(), x, w.arg, idx, gate, ...(norm ? [norm.arg] : [])] }, n);
          return;
        }
        const sm = siluMulOf.get(n.name);
        if (!sm) return fail(n, 'only silu(g)·u is supported');
        // in the prefill, straight in 16 bits when only the down GEMM reads it
        const half = prefill ? gemmOnlyInput(n) : undefined;
        const z = half ? halfOut(n, half) : out();
        launch({ kernel: use(elementwise('silu_mul', pad8(width(n)), half)), grid: [Math.ceil(pad8(width(n)) / 256), 'T', 1], block: 256, args: [z, buf(sm.silu.inputs[0]!, n), buf(sm.other, n)] }, n);
        return;
      }
      case 'add': {
        const [a, b] = n.inputs.map((o) => buf(o, n)) as [Arg, Arg];
        // In place when the left operand dies here.
        const aName = n.inputs[0]!.name;
        const inPlace = n.inputs[0]!.kind === 'value' && uses(aName).every((u) => u <= i);
        let z: Arg;
        if (inPlace) {
          z = a;
          bufOf.set(n.name, (a as { id: number }).id);
        } else z = out();
        launch({ kernel: use(elementwise('add', pad8(width(n)))), grid: [Math.ceil(pad8(width(n)) / 256), 'T', 1], block: 256, args: [z, a, b] }, n);
        return;
      }
      case 'transpose':
        if (n.inputs[0]!.kind !== 'param') fail(n, 'only transposes of weights are supported (computed on the host)');
        return; // read through weightArg by its consumer
      case 'moc_select': {
        const f = widthOf(n.inputs[0]!);
        const g0 = buf(n.inputs[0]!, n);
        if (n.attrs.k !== undefined) {
          const slot = tauSlotOf.get(n.name);
          const tau: Arg[] = slot === undefined ? [] : [{ kind: 'tau', slot }];
          launch({ kernel: use(topkSelect(f, n.attrs.k as number, { tau: slot !== undefined })), grid: [1, 'T', 1], block: selectShape(f).threads, args: [out(), g0, ...tau] }, n);
        } else {
          const a = n.attrs.a as number, b = n.attrs.b as number;
          if (b > 64) fail(n, `pattern ${a}:${b}: the cuda target selects within blocks of at most 64 channels`);
          launch({ kernel: use(patternSelect(f, a, b)), grid: [Math.ceil(Math.ceil(f / b) / 128), 'T', 1], block: 128, args: [out(), g0] }, n);
        }
        return;
      }
      case 'moc_down': {
        const d = width(n);
        const kKeep = widthOf(n.inputs[0]!);
        const w = inputs.weight(n.inputs[1]!, n);
        const idx = buf(n.inputs[2]!, n);
        const fused = mocDownOf.get(n.name);
        if (prefill && fused && (w.dtype === 'bf16' || w.dtype === 'f16') && inputs.weight(fused.up.inputs[1]!, n).dtype === w.dtype) {
          // Many tokens: the same sums as dense products on tensor cores. U = X·W_upᵀ for every channel,
          // z = SiLU(G)·U at each row's kept channels and 0 elsewhere, y (+)= z·W_downᵀ ('xw': W_downᵀ
          // is stored [F, d]). Reading each kept row once per token (the decode kernels) costs far more
          // than the F/K times more multiplies here.
          const wu = inputs.weight(fused.up.inputs[1]!, n);
          const f = facts.weight(fused.up.inputs[1]!.name).rows;
          const x = fused.up.inputs[0]!;
          const u = newBuf(f);
          prefillGemm({ kind: 'buf', id: u }, gemmInput(x, w.dtype, n), wu.arg, w.dtype, 'store', f, widthOf(x), n);
          const z = newBuf(f, w.dtype);
          steps.push({ kind: 'zero', buf: z, node: n.name });
          launch({ kernel: use(mocScatterSilu(w.dtype, f, kKeep)), grid: [Math.ceil(kKeep / SCATTER_THREADS), 'T', 1], block: SCATTER_THREADS,
            args: [{ kind: 'buf', id: z }, buf(fused.gather.inputs[0]!, n), { kind: 'buf', id: u }, idx] }, n);
          const residual = accumulateInto(i, n);
          prefillGemm(residual ?? out(), { kind: 'buf', id: z }, w.arg, w.dtype, residual ? 'accumulate' : 'store', d, f, n, 'xw');
          return;
        }
        // Else (decode steps, and the f32 prefill) the kept channels' rows per token: in the f32 prefill
        // too, since gemm-f32.ts has only the 'xwt' layout (the down GEMM above is 'xw'), and these
        // kernels compute in f32 already (checked against the HF references with T rows).
        /** n's own output buffer, zeroed first: the reduction adds into y. */
        const zeroedOut = (): Arg => {
          const y = out();
          steps.push({ kind: 'zero', buf: (y as { id: number }).id, node: n.name });
          return y;
        };
        let partial: number, slices: number;
        if (fused) {
          // one launch from the selected channels to per-block partial sums of the down projection
          const wu = inputs.weight(fused.up.inputs[1]!, n);
          if (wu.dtype !== w.dtype) fail(n, 'W_up and W_down must have the same dtype');
          const { x, norm } = gemvInput(fused.up.inputs[0]!, n);
          const f = facts.weight(fused.up.inputs[1]!.name).rows;
          const split = upDownSplit(kKeep);
          slices = split.blocks;
          partial = newBuf(d, 'f32', slices);
          const slot = tauSlotOf.get(producer(n.inputs[2])?.name ?? '');
          const tail = options.mocMerge === 'tail';
          const kernel = mocUpDown({ dtype: w.dtype, d, f, kKeep, norm: norm && { dtype: norm.dtype, eps: norm.eps }, warm: slot !== undefined, ...(tail ? { merge: 'tail' as const } : {}) });
          const args: Arg[] = [{ kind: 'buf', id: partial }, x, wu.arg, w.arg, idx, buf(fused.gather.inputs[0]!, n), ...(norm ? [norm.arg] : []), ...(slot === undefined ? [] : [{ kind: 'tau', slot } as Arg])];
          if (tail) {
            // the row's last blocks add the partials into y: no reduce launch. One set of counters
            // serves every layer and both programs (each launch leaves them at zero; see mocUpDown).
            const y = accumulateInto(i, n) ?? zeroedOut();
            launch({ kernel: use(kernel), grid: [split.blocks, 'T', 1], block: 256, args: [y, ...args, countersArg('moc', mocTailCounters(spec.maxSeqLen))] }, n);
            return;
          }
          launch({ kernel: use(kernel), grid: [split.blocks, 'T', 1], block: 256, args }, n);
        } else {
          const z = buf(n.inputs[0]!, n);
          slices = downSplit(kKeep).slices;
          partial = newBuf(d, 'f32', slices);
          launch({ kernel: use(downPartial(w.dtype, d, kKeep)), grid: [Math.ceil(pad8(d) / 8 / DOWN_THREADS), slices, 'T'], block: DOWN_THREADS, args: [{ kind: 'buf', id: partial }, z, w.arg, idx] }, n);
        }
        const y = accumulateInto(i, n) ?? zeroedOut();
        launch({ kernel: use(downReduce(d, slices)), grid: [reduceGrid(d), 'T', 1], block: REDUCE_THREADS, args: [y, { kind: 'buf', id: partial }] }, n);
        return;
      }
      default:
        fail(n, n.op === 'silu' || n.op === 'moc_gather' || n.op === 'moc_up' ? 'only as part of SiLU·mul or the MoC up projection' : 'no CUDA kernel for this op');
    }
  });

  const logitsName = g.outputs[0]!;
  const logitsBuf = bufOf.get(logitsName);
  if (logitsBuf === undefined) throw new UserError('cuda target: the graph output has no buffer');
  const plan = planBuffers(vbufs, steps);
  const logits = plan.map.get(logitsBuf)!;
  const greedyTail: Step[] = [
    { kind: 'launch', kernel: use(argmax(spec.vocabSize)), grid: [1, 1, 1], block: 1024, args: [{ kind: 'tokens' }, { kind: 'buf', id: logits }, { kind: 'history' }, { kind: 'pos' }], node: 'argmax' },
    { kind: 'launch', kernel: use(posAdvance()), grid: [1, 1, 1], block: 1, args: [{ kind: 'pos' }, { kind: 'T' }], node: 'pos_advance' },
  ];
  const program: Program = {
    kernels, ...(kernelsSm90a.size > 0 ? { kernelsSm90a } : {}), steps: plan.steps, greedyTail, buffers: plan.buffers, weights: [...inputs.weights.keys()], consts: [...inputs.consts.values()],
    kvCache: { layers: spec.nLayers, width: spec.nKvHeads * spec.headDim, capacity: spec.maxSeqLen, dtype: kvDtype },
    selectHints: tauSlotOf.size,
    ...(Object.keys(counters).length > 0 ? { counters } : {}),
    logits: { buf: logits, vocab: spec.vocabSize },
  };
  return program;
}

/** Physical buffers for the program's virtual ones (targets/buffer-plan.ts), and the steps remapped to them. */
function planBuffers(vbufs: VBuf[], steps: Step[]) {
  const touched = (s: Step) => (s.kind === 'zero' ? [s.buf] : bufArgIds(s.args));
  const plan = planBufferIds(vbufs.map((v) => ({ ...v, key: `${v.dtype}:${v.width}:${v.rowsPerToken}` })), steps.length, (i) => touched(steps[i]!));
  const buffers: BufferDecl[] = plan.buffers.map(({ id, width, rowsPerToken, dtype }) => ({ id, width, rowsPerToken, dtype }));
  const map = plan.map;
  const remap = (ss: Step[]): Step[] => ss.map((s) => (s.kind === 'zero' ? { ...s, buf: map.get(s.buf)! } : { ...s, args: remapBufArgs(s.args, map) }));
  return { buffers, map, steps: remap(steps) };
}
