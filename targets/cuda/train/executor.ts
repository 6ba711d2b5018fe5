// The CUDA training executor: runs a training graph (driver/training-graph.ts: forward, loss,
// backward, checkpoint policy) node by node in the graph's order, as targets/ref/train.ts does on the
// ref target, with generated PTX kernels (the op table, ops.ts): every arena value f32; the GEMMs f32 SIMT,
// or on bf16 tensor cores with options.matmul 'bf16' (ops-bf16.ts: wgmma on Hopper, else mma.sync).
//
// The memory plan executed (issue 18): passes/memory-plan.ts planMemory, in the device's bytes
// (values.ts: padded rows), gives every value (graph inputs, activations, weight gradients) an offset
// in ONE arena; the executor allocates that arena once and each value lives at its offset — two
// values whose lifetimes overlap never share bytes (checkArena), so a checkpoint policy that saves
// less really holds less; the one exception is by design: a node that consumes an input (matmul_acc,
// rmsnorm_grad_acc: passes/matmul-accumulate.ts) writes its output over that input's bytes (values.ts checkInPlace). Outside the arena: the params (uploaded once, in their padded layout: f32,
// or bf16 for the weight matrices an optimizerState 'bf16-params' run stores bf16), the
// RoPE tables, and one scratch buffer as large as the largest node's scratch (ops.ts), which a node
// uses only during its own launches.
//
// Everything is prepared once: pointers, grids and params of every launch; run() uploads the inputs,
// issues the launches in order and downloads the loss and the gradients. A training step that keeps
// everything on the device (optimizer.ts) calls launch() instead, which downloads nothing, and reads
// the loss alone (loss()); the optimizer finds the gradients and the params by paramTensor/valueTensor.
//
// Padding: the columns between a row's width and pad8(width) are never written by these kernels,
// only read by the f32 GEMM (gemm-f32.ts) and the bf16 one (ops-bf16.ts), which multiply them by
// zeros (the weights' padding, or zero-filled rows). So
// the arena is zeroed once and afterwards holds finite numbers only (what earlier values left there).
import type { Graph, Node, TensorType } from '../../../src/ir/types.js';
import { checkArena, planMemory, type MemoryPlan } from '../../../passes/memory-plan.js';
import { MODEL_INPUTS } from '../../../src/model/graph-inputs.js';
import { ropeTableConst, ropeTableImage } from '../../lowering/rope-table.js';
import type { Kernel } from '../ptx/dense.js';
import { ptrAdd, type DevPtr, type TrainDevice } from './device.js';
import { trainOpOf, type Launch, type OpContext } from './ops.js';
import type { TrainMatmul, TrainMocMatmul } from './ops-bf16.js';
import { deviceBytes, padRows, rowsAndWidth, unpadRows } from './values.js';
import { pad8 } from '../ptx/layout.js';
import { adamwMomentBytes, adamwStoresBf16Params, type AdamWStateDType } from '../../../src/train/adamw.js';
import { gradOutputs } from '../../../passes/autodiff.js';
import { bf16GemmOperands, GEMM_OPERANDS } from '../../../passes/bf16-gemm-operands.js';
import { matmulAccumulate } from '../../../passes/matmul-accumulate.js';
import { bf16Producers } from '../../../passes/bf16-producers.js';
import { bf16ParamsInMode } from '../../../src/train/bf16-params.js';
import { bf16ToF32, f32ToBf16 } from '../../../src/util/dtype.js';

