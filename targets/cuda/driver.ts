// Typed wrapper over mocc's native CUDA driver addon (targets/cuda/native, built by `npm run build:native`).
//
// The addon dlopens libcuda.so.1 at run time (or $MOCC_LIBCUDA), so loading it never needs CUDA to be
// installed; `cudaAvailability()` says whether a driver and a device are actually there.
//
// Semantics worth knowing:
//  - Handles and device pointers are BigInts (the raw pointer values).
//  - Calls without a stream run on the legacy NULL stream. Streams from createStream() are
//    CU_STREAM_NON_BLOCKING, so they do NOT synchronize implicitly with NULL-stream work: a plain
//    copyFromDevice(dst, src) after a launch on a stream must be preceded by stream.synchronize().
//  - copyToDevice without a stream returns when the source may be reused; with a stream it is
//    cuMemcpyHtoDAsync (for pageable JS memory the driver stages the bytes before returning, so the
//    source may be reused too). copyFromDevice with a stream is cuMemcpyDtoHAsync: keep `dst`
//    alive and call stream.synchronize() before reading it.
//  - Every driver error is an Error "<call>(<details>) failed: CUDA_ERROR_X (n)" with
//    `code` = "CUDA_ERROR_X" and `cudaError` = n.

import { existsSync } from 'node:fs';
import { createRequire } from 'node:module';
import { join } from 'node:path';
import { projectRoot } from '../../src/util/project-root.js';

export interface CudaDeviceInfo {
  name: string;
  computeCapability: [number, number];
  multiprocessors: number;
  totalMemoryBytes: number;
  l2Bytes: number;
  maxSharedPerBlockOptin: number;
  driverVersion: number;
}

export type DevicePtr = bigint;

export class CudaUnavailableError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'CudaUnavailableError';
  }
}

export interface Cuda {
  device: CudaDeviceInfo;
  /** cuModuleLoadDataEx with error and info log buffers; throws
   *  `cuModuleLoadDataEx(<name>) failed: CUDA_ERROR_INVALID_PTX (218)\n<JIT log>` on failure. */
  loadModule(ptx: string, name?: string): CudaModule;
  malloc(bytes: number): DevicePtr;
  free(p: DevicePtr): void;
  memGetInfo(): { free: number; total: number };
  /** Copies all of `src` (or its first `bytes`): synchronous on the NULL stream, or async on `stream`. */
  copyToDevice(dst: DevicePtr, src: ArrayBufferView, stream?: CudaStream | null, bytes?: number): void;
  /** Fills all of `dst` (or its first `bytes`): synchronous, or async on `stream` (caller syncs the stream). */
  copyFromDevice(dst: ArrayBufferView, src: DevicePtr, stream?: CudaStream | null, bytes?: number): void;
  /** Sets `count` 32-bit words to `value` (taken as uint32 bits; negative int32 values are accepted). */
  memsetD32(dst: DevicePtr, value: number, count: number, stream?: CudaStream | null): void;
  /** A CU_STREAM_NON_BLOCKING stream. */
  createStream(): CudaStream;
  /** cuCtxSynchronize. */
  synchronize(): void;
  /** cuTensorMapEncodeTiled: the 128-byte tensor map for Hopper's bulk tensor copies, passed to a
   *  kernel by value (packParams type 'tmap'). */
  tensorMapEncodeTiled(map: TensorMapTiled): Uint8Array;
  createEvent(): CudaEvent;
  /** Destroys everything still alive (graph execs, graphs, events, streams, modules, allocations)
   *  and releases the primary context. Idempotent. Throws the first error after finishing the cleanup. */
  close(): void;
}

export interface CudaModule {
  /** The JIT info log (ptxas output) of the load; often empty. */
  readonly infoLog: string;
  getFunction(name: string): CudaFunction;
  unload(): void;
}

