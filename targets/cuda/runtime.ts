// Runs a lowered program on the GPU: device constants, the KV cache, activation buffers per call
// size, launches on one stream, and a CUDA graph per decode step (captured once, replayed).
import type { ModelSession, RunnableModel } from '../target.js';
import type { ForwardOptions } from '../../src/model/runnable.js';
import type { Cuda, CudaFunction, CudaGraphExec, CudaStream, DevicePtr } from './driver.js';
import { packParams, type KernelParam } from './driver.js';
import { bufferElementBytes, counterLayout, gridDimFor, type Arg, type BufferDecl, type Program, type Step } from './program.js';
import { archFor, ptxModule, type CudaArch } from './ptx/builder.js';
import { gemm90TensorMap } from './ptx/gemm-sm90.js';
import { elemBytes, pad8 } from './ptx/layout.js';
import { constImage, weightImage } from '../lowering/device-image.js';

/** MOCC_CUDA_PDL=0 turns programmatic dependent launch off (it is on by default where the GPU has it). */
export const programmaticLaunchWanted = (): boolean => process.env.MOCC_CUDA_PDL !== '0';

interface Prepared {
  fn: CudaFunction | null;
  grid: [number, number, number];
  block: [number, number, number];
  params: Uint8Array;
  offsets: Uint32Array;
  shared: number;
  zero?: { ptr: DevicePtr; words: number };
}

/** Bytes of buffer `b` for a call of T tokens (rows padded to 8 elements). */
function bufferBytes(b: BufferDecl, T: number): number {
  return T * b.rowsPerToken * pad8(b.width) * bufferElementBytes(b);
}

/**
 * The activation buffers of calls of many tokens, kept between calls: allocated for the most rows a
 * call has needed (grown, never shrunk), and the launches prepared for each T they served (a
 * prompt's T usually repeats: benchmarks, a server's fixed chunk). Each call zeroes the rows it uses
 * first, as fresh buffers were: a kernel may read a row's padding, which must be zero.
 */
class ManyTokenBuffers {
  private rows = 0;
  private bufs: DevicePtr[] = [];
  private readonly prepared = new Map<number, Prepared[]>();

  constructor(private readonly m: CudaModel, private readonly p: Pick<Program, 'steps' | 'buffers'>) {}

  /** The buffers and prepared launches for T tokens, the buffers' first T rows zeroed on the stream. */
  get(T: number): { bufs: DevicePtr[]; prepared: Prepared[] } {
    if (T > this.rows) {
      this.close();
      // grow by doubling (at least), so a prompt that creeps up reallocates a few times, not at every call
      this.rows = Math.max(T, 2 * this.rows);
      this.bufs = this.p.buffers.map((b) => this.m.zeroed(bufferBytes(b, this.rows)));
    } else {
      this.p.buffers.forEach((b, i) => this.m.cuda.memsetD32(this.bufs[i]!, 0, bufferBytes(b, T) / 4, this.m.stream));
    }
    let prepared = this.prepared.get(T);
    if (!prepared) {
      prepared = this.m.prepare(this.p.steps, this.p.buffers, T, this.bufs);
      this.prepared.set(T, prepared);
    }
    return { bufs: this.bufs, prepared };
  }

  close(): void {
    this.m.release(this.bufs);
    this.bufs = [];
    this.rows = 0;
    this.prepared.clear();
  }
}

export class CudaModel {
  readonly functions = new Map<string, CudaFunction>();
  readonly constants = new Map<string, DevicePtr>();
  readonly kv: { k: DevicePtr; v: DevicePtr }[] = [];
  readonly pos: DevicePtr;
  readonly tokens: DevicePtr;
  readonly history: DevicePtr;
  /** Program.selectHints floats, +inf until a Top-K writes them (see Arg 'tau'). */
  readonly selectHints: DevicePtr;
  /** Program.counters' u32, all regions in one allocation, zero (see Arg 'counters'): the kernels that use them leave them at zero. */
  readonly counters: DevicePtr;
  readonly stream: CudaStream;
  /** The PTX flavour loaded: sm_90 keeps the programmatic-launch waits and L2 prefetches. */
  readonly arch: CudaArch;
  /**
   * Launch each kernel so it may start while the previous one finishes (programmatic dependent
   * launch, sm_90): its CTAs get resident and prefetch weights, then wait in griddepcontrol.wait.
   * On by default on Hopper; MOCC_CUDA_PDL=0 turns it off (to measure what it gives).
   */
  readonly overlap: boolean;
  private readonly allocations: DevicePtr[] = [];

