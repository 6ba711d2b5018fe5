// What a WGSL kernel generator returns, and the WGSL snippets every generator shares.
//
// Conventions (the runtime and every generator rely on them):
//  - One compute entry point, `main`, in a complete WGSL module.
//  - @group(0) @binding(0) is the per-call uniform `Call` (CALL_STRUCT below): T = tokens in this
//    call, pos = position of the call's first token in the KV cache.
//  - Storage buffers follow at @binding(1), (2), … in the order of `bindings`.
//  - Activations are f32 (or i32 indices), rows packed tightly: row t of a [T, n] value starts at t·n.
//  - Weights keep their stored type. Rows are padded to a multiple of 8 elements with zeros (the same
//    device image as the CUDA target, targets/lowering/device-image.ts): an f32 weight is `array<f32>` with row
//    stride pad8(cols); an f16 or bf16 weight is `array<u32>`, two elements a word (element 2i in
//    the low half), row stride pad8(cols)/2 words. No `shader-f16` is needed.
//  - Kernel text is deterministic; `key` names everything the text depends on, and the runtime
//    caches pipelines by it.
import type { GridDim } from '../lowering/program.js';
import type { WeightDType } from '../lowering/device-image.js';

export type { GridDim, WeightDType };

/**
 * Which family of kernels to generate. 'cpu' (SwiftShader and other CPU adapters): one output per
 * invocation and no workgroup barriers, because there a barrier costs far more than the work (a
 * 344×256 GEMV measured ~85 ms with a 256-thread barrier reduction, ~0.7 ms without). 'gpu':
 * workgroups cooperate through workgroup memory and barriers.
 */
export type Variant = 'cpu' | 'gpu';

export interface Binding {
  /** The WGSL variable name, for messages. */
  name: string;
  access: 'read' | 'read_write';
}

export interface WgslKernel {
  /** Deterministic cache key; two kernels with one key have the same code. */
  key: string;
  /** A complete WGSL module with `@compute fn main`. */
  code: string;
  /** Storage buffers at @binding(1..n), in order. */
  bindings: Binding[];
  /** Workgroups to dispatch; 'T' is the number of tokens in the call. */
  grid: [GridDim, GridDim, GridDim];
}

export const CALL_STRUCT = `struct Call { T: u32, pos: u32, pad0: u32, pad1: u32 }
@group(0) @binding(0) var<uniform> call: Call;`;

/**
 * lowering/device-image.ts's pad8, restated: this file ships in the browser bundle's lib/ (bundle.ts
 * LIB_FILES), which holds no lowering code, so it may import types only.
 */
export const pad8 = (n: number): number => Math.ceil(n / 8) * 8;

/** Row stride of a weight in its WGSL array's elements (f32) or words (f16/bf16). */
export const weightStride = (dtype: WeightDType, cols: number): number => (dtype === 'f32' ? pad8(cols) : pad8(cols) / 2);

/** Bytes of one stored weight row: the stride of its row ranges when it is bound in pieces. */
export const weightRowBytes = (dtype: WeightDType, cols: number): number => 4 * weightStride(dtype, cols);

/** WGSL element type of a weight's storage array. */
export const weightArrayType = (dtype: WeightDType): string => (dtype === 'f32' ? 'array<f32>' : 'array<u32>');

/**
 * WGSL helpers that read weights as f32: `wpair(buf_word) -> vec2<f32>` unpacks one word (two
 * elements) for f16/bf16. Emitted once per module that reads packed weights.
 */
export function unpackFn(dtype: WeightDType): string {
  if (dtype === 'f16') return 'fn wpair(w: u32) -> vec2<f32> { return unpack2x16float(w); }';
  if (dtype === 'bf16') return 'fn wpair(w: u32) -> vec2<f32> { return vec2<f32>(bitcast<f32>(w << 16u), bitcast<f32>(w & 0xffff0000u)); }';
  return '';
}

/** Storage binding declaration line: `@group(0) @binding(i) var<storage, access> name: type;` */
export function storage(i: number, name: string, access: Binding['access'], type: string): string {
  return `@group(0) @binding(${i}) var<storage, ${access}> ${name}: ${type};`;
}

/** A float as a WGSL f32 literal that round-trips exactly (e.g. eps, scales). */
export function f32Lit(x: number): string {
  const v = Math.fround(x);
  if (!Number.isFinite(v)) throw new Error(`not a finite f32: ${x}`);
  if (Number.isInteger(v) && Math.abs(v) < 2 ** 24) return `${v}.0`;
  return `${v.toPrecision(9)}`.replace(/^(-?\d+)e/, '$1.0e');
}

/** A storage buffer a generator declares: its WGSL name, access and element type. */
export interface StorageBuffer {
  name: string;
  access: Binding['access'];
  type: string;
}

/** A kernel from its storage buffers (bound at 1..n after the Call uniform), body and grid. */
export function assemble(key: string, buffers: StorageBuffer[], body: string, grid: WgslKernel['grid']): WgslKernel {
  const decls = buffers.map((b, i) => storage(i + 1, b.name, b.access, b.type));
  return {
    key,
    code: [CALL_STRUCT, ...decls, body.trim(), ''].join('\n'),
    bindings: buffers.map(({ name, access }) => ({ name, access })),
    grid,
  };
}

/** Throws unless every value is an integer ≥ min (sizes: 1; offsets: 0). */
export function checkInts(op: string, values: Record<string, number>, min = 1): void {
  for (const [name, v] of Object.entries(values)) {
    if (!Number.isSafeInteger(v) || v < min) throw new RangeError(`${op}: ${name} must be an integer ≥ ${min}, got ${v}`);
  }
}

/** Invocations per workgroup of the kernels that give each invocation one output. */
export const ELEM_WG = 64;

/** Workgroups needed for n items, per to a workgroup. */
export const groups = (n: number, per: number): number => Math.ceil(n / per);