export interface TrainingExecutorOptions {
  /** Rows of the RoPE tables: every position must be below it (default: the row count T). */
  maxPositions?: number;
  /** A 32-bit word the arena is filled with before each run (tests: a value no kernel writes). */
  poison?: number;
  /**
   * linear / logits / matmul / matmul_tn in f32 SIMT ('f32', default) or bf16 on tensor cores ('bf16',
   * ops-bf16.ts); 'bf16' also runs attention / attention_grad as flash attention (ops-attention-bf16.ts).
   */
  matmul?: TrainMatmul;
  /**
   * moc_up / moc_down / moc_rows_grad as f32 SIMT gathered products ('simt', default) or dense bf16
   * GEMMs around a scatter / gather ('dense-bf16', ops-moc-bf16.ts; refused unless matmul is 'bf16').
   */
  mocMatmul?: TrainMocMatmul;
  /**
   * The optimizer mode the params are stored for (src/train/adamw.ts; default 'f32'). 'bf16-params'
   * stores the params src/train/bf16-params.ts bf16StoredParams picks (the one rule) as bf16: 2 bytes
   * an element, setWeights rounds (RNE), weights() widens, and the bf16 GEMM entries read them
   * without a cast (ops-bf16.ts bf16Operand). It needs matmul 'bf16', and mocMatmul 'dense-bf16' for
   * a graph with MoC products (the SIMT kernels read f32 weights): refused otherwise.
   */
  optimizerState?: AdamWStateDType;
  /**
   * With matmul 'bf16': round each GEMM operand value to bf16 once for the GEMMs near each other that
   * read it (passes/bf16-gemm-operands.ts: explicit `cast` nodes, bf16 values in the arena) instead of
   * once per GEMM (default true; false: every GEMM casts its own operands, as before, for side-by-side
   * runs: MOCC_CUDA_TRAIN_CAST_ONCE=0 in bench/gpu/train.ts). Outputs are bit-identical either way.
   */
  castOnce?: boolean;
  /**
   * Fold each add of a matmul's product into that matmul's GEMM, and each add of rmsnorm_grad's dx
   * into that kernel's store (passes/matmul-accumulate.ts: matmul_acc, rmsnorm_grad_acc, the result
   * added where the other operand is stored, in place in the plan): one add launch and one [T, d]
   * buffer fewer each. Default: on with matmul 'bf16' (the GEMM's 'accumulate' epilogue), off with
   * 'f32' (true runs the f32 SIMT kernel's accumulate variant: how the interpreter checks the fold
   * end to end, as the bf16 GEMMs do not run there). false for side-by-side runs
   * (MOCC_CUDA_TRAIN_MATMUL_ACC=0). Outputs are bit-identical either way.
   */
  matmulAccumulate?: boolean;
  /**
   * With the shared casts (matmul 'bf16', castOnce): where only casts read a value and its producer
   * can write bf16 (src/ir/ops.ts BF16_OUTPUT_OPS), the producer writes it bf16 and the casts go
   * (passes/bf16-producers.ts; default true; false: MOCC_CUDA_TRAIN_BF16_PRODUCERS=0, for side-by-side
   * runs). Outputs are bit-identical either way.
   */
  bf16Producers?: boolean;
}

export interface TrainingStepResult {
  /** The graph's outputs by position, in the host layout: the loss f32[1], then one gradient per trainable param. */
  outputs: Float32Array[];
}

/** The options that shape the graph the executor runs (executorGraph). */
export type ExecutorGraphOptions = Pick<TrainingExecutorOptions, 'matmul' | 'castOnce' | 'bf16Producers' | 'matmulAccumulate'>;

/**
 * The graph the executor runs for g under `opts`: g itself; with matmul 'bf16' (unless castOnce is
 * false) its GEMM operands' casts made explicit and shared (passes/bf16-gemm-operands.ts); then
 * (unless bf16Producers is false) the casts of values only casts read folded into their producers
 * (passes/bf16-producers.ts; nothing to fold without the explicit casts); then, where
 * matmulAccumulate is on (its default: with 'bf16'), its adds of matmul products folded into the
 * GEMMs (passes/matmul-accumulate.ts).
 */
export function executorGraph(g: Graph, opts: ExecutorGraphOptions = {}): Graph {
  const shared = opts.matmul === 'bf16' && opts.castOnce !== false ? bf16GemmOperands.run(g) : g;
  const produced = opts.bf16Producers !== false ? bf16Producers.run(shared) : shared;
  return (opts.matmulAccumulate ?? opts.matmul === 'bf16') ? matmulAccumulate.run(produced) : produced;
}

/** The memory plan the executor lays its arena out by, for g at `rows` rows under `opts` (executorGraph; device bytes: padded rows). */
export function executorPlan(g: Graph, rows: number, opts: ExecutorGraphOptions = {}): MemoryPlan {
  return loweredPlan(executorGraph(g, opts), rows);
}