export interface CudaFunction {
  name: string;
  /** cuFuncSetAttribute(CU_FUNC_ATTRIBUTE_MAX_DYNAMIC_SHARED_SIZE_BYTES). */
  setMaxDynamicShared(bytes: number): void;
  /**
   * params: packed little-endian bytes; offsets: byte offset of each parameter (the driver gets void*[] pointing at them).
   *
   * options.overlap (default false): programmatic dependent launch. The launch goes through cuLaunchKernelEx with
   * CU_LAUNCH_ATTRIBUTE_PROGRAMMATIC_STREAM_SERIALIZATION, so this kernel may start before the previous kernel on
   * the stream has finished (also inside stream capture, where it becomes a programmatic graph edge). The kernel
   * must therefore execute griddepcontrol.wait before it reads anything an earlier kernel writes, or writes anything
   * an earlier kernel reads. Only meaningful on compute capability >= 9.0; griddepcontrol.wait returns at once when
   * there is nothing to wait for. A driver without cuLaunchKernelEx (before CUDA 11.8) gets a plain cuLaunchKernel.
   */
  launch(
    grid: [number, number, number],
    block: [number, number, number],
    sharedBytes: number,
    stream: CudaStream | null,
    params: Uint8Array,
    offsets: Uint32Array,
    options?: LaunchOptions,
  ): void;
}

export interface LaunchOptions {
  /** Allow this kernel to overlap the previous kernel on the stream (see CudaFunction.launch). */
  overlap?: boolean;
}

export type CaptureMode = 'global' | 'thread-local' | 'relaxed';

export interface CudaStream {
  synchronize(): void;
  /** cuStreamBeginCapture_v2; default mode 'global' (CU_STREAM_CAPTURE_MODE_GLOBAL). */
  beginCapture(mode?: CaptureMode): void;
  endCapture(): CudaGraph;
  destroy(): void;
}

export interface CudaGraph {
  instantiate(): CudaGraphExec;
  destroy(): void;
}

export interface CudaGraphExec {
  launch(stream: CudaStream): void;
  destroy(): void;
}

export interface CudaEvent {
  record(stream: CudaStream | null): void;
  synchronize(): void;
  /** Milliseconds from `since` to this event (cuEventElapsedTime(since, this)). */
  elapsedMs(since: CudaEvent): number;
  destroy(): void;
}

/**
 * A tiled tensor map (cuTensorMapEncodeTiled). dims[0] is the contiguous dimension; all counts are in
 * elements except strides, which are the byte strides of dims 1.. (rank - 1 entries, multiples of 16).
 * Boxes that reach past dims are zero-filled on load. swizzle is the shared-memory layout the copy
 * writes ('128B': 16-byte chunk c of row r lands at chunk c ^ (r % 8); the box row must be at most 128 bytes).
 */
export interface TensorMapTiled {
  dtype: 'bf16' | 'f16' | 'f32';
  address: DevicePtr;
  dims: number[];
  strides: number[];
  box: number[];
  swizzle: 'none' | '32B' | '64B' | '128B';
  /** L2 sector promotion (default '256B'). */
  l2Promotion?: 'none' | '64B' | '128B' | '256B';
}

// cuda.h's enum values (CUtensorMapDataType, CUtensorMapSwizzle, CUtensorMapL2promotion)
const TMAP_DTYPE = { f16: 6, f32: 7, bf16: 9 } as const;
const TMAP_SWIZZLE = { none: 0, '32B': 1, '64B': 2, '128B': 3 } as const;
const TMAP_L2 = { none: 0, '64B': 1, '128B': 2, '256B': 3 } as const;

// ---- the addon ----

