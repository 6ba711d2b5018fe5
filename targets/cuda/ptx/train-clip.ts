// Global-norm gradient clipping as src/train/clip-grad.ts defines it (torch's clip_grad_norm_, the
// 2-norm): ‖g‖ = √(Σ g²) over every element of every gradient tensor; the gradients are to be
// multiplied by maxNorm / (‖g‖ + 1e-6) when ‖g‖ > maxNorm, else (and when ‖g‖ is not finite, where
// clip-grad.ts leaves them as they are) by 1. Here nothing is multiplied: the scale is left in device
// memory and the AdamW kernel (train-adamw.ts) multiplies each gradient element as it reads it.
//
// Deterministic in two phases (no float atomics):
//   1. gradSumSquares, one launch a tensor: CTA b of the tensor's clipBlocks(n) sums g² over the
//      elements b·THREADS + tid + k·(blocks·THREADS) (f32, per thread, then a shared-memory tree)
//      and writes partials[first + b]; clipPlan gives every tensor its `first`.
//   2. clipScale, one CTA: sums the partials in the same fixed way, writes out[0] = the scale and
//      out[1] = the norm (for the log). Params out, partials, count, maxNorm (f32).
import { f32Imm, KernelBuilder } from './builder.js';
import type { Kernel } from './dense.js';
import { blockReduceTree, loadF32, stridedLoop } from './train-reduce.js';

export const CLIP_THREADS = 256;
/** Elements a thread of gradSumSquares sums at least (fewer CTAs for small tensors), and its CTA cap. */
const PER_THREAD = 8, MAX_BLOCKS = 1024;

/** clip-grad.ts's guard against dividing by a zero norm. */
const CLIP_EPS = 1e-6;

/** gradSumSquares's CTAs (its grid's x) for a tensor of n elements (n = 0: none). */
export const clipBlocks = (n: number): number => Math.min(MAX_BLOCKS, Math.ceil(n / (CLIP_THREADS * PER_THREAD)));

/** Each tensor's first partial and the partials in all: the partials buffer has `count` f32. */
export function clipPlan(sizes: readonly number[]): { first: number[]; blocks: number[]; count: number } {
  const blocks = sizes.map(clipBlocks), first: number[] = [];
  let count = 0;
  for (const b of blocks) first.push(count), (count += b);
  return { first, blocks, count };
}

/** Phase 1 for one gradient tensor of `dtype`. Params partials, grad, n, first. Grid [clipBlocks(n), 1, 1], CLIP_THREADS. */
export function gradSumSquares(dtype: 'f32' | 'bf16'): Kernel {
  const name = `grad_sumsq_${dtype}`;
  const k = new KernelBuilder(name, [{ name: 'partials', type: 'u64' }, { name: 'grad', type: 'u64' }, { name: 'n', type: 'u32' }, { name: 'first', type: 'u32' }]);
  k.blockSize(CLIP_THREADS);
  const partials = k.ptrParam('partials'), grad = k.ptrParam('grad'), n = k.u32Param('n'), first = k.u32Param('first');
  const tid = k.special('%tid.x', 'tid'), bx = k.special('%ctaid.x', 'bx');
  const start = k.reg('u32', 'start'), step = k.reg('u32', 'step'), x = k.reg('f32', 'x'), acc = k.reg('f32', 'acc');
  k.emit(`mad.lo.u32 ${start}, ${bx}, ${CLIP_THREADS}, ${tid}`, `mov.u32 ${step}, %nctaid.x`, `mul.lo.u32 ${step}, ${step}, ${CLIP_THREADS}`, `mov.f32 ${acc}, 0f00000000`);
  stridedLoop(k, start, n, step, (i) => {
    loadF32(k, dtype, k.addr(grad, i, dtype === 'f32' ? 4 : 2), x);
    k.emit(`fma.rn.f32 ${acc}, ${x}, ${x}, ${acc}`);
  });
  blockReduceTree(k, acc, tid, CLIP_THREADS, 'add');
  const p = k.reg('pred', 'p'), slot = k.reg('u32', 'slot'), done = k.label('done');
  k.emit(`setp.ne.u32 ${p}, ${tid}, 0`, `@${p} bra ${done}`, `add.u32 ${slot}, ${first}, ${bx}`);
  k.emit(`st.global.f32 [${k.addr(partials, slot, 4)}], ${acc}`);
  k.place(done);
  return { name, text: k.render() };
}

/** Phase 2. Params out ([2] f32: scale, norm), partials, count, maxNorm (f32, > 0). Grid [1, 1, 1], CLIP_THREADS. */
export function clipScale(): Kernel {
  const name = 'clip_scale';
  const k = new KernelBuilder(name, [{ name: 'out', type: 'u64' }, { name: 'partials', type: 'u64' }, { name: 'count', type: 'u32' }, { name: 'maxNorm', type: 'f32' }]);
  k.blockSize(CLIP_THREADS);
  const out = k.ptrParam('out'), partials = k.ptrParam('partials'), count = k.u32Param('count'), maxNorm = k.f32Param('maxNorm');
  const tid = k.special('%tid.x', 'tid');
  const acc = k.reg('f32', 'acc'), x = k.reg('f32', 'x');
  k.emit(`mov.f32 ${acc}, 0f00000000`);
  stridedLoop(k, tid, count, CLIP_THREADS, (j) => k.emit(`ld.global.f32 ${x}, [${k.addr(partials, j, 4)}]`, `add.rn.f32 ${acc}, ${acc}, ${x}`));
  blockReduceTree(k, acc, tid, CLIP_THREADS, 'add');
  const p = k.reg('pred', 'p'), done = k.label('done');
  k.emit(`setp.ne.u32 ${p}, ${tid}, 0`, `@${p} bra ${done}`);
  const norm = k.reg('f32', 'norm'), scale = k.reg('f32', 'scale'), clips = k.reg('pred', 'clips'), finite = k.reg('pred', 'finite');
  // clips when norm > maxNorm and norm < +inf (both false for NaN: ordered compares)
  k.emit(`sqrt.rn.f32 ${norm}, ${acc}`, `setp.gt.f32 ${clips}, ${norm}, ${maxNorm}`, `setp.lt.f32 ${finite}, ${norm}, 0f7F800000`, `and.pred ${clips}, ${clips}, ${finite}`);
  k.emit(`add.rn.f32 ${scale}, ${norm}, ${f32Imm(CLIP_EPS)}`, `div.rn.f32 ${scale}, ${maxNorm}, ${scale}`, `selp.f32 ${scale}, ${scale}, 0f3F800000, ${clips}`);
  k.emit(`st.global.f32 [${out}], ${scale}`, `st.global.f32 [${out}+4], ${norm}`);
  k.place(done);
  return { name, text: k.render() };
}