/**
 * Only the bf16 GEMMs read bf16 values (every other kernel reads f32): a bf16 value anywhere else is
 * an error naming the node, before anything is allocated.
 */
function checkBf16Reads(g: Graph, matmul: TrainMatmul): void {
  const bf16 = new Set(g.nodes.flatMap((n) => n.outputs.filter((o) => o.type.dtype === 'bf16').map((o) => o.name)));
  for (const n of g.nodes) {
    n.inputs.forEach((o, slot) => {
      if (o.kind !== 'value' || !bf16.has(o.name) || (matmul === 'bf16' && GEMM_OPERANDS[n.op]?.includes(slot))) return;
      throw new Error(`training node %${n.outputs[0]?.name ?? '?'} (${n.op}) reads the bf16 value %${o.name} as its input ${slot}: only the bf16 GEMMs' operands may be bf16`);
    });
  }
}

/** The plan of a graph executorGraph already gave. */
const loweredPlan = (lowered: Graph, rows: number): MemoryPlan => planMemory(lowered, { T: rows }, deviceBytes);

/**
 * Device bytes of a param: f32 master weights whatever the checkpoint's dtype (a bf16 checkpoint's
 * params are typed bf16 in the graph; training holds, uploads and updates them as f32, as the ref
 * target does); `bf16`: a param stored bf16 ('bf16-params', src/train/bf16-params.ts bf16ParamsInMode), 2 bytes an element.
 */
export function paramDeviceBytes(type: TensorType, dims: Record<string, number>, bf16 = false): number {
  return deviceBytes({ ...type, dtype: bf16 ? 'bf16' : 'f32' }, dims);
}

/**
 * Device bytes of g's params (paramDeviceBytes, bf16 ones by src/train/bf16-params.ts bf16ParamsInMode) and of AdamW's m and v
 * (one element per padded param element of each trainable param, adamwMomentBytes of the mode: bf16 in
 * both bf16 modes) in optimizer mode `mode`: what the executor and the optimizer allocate for them, the
 * planned figure of bench/gpu/train.ts and bench/train-plan-1b.ts.
 */
export function trainingStateBytes(g: Graph, dims: Record<string, number>, mode: AdamWStateDType = 'f32'): { params: number; moments: number } {
  const bf16 = bf16ParamsInMode(g, mode), trainable = new Set(gradOutputs(g).map(({ param }) => param));
  const params = g.params.reduce((s, p) => s + paramDeviceBytes(p.type, dims, bf16.has(p.name)), 0);
  const elements = g.params.filter((p) => trainable.has(p.name)).reduce((s, p) => s + paramDeviceBytes(p.type, dims) / 4, 0);
  return { params, moments: 2 * adamwMomentBytes(mode) * elements };
}

/**
 * Why these options cannot run 'bf16-params' on g (a kernel would read a bf16 param as f32), naming the
 * switch to set; undefined when they can. The executor throws it; the cuda gradient target's check
 * (driver/gradient-backend.ts) raises it as a UserError before anything is built.
 */
export function bf16ParamsRefusal(g: Graph, opts: TrainingExecutorOptions): string | undefined {
  if (!adamwStoresBf16Params(opts.optimizerState)) return undefined;
  const how = "optimizer state 'bf16-params' stores the weight matrices bf16, which only the bf16 tensor-core GEMMs read";
  if ((opts.matmul ?? 'f32') !== 'bf16') return `${how}: pass matmul 'bf16' (--gemm bf16, or MOCC_CUDA_TRAIN_MATMUL=bf16), not '${opts.matmul ?? 'f32'}'`;
  if (g.nodes.some((n) => n.op === 'moc_up' || n.op === 'moc_down') && (opts.mocMatmul ?? 'simt') !== 'dense-bf16') {
    return `${how}: this MoC graph needs mocMatmul 'dense-bf16' (--gemm bf16, or MOCC_CUDA_TRAIN_MOC=dense), not '${opts.mocMatmul ?? 'simt'}'`;
  }
  return undefined;
}

