// Runs a WGSL dispatch program with the standard WebGPU API only, so the same code runs in Node
// (Dawn, npm `webgpu`) and in browsers: weights and constants uploaded once, a KV cache per layer,
// activation buffers and bind groups per call size, one command encoder per call, and a readback
// of the logits, or in greedy decoding of the sampled tokens only.
import type { Dispatch, KernelSource, WArg, WgslProgram } from '../program.js';
import type { Awaitable } from '../../target.js';
import type { ForwardOptions } from '../../../src/model/runnable.js';
import { weightRowBytes } from '../kernel.js';
import type { OpenedDevice } from './device.js';


/** Where the device images of weights and constants come from (the package in Node, fetch() in a browser). */
export type ImageSource = (name: string) => Awaitable<Uint8Array>;

/** Activation buffers and bind groups for one call size T. */
interface Frame {
  T: number;
  /** The program's activation buffers, then (when it has fused MoC FFNs) the selection histogram. */
  buffers: GPUBuffer[];
  steps: GPUBindGroup[];
  tail: GPUBindGroup[];
}

const STORAGE = 0x80, COPY_SRC = 0x04, COPY_DST = 0x08, UNIFORM = 0x40, MAP_READ = 0x01; // GPUBufferUsage, spelled out so this file needs no globals
const MAP_MODE_READ = 0x1;

const COMPUTE = 0x4; // GPUShaderStage.COMPUTE

/**
 * A kernel's pipeline, with its bind group layout spelled out from its bindings (binding 0 the Call
 * uniform) rather than inferred: an inferred layout drops bindings the code does not use.
 * Compilation errors come back with the kernel's key.
 */
export async function createPipeline(device: GPUDevice, key: string, k: KernelSource): Promise<GPUComputePipeline> {
  const module = device.createShaderModule({ code: k.code, label: key });
  const errors = (await module.getCompilationInfo()).messages.filter((msg) => msg.type === 'error');
  if (errors.length) throw new Error(`WGSL kernel ${key} does not compile: ${errors.map((e) => `${e.lineNum}:${e.linePos} ${e.message}`).join('; ')}`);
  device.pushErrorScope('validation');
  const layout = device.createBindGroupLayout({
    label: key,
    entries: [
      { binding: 0, visibility: COMPUTE, buffer: { type: 'uniform' } },
      ...k.bindings.map((b, i) => ({ binding: i + 1, visibility: COMPUTE, buffer: { type: b.access === 'read' ? 'read-only-storage' as const : 'storage' as const } })),
    ],
  });
  const pipeline = await device.createComputePipelineAsync({ layout: device.createPipelineLayout({ bindGroupLayouts: [layout] }), compute: { module, entryPoint: 'main' }, label: key });
  const err = await device.popErrorScope();
  if (err) throw new Error(`WGSL kernel ${key}: ${err.message}`);
  return pipeline;
}

export class WgslModel {
  readonly pipelines = new Map<string, GPUComputePipeline>();
  readonly constants = new Map<string, GPUBuffer>();
  readonly kv: { k: GPUBuffer; v: GPUBuffer }[] = [];
  /** The per-call uniform: T, pos (kernel.ts CALL_STRUCT). */
  readonly call: GPUBuffer;
  /** Token ids of the call; greedy decoding's argmax writes the next token to element 0. */
  readonly tokens: GPUBuffer;
  private readonly owned: GPUBuffer[] = [];

  private constructor(readonly device: GPUDevice, readonly program: WgslProgram) {
    const cap = program.kvCache.capacity;
    const kvBytes = cap * program.kvCache.width * 4;
    for (let l = 0; l < program.kvCache.layers; l++) this.kv.push({ k: this.buffer(kvBytes, STORAGE), v: this.buffer(kvBytes, STORAGE) });
    this.call = this.buffer(16, UNIFORM | COPY_DST);
    this.tokens = this.buffer(cap * 4, STORAGE | COPY_DST | COPY_SRC);
  }

  /** Compiles every kernel, uploads the weights and constants; reports bytes uploaded as it goes. */
  static async create(dev: OpenedDevice, program: WgslProgram, images: ImageSource, onProgress?: (done: number, total: number) => void): Promise<WgslModel> {
    const m = new WgslModel(dev.device, program);
    try {
      await m.compile();
      const names = [...program.weights.map((w) => w.name), ...program.consts.map((c) => c.name)];
      for (let i = 0; i < names.length; i++) {
        m.constants.set(names[i]!, m.upload(await images(names[i]!)));
        onProgress?.(i + 1, names.length);
      }
      return m;
    } catch (e) {
      m.destroy();
      throw e;
    }
  }