type H = bigint;
interface RawDeviceInfo {
  name: string;
  ccMajor: number;
  ccMinor: number;
  multiprocessors: number;
  totalMemoryBytes: number;
  l2Bytes: number;
  maxSharedPerBlockOptin: number;
}
interface Addon {
  load(path: string): void;
  init(): void;
  driverVersion(): number;
  deviceCount(): number;
  deviceInfo(ordinal: number): RawDeviceInfo;
  ctxRetain(ordinal: number): H;
  ctxRelease(ordinal: number): void;
  ctxSynchronize(ctx: H): void;
  memAlloc(ctx: H, bytes: number): H;
  memFree(ctx: H, p: H): void;
  memGetInfo(ctx: H): [number, number];
  memcpyHtoD(ctx: H, dst: H, src: ArrayBufferView, bytes: number, stream: H | null): void;
  memcpyDtoH(ctx: H, dst: ArrayBufferView, src: H, bytes: number, stream: H | null): void;
  memsetD32(ctx: H, dst: H, value: number, count: number, stream: H | null): void;
  streamCreate(ctx: H): H;
  streamDestroy(ctx: H, s: H): void;
  streamSynchronize(ctx: H, s: H | null): void;
  streamBeginCapture(ctx: H, s: H, mode: number): void;
  streamEndCapture(ctx: H, s: H): H;
  graphInstantiate(ctx: H, g: H): H;
  graphLaunch(ctx: H, e: H, s: H | null): void;
  graphExecDestroy(ctx: H, e: H): void;
  graphDestroy(ctx: H, g: H): void;
  moduleLoad(ctx: H, ptx: string, name: string): [H, string];
  moduleUnload(ctx: H, m: H): void;
  moduleGetFunction(ctx: H, m: H, name: string): H;
  funcSetAttribute(ctx: H, f: H, attribute: number, value: number): void;
  launch(
    ctx: H, f: H, gx: number, gy: number, gz: number, bx: number, by: number, bz: number,
    shared: number, stream: H | null, params: Uint8Array, offsets: Uint32Array, overlap?: boolean,
  ): void;
  eventCreate(ctx: H): H;
  eventRecord(ctx: H, e: H, s: H | null): void;
  eventSynchronize(ctx: H, e: H): void;
  eventElapsed(ctx: H, start: H, end: H): number;
  eventDestroy(ctx: H, e: H): void;
  errorName(code: number): string;
  tensorMapEncodeTiled(
    dataType: number, address: H, dims: BigUint64Array, strides: BigUint64Array, box: Uint32Array,
    elementStrides: Uint32Array, interleave: number, swizzle: number, l2Promotion: number, oobFill: number,
  ): Uint8Array;
}

const CU_FUNC_ATTRIBUTE_MAX_DYNAMIC_SHARED_SIZE_BYTES = 8;
const CAPTURE_MODES: Record<CaptureMode, number> = { global: 0, 'thread-local': 1, relaxed: 2 };

function findProjectRoot(): string {
  try {
    return projectRoot();
  } catch (e) {
    throw new CudaUnavailableError(`mocc's CUDA addon is not built: ${(e as Error).message}`);
  }
}

/** Where the addon is: $MOCC_CUDA_ADDON, else <project root>/targets/cuda/native/build/Release/mocc_cuda.node. */
export function addonPath(): string {
  const override = process.env.MOCC_CUDA_ADDON;
  if (override) return override;
  return join(findProjectRoot(), 'targets', 'cuda', 'native', 'build', 'Release', 'mocc_cuda.node');
}

let addonCache: Addon | undefined;

function loadAddon(): Addon {
  if (addonCache) return addonCache;
  const path = addonPath();
  if (!existsSync(path)) {
    throw new CudaUnavailableError(`mocc's CUDA addon is not built: ${path} does not exist (run \`npm run build:native\`)`);
  }
  try {
    addonCache = createRequire(import.meta.url)(path) as Addon;
  } catch (e) {
    throw new CudaUnavailableError(`mocc's CUDA addon is not built: loading ${path} failed: ${oneLine(e)}`);
  }
  return addonCache;
}

function oneLine(e: unknown): string {
  const m = e instanceof Error ? e.message : String(e);
  return m.split('\n')[0]!;
}