/** A step's graph inputs by name: i32 (tokens, pos, seq, targets) or f32 (a distillation's teacher logits), host layout. */
export type StepValues = Readonly<Record<string, Int32Array | Float32Array>>;

/** A value's device buffer: `rows` rows of `width` elements at a stride of pad8(width) (values.ts). */
export interface DeviceTensor {
  ptr: DevPtr;
  rows: number;
  width: number;
}

/** A param's device buffer, with its element type: f32, or bf16 for those src/train/bf16-params.ts bf16ParamsInMode names. */
export interface ParamTensor extends DeviceTensor {
  dtype: 'f32' | 'bf16';
}

export class CudaTrainingExecutor {
  /** The graph run: executorGraph of the one given (its params, inputs and outputs are the given graph's). */
  readonly g: Graph;
  readonly plan: MemoryPlan;
  private readonly types = new Map<string, TensorType>();
  private readonly params = new Map<string, DevPtr>();
  private readonly tables = new Map<string, DevPtr>();
  private readonly arena: DevPtr;
  private readonly scratch: DevPtr;
  /** Bytes of the one scratch buffer: the largest node's scratch (ops.ts scratchBytes). */
  readonly scratchBytes: number;
  private readonly launches: Launch[];
  private readonly dims: Record<string, number>;
  private readonly maxPositions: number;
  /** The params stored bf16 (src/train/bf16-params.ts bf16ParamsInMode of the optimizerState option; empty unless 'bf16-params'). */
  readonly bf16Params: ReadonlySet<string>;
  /** The optimizer mode the params are stored for (TrainingExecutorOptions.optimizerState). */
  readonly optimizerState: AdamWStateDType;

  /**
   * Prepares g for `rows` rows (T). `weights` holds every param in its own layout (as
   * runTrainingGraph takes them); they are uploaded once (setWeights re-uploads).
   */
  constructor(graph: Graph, weights: ReadonlyMap<string, Float32Array>, readonly rows: number, readonly dev: TrainDevice, private readonly opts: TrainingExecutorOptions = {}) {
    const g = (this.g = executorGraph(graph, opts));
    const ops = g.nodes.map((n) => trainOpOf(n, opts.matmul, opts.mocMatmul)); // refuses an op without kernels before anything is allocated
    checkBf16Reads(g, opts.matmul ?? 'f32');
    g.nodes.forEach((n, i) => {
      if (n.outputs.some((o) => o.type.dtype === 'bf16') && !ops[i]!.bf16Output) throw new Error(`training node %${n.outputs[0]!.name} (${n.op}) writes bf16, which its CUDA kernels do not (ops.ts TrainOp.bf16Output)`);
    });
    const refusal = bf16ParamsRefusal(g, opts);
    if (refusal) throw new Error(refusal);
    this.optimizerState = opts.optimizerState ?? 'f32';
    this.bf16Params = bf16ParamsInMode(g, this.optimizerState);
    this.dims = { T: rows };
    this.maxPositions = opts.maxPositions ?? Math.max(1, rows);
    for (const i of g.inputs) this.types.set(i.name, i.type);
    for (const p of g.params) this.types.set(`@${p.name}`, p.type);
    for (const n of g.nodes) for (const o of n.outputs) this.types.set(o.name, o.type);
    this.plan = loweredPlan(g, rows);
    checkArena(this.plan);

    for (const p of g.params) this.params.set(p.name, dev.alloc(paramDeviceBytes(p.type, this.dims, this.bf16Params.has(p.name))));
    this.setWeights(weights);
    for (const n of g.nodes) {
      if (n.op !== 'rope' && n.op !== 'rope_grad') continue;
      const c = ropeTableConst({ name: n.outputs[0]!.name, op: n.op, inputs: n.inputs, attrs: n.attrs, type: n.outputs[0]!.type });
      if (!this.tables.has(c.name)) {
        const image = ropeTableImage(c, this.maxPositions), t = dev.alloc(image.byteLength);
        dev.upload(t, image);
        this.tables.set(c.name, t);
      }
    }
    this.arena = dev.alloc(this.plan.arenaBytes);
    dev.fill(this.arena, Math.ceil(this.plan.arenaBytes / 4) * 4, 0);

    let scratch: DevPtr | undefined;
    const contexts = g.nodes.map((n) => this.context(n, () => scratch!));
    this.scratchBytes = Math.max(4, ...g.nodes.map((_, i) => ops[i]!.scratchBytes?.(contexts[i]!) ?? 0));
    this.scratch = scratch = dev.alloc(this.scratchBytes);
    this.launches = g.nodes.flatMap((_, i) => ops[i]!.launches(contexts[i]!));
  }

