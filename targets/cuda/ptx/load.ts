// Loading weight (and KV-cache) elements of any stored type into float32 registers, and storing
// float32 values as the KV cache's type.
import type { KernelBuilder } from './builder.js';
import type { WeightDType } from './layout.js';

/**
 * Issues the load of 8 consecutive elements at `a` without converting them: 8 f32 registers for
 * f32, 4 packed words for f16/bf16 (convert with rawToF32). Emitting every load of a round before
 * any arithmetic on them keeps them all in flight: a warp stalls at the first instruction that
 * needs a value still in memory.
 */
export function loadRaw8(k: KernelBuilder, dtype: WeightDType, a: string, data: 'weight' | 'activation' = 'weight', guard?: string): string[] {
  // A guarded load (only where `guard` holds) leaves zeros otherwise: 0.0 in every dtype.
  const ld = `${guard ? `@${guard} ` : ''}${data === 'weight' ? 'ld.global.nc' : 'ld.global'}`;
  const zero = (regs: string[]) => {
    if (guard) for (const r of regs) k.emit(`mov.b32 ${r}, 0`);
  };
  if (dtype === 'f32') {
    const out = k.regs('f32', 'v', 8);
    zero(out);
    k.emit(`${ld}.v4.f32 {${out.slice(0, 4).join(', ')}}, [${a}]`, `${ld}.v4.f32 {${out.slice(4, 8).join(', ')}}, [${a}+16]`);
    return out;
  }
  const w = k.regs('b32', 'w', 4);
  zero(w);
  k.emit(`${ld}.v4.b32 {${w.join(', ')}}, [${a}]`);
  return w;
}

/** The 8 f32 values of a loadRaw8 result. */
export function rawToF32(k: KernelBuilder, dtype: WeightDType, raw: string[]): string[] {
  if (dtype === 'f32') return raw;
  const out = k.regs('f32', 'v', 8);
  unpack8(k, dtype, raw, out);
  return out;
}

/** Turns 4 words holding 8 packed f16/bf16 values (low half first) into 8 f32 registers. */
export function unpack8(k: KernelBuilder, dtype: 'f16' | 'bf16', w: string[], out: string[]): void {
  unpackWords(k, dtype, w.slice(0, 4), out);
}

/** Turns words holding packed f16/bf16 pairs (low half first) into twice as many f32 registers. */
export function unpackWords(k: KernelBuilder, dtype: 'f16' | 'bf16', w: string[], out: string[]): void {
  for (let i = 0; i < w.length; i++) {
    if (dtype === 'bf16') {
      const lo = k.reg('b32', 'lo');
      const hi = k.reg('b32', 'hi');
      k.emit(`shl.b32 ${lo}, ${w[i]}, 16`, `and.b32 ${hi}, ${w[i]}, -65536`, `mov.b32 ${out[2 * i]}, ${lo}`, `mov.b32 ${out[2 * i + 1]}, ${hi}`);
    } else {
      const h0 = k.reg('b16', 'h');
      const h1 = k.reg('b16', 'h');
      k.emit(`mov.b32 {${h0}, ${h1}}, ${w[i]}`, `cvt.f32.f16 ${out[2 * i]}, ${h0}`, `cvt.f32.f16 ${out[2 * i + 1]}, ${h1}`);
    }
  }
}

/** Loads one element at `a` as f32. */
export function loadScalar(k: KernelBuilder, dtype: WeightDType, a: string, out: string): void {
  if (dtype === 'f32') {
    k.emit(`ld.global.nc.f32 ${out}, [${a}]`);
  } else if (dtype === 'f16') {
    const h = k.reg('b16', 'h');
    k.emit(`ld.global.nc.b16 ${h}, [${a}]`, `cvt.f32.f16 ${out}, ${h}`);
  } else {
    const w = k.reg('u32', 'w');
    k.emit(`ld.global.nc.u16 ${w}, [${a}]`, `shl.b32 ${w}, ${w}, 16`, `mov.b32 ${out}, ${w}`);
  }
}

/**
 * Stores the f32 register `v` at global address `a` as `dtype`: f32 as is, f16/bf16 rounded to
 * nearest even (cvt.rn; a value beyond the f16 range becomes ±inf, as torch's .half() does).
 */
export function storeAs(k: KernelBuilder, dtype: WeightDType, a: string, v: string): void {
  if (dtype === 'f32') {
    k.emit(`st.global.f32 [${a}], ${v}`);
    return;
  }
  const h = k.reg('b16', 'h');
  k.emit(`cvt.rn.${dtype}.f32 ${h}, ${v}`, `st.global.b16 [${a}], ${h}`);
}
