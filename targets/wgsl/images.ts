// Device images of a program's weights and constants: the same bytes as the CUDA target uploads
// (lowering/device-image.ts: stored dtype, rows padded to 8 elements; transposes and RoPE tables
// computed on the host).
import type { RunnableModel } from '../target.js';
import { constImage, weightImage } from '../lowering/device-image.js';
import type { WgslProgram } from './program.js';
import type { ImageSource } from './runtime/session.js';

/** Device images of a program's weights and constants, from the model's tensors. */
export function modelImages(model: RunnableModel, program: WgslProgram): ImageSource {
  const consts = new Map(program.consts.map((c) => [c.name, c]));
  return (name) => {
    const c = consts.get(name);
    if (c) return constImage(c, model.weights, program.kvCache.capacity);
    const src = model.weights.get(name);
    if (!src) throw new Error(`weight ${name} is missing`);
    return weightImage(src);
  };
}

