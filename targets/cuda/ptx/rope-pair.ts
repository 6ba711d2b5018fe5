// The pieces of a RoPE rotation every rope kernel shares (attention.ts: rope, ropeStore; the training
// kernel train-elementwise.ts: ropeGrad): which two elements of a row form pair i of head h, where
// the pair's (cos, sin) sit in the host-computed table (targets/lowering/rope-table.ts: [maxPos, hd/2]
// f32 pairs, float64 angles like the ref target), and the rotation itself.
import type { KernelBuilder } from './builder.js';

/** Columns of pair i of head h: (h·hd + i, + hd/2) for 'half', (h·hd + 2i, + 1) for 'interleaved'. */
export function ropeColumns(k: KernelBuilder, h: string, i: string, hd: number, style: 'half' | 'interleaved'): { ia: string; ib: string } {
  const ia = k.reg('u32', 'ia'), ib = k.reg('u32', 'ib');
  if (style === 'half') k.emit(`mad.lo.u32 ${ia}, ${h}, ${hd}, ${i}`, `add.u32 ${ib}, ${ia}, ${hd / 2}`);
  else k.emit(`mad.lo.u32 ${ia}, ${h}, ${hd}, ${i}`, `add.u32 ${ia}, ${ia}, ${i}`, `add.u32 ${ib}, ${ia}, 1`);
  return { ia, ib };
}

/** Loads (cos, sin) of frequency i at `position` from the table [maxPos, hd/2] of f32 pairs. */
export function ropeCosSin(k: KernelBuilder, table: string, position: string, i: string, hd: number): [string, string] {
  const ti = k.reg('u32', 'ti'), c = k.reg('f32', 'c'), s = k.reg('f32', 's');
  k.emit(`mad.lo.u32 ${ti}, ${position}, ${hd / 2}, ${i}`);
  k.emit(`ld.global.nc.v2.f32 {${c}, ${s}}, [${k.addr(table, ti, 8)}]`);
  return [c, s];
}

/**
 * (a, b) rotated by the angle whose (cos, sin) is (c, s): (a·c − b·s, a·s + b·c), into two new
 * registers. The inverse rotation (rope's gradient) is this with s negated, exactly as the ref
 * target's ropeGrad is rope at the negated positions (cos(−x) = cos x, sin(−x) = −sin x).
 */
export function ropeRotate(k: KernelBuilder, a: string, b: string, c: string, s: string): [string, string] {
  const ra = k.reg('f32', 'ra'), rb = k.reg('f32', 'rb');
  k.emit(`mul.f32 ${ra}, ${b}, ${s}`);
  const nbs = k.neg(ra); // −b·s, emitted after the mul above
  k.emit(`fma.rn.f32 ${ra}, ${a}, ${c}, ${nbs}`);
  k.emit(`mul.f32 ${rb}, ${b}, ${c}`, `fma.rn.f32 ${rb}, ${a}, ${s}, ${rb}`);
  return [ra, rb];
}