/** Loads the addon and the driver and runs cuInit; every failure becomes a CudaUnavailableError. */
function loadDriver(): Addon {
  const addon = loadAddon();
  const lib = process.env.MOCC_LIBCUDA || 'libcuda.so.1';
  try {
    addon.load(lib);
  } catch (e) {
    const code = (e as { code?: unknown }).code;
    if (code === 'MOCC_NO_CUDA_DRIVER') throw new CudaUnavailableError(`no CUDA driver found: ${oneLine(e)}`);
    throw new CudaUnavailableError(oneLine(e));
  }
  try {
    addon.init();
  } catch (e) {
    throw new CudaUnavailableError(oneLine(e));
  }
  return addon;
}

function deviceInfo(addon: Addon, ordinal: number): CudaDeviceInfo {
  const count = addon.deviceCount();
  if (count === 0) throw new CudaUnavailableError('no CUDA device found (cuDeviceGetCount returned 0)');
  if (!Number.isInteger(ordinal) || ordinal < 0 || ordinal >= count) {
    throw new CudaUnavailableError(`CUDA device ${ordinal} does not exist (${count} device${count === 1 ? '' : 's'})`);
  }
  const raw = addon.deviceInfo(ordinal);
  return {
    name: raw.name,
    computeCapability: [raw.ccMajor, raw.ccMinor],
    multiprocessors: raw.multiprocessors,
    totalMemoryBytes: raw.totalMemoryBytes,
    l2Bytes: raw.l2Bytes,
    maxSharedPerBlockOptin: raw.maxSharedPerBlockOptin,
    driverVersion: addon.driverVersion(),
  };
}

/** Tries to load the addon and the driver and to query device 0; never throws. */
export function cudaAvailability(): { ok: true; device: CudaDeviceInfo } | { ok: false; reason: string } {
  try {
    const addon = loadDriver();
    return { ok: true, device: deviceInfo(addon, 0) };
  } catch (e) {
    return { ok: false, reason: oneLine(e) };
  }
}

/** Loads addon + driver, cuInit, retains the primary context of `ordinal` and makes it current. */
export function openCuda(ordinal = 0): Cuda {
  const addon = loadDriver();
  let device: CudaDeviceInfo;
  try {
    device = deviceInfo(addon, ordinal);
  } catch (e) {
    if (e instanceof CudaUnavailableError) throw e;
    throw new CudaUnavailableError(oneLine(e));
  }
  const ctx = addon.ctxRetain(ordinal);
  return new CudaContext(addon, ordinal, ctx, device);
}

// ---- implementation ----

function streamHandle(s: CudaStream | null | undefined): H | null {
  if (s == null) return null;
  if (!(s instanceof StreamImpl)) throw new TypeError('stream must come from Cuda.createStream()');
  return s.live();
}

function viewBytes(v: ArrayBufferView, bytes: number | undefined, what: string): number {
  if (!ArrayBuffer.isView(v)) throw new TypeError(`${what} must be an ArrayBufferView`);
  return bytes ?? v.byteLength;
}

class CudaContext implements Cuda {
  private closed = false;
  readonly allocations = new Set<H>();
  readonly modules = new Set<ModuleImpl>();
  readonly streams = new Set<StreamImpl>();
  readonly events = new Set<EventImpl>();
  readonly graphs = new Set<GraphImpl>();
  readonly graphExecs = new Set<GraphExecImpl>();

  constructor(
    readonly addon: Addon,
    private readonly ordinal: number,
    private readonly ctxHandle: H,
    readonly device: CudaDeviceInfo,
  ) {}

  /** The context handle, or a throw once closed. */
  ctx(): H {
    if (this.closed) throw new Error('CUDA context is closed');
    return this.ctxHandle;
  }

  loadModule(ptx: string, name = 'module'): CudaModule {
    const [h, infoLog] = this.addon.moduleLoad(this.ctx(), ptx, name);
    const m = new ModuleImpl(this, h, name, infoLog);
    this.modules.add(m);
    return m;
  }

  malloc(bytes: number): DevicePtr {
    const p = this.addon.memAlloc(this.ctx(), bytes);
    this.allocations.add(p);
    return p;
  }

