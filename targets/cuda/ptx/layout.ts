// Device layout shared by the generators and the runtime: every matrix (weights and activations)
// is stored row-major with its row stride padded to a multiple of 8 elements, and the padding is
// zero. Kernels can then read whole 16-byte chunks of any row without tail cases: the padded
// weights are zero, and so are the padded activations (buffers are zeroed when allocated and no
// kernel writes past a row's logical width). The padding is the weights' device image, shared with
// the WGSL target (targets/lowering/device-image.ts).
import { elemBytes, pad8, ROW_ALIGN, type WeightDType } from '../../lowering/device-image.js';

import type { KvDType } from '../program.js';

export { elemBytes, pad8, type WeightDType };

/** Kernel-name suffix for a KV-cache dtype: none for f32 (the names from before 16-bit caches). */
export const kvTag = (dtype: KvDType): string => (dtype === 'f32' ? '' : `_kv${dtype}`);

/** Elements a kernel reads as one chunk: a padded row is whole chunks. */
export const CHUNK = ROW_ALIGN;