  private async compile(): Promise<void> {
    for (const [key, k] of Object.entries(this.program.kernels)) this.pipelines.set(key, await createPipeline(this.device, key, k));
  }

  buffer(bytes: number, usage: number): GPUBuffer {
    const b = this.device.createBuffer({ size: Math.max(16, Math.ceil(bytes / 4) * 4), usage });
    this.owned.push(b);
    return b;
  }

  private upload(image: Uint8Array): GPUBuffer {
    const b = this.device.createBuffer({ size: Math.max(16, Math.ceil(image.byteLength / 4) * 4), usage: STORAGE, mappedAtCreation: true });
    new Uint8Array(b.getMappedRange()).set(image);
    b.unmap();
    this.owned.push(b);
    return b;
  }

  destroy(): void {
    for (const b of this.owned) b.destroy();
    this.owned.length = 0;
  }
}

export class WgslSession {
  private pos = 0;
  private frames: Frame[] = [];

  constructor(readonly model: WgslModel) {}

  get position(): number {
    return this.pos;
  }

  reset(): void {
    this.pos = 0;
  }

  close(): void {
    for (const f of this.frames) f.buffers.forEach((b) => b.destroy());
    this.frames = [];
    this.model.destroy();
  }

  /** Runs `tokens` after the cached ones; returns their logits [T, vocab] (lastOnly: the last row). */
  async forward(tokens: readonly number[], options?: ForwardOptions): Promise<Float32Array> {
    const T = tokens.length;
    if (T === 0) throw new Error('forward() needs at least one token');
    this.checkRoom(T);
    const { device } = this.model;
    const vocab = this.model.program.logits.vocab;
    const frame = this.frame(T);
    device.queue.writeBuffer(this.model.tokens, 0, Int32Array.from(tokens));
    device.queue.writeBuffer(this.model.call, 0, new Uint32Array([T, this.pos, 0, 0]));
    const enc = device.createCommandEncoder();
    this.encode(enc, this.model.program.steps, frame.steps, T);
    const rows = options?.lastOnly ? 1 : T;
    const read = device.createBuffer({ size: rows * vocab * 4, usage: MAP_READ | COPY_DST });
    enc.copyBufferToBuffer(frame.buffers[this.model.program.logits.buf]!, (T - rows) * vocab * 4, read, 0, rows * vocab * 4);
    await this.submit(enc);
    this.pos += T;
    return this.readBack(read, (b) => new Float32Array(b));
  }

  /**
   * Greedy decoding on the device: feeds `first`, then n times runs a step whose argmax writes the
   * next token where the following step reads it, one submission a step. Only tokens come back:
   * after every step when onToken wants them (returning false stops; that token is not kept), else
   * once at the end, so nothing waits on the host between steps.
   */
  async greedy(first: number, n: number, onToken?: (token: number) => boolean | void): Promise<number[]> {
    const { device } = this.model;
    const frame = this.frame(1);
    const steps = [...this.model.program.steps, ...this.model.program.greedyTail];
    const groups = [...frame.steps, ...frame.tail];
    this.checkRoom(n);
    device.queue.writeBuffer(this.model.tokens, 0, Int32Array.of(first));
    const out: number[] = [];
    const history = device.createBuffer({ size: Math.max(16, n * 4), usage: MAP_READ | COPY_DST });
    const errors = this.watchErrors();
    try {
      for (let i = 0; i < n; i++) {
        device.queue.writeBuffer(this.model.call, 0, new Uint32Array([1, this.pos, 0, 0]));
        const enc = device.createCommandEncoder();
        this.encode(enc, steps, groups, 1);
        // streaming: this token alone comes back now; else it joins the history read at the end
        const one = onToken ? device.createBuffer({ size: 16, usage: MAP_READ | COPY_DST }) : null;
        enc.copyBufferToBuffer(this.model.tokens, 0, one ?? history, one ? 0 : i * 4, 4);
        device.queue.submit([enc.finish()]);
        this.pos += 1;
        if (!onToken || !one) continue;
        const token = await this.readBack(one, (b) => new Uint32Array(b)[0]!);
        if (onToken(token) === false) return out;
        out.push(token);
      }
      if (!onToken) out.push(...(await this.readBack(history, (b) => [...new Uint32Array(b, 0, n)])));
      return out;
    } finally {
      await errors();
      history.destroy();
    }
  }