  free(p: DevicePtr): void {
    const ctx = this.ctx();
    if (!this.allocations.has(p)) throw new Error(`free(0x${p.toString(16)}): not a live allocation of this context`);
    this.allocations.delete(p);
    this.addon.memFree(ctx, p);
  }

  memGetInfo(): { free: number; total: number } {
    const [free, total] = this.addon.memGetInfo(this.ctx());
    return { free, total };
  }

  copyToDevice(dst: DevicePtr, src: ArrayBufferView, stream?: CudaStream | null, bytes?: number): void {
    this.addon.memcpyHtoD(this.ctx(), dst, src, viewBytes(src, bytes, 'src'), streamHandle(stream));
  }

  copyFromDevice(dst: ArrayBufferView, src: DevicePtr, stream?: CudaStream | null, bytes?: number): void {
    this.addon.memcpyDtoH(this.ctx(), dst, src, viewBytes(dst, bytes, 'dst'), streamHandle(stream));
  }

  memsetD32(dst: DevicePtr, value: number, count: number, stream?: CudaStream | null): void {
    const bits = Number.isInteger(value) && value < 0 && value >= -0x80000000 ? value >>> 0 : value;
    this.addon.memsetD32(this.ctx(), dst, bits, count, streamHandle(stream));
  }

  createStream(): CudaStream {
    const s = new StreamImpl(this, this.addon.streamCreate(this.ctx()));
    this.streams.add(s);
    return s;
  }

  synchronize(): void {
    this.addon.ctxSynchronize(this.ctx());
  }

  tensorMapEncodeTiled(t: TensorMapTiled): Uint8Array {
    this.ctx();
    const rank = t.dims.length;
    if (t.strides.length !== rank - 1 || t.box.length !== rank) throw new RangeError(`tensor map of rank ${rank}: needs ${rank - 1} strides and ${rank} box sizes`);
    return this.addon.tensorMapEncodeTiled(TMAP_DTYPE[t.dtype], t.address, BigUint64Array.from(t.dims.map(BigInt)), BigUint64Array.from(t.strides.map(BigInt)),
      Uint32Array.from(t.box), new Uint32Array(rank).fill(1), 0, TMAP_SWIZZLE[t.swizzle], TMAP_L2[t.l2Promotion ?? '256B'], 0);
  }

  createEvent(): CudaEvent {
    const e = new EventImpl(this, this.addon.eventCreate(this.ctx()));
    this.events.add(e);
    return e;
  }

  close(): void {
    if (this.closed) return;
    const errors: unknown[] = [];
    const attempt = (f: () => void) => {
      try {
        f();
      } catch (e) {
        errors.push(e);
      }
    };
    attempt(() => this.synchronize());
    for (const x of [...this.graphExecs]) attempt(() => x.destroy());
    for (const x of [...this.graphs]) attempt(() => x.destroy());
    for (const x of [...this.events]) attempt(() => x.destroy());
    for (const x of [...this.streams]) attempt(() => x.destroy());
    for (const x of [...this.modules]) attempt(() => x.unload());
    for (const p of [...this.allocations]) attempt(() => this.free(p));
    this.closed = true;
    attempt(() => this.addon.ctxRelease(this.ordinal));
    if (errors.length > 0) throw errors[0];
  }
}

/**
 * A driver object this context owns: usable until released, after which every use throws `dead`.
 * release() marks it dead and drops it from its registry first, then hands back the context and
 * handle for the driver call that frees it (so a failing free never leaves a live-looking object).
 */
abstract class OwnedHandle {
  private handle: H | null;
  constructor(protected readonly c: CudaContext, h: H, private readonly dead: string) {
    this.handle = h;
  }
  live(): H {
    if (this.handle === null) throw new Error(this.dead);
    return this.handle;
  }
  protected release(registry: Set<OwnedHandle>): { ctx: H; h: H } {
    const h = this.live();
    const ctx = this.c.ctx();
    this.handle = null;
    registry.delete(this);
    return { ctx, h };
  }
}