  /** Bytes of the one arena (the memory plan's arenaBytes in the device layout). */
  get arenaBytes(): number {
    return this.plan.arenaBytes;
  }

  /** The distinct kernels the prepared launches use (for assembling them ahead, e.g. with ptxas). */
  get kernels(): Kernel[] {
    return [...new Map(this.launches.map((l) => [l.kernel.name, l.kernel])).values()];
  }

  /** Uploads the params (padded rows; a bf16 param rounded to nearest even, as adamw.ts roundBf16); every trainable param must be given. */
  setWeights(weights: ReadonlyMap<string, Float32Array>): void {
    for (const p of this.g.params) {
      const w = weights.get(p.name);
      if (!w) throw new Error(`training graph ${this.g.name}: param @${p.name} not given`);
      const [rows, width] = rowsAndWidth(p.type, this.dims);
      if (w.length !== rows * width) throw new Error(`param @${p.name}: ${w.length} values for shape [${p.type.shape}]`);
      const padded = padRows(w, rows, width);
      this.dev.upload(this.params.get(p.name)!, this.bf16Params.has(p.name) ? Uint16Array.from(padded, f32ToBf16) : padded);
    }
  }

  /** One step: inputs by name (i32: tokens, pos, seq, targets; f32: teacher logits) → the loss and the gradients. */
  run(inputs: StepValues): TrainingStepResult {
    this.launch(inputs);
    return { outputs: this.outputs() };
  }

  /**
   * One step on the device: uploads the inputs and issues every launch; downloads nothing. The loss
   * and the gradients are then in the arena (loss(), outputs(), valueTensor) until the next launch.
   */
  launch(inputs: StepValues): void {
    if (this.opts.poison !== undefined) this.dev.fill(this.arena, Math.ceil(this.plan.arenaBytes / 4) * 4, this.opts.poison);
    for (const i of this.g.inputs) {
      const v = inputs[i.name];
      if (!v) throw new Error(`training graph ${this.g.name}: input %${i.name} not given`);
      const [rows, width] = rowsAndWidth(i.type, this.dims);
      if (!(v instanceof (i.type.dtype === 'f32' ? Float32Array : Int32Array))) throw new Error(`input %${i.name}: a ${v.constructor.name} for ${i.type.dtype} values`);
      if (v.length !== rows * width) throw new Error(`input %${i.name}: ${v.length} values for [${rows}, ${width}]`);
      if (v instanceof Int32Array) this.checkInput(i.name, v);
      this.dev.upload(this.valuePtr(i.name), padRows(v, rows, width));
    }
    for (const l of this.launches) this.dev.launch(l.kernel, l.grid, l.block, l.args, l); // a Launch carries its LaunchOptions
  }

  /** The last launch's loss (the graph's first output), downloaded: one f32. */
  loss(): number {
    return this.dev.download(this.valuePtr(this.g.outputs[0]!), new Float32Array(1))[0]!;
  }

  /** The last launch's outputs by position, downloaded, in the host layout: the loss f32[1], then one gradient per trainable param. */
  outputs(): Float32Array[] {
    return this.g.outputs.map((name) => this.download(this.valueTensor(name)));
  }

  /** The device buffer of param `name` (updated in place by an optimizer: setWeights and weights() see it). */
  paramTensor(name: string): ParamTensor {
    const ptr = this.params.get(name), t = this.types.get(`@${name}`);
    if (ptr === undefined || !t) throw new Error(`training graph ${this.g.name}: no param @${name}`);
    const [rows, width] = rowsAndWidth(t, this.dims);
    return { ptr, rows, width, dtype: this.bf16Params.has(name) ? 'bf16' : 'f32' };
  }

