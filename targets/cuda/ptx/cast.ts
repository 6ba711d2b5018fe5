// f32 activation rows → bf16/f16 rows: the tensor-core GEMMs (gemm.ts) read 16-bit inputs, while
// the residual stream and most activations stay f32. Padding columns are converted too (0 → 0),
// so the 16-bit rows keep the device layout's zero padding (layout.ts).
import { KernelBuilder } from './builder.js';
import type { Kernel } from './dense.js';
import { pad8 } from './layout.js';

export const CAST_THREADS = 256;

/**
 * Elements a thread converts: 8, two 16-byte f32 loads and one 16-byte store. Rows are pad8(width)
 * elements, so a row is a whole number of eights and every eight starts 32-byte aligned (f32) and
 * 16-byte aligned (16-bit). (Two a thread, 8-byte loads, ran at about 2.2 TB/s on the H200: the
 * largest kernel family of a 1B training step, bench/NOTES.md session 16.)
 */
export const CAST_PER_THREAD = 8;

/** Blocks along x for rows of `width` (CAST_PER_THREAD elements a thread). */
export const castGrid = (width: number): number => Math.ceil(pad8(width) / CAST_PER_THREAD / CAST_THREADS);

/** y[t, :] = x[t, :] rounded to nearest even in `dtype`. Params y, x. Grid (castGrid(width), T), block CAST_THREADS. */
export function castRows(dtype: 'bf16' | 'f16', width: number): Kernel {
  const name = `cast_${dtype}_w${width}`;
  const w = pad8(width), per = CAST_PER_THREAD;
  const k = new KernelBuilder(name, [{ name: 'y', type: 'u64' }, { name: 'x', type: 'u64' }]);
  k.blockSize(CAST_THREADS);
  const y = k.ptrParam('y'), x = k.ptrParam('x');
  const tid = k.special('%tid.x', 'tid'), bx = k.special('%ctaid.x', 'bx'), t = k.special('%ctaid.y', 't');
  const eight = k.reg('u32', 'eight'), p = k.reg('pred', 'p'), done = k.label('done');
  k.emit(`mad.lo.u32 ${eight}, ${bx}, ${CAST_THREADS}, ${tid}`, `setp.ge.u32 ${p}, ${eight}, ${w / per}`, `@${p} bra ${done}`);
  const i = k.reg('u32', 'i');
  k.emit(`mad.lo.u32 ${i}, ${t}, ${w / per}, ${eight}`); // index of the eight over all rows: elements 8i .. 8i+7
  const f = Array.from({ length: per }, (_, j) => k.reg('f32', `f${j}`)), h = Array.from({ length: per / 2 }, (_, j) => k.reg('b32', `h${j}`));
  const src = k.addr(x, i, per * 4);
  k.emit(`ld.global.v4.f32 {${f.slice(0, 4).join(', ')}}, [${src}]`, `ld.global.v4.f32 {${f.slice(4).join(', ')}}, [${src}+16]`);
  // cvt.rn.{bf16,f16}x2.f32 d, hi, lo: the element at the lower address goes in the low half
  for (let j = 0; j < per / 2; j++) k.emit(`cvt.rn.${dtype}x2.f32 ${h[j]}, ${f[2 * j + 1]}, ${f[2 * j]}`);
  k.emit(`st.global.v4.b32 [${k.addr(y, i, per * 2)}], {${h.join(', ')}}`);
  k.place(done);
  return { name, text: k.render() };
}