  constructor(readonly cuda: Cuda, readonly program: Program, readonly model: RunnableModel) {
    this.stream = cuda.createStream();
    this.arch = archFor(cuda.device.computeCapability);
    this.overlap = this.arch === 'sm_90' && programmaticLaunchWanted();
    const mod = cuda.loadModule(ptxModule([...program.kernels.values()], this.arch), 'mocc');
    for (const name of program.kernels.keys()) this.functions.set(name, mod.getFunction(name));
    if (program.kernelsSm90a?.size) this.loadSm90a(program.kernelsSm90a);
    const cap = program.kvCache.capacity;
    for (const name of program.weights) {
      const src = model.weights.get(name);
      if (!src) throw new Error(`weight ${name} is missing`);
      this.constants.set(name, this.upload(weightImage(src)));
    }
    for (const c of program.consts) this.constants.set(c.name, this.upload(constImage(c, model.weights, cap)));
    const kvBytes = cap * pad8(program.kvCache.width) * elemBytes(program.kvCache.dtype);
    for (let l = 0; l < program.kvCache.layers; l++) this.kv.push({ k: this.zeroed(kvBytes), v: this.zeroed(kvBytes) });
    this.pos = this.zeroed(4);
    this.tokens = this.zeroed(cap * 4);
    this.history = this.zeroed((cap + 1) * 4);
    this.selectHints = this.filled(program.selectHints * 4, 0x7f800000); // +inf: warm nothing yet
    this.counters = this.zeroed(counterLayout(program.counters).total * 4);
  }

  /**
   * The kernels with wgmma/setmaxnreg as a second module (`.target sm_90a`: compute capability 9.0
   * only), each function's dynamic shared memory limit raised once to the most its launches ask.
   */
  private loadSm90a(kernels: Map<string, string>): void {
    const [major, minor] = this.cuda.device.computeCapability;
    if (major !== 9 || minor !== 0) throw new Error(`the program has sm_90a kernels (wgmma), which need compute capability 9.0, not ${major}.${minor}`);
    const mod = this.cuda.loadModule(ptxModule([...kernels.values()], 'sm_90a'), 'mocc-sm90a');
    for (const name of kernels.keys()) this.functions.set(name, mod.getFunction(name));
    const shared = new Map<string, number>();
    const p = this.program;
    for (const s of [...p.steps, ...p.greedyTail, ...(p.prefill?.steps ?? [])]) {
      if (s.kind === 'launch' && s.shared) shared.set(s.kernel, Math.max(shared.get(s.kernel) ?? 0, s.shared));
    }
    for (const [name, bytes] of shared) this.functions.get(name)!.setMaxDynamicShared(bytes);
  }

  /** Allocates zeroed device memory owned by this model. */
  zeroed(bytes: number): DevicePtr {
    return this.filled(bytes, 0);
  }

  /** Allocates device memory owned by this model, every 32-bit word set to `word`. */
  private filled(bytes: number, word: number): DevicePtr {
    const p = this.cuda.malloc(Math.max(4, bytes));
    this.allocations.push(p);
    // on our stream: a memset on the legacy stream is not ordered with a non-blocking stream's launches
    this.cuda.memsetD32(p, word, Math.ceil(Math.max(4, bytes) / 4), this.stream);
    return p;
  }

  private upload(bytes: Uint8Array): DevicePtr {
    const p = this.cuda.malloc(Math.max(4, bytes.byteLength));
    this.allocations.push(p);
    this.cuda.copyToDevice(p, bytes);
    return p;
  }

  /** Activation buffers `decls` for calls of T tokens (zeroed: padding must read as zero). */
  buffersFor(decls: readonly BufferDecl[], T: number): DevicePtr[] {
    return decls.map((b) => this.zeroed(bufferBytes(b, T)));
  }

  /** Frees buffers this model allocated (buffersFor) before close(). */
  release(ptrs: readonly DevicePtr[]): void {
    for (const p of ptrs) {
      const i = this.allocations.indexOf(p);
      if (i < 0) throw new Error('release() of memory this model does not own');
      this.allocations.splice(i, 1);
      this.cuda.free(p);
    }
  }

