// Program vocabulary both GPU targets share: their launch/dispatch programs differ (targets/cuda/
// program.ts, targets/wgsl/program.ts), but grid sizes and host-computed constants are written
// the same way, and a constant's device image (device-image.ts) is the same bytes for both.

/** A grid dimension: a number, or 'T' for the number of tokens in the call. */
export type GridDim = number | 'T';

/** A constant computed on the host from the weights and the model's attributes. */
export type ConstDecl =
  | { name: string; kind: 'transpose'; of: string }
  | { name: string; kind: 'rope'; headDim: number; theta: number; llama3?: { factor: number; lowFreqFactor: number; highFreqFactor: number; originalMaxPos: number } };