  /** The arena buffer of value `name` (a graph output such as a gradient, or an input), f32 or i32. */
  valueTensor(name: string): DeviceTensor {
    const t = this.types.get(name);
    if (!t) throw new Error(`training graph ${this.g.name}: no value %${name}`);
    const [rows, width] = rowsAndWidth(t, this.dims);
    return { ptr: this.valuePtr(name), rows, width };
  }

  /** Every param, downloaded, in its own (host) layout: what setWeights takes (a bf16 param widened to f32, exactly). */
  weights(): Map<string, Float32Array> {
    return new Map(this.g.params.map((p) => [p.name, this.download(this.paramTensor(p.name))]));
  }

  /** An f32 (or, dtype 'bf16', bf16 widened) device tensor in the host layout (padding dropped). */
  private download(x: DeviceTensor & { dtype?: 'f32' | 'bf16' }): Float32Array {
    const n = x.rows * pad8(x.width);
    const flat = x.dtype === 'bf16' ? Float32Array.from(this.dev.download(x.ptr, new Uint16Array(n)), bf16ToF32) : this.dev.download(x.ptr, new Float32Array(n));
    return unpadRows(flat, x.rows, x.width);
  }

  /** Frees every device buffer. */
  dispose(): void {
    for (const p of [...this.params.values(), ...this.tables.values(), this.arena, this.scratch]) this.dev.free(p);
  }

  /** What the kernels would read out of range, refused on the host (the ref kernels throw alike). */
  private checkInput(name: string, v: Int32Array): void {
    const bad = (what: string) => new Error(`input %${name}: ${what}`);
    if (name === MODEL_INPUTS.pos && this.tables.size && v.some((p) => p < 0 || p >= this.maxPositions)) throw bad(`a position outside 0..${this.maxPositions - 1} (the RoPE tables' rows: raise maxPositions)`);
    for (const n of this.g.nodes) {
      if (n.op !== 'embedding' || n.inputs[1]?.name !== name) continue;
      const V = this.dim(n.inputs[0]!.kind === 'param' ? `@${n.inputs[0]!.name}` : n.inputs[0]!.name, 0);
      if (v.some((t) => t < 0 || t >= V)) throw bad(`a token id outside the vocabulary (0..${V - 1})`);
    }
  }

  private valuePtr(name: string): DevPtr {
    const off = this.plan.offsets.get(name);
    if (off === undefined) throw new Error(`training graph ${this.g.name}: %${name} has no arena offset`);
    return ptrAdd(this.arena, off);
  }

  private dim(key: string, axis: number): number {
    const s = this.types.get(key)!.shape;
    const d = s[axis < 0 ? s.length + axis : axis]!;
    return typeof d === 'number' ? d : this.dims[d]!;
  }

  private context(n: Node, scratch: () => DevPtr): OpContext {
    const key = (i: number) => (n.inputs[i]!.kind === 'param' ? `@${n.inputs[i]!.name}` : n.inputs[i]!.name);
    return {
      node: n,
      T: this.rows,
      input: (i) => (n.inputs[i]!.kind === 'param' ? this.params.get(n.inputs[i]!.name)! : this.valuePtr(n.inputs[i]!.name)),
      // a bf16 param ('bf16-params'), or a cast's bf16 value (castOnce)
      bf16Input: (i) => (n.inputs[i]!.kind === 'param' ? this.bf16Params.has(n.inputs[i]!.name) : this.types.get(n.inputs[i]!.name)?.dtype === 'bf16'),
      output: (i) => this.valuePtr(n.outputs[i]!.name),
      inDim: (i, axis) => this.dim(key(i), axis),
      outDim: (i, axis) => this.dim(n.outputs[i]!.name, axis),
      scratch: (offset = 0) => ptrAdd(scratch(), offset),
      ropeTable: () => {
        const c = ropeTableConst({ name: n.outputs[0]!.name, op: n.op, inputs: n.inputs, attrs: n.attrs, type: n.outputs[0]!.type });
        return this.tables.get(c.name)!;
      },
      ...(this.dev.wgmma ? { wgmma: this.dev.wgmma } : {}),
    };
  }
}
