// Device layout shared by the generators and the runtime: every matrix (weights and activations)
// is stored row-major with its row stride padded to a multiple of 8 elements, and the padding is
// zero. Kernels can then read whole 16-byte chunks of any row without tail cases: the padded
// weights are zero, and so are the padded activations (buffers are zeroed when allocated and no
// kernel writes past a row's logical width).

export type WeightDType = 'f32' | 'f16' | 'bf16';

export const CHUNK = 8;
export const pad8 = (n: number): number => Math.ceil(n / CHUNK) * CHUNK;
export const elemBytes = (d: WeightDType): number => (d === 'f32' ? 4 : 2);