class ModuleImpl extends OwnedHandle implements CudaModule {
  constructor(c: CudaContext, h: H, readonly name: string, readonly infoLog: string) {
    super(c, h, `module ${name} was unloaded`);
  }
  getFunction(name: string): CudaFunction {
    const f = this.c.addon.moduleGetFunction(this.c.ctx(), this.live(), name);
    return new FunctionImpl(this.c, this, f, name);
  }
  unload(): void {
    const { ctx, h } = this.release(this.c.modules);
    this.c.addon.moduleUnload(ctx, h);
  }
}

class FunctionImpl implements CudaFunction {
  constructor(private readonly c: CudaContext, private readonly mod: ModuleImpl, private readonly handle: H, readonly name: string) {}
  setMaxDynamicShared(bytes: number): void {
    this.mod.live();
    this.c.addon.funcSetAttribute(this.c.ctx(), this.handle, CU_FUNC_ATTRIBUTE_MAX_DYNAMIC_SHARED_SIZE_BYTES, bytes);
  }
  launch(
    grid: [number, number, number],
    block: [number, number, number],
    sharedBytes: number,
    stream: CudaStream | null,
    params: Uint8Array,
    offsets: Uint32Array,
    options?: LaunchOptions,
  ): void {
    this.mod.live();
    try {
      this.c.addon.launch(this.c.ctx(), this.handle, grid[0], grid[1], grid[2], block[0], block[1], block[2],
        sharedBytes, streamHandle(stream), params, offsets, options?.overlap);
    } catch (e) {
      // Name the kernel: "cuLaunchKernel(grid ...)" -> "cuLaunchKernel(<name>, grid ...)", same for cuLaunchKernelEx.
      if (e instanceof Error) {
        for (const call of ['cuLaunchKernel(', 'cuLaunchKernelEx(']) {
          if (e.message.startsWith(call)) {
            e.message = `${call}${this.name}, ` + e.message.slice(call.length);
            break;
          }
        }
      }
      throw e;
    }
  }
}

class StreamImpl extends OwnedHandle implements CudaStream {
  constructor(c: CudaContext, h: H) {
    super(c, h, 'stream was destroyed');
  }
  synchronize(): void {
    this.c.addon.streamSynchronize(this.c.ctx(), this.live());
  }
  beginCapture(mode: CaptureMode = 'global'): void {
    const m = CAPTURE_MODES[mode];
    if (m === undefined) throw new TypeError(`capture mode must be one of ${Object.keys(CAPTURE_MODES).join(', ')}`);
    this.c.addon.streamBeginCapture(this.c.ctx(), this.live(), m);
  }
  endCapture(): CudaGraph {
    const g = new GraphImpl(this.c, this.c.addon.streamEndCapture(this.c.ctx(), this.live()));
    this.c.graphs.add(g);
    return g;
  }
  destroy(): void {
    const { ctx, h } = this.release(this.c.streams);
    this.c.addon.streamDestroy(ctx, h);
  }
}

class GraphImpl extends OwnedHandle implements CudaGraph {
  constructor(c: CudaContext, h: H) {
    super(c, h, 'graph was destroyed');
  }
  instantiate(): CudaGraphExec {
    const e = new GraphExecImpl(this.c, this.c.addon.graphInstantiate(this.c.ctx(), this.live()));
    this.c.graphExecs.add(e);
    return e;
  }
  destroy(): void {
    const { ctx, h } = this.release(this.c.graphs);
    this.c.addon.graphDestroy(ctx, h);
  }
}

class GraphExecImpl extends OwnedHandle implements CudaGraphExec {
  constructor(c: CudaContext, h: H) {
    super(c, h, 'graph exec was destroyed');
  }
  launch(stream: CudaStream): void {
    this.c.addon.graphLaunch(this.c.ctx(), this.live(), streamHandle(stream));
  }
  destroy(): void {
    const { ctx, h } = this.release(this.c.graphExecs);
    this.c.addon.graphExecDestroy(ctx, h);
  }
}

