// f32 activation rows → bf16/f16 rows: the tensor-core GEMMs (gemm.ts) read 16-bit inputs, while
// the residual stream and most activations stay f32. Padding columns are converted too (0 → 0),
// so the 16-bit rows keep the device layout's zero padding (layout.ts).
import { KernelBuilder } from './builder.js';
import type { Kernel } from './dense.js';
import { pad8 } from './layout.js';

export const CAST_THREADS = 256;

/** Blocks along x for rows of `width` (two elements a thread). */
export const castGrid = (width: number): number => Math.ceil(pad8(width) / 2 / CAST_THREADS);

/** y[t, :] = x[t, :] rounded to nearest even in `dtype`. Params y, x. Grid (castGrid(width), T), block CAST_THREADS. */
export function castRows(dtype: 'bf16' | 'f16', width: number): Kernel {
  const name = `cast_${dtype}_w${width}`;
  const w = pad8(width);
  const k = new KernelBuilder(name, [{ name: 'y', type: 'u64' }, { name: 'x', type: 'u64' }]);
  k.blockSize(CAST_THREADS);
  const y = k.ptrParam('y'), x = k.ptrParam('x');
  const tid = k.special('%tid.x', 'tid'), bx = k.special('%ctaid.x', 'bx'), t = k.special('%ctaid.y', 't');
  const pair = k.reg('u32', 'pair'), p = k.reg('pred', 'p'), done = k.label('done');
  k.emit(`mad.lo.u32 ${pair}, ${bx}, ${CAST_THREADS}, ${tid}`, `setp.ge.u32 ${p}, ${pair}, ${w / 2}`, `@${p} bra ${done}`);
  const i = k.reg('u32', 'i');
  k.emit(`mad.lo.u32 ${i}, ${t}, ${w / 2}, ${pair}`); // pair index over all rows: element 2i
  const a = k.reg('f32', 'a'), b = k.reg('f32', 'b'), h = k.reg('b32', 'h');
  k.emit(`ld.global.v2.f32 {${a}, ${b}}, [${k.addr(x, i, 8)}]`);
  // cvt.rn.{bf16,f16}x2.f32 d, hi, lo: the element at the lower address goes in the low half
  k.emit(`cvt.rn.${dtype}x2.f32 ${h}, ${b}, ${a}`, `st.global.b32 [${k.addr(y, i, 4)}], ${h}`);
  k.place(done);
  return { name, text: k.render() };
}