  /**
   * Host time, in µs, to encode one greedy decode step without submitting it (the median of n):
   * what each token costs the CPU before the GPU sees it, since WebGPU command buffers are used once.
   */
  encodeMicroseconds(n = 50): number {
    const frame = this.frame(1);
    const steps = [...this.model.program.steps, ...this.model.program.greedyTail];
    const groups = [...frame.steps, ...frame.tail];
    const times: number[] = [];
    for (let i = 0; i < n; i++) {
      const t0 = performance.now();
      const enc = this.model.device.createCommandEncoder();
      this.encode(enc, steps, groups, 1);
      enc.finish();
      times.push((performance.now() - t0) * 1000);
    }
    times.sort((a, b) => a - b);
    return times[Math.floor(n / 2)]!;
  }

  private checkRoom(T: number): void {
    const cap = this.model.program.kvCache.capacity;
    if (this.pos + T > cap) throw new Error(`context full: ${this.pos} + ${T} tokens exceeds the model's ${cap}`);
  }

  private encode(enc: GPUCommandEncoder, steps: Dispatch[], groups: GPUBindGroup[], T: number): void {
    const pass = enc.beginComputePass();
    steps.forEach((s, i) => {
      pass.setPipeline(this.model.pipelines.get(s.kernel)!);
      pass.setBindGroup(0, groups[i]!);
      pass.dispatchWorkgroups(...(s.grid.map((d) => (d === 'T' ? T : d)) as [number, number, number]));
    });
    pass.end();
  }

  /** Submits, and turns a validation or memory error of this submission into an exception. */
  private async submit(enc: GPUCommandEncoder): Promise<void> {
    const errors = this.watchErrors();
    this.model.device.queue.submit([enc.finish()]);
    await errors();
  }

  /** Starts catching validation and out-of-memory errors; the returned function throws the first. */
  private watchErrors(): () => Promise<void> {
    const { device } = this.model;
    device.pushErrorScope('out-of-memory');
    device.pushErrorScope('validation');
    return async () => {
      const [validation, memory] = [await device.popErrorScope(), await device.popErrorScope()];
      const err = validation ?? memory;
      if (err) throw new Error(`WebGPU: ${err.message}`);
    };
  }

  private async readBack<R>(buffer: GPUBuffer, view: (b: ArrayBuffer) => R): Promise<R> {
    try {
      await buffer.mapAsync(MAP_MODE_READ);
      return view(buffer.getMappedRange().slice(0));
    } finally {
      buffer.destroy();
    }
  }

  /** Activation buffers and bind groups for T tokens: kept for T = 1 (decoding) and the last other T. */
  private frame(T: number): Frame {
    const hit = this.frames.find((f) => f.T === T);
    if (hit) return hit;
    const keep = this.frames.filter((f) => f.T === 1);
    for (const f of this.frames) if (f.T !== 1) f.buffers.forEach((b) => b.destroy());
    const p = this.model.program;
    const buffers = p.buffers.map((b) => this.model.device.createBuffer({ size: Math.max(16, T * b.width * 4), usage: STORAGE | COPY_SRC }));
    // new buffers are zero: what the histogram must be before a fused MoC FFN's first dispatch
    if (p.histBins) buffers.push(this.model.device.createBuffer({ size: T * p.histBins * 4, usage: STORAGE }));
    const groups = (steps: Dispatch[]) => steps.map((s) => this.bindGroup(s, buffers));
    const frame: Frame = { T, buffers, steps: groups(p.steps), tail: groups(p.greedyTail) };
    this.frames = [...keep, frame];
    return frame;
  }

  private bindGroup(s: Dispatch, buffers: GPUBuffer[]): GPUBindGroup {
    const m = this.model;
    const resource = (a: WArg): GPUBufferBinding => {
      switch (a.kind) {
        case 'buf': return { buffer: buffers[a.id]! };
        case 'tokens': return { buffer: m.tokens };
        case 'hist': return { buffer: buffers[m.program.buffers.length]! };
        case 'kv': return { buffer: m.kv[a.layer]![a.which] };
        case 'const': return { buffer: m.constants.get(a.name)! };
        case 'weight': {
          const buffer = m.constants.get(a.name)!;
          if (a.rowStart === undefined) return { buffer };
          const w = m.program.weights.find((x) => x.name === a.name)!;
          const rb = weightRowBytes(w.dtype, w.cols);
          return { buffer, offset: a.rowStart * rb, size: a.rows! * rb };
        }
      }
    };
    return m.device.createBindGroup({
      layout: m.pipelines.get(s.kernel)!.getBindGroupLayout(0),
      entries: [{ binding: 0, resource: { buffer: m.call } }, ...s.args.map((a, i) => ({ binding: i + 1, resource: resource(a) }))],
      label: `${s.node}: ${s.kernel}`,
    });
  }
}