class EventImpl extends OwnedHandle implements CudaEvent {
  constructor(c: CudaContext, h: H) {
    super(c, h, 'event was destroyed');
  }
  record(stream: CudaStream | null): void {
    this.c.addon.eventRecord(this.c.ctx(), this.live(), streamHandle(stream));
  }
  synchronize(): void {
    this.c.addon.eventSynchronize(this.c.ctx(), this.live());
  }
  elapsedMs(since: CudaEvent): number {
    if (!(since instanceof EventImpl)) throw new TypeError('since must come from Cuda.createEvent()');
    return this.c.addon.eventElapsed(this.c.ctx(), since.live(), this.live());
  }
  destroy(): void {
    const { ctx, h } = this.release(this.c.events);
    this.c.addon.eventDestroy(ctx, h);
  }
}

// ---- kernel parameters ----

const PARAM_SIZE = { u64: 8, u32: 4, i32: 4, f32: 4, tmap: 128 } as const;
/** Alignment in the parameter buffer: each scalar's size; a tensor map 64 (PTX: `.param .align 64 .b8 name[128]`). */
const PARAM_ALIGN = { u64: 8, u32: 4, i32: 4, f32: 4, tmap: 64 } as const;

export type KernelParam =
  | { type: 'u64' | 'u32' | 'i32' | 'f32'; value: number | bigint }
  | { type: 'tmap'; value: Uint8Array };

/**
 * Packs kernel parameters: 'u64' (device pointers, bigint), 'u32', 'i32', 'f32', each aligned to its
 * size; 'tmap', a 128-byte tensor map (Cuda.tensorMapEncodeTiled) passed by value, 64-byte aligned.
 */
export function packParams(params: KernelParam[]): { bytes: Uint8Array; offsets: Uint32Array } {
  const offsets = new Uint32Array(params.length);
  let end = 0;
  params.forEach((p, i) => {
    const size = PARAM_SIZE[p.type], align = PARAM_ALIGN[p.type];
    if (size === undefined) throw new TypeError(`parameter ${i}: unknown type ${String(p.type)}`);
    end = Math.ceil(end / align) * align;
    offsets[i] = end;
    end += size;
  });
  const bytes = new Uint8Array(end);
  const dv = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  params.forEach((p, i) => {
    const off = offsets[i]!;
    if (p.type === 'tmap') {
      if (!(p.value instanceof Uint8Array) || p.value.length !== 128) throw new TypeError(`parameter ${i}: a tensor map must be a Uint8Array of 128 bytes`);
      bytes.set(p.value, off);
      return;
    }
    const v = p.value;
    switch (p.type) {
      case 'u64': {
        const b = typeof v === 'bigint' ? v : Number.isSafeInteger(v) && v >= 0 ? BigInt(v) : NaN;
        if (typeof b !== 'bigint' || b < 0n || b > 0xffffffffffffffffn) throw new RangeError(`parameter ${i}: u64 value out of range: ${String(v)}`);
        dv.setBigUint64(off, b, true);
        break;
      }
      case 'u32':
        if (typeof v !== 'number' || !Number.isInteger(v) || v < 0 || v > 0xffffffff) throw new RangeError(`parameter ${i}: u32 value out of range: ${String(v)}`);
        dv.setUint32(off, v, true);
        break;
      case 'i32':
        if (typeof v !== 'number' || !Number.isInteger(v) || v < -0x80000000 || v > 0x7fffffff) throw new RangeError(`parameter ${i}: i32 value out of range: ${String(v)}`);
        dv.setInt32(off, v, true);
        break;
      case 'f32':
        if (typeof v !== 'number') throw new TypeError(`parameter ${i}: f32 value must be a number`);
        dv.setFloat32(off, v, true);
        break;
    }
  });
  return { bytes, offsets };
}
