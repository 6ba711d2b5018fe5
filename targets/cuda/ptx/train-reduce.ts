// Pieces the training kernels share (train-loss.ts, train-adamw.ts, train-clip.ts): a block-wide
// reduction through shared memory, a strided loop over a row, and bf16 element loads and stores.
// Everything here is SIMT (no warp shuffles or votes), so test/helpers/ptx-sim.ts runs these kernels
// on the CPU, and deterministic: a reduction pairs the same threads in the same order every launch,
// so a loss or a gradient norm is bit for bit the same from run to run (no float atomics).
import type { KernelBuilder } from './builder.js';

/**
 * Reduces `v` (f32 or u32) over a block of `threads` threads (a power of two, at most 1024) with
 * `op`; afterwards every thread holds the result in `v`. A tree in shared memory: at level s,
 * thread i < s combines its value with thread i + s's, one barrier a level (log2(threads) + 2 in
 * all). Every thread of the block must run it (it has barriers). Ends with a barrier, so a caller
 * may call it again at once.
 */
export function blockReduceTree(k: KernelBuilder, v: string, tid: string, threads: number, op: 'add' | 'max', type: 'f32' | 'u32' = 'f32'): void {
  if (!(threads >= 1 && threads <= 1024 && (threads & (threads - 1)) === 0)) throw new Error(`PTX generator bug in ${k.name}: tree reduction over ${threads} threads`);
  const sh = k.sharedArray('tree', 'b8', threads * 4, 4);
  const my = k.reg('u32', 'sa'), w = k.reg(type, 'w'), p = k.reg('pred', 'p');
  k.emit(`mov.u32 ${my}, ${sh}`, `mad.lo.u32 ${my}, ${tid}, 4, ${my}`, `st.shared.${type} [${my}], ${v}`, 'bar.sync 0');
  for (let s = threads / 2; s >= 1; s /= 2) {
    k.emit(`setp.lt.u32 ${p}, ${tid}, ${s}`, `@${p} ld.shared.${type} ${w}, [${my}+${4 * s}]`, `@${p} ${op}.${type} ${v}, ${v}, ${w}`, `@${p} st.shared.${type} [${my}], ${v}`, 'bar.sync 0');
  }
  k.emit(`ld.shared.${type} ${v}, [${sh}]`, 'bar.sync 0');
}

/**
 * Emits `body(j)` for j = start, start + step, ... while j < end (u32 registers or immediates; j is
 * a fresh u32 register the body must not change). Threads may leave at different trip counts: the
 * body must hold no barrier.
 */
export function stridedLoop(k: KernelBuilder, start: string, end: string, step: string | number, body: (j: string) => void): void {
  const j = k.reg('u32', 'j'), p = k.reg('pred', 'p');
  const top = k.label('loop'), out = k.label('loop_end');
  k.emit(`mov.u32 ${j}, ${start}`);
  k.place(top);
  k.emit(`setp.ge.u32 ${p}, ${j}, ${end}`, `@${p} bra ${out}`);
  body(j);
  k.emit(`add.u32 ${j}, ${j}, ${step}`, `bra ${top}`);
  k.place(out);
}

/** Loads the f32 or bf16 element at `a` (not through the read-only cache: training state changes) into the f32 `out`. */
export function loadF32(k: KernelBuilder, dtype: 'f32' | 'bf16', a: string, out: string, guard?: string): void {
  const g = guard ? `@${guard} ` : '';
  if (dtype === 'f32') {
    k.emit(`${g}ld.global.f32 ${out}, [${a}]`);
    return;
  }
  const w = k.reg('u32', 'w');
  // bf16 is the high half of an f32: the bits shifted up are the value exactly
  k.emit(`mov.u32 ${w}, 0`, `${g}ld.global.u16 ${w}, [${a}]`, `shl.b32 ${w}, ${w}, 16`, `mov.b32 ${out}, ${w}`);
}

/** Stores the f32 `v` at `a` as f32, or as bf16 rounded to nearest even. */
export function storeF32(k: KernelBuilder, dtype: 'f32' | 'bf16', a: string, v: string): void {
  if (dtype === 'f32') {
    k.emit(`st.global.f32 [${a}], ${v}`);
    return;
  }
  const h = k.reg('b16', 'h');
  k.emit(`cvt.rn.bf16.f32 ${h}, ${v}`, `st.global.b16 [${a}], ${h}`);
}

