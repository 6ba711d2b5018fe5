// Zeroes the padding of f32 rows: columns width .. pad8(width) − 1 of each row (layout.ts). The
// training kernels never write a row's padding (train-elementwise.ts), so a weight gradient's padding
// holds whatever the arena held there; the CUDA optimizer (targets/cuda/train/optimizer.ts) zeroes it
// before it treats a gradient as one flat vector of rows · pad8(width) elements: then the padding adds
// nothing to the squared norm (train-clip.ts) and AdamW (train-adamw.ts) keeps the zero padding of the
// param and its moments zero (g = m = v = p = 0 gives an update of 0 / ε = 0).
//
// One thread a row, writing its pad8(width) − width (1..7) zeros; grid padZeroGrid(rows), PAD_ZERO_THREADS
// threads (1-D: rows may pass the grid's y limit, as a vocabulary's do). Params x (u64), rows (u32).
// A width that is a multiple of 8 has no padding: nothing to launch (the generator refuses it).
import { KernelBuilder } from './builder.js';
import type { Kernel } from './dense.js';
import { pad8 } from './layout.js';

export const PAD_ZERO_THREADS = 256;

export const padZeroGrid = (rows: number): [number, number, number] => [Math.ceil(rows / PAD_ZERO_THREADS), 1, 1];

/** Whether rows of `width` have padding (else padZero has nothing to do). */
export const hasPadding = (width: number): boolean => pad8(width) !== width;

export function padZero(width: number): Kernel {
  if (!hasPadding(width)) throw new Error(`PTX generator bug: pad_zero for width ${width}, which has no padding`);
  const name = `pad_zero_w${width}`, ld = pad8(width);
  const k = new KernelBuilder(name, [{ name: 'x', type: 'u64' }, { name: 'rows', type: 'u32' }]);
  k.blockSize(PAD_ZERO_THREADS);
  const x = k.ptrParam('x'), rows = k.u32Param('rows');
  const tid = k.special('%tid.x', 'tid'), bx = k.special('%ctaid.x', 'bx');
  const r = k.reg('u32', 'r'), out = k.reg('pred', 'out'), first = k.reg('u32', 'first'), done = k.label('done');
  k.emit(`mad.lo.u32 ${r}, ${bx}, ${PAD_ZERO_THREADS}, ${tid}`, `setp.ge.u32 ${out}, ${r}, ${rows}`, `@${out} bra ${done}`);
  k.emit(`mad.lo.u32 ${first}, ${r}, ${ld}, ${width}`);
  const a = k.addr(x, first, 4);
  for (let c = 0; c < ld - width; c++) k.emit(`st.global.f32 [${a}+${4 * c}], 0f00000000`);
  k.place(done);
  return { name, text: k.render() };
}