  /** Launch parameters of `steps` for T tokens over buffers `bufs` (declared by `decls`). */
  prepare(steps: Step[], decls: readonly BufferDecl[], T: number, bufs: DevicePtr[]): Prepared[] {
    const address = (a: Arg): DevicePtr => {
      const p = ptr(a);
      if (p.type !== 'u64') throw new Error(`a tensor map over a ${a.kind} argument`);
      return BigInt(p.value);
    };
    const ptr = (a: Arg): KernelParam => {
      switch (a.kind) {
        case 'buf': return { type: 'u64', value: bufs[a.id]! };
        case 'weight': case 'const': return { type: 'u64', value: this.constants.get(a.name)! };
        case 'kv': return { type: 'u64', value: this.kv[a.layer]![a.which] };
        case 'pos': return { type: 'u64', value: this.pos };
        case 'tokens': return { type: 'u64', value: this.tokens };
        case 'history': return { type: 'u64', value: this.history };
        case 'tau': return { type: 'u64', value: this.selectHints + BigInt(4 * a.slot) };
        case 'counters': return { type: 'u64', value: this.counters + BigInt(4 * counterLayout(this.program.counters).offset[a.region]) };
        case 'T': return { type: 'u32', value: T };
        case 'u32': return { type: 'u32', value: a.value };
        case 'tmap': {
          // a map needs every dimension >= 1: with K = 0 it is never read, so describe one column
          const map = gemm90TensorMap(a.gemm, a.operand, address(a.of), a.rows === 'T' ? T : a.rows, Math.max(a.k === 'T' ? T : a.k, 1));
          return { type: 'tmap', value: this.cuda.tensorMapEncodeTiled(map) };
        }
      }
    };
    return steps.map((s) => {
      if (s.kind === 'zero') {
        return { fn: null, grid: [1, 1, 1], block: [1, 1, 1], params: new Uint8Array(), offsets: new Uint32Array(), shared: 0, zero: { ptr: bufs[s.buf]!, words: bufferBytes(decls[s.buf]!, T) / 4 } };
      }
      const { bytes, offsets } = packParams(s.args.map(ptr));
      const grid = s.grid.map((d) => gridDimFor(d, T, this.cuda.device)) as [number, number, number];
      return { fn: this.functions.get(s.kernel)!, grid, block: [s.block, 1, 1], params: bytes, offsets, shared: s.shared ?? 0 };
    });
  }

  run(prepared: Prepared[]): void {
    for (const p of prepared) {
      if (p.zero) this.cuda.memsetD32(p.zero.ptr, 0, p.zero.words, this.stream);
      else p.fn!.launch(p.grid, p.block, p.shared, this.stream, p.params, p.offsets, { overlap: this.overlap });
    }
  }

  close(): void {
    for (const p of this.allocations) this.cuda.free(p);
    this.allocations.length = 0;
  }
}

/** A decoding session: host-side position, prefill by launches, decode steps through CUDA graphs. */
export class CudaSession implements ModelSession {
  private pos = 0;
  private readonly decodeBufs: DevicePtr[];
  private readonly decodeSteps: Prepared[];
  private readonly greedySteps: Prepared[];
  private decodeGraph: CudaGraphExec | null = null;
  private greedyGraph: CudaGraphExec | null = null;
  /** CUDA graphs on (default) or off, for checking that both paths agree. */
  useGraphs = true;
  /** Calls of T > 1 tokens run the prefill program (default) or the decode steps with T rows (to compare them). */
  usePrefill = true;
  /** The fewest tokens a call needs for the prefill program (default: the program's minTokens; tests lower it to check the program on short prompts). */
  prefillFrom: number;

  /** Calls of T > 1 tokens: the prefill program's buffers, and the decode steps' with T rows. */
  private readonly many: { prefill?: ManyTokenBuffers; steps: ManyTokenBuffers };

  constructor(readonly m: CudaModel) {
    this.prefillFrom = m.program.prefill?.minTokens ?? 2;
    this.many = { steps: new ManyTokenBuffers(m, m.program), ...(m.program.prefill ? { prefill: new ManyTokenBuffers(m, m.program.prefill) } : {}) };
    this.decodeBufs = m.buffersFor(m.program.buffers, 1);
    this.decodeSteps = m.prepare(m.program.steps, m.program.buffers, 1, this.decodeBufs);
    this.greedySteps = m.prepare([...m.program.steps, ...m.program.greedyTail], m.program.buffers, 1, this.decodeBufs);
  }

