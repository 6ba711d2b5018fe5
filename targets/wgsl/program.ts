// The dispatch program the WGSL lowering produces: plain data (JSON in a bundle), run by the
// runtime in runtime/ in Node or a browser. Sizes that depend on the tokens in a call are 'T'.
import type { ConstDecl } from '../lowering/program.js';
import type { Binding, GridDim, Variant, WeightDType } from './kernel.js';

export type { ConstDecl };

export type WArg =
  | { kind: 'buf'; id: number }
  /** A weight, or rows [rowStart, rowStart + rows) of it when it is bound in ranges (too big for one binding). */
  | { kind: 'weight'; name: string; rowStart?: number; rows?: number }
  /** Host-computed constants: transposed weights, RoPE cos/sin tables. */
  | { kind: 'const'; name: string }
  | { kind: 'kv'; layer: number; which: 'k' | 'v' }
  /** The call's token ids (i32 [T]); greedy decoding writes the next token here on the device. */
  | { kind: 'tokens' }
  /**
   * The fused MoC FFN's selection histogram (u32 [T, WgslProgram.histBins]): state between its
   * dispatches, zero before each gate GEMV and after each masked down projection (kernels/moc-fused.ts).
   */
  | { kind: 'hist' };

export interface Dispatch {
  /** Key of a kernel in Program.kernels. */
  kernel: string;
  grid: [GridDim, GridDim, GridDim];
  args: WArg[];
  /** Which IR node it computes (for messages). */
  node: string;
}

export interface KernelSource {
  code: string;
  bindings: Binding[];
}

/** An activation buffer: `width` 4-byte elements per token, rows packed tightly. */
export interface BufferDecl {
  id: number;
  width: number;
  dtype: 'f32' | 'i32';
}

export interface WeightDecl {
  name: string;
  dtype: WeightDType;
  rows: number;
  cols: number;
}

export interface WgslProgram {
  format: 'mocc-wgsl-program';
  version: 1;
  variant: Variant;
  /** Kernel key → source; pipelines are created once per key. */
  kernels: Record<string, KernelSource>;
  steps: Dispatch[];
  /** Greedy decoding on the device: argmax of the last logits row into tokens[0]. */
  greedyTail: Dispatch[];
  buffers: BufferDecl[];
  weights: WeightDecl[];
  consts: ConstDecl[];
  kvCache: { layers: number; width: number; capacity: number };
  logits: { buf: number; vocab: number };
  /** Bins per token of the 'hist' buffer, when the program has fused MoC FFNs. */
  histBins?: number;
}