  get position(): number {
    return this.pos;
  }

  reset(): void {
    this.pos = 0;
  }

  private setInputs(tokens: readonly number[]): void {
    this.m.cuda.copyToDevice(this.m.pos, Int32Array.of(this.pos), this.m.stream);
    this.m.cuda.copyToDevice(this.m.tokens, Int32Array.from(tokens), this.m.stream);
  }

  private graph(which: 'decode' | 'greedy'): CudaGraphExec {
    const cached = which === 'decode' ? this.decodeGraph : this.greedyGraph;
    if (cached) return cached;
    const s = this.m.stream;
    s.beginCapture();
    this.m.run(which === 'decode' ? this.decodeSteps : this.greedySteps);
    const exec = s.endCapture().instantiate();
    if (which === 'decode') this.decodeGraph = exec;
    else this.greedyGraph = exec;
    return exec;
  }

  forward(tokens: readonly number[], options?: ForwardOptions): Float32Array {
    const T = tokens.length;
    const cap = this.m.program.kvCache.capacity;
    if (T === 0) throw new Error('forward() needs at least one token');
    if (this.pos + T > cap) throw new Error(`context full: ${this.pos} + ${T} tokens exceeds the model's ${cap}`);
    this.setInputs(tokens);
    let bufs = this.decodeBufs;
    // many tokens: the prefill launches (tensor-core GEMMs) where the program has them
    const prefill = T > 1 && T >= this.prefillFrom && this.usePrefill ? this.m.program.prefill : undefined;
    const program = prefill ?? this.m.program;
    if (T === 1) {
      if (this.useGraphs) this.graph('decode').launch(this.m.stream);
      else this.m.run(this.decodeSteps);
    } else {
      const call = (prefill ? this.many.prefill! : this.many.steps).get(T);
      bufs = call.bufs;
      this.m.run(call.prepared);
    }
    const { vocab, buf: logitsBuf } = program.logits;
    const ld = pad8(vocab);
    // lastOnly: one row back instead of T (a 2048-token prompt's logits are 262 MB in f32)
    const rows = options?.lastOnly ? 1 : T;
    const raw = new Float32Array(rows * ld);
    this.m.cuda.copyFromDevice(raw, bufs[logitsBuf]! + BigInt((T - rows) * ld * 4), this.m.stream);
    this.m.stream.synchronize();
    this.pos += T;
    if (ld === vocab) return raw;
    const out = new Float32Array(rows * vocab);
    for (let t = 0; t < rows; t++) out.set(raw.subarray(t * ld, t * ld + vocab), t * vocab);
    return out;
  }

  /** Frees the session's device memory: the buffers kept for calls of many tokens, then the model's. */
  close(): void {
    this.many.prefill?.close();
    this.many.steps.close();
    this.m.close();
  }

  /**
   * Greedy decoding on the device: each step's argmax becomes the next step's token without a
   * round trip. `first` is the last token already chosen (its logits came from forward()); returns
   * the n tokens after it. With onToken, each token is read back as it is made (one sync a step).
   */
  greedy(first: number, n: number, onToken?: (token: number) => boolean | void): number[] {
    const cap = this.m.program.kvCache.capacity;
    n = Math.min(n, cap - this.pos);
    this.setInputs([first]);
    const exec = this.graph('greedy');
    const out: number[] = [];
    const one = new Int32Array(1);
    for (let i = 0; i < n; i++) {
      exec.launch(this.m.stream);
      if (onToken) {
        this.m.cuda.copyFromDevice(one, this.m.history + BigInt((this.pos + i) * 4), this.m.stream);
        this.m.stream.synchronize();
        if (onToken(one[0]!) === false) {
          this.pos += i + 1;
          return out;
        }
        out.push(one[0]!);
      }
    }
    if (!onToken) {
      const hist = new Int32Array(n);
      this.m.cuda.copyFromDevice(hist, this.m.history + BigInt(this.pos * 4), this.m.stream);
      this.m.stream.synchronize();
      out.push(...hist);
    }
    this.pos += n;
    return out;
  }
}
