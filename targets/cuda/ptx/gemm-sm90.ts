// Tensor-core GEMM for Hopper (sm_90a only): Y[M, N] (+)= op(X) · op(W) with the same contract as
// gemm.ts (the sm_80 kernel), in its three operand layouts (Gemm90Spec.layout, gemm.ts's header):
//   'xwt' (default, the linear layer) Y = X·Wᵀ, x = X [M, K], w = W [N, K];
//   'xw'  (a linear's input gradient) Y = X·W,  x = X [M, K], w = W [K, N];
//   'xtw' (a linear's weight gradient) Y = Xᵀ·W, x = X [K, M], w = W [K, N].
// Every matrix has rows of pad8(its row length) elements (layout.ts). X and W f16/bf16, f32
// accumulation, Y f32 (or bf16); epilogue 'accumulate' (f32 Y) adds to Y (a residual), as gemm.ts's.
// The prefill program uses 'xwt' only when asked to (LowerOptions.wgmma, lower.ts hopperGemm).
//
// Structure. A persistent grid: CTA b computes the output tiles b, b + gridDim, ... (BM×BN each,
// BM = 64·consumers) in a grouped order (GROUP_M row tiles at a time, so the CTAs running at once
// share X and W tiles in L2). Warpgroup 0 is the producer: one thread issues, for each 64-wide K
// step, the bulk tensor copies (TMA) of the X and W tiles (one box each when K-major, one a 64-wide
// block when MN-major: below) into a ring of `stages` shared-memory stages. Warpgroups
// 1..consumers each own 64 rows of the tile and multiply with wgmma.mma_async m64nBNk16 reading both
// operands from shared memory; the accumulators (BN/2 f32 a thread) stay in registers, and the
// epilogue stores them straight to global memory. setmaxnreg moves registers from the producer
// to the consumers.
//
// Barriers (mbarrier, one 8-byte word each, per stage s):
//   full[s]  count 1: the producer's arrive.expect_tx(stage bytes); the stage's copies complete_tx
//            the bytes. Consumers wait for its phase.
//   empty[s] count 4·consumers: lane 0 of every consumer warp arrives once its wgmma reading the
//            stage have completed (wgmma.wait_group 0). The producer waits for it before refilling.
// Phases: stage use number u (u-th time round the ring, from 0) completes phase u of full[s]; a
// consumer waits with parity u & 1. The producer's u-th fill of s waits for the consumers' release
// of use u − 1, i.e. phase u − 1 of empty[s]: parity (u & 1) ^ 1. For u = 0 that is the phase
// "before" a fresh barrier, which try_wait.parity reports as complete, so the first pass round the
// ring does not block.
//
// Tails. The tensor maps (gemm90TensorMap) describe a K-major operand ([·, K] as stored: x of 'xwt'
// and 'xw', w of 'xwt') as K × rows (inner dimension K, row stride pad8(K)·2 bytes) and an MN-major
// one ([K, ·] as stored: w of 'xw'/'xtw', x of 'xtw') as rows × K (inner dimension M or N, row stride
// pad8(M or N)·2 bytes), rows being M for x and N for w; a box reaching past M, N or K is zero-filled
// by the copy engine, and complete_tx still counts the whole box, so M, N, K need no multiple and no
// row padding is ever read. (No box lies wholly outside: an MN-major tile's later boxes are moved
// back to start at the last multiple of 8 below M or N when M or N is small, copyTile below.) Stores are guarded against M and N. K = 0 stores zeros.
//
// Shared layout (128-byte swizzle). A stage is the X tile (BM·128 bytes) then the W tile (BN·128).
// A K-major tile is BM (BN) rows of 128 bytes (64 K elements), as the copy writes it with CU_TENSOR_MAP_SWIZZLE_128B: the 16-byte
// chunk c of row r lands at chunk c ^ (r % 8), the pattern taken from address bits, so every tile
// starts 1024-byte aligned. That is wgmma's K-major 128B-swizzle canonical layout: in the matrix
// descriptor (PTX ISA "Matrix Descriptor Format"), start address >> 4 in bits 0-13, leading byte
// offset (unused for swizzled K-major; 1 by convention) in 16-29, stride byte offset 1024 >> 4 (the
// distance between 8-row core-matrix groups) in 32-45, base offset 0 (tiles 1024-aligned) in 49-51,
// swizzle mode 1 (128B) in 62-63. The k-th 16-wide slice of the 64-wide step starts 32·k bytes
// further: start address + 2k, the swizzle being applied by the hardware on the full address.
//
// MN-major operands ('xw', 'xtw'). An operand stored [K, ·] is copied as it is stored, M (N)
// contiguous: boxes of 64 M (N) elements (128 bytes, the most a 128B-swizzled box row may hold) ×
// 64 K rows, 8 KB each, so the 64 rows of a consumer's A are one box and a BN-wide B is BN/64 boxes
// (BN a multiple of 64) laid one after another; the stage byte count is (BM + BN)·128 either way,
// and the full barrier's expect_tx counts all of a stage's boxes. In a box, K row r is the 128 bytes
// at 128·r, chunk c at c ^ (r % 8): wgmma's MN-major 128B-swizzle canonical layout, which in units
// of 16 bytes (T = 8 elements) is ((T, 8, m), (8, k)) : ((1, T, LBO), (8T, SBO)) — PTX ISA "Shared
// Memory Matrix Layout" (canonical layouts) and CUTLASS make_gmma_desc<Major::MN> (B128: ((8, n),
// (8, k)) : ((1, LBO), (8, SBO)) in 16-byte units, desc.leading_byte_offset = the MN stride, the
// stride byte offset = the K stride). So for MN-major the two offsets swap roles against K-major:
// the leading byte offset is the distance between 64-element MN blocks (8192 bytes, the next box:
// 512 in bits 16-29; for A, whose 64 rows are one block, it is never used) and the stride byte
// offset the distance between 8-row K groups (1024 bytes, 64 in bits 32-45, as for K-major); base
// offset 0 and swizzle mode 1 as above. The k-th 16-wide slice is K rows 16k..16k+15, 2048·k bytes
// further (start address + 128k; still 1024-aligned, so the base offset stays 0). wgmma reads such
// an operand with its transpose immediate set (imm-trans-a for A, imm-trans-b for B: 1 = M- (N-)
// major, allowed for 16-bit types); the accumulator fragment does not change.
//
// Accumulator fragment of m64nNk16 (PTX ISA, wgmma D layout): warp w of the warpgroup holds rows
// 16w + g and 16w + g + 8 (g = lane / 4); register 4j + i holds column 8j + 2(lane % 4) + (i % 2),
// row + 8 when i >= 2.
import { KernelBuilder } from './builder.js';
import type { Kernel } from './dense.js';
import type { GemmLayout } from './gemm.js';
import { pad8 } from './layout.js';

export interface Gemm90Spec {
  dtype: 'bf16' | 'f16';
  /** Y's element type: f32 (the contract of gemm.ts) or bf16 (rows of pad8(N) elements). */
  out: 'f32' | 'bf16';
  /** Consumer warpgroups; each owns 64 rows of the BM = 64·consumers tile. */
  consumers: number;
  /** Tile columns (rows of W): a multiple of 16 up to 256 (wgmma's N and the copy box limit). */
  bn: number;
  /** Shared-memory pipeline depth. */
  stages: number;
  /** 'store' (default): Y = X·Wᵀ; 'accumulate' (f32 Y only): Y += X·Wᵀ, each element read and written by the one thread owning it. */
  epilogue?: 'store' | 'accumulate';
  /** How x and w are stored (header): 'xwt' (default), 'xw' or 'xtw'; 'xw'/'xtw' need bn a multiple of 64. */
  layout?: GemmLayout;
}

/** The default: 128×256 tiles, 2 consumer warpgroups of m64n256, 4 stages (192 KB). */
export const GEMM90_DEFAULT: Omit<Gemm90Spec, 'dtype' | 'out'> = { consumers: 2, bn: 256, stages: 4 };

/** Elements of K per pipeline step: one 128-byte swizzle row of 16-bit elements. */
export const GEMM90_BK = 64;
const ROW_BYTES = GEMM90_BK * 2;
/** An MN-major box: 64 elements of M (N) × GEMM90_BK rows of K, 8 KB. */
const MN_BOX = 64;
const MN_BOX_BYTES = MN_BOX * ROW_BYTES;
/** Row tiles walked together in the grouped tile order. */
const GROUP_M = 8;
/** Fragments of Y an 'accumulate' epilogue loads before adding and storing them (the epilogue's comment). */
const ACC_GROUP = 8;
/** The most shared memory a block may opt into on sm_90 (227 KB). */
const MAX_SHARED = 227 * 1024;

export const gemm90Bm = (s: Gemm90Spec): number => 64 * s.consumers;
export const gemm90Threads = (s: Gemm90Spec): number => 128 * (1 + s.consumers);
const stageBytes = (s: Gemm90Spec): number => (gemm90Bm(s) + s.bn) * ROW_BYTES;
/** Dynamic shared bytes to launch with: the stages, plus 1024 to align the first one. */
export const gemm90SharedBytes = (s: Gemm90Spec): number => s.stages * stageBytes(s) + 1024;

const layoutOf = (s: Gemm90Spec): GemmLayout => s.layout ?? 'xwt';
/** Whether operand `which` is stored [K, ·] (M or N contiguous) in the spec's layout. */
export function gemm90MnMajor(s: Gemm90Spec, which: 'x' | 'w'): boolean {
  const layout = layoutOf(s);
  return which === 'x' ? layout === 'xtw' : layout !== 'xwt';
}

export function gemm90Name(s: Gemm90Spec): string {
  return `gemm90_${layoutOf(s)}_${s.dtype}_${s.out}_m${gemm90Bm(s)}n${s.bn}k${GEMM90_BK}_s${s.stages}${s.epilogue === 'accumulate' ? '_acc' : ''}`;
}

export const gemm90Tiles = (s: Gemm90Spec, m: number, n: number): number => Math.ceil(m / gemm90Bm(s)) * Math.ceil(n / s.bn);

/** CTAs of a persistent grid over bm × bn tiles of M × N: one per multiprocessor, fewer when there are fewer tiles (at least 1). */
export const persistentGrid = (bm: number, bn: number, m: number, n: number, multiprocessors: number): number =>
  Math.max(1, Math.min(Math.ceil(m / bm) * Math.ceil(n / bn), multiprocessors));

/** Persistent grid: one CTA per multiprocessor, fewer when there are fewer tiles (at least 1). */
export function gemm90Grid(s: Gemm90Spec, m: number, n: number, multiprocessors: number): [number, number, number] {
  return [persistentGrid(gemm90Bm(s), s.bn, m, n, multiprocessors), 1, 1];
}

/**
 * What operand `which`'s tensor map must say (for Cuda.tensorMapEncodeTiled), the one place that
 * knows each operand's map: the matrix of `dtype` at `address` whose non-K extent is `rows` (M for
 * x, N for w) and reduction extent `k`, in the spec's layout (header, "Tails"). K-major ([rows, K]
 * stored): dims K × rows, rows pad8(K) elements apart, boxes of 64 K × the tile's rows (BM or BN).
 * MN-major ([K, rows] stored): dims rows × K, K rows pad8(rows) elements apart, boxes of 64 × 64
 * (the kernel copies BM/64 or BN/64 of them a step). 128-byte swizzle either way.
 */
export function gemm90TensorMap(s: Gemm90Spec, which: 'x' | 'w', address: bigint, rows: number, k: number) {
  if (gemm90MnMajor(s, which)) {
    return { dtype: s.dtype, address, dims: [rows, k], strides: [pad8(rows) * 2], box: [MN_BOX, GEMM90_BK], swizzle: '128B' as const };
  }
  return {
    dtype: s.dtype, address, dims: [k, rows], strides: [pad8(k) * 2],
    box: [GEMM90_BK, which === 'x' ? gemm90Bm(s) : s.bn], swizzle: '128B' as const,
  };
}

function checkSpec(s: Gemm90Spec): void {
  const bad = (why: string) => new Error(`PTX generator bug: GEMM tile ${gemm90Name(s)}: ${why}`);
  if (!Number.isInteger(s.consumers) || s.consumers < 1 || s.consumers > 3) throw bad('1 to 3 consumer warpgroups');
  if (!Number.isInteger(s.bn) || s.bn % 16 !== 0 || s.bn < 16 || s.bn > 256) throw bad('bn must be a multiple of 16 up to 256');
  if (!Number.isInteger(s.stages) || s.stages < 2) throw bad('at least 2 stages');
  if (s.epilogue === 'accumulate' && s.out !== 'f32') throw bad('accumulate needs an f32 Y');
  if (gemm90MnMajor(s, 'w') && s.bn % MN_BOX !== 0) throw bad(`an N-major W (layout ${s.layout}) needs bn a multiple of ${MN_BOX}`);
  if (gemm90SharedBytes(s) + 16 * s.stages > MAX_SHARED) throw bad(`${gemm90SharedBytes(s)} bytes of shared memory is more than 227 KB`);
}

/**
 * The kernel. Params: y (M × pad8(N) of `out`), tensor maps of x and w (gemm90TensorMap, in the
 * spec's layout), then u32 M, N, K. Grid gemm90Grid, block gemm90Threads, dynamic shared gemm90SharedBytes (raise the
 * function's limit with setMaxDynamicShared first). Module target sm_90a.
 */
export function gemm90(s: Gemm90Spec): Kernel {
  checkSpec(s);
  const name = gemm90Name(s);
  const bm = gemm90Bm(s), threads = gemm90Threads(s), stBytes = stageBytes(s);
  const aMn = gemm90MnMajor(s, 'x'), bMn = gemm90MnMajor(s, 'w');
  const k = new KernelBuilder(name, [
    { name: 'y', type: 'u64' }, { name: 'tmx', type: 'tmap' }, { name: 'tmw', type: 'tmap' },
    { name: 'M', type: 'u32' }, { name: 'N', type: 'u32' }, { name: 'K', type: 'u32' },
  ]);
  k.blockSize(threads, 1); // one block an SM: caps registers at entry, which setmaxnreg needs to act
  const y = k.ptrParam('y'), tmx = k.tmapParam('tmx'), tmw = k.tmapParam('tmw');
  const M = k.u32Param('M'), N = k.u32Param('N'), K = k.u32Param('K');
  const tid = k.special('%tid.x', 'tid'), cta = k.special('%ctaid.x', 'cta');
  const ncta = k.reg('u32', 'ncta');
  k.emit(`mov.u32 ${ncta}, %nctaid.x`);

  // ---- shared memory: the stages (1024-aligned at run time), the barriers (static) ----
  const dyn = k.dynamicShared();
  const base = k.reg('u32', 'base');
  k.emit(`mov.u32 ${base}, ${dyn}`, `add.u32 ${base}, ${base}, 1023`, `and.b32 ${base}, ${base}, -1024`);
  const bars = k.sharedArray('bars', 'b8', 16 * s.stages, 8);
  const full = k.reg('u32', 'full'), empty = k.reg('u32', 'empty');
  k.emit(`mov.u32 ${full}, ${bars}`, `add.u32 ${empty}, ${full}, ${8 * s.stages}`);
  const first = k.reg('pred', 'first'), bar = k.reg('u32', 'bar');
  k.emit(`setp.eq.u32 ${first}, ${tid}, 0`);
  for (let i = 0; i < s.stages; i++) {
    k.emit(`add.u32 ${bar}, ${full}, ${8 * i}`, `@${first} mbarrier.init.shared::cta.b64 [${bar}], 1`);
    k.emit(`add.u32 ${bar}, ${empty}, ${8 * i}`, `@${first} mbarrier.init.shared::cta.b64 [${bar}], ${4 * s.consumers}`);
  }
  // the initialised barriers visible to the other threads and to the copy engine (async proxy)
  k.emit('fence.mbarrier_init.release.cluster', 'fence.proxy.async.shared::cta', 'bar.sync 0');

  // ---- the tile walk, shared by both roles ----
  const tilesM = k.reg('u32', 'tilesm'), tilesN = k.reg('u32', 'tilesn'), tiles = k.reg('u32', 'tiles'), steps = k.reg('u32', 'steps');
  k.emit(`add.u32 ${tilesM}, ${M}, ${bm - 1}`, `div.u32 ${tilesM}, ${tilesM}, ${bm}`, `add.u32 ${tilesN}, ${N}, ${s.bn - 1}`, `div.u32 ${tilesN}, ${tilesN}, ${s.bn}`);
  k.emit(`mul.lo.u32 ${tiles}, ${tilesM}, ${tilesN}`, `add.u32 ${steps}, ${K}, ${GEMM90_BK - 1}`, `shr.u32 ${steps}, ${steps}, 6`);
  const width = k.reg('u32', 'width');
  k.emit(`mul.lo.u32 ${width}, ${tilesN}, ${GROUP_M}`);
  /** m0, n0 of tile `t`: groups of GROUP_M row tiles, column-major inside a group. */
  const tileOrigin = (t: string): [string, string] => {
    const grp = k.reg('u32', 'grp'), fm = k.reg('u32', 'fm'), rows = k.reg('u32', 'rows'), within = k.reg('u32', 'within');
    const m0 = k.reg('u32', 'm0'), n0 = k.reg('u32', 'n0');
    k.emit(`div.u32 ${grp}, ${t}, ${width}`, `mul.lo.u32 ${fm}, ${grp}, ${GROUP_M}`, `mul.lo.u32 ${within}, ${grp}, ${width}`, `sub.u32 ${within}, ${t}, ${within}`);
    k.emit(`sub.u32 ${rows}, ${tilesM}, ${fm}`, `min.u32 ${rows}, ${rows}, ${GROUP_M}`);
    k.emit(`rem.u32 ${m0}, ${within}, ${rows}`, `add.u32 ${m0}, ${m0}, ${fm}`, `mul.lo.u32 ${m0}, ${m0}, ${bm}`);
    k.emit(`div.u32 ${n0}, ${within}, ${rows}`, `mul.lo.u32 ${n0}, ${n0}, ${s.bn}`);
    return [m0, n0];
  };
  /** Loop over this CTA's tiles: body(m0, n0). */
  const forTiles = (body: (m0: string, n0: string) => void) => {
    const t = k.reg('u32', 'tile'), done = k.reg('pred', 'tdone'), top = k.label('tiles'), out = k.label('tilesdone');
    k.emit(`mov.u32 ${t}, ${cta}`);
    k.place(top);
    k.emit(`setp.ge.u32 ${done}, ${t}, ${tiles}`, `@${done} bra ${out}`);
    const [m0, n0] = tileOrigin(t);
    body(m0, n0);
    k.emit(`add.u32 ${t}, ${t}, ${ncta}`, `bra ${top}`);
    k.place(out);
  };
  /** The ring position: stage index and use parity, advanced after each K step. */
  const stage = k.reg('u32', 'stage'), phase = k.reg('u32', 'phase');
  const advance = () => {
    const wrap = k.reg('pred', 'wrap');
    k.emit(`add.u32 ${stage}, ${stage}, 1`, `setp.eq.u32 ${wrap}, ${stage}, ${s.stages}`);
    k.emit(`@${wrap} mov.u32 ${stage}, 0`, `@${wrap} xor.b32 ${phase}, ${phase}, 1`);
  };
  const waitParity = (addr: string, parity: string) => {
    const ok = k.reg('pred', 'ready'), spin = k.label('wait');
    k.place(spin);
    k.emit(`mbarrier.try_wait.parity.shared::cta.b64 ${ok}, [${addr}], ${parity}`, `@!${ok} bra ${spin}`);
  };
  k.emit(`mov.u32 ${stage}, 0`, `mov.u32 ${phase}, 0`);

  const wg = k.reg('u32', 'wg'), isProducer = k.reg('pred', 'isprod');
  k.emit(`shr.u32 ${wg}, ${tid}, 7`, `setp.eq.u32 ${isProducer}, ${wg}, 0`);
  const producer = k.label('producer'), end = k.label('end');
  k.emit(`@${isProducer} bra ${producer}`);
  // Registers: 64K a multiprocessor, the producer keeps 40 a thread, the consumers share the rest.
  const consumerRegs = Math.min(240, Math.floor((65536 / 128 - 40) / s.consumers / 8) * 8);
  const rebalance = s.consumers >= 2;

  // ================= consumers =================
  k.comment(`consumers: warpgroups 1..${s.consumers}, 64 rows each, wgmma m64n${s.bn}k16`);
  if (rebalance) k.emit(`setmaxnreg.inc.sync.aligned.u32 ${consumerRegs}`);
  const c = k.reg('u32', 'c'), lane = k.reg('u32', 'lane'), warp = k.reg('u32', 'warpinwg'), lead = k.reg('pred', 'lead');
  k.emit(`sub.u32 ${c}, ${wg}, 1`, `and.b32 ${lane}, ${tid}, 31`, `shr.u32 ${warp}, ${tid}, 5`, `and.b32 ${warp}, ${warp}, 3`, `setp.eq.u32 ${lead}, ${lane}, 0`);
  // descriptor low words of stage 0: this warpgroup's 64 X rows (one 8 KB block either way), and the
  // W tile; the leading byte offset (bits 16-29) 1 for K-major, the MN block stride 8192 >> 4 for MN-major
  const lbo = (mn: boolean) => (mn ? MN_BOX_BYTES >> 4 : 1) << 16;
  const aLo0 = k.reg('u32', 'alo0'), bLo0 = k.reg('u32', 'blo0'), descHi = k.reg('u32', 'deschi');
  k.emit(`mad.lo.u32 ${aLo0}, ${c}, ${64 * ROW_BYTES}, ${base}`, `and.b32 ${aLo0}, ${aLo0}, 262143`, `shr.u32 ${aLo0}, ${aLo0}, 4`, `or.b32 ${aLo0}, ${aLo0}, ${lbo(aMn)}`);
  k.emit(`add.u32 ${bLo0}, ${base}, ${bm * ROW_BYTES}`, `and.b32 ${bLo0}, ${bLo0}, 262143`, `shr.u32 ${bLo0}, ${bLo0}, 4`, `or.b32 ${bLo0}, ${bLo0}, ${lbo(bMn)}`);
  // SBO 1024 >> 4 = 64 in bits 32-45; swizzle mode 1 (128B) in bits 62-63
  k.emit(`mov.u32 ${descHi}, ${0x40000040}`);
  const acc = k.regs('f32', 'acc', s.bn / 2);
  const one = k.reg('pred', 'one');
  k.emit(`setp.eq.u32 ${one}, ${tid}, ${tid}`);
  const wgmma = `wgmma.mma_async.sync.aligned.m64n${s.bn}k16.f32.${s.dtype}.${s.dtype}`;
  const g = k.reg('u32', 'g'), q2 = k.reg('u32', 'q2'), ldy = k.reg('u32', 'ldy');
  const ob = s.out === 'f32' ? 4 : 2;
  k.emit(`shr.u32 ${g}, ${lane}, 2`, `and.b32 ${q2}, ${lane}, 3`, `shl.b32 ${q2}, ${q2}, 1`);
  k.emit(`add.u32 ${ldy}, ${N}, 7`, `and.b32 ${ldy}, ${ldy}, -8`, `mul.lo.u32 ${ldy}, ${ldy}, ${ob}`);
  forTiles((m0, n0) => {
    for (const r of acc) k.emit(`mov.f32 ${r}, 0f00000000`);
    const kb = k.reg('u32', 'kb'), kdone = k.reg('pred', 'kdone'), top = k.label('ksteps'), out = k.label('kdone');
    const fb = k.reg('u32', 'fb'), eb = k.reg('u32', 'eb'), aLo = k.reg('u32', 'alo'), bLo = k.reg('u32', 'blo');
    const da = k.reg('b64', 'da'), db = k.reg('b64', 'db'), lo = k.reg('u32', 'lo'), lob = k.reg('u32', 'lob');
    k.emit(`mov.u32 ${kb}, 0`);
    k.place(top);
    k.emit(`setp.ge.u32 ${kdone}, ${kb}, ${steps}`, `@${kdone} bra ${out}`);
    k.emit(`mad.lo.u32 ${fb}, ${stage}, 8, ${full}`);
    waitParity(fb, phase);
    k.emit(`mad.lo.u32 ${aLo}, ${stage}, ${stBytes >> 4}, ${aLo0}`, `mad.lo.u32 ${bLo}, ${stage}, ${stBytes >> 4}, ${bLo0}`);
    k.emit('wgmma.fence.sync.aligned');
    // slice kk of the step: 32·kk bytes along a K-major row, 16·kk K rows (2048·kk bytes) of an MN-major tile
    const slice = (mn: boolean, kk: number) => (mn ? 16 * ROW_BYTES * kk : 32 * kk) >> 4;
    for (let kk = 0; kk < GEMM90_BK / 16; kk++) {
      k.emit(`add.u32 ${lo}, ${aLo}, ${slice(aMn, kk)}`, `add.u32 ${lob}, ${bLo}, ${slice(bMn, kk)}`, `mov.b64 ${da}, {${lo}, ${descHi}}`, `mov.b64 ${db}, {${lob}, ${descHi}}`);
      k.emit(`${wgmma} {${acc.join(', ')}}, ${da}, ${db}, ${one}, 1, 1, ${aMn ? 1 : 0}, ${bMn ? 1 : 0}`);
    }
    k.emit('wgmma.commit_group.sync.aligned', 'wgmma.wait_group.sync.aligned 0');
    // this warp has finished reading the stage: release it to the producer
    k.emit(`mad.lo.u32 ${eb}, ${stage}, 8, ${empty}`, `@${lead} mbarrier.arrive.shared::cta.b64 _, [${eb}]`);
    advance();
    k.emit(`add.u32 ${kb}, ${kb}, 1`, `bra ${top}`);
    k.place(out);

    // ---- epilogue: guarded stores of the fragment ----
    const r0 = k.reg('u32', 'r0'), c0 = k.reg('u32', 'c0');
    k.emit(`mad.lo.u32 ${r0}, ${c}, 64, ${m0}`, `mad.lo.u32 ${r0}, ${warp}, 16, ${r0}`, `add.u32 ${r0}, ${r0}, ${g}`, `add.u32 ${c0}, ${n0}, ${q2}`);
    const row = k.reg('u32', 'row'), col = k.reg('u32', 'col'), col1 = k.reg('u32', 'col1'), rowOk = k.reg('pred', 'rowok');
    const both = k.reg('pred', 'both'), single = k.reg('pred', 'single'), ya = k.reg('u64', 'ya'), off = k.reg('u64', 'off'), a = k.reg('u64', 'ys');
    const packed = k.reg('b32', 'packed'), half16 = k.reg('b16', 'h');
    // 'accumulate': the loads of Y come in groups of ACC_GROUP fragments, all issued before the group's
    // adds and stores. One load-add-store after another (as the store path goes) waited a full memory
    // latency per fragment, 2·bn/8 of them a thread: the accumulate GEMMs of a 1B step ran at about
    // half the 'store' GEMMs' rate (H100: 72 launches, 47.9 ms for 15.4 TFLOP; bench/NOTES.md session 17).
    const groupRegs = s.epilogue === 'accumulate' ? {
      old: k.regs('f32', 'oldg', 2 * ACC_GROUP), addr: k.regs('u64', 'ag', ACC_GROUP), both: k.regs('pred', 'bg', ACC_GROUP), single: k.regs('pred', 'sg', ACC_GROUP),
    } : undefined;
    for (const half of [0, 1]) {
      k.emit(`add.u32 ${row}, ${r0}, ${half * 8}`, `setp.lt.u32 ${rowOk}, ${row}, ${M}`, `mul.wide.u32 ${off}, ${row}, ${ldy}`, `add.s64 ${ya}, ${y}, ${off}`);
      k.emit(`mul.wide.u32 ${off}, ${c0}, ${ob}`, `add.s64 ${ya}, ${ya}, ${off}`);
      if (groupRegs) {
        const { old, addr, both: bg, single: sg } = groupRegs;
        for (let j0 = 0; j0 < s.bn / 8; j0 += ACC_GROUP) {
          const js = Array.from({ length: Math.min(ACC_GROUP, s.bn / 8 - j0) }, (_, x) => j0 + x);
          // guards and loads of the group (same guards as the store path: an element outside both is neither read nor written)
          js.forEach((j, x) => {
            k.emit(`add.u32 ${col}, ${c0}, ${8 * j}`, `add.u32 ${col1}, ${col}, 1`, `setp.lt.and.u32 ${bg[x]}, ${col1}, ${N}, ${rowOk}`, `setp.lt.and.u32 ${sg[x]}, ${col}, ${N}, ${rowOk}`);
            k.emit(`xor.pred ${sg[x]}, ${sg[x]}, ${bg[x]}`, `add.s64 ${addr[x]}, ${ya}, ${8 * j * ob}`);
            k.emit(`@${bg[x]} ld.global.v2.f32 {${old[2 * x]}, ${old[2 * x + 1]}}, [${addr[x]}]`, `@${sg[x]} ld.global.f32 ${old[2 * x]}, [${addr[x]}]`);
          });
          js.forEach((j, x) => {
            const v0 = acc[4 * j + 2 * half]!, v1 = acc[4 * j + 2 * half + 1]!;
            k.emit(`add.f32 ${v0}, ${v0}, ${old[2 * x]}`, `add.f32 ${v1}, ${v1}, ${old[2 * x + 1]}`);
            k.emit(`@${bg[x]} st.global.v2.f32 [${addr[x]}], {${v0}, ${v1}}`, `@${sg[x]} st.global.f32 [${addr[x]}], ${v0}`);
          });
        }
        continue;
      }
      for (let j = 0; j < s.bn / 8; j++) {
        const v0 = acc[4 * j + 2 * half]!, v1 = acc[4 * j + 2 * half + 1]!;
        // both columns in range: one store (col is even, rows are pad8(N) elements: aligned)
        k.emit(`add.u32 ${col}, ${c0}, ${8 * j}`, `add.u32 ${col1}, ${col}, 1`, `setp.lt.and.u32 ${both}, ${col1}, ${N}, ${rowOk}`, `setp.lt.and.u32 ${single}, ${col}, ${N}, ${rowOk}`);
        k.emit(`xor.pred ${single}, ${single}, ${both}`, `add.s64 ${a}, ${ya}, ${8 * j * ob}`);
        if (s.out === 'f32') {
          k.emit(`@${both} st.global.v2.f32 [${a}], {${v0}, ${v1}}`, `@${single} st.global.f32 [${a}], ${v0}`);
        } else {
          // cvt.rn.bf16x2.f32 d, hi, lo: the first source goes to the upper half (column + 1)
          k.emit(`cvt.rn.bf16x2.f32 ${packed}, ${v1}, ${v0}`, `@${both} st.global.b32 [${a}], ${packed}`);
          k.emit(`cvt.rn.bf16.f32 ${half16}, ${v0}`, `@${single} st.global.b16 [${a}], ${half16}`);
        }
      }
    }
  });
  k.emit(`bra ${end}`);

  // ================= producer =================
  const copy = (dst: string, map: string, inner: string, outer: string, fb: string) =>
    k.emit(`cp.async.bulk.tensor.2d.shared::cluster.global.mbarrier::complete_tx::bytes [${dst}], [${map}, {${inner}, ${outer}}], [${fb}]`);
  /**
   * A `rows`-row operand tile of step kcol into shared `dst`: K-major, one box (inner coordinate the
   * K column); MN-major, rows/64 boxes of 64 × 64 (inner coordinate the row), 8 KB apart. A box
   * that would start at or past `extent` (M or N: a small matrix's later blocks) starts at the last
   * multiple of 8 below extent instead (the H100 raised CUDA_ERROR_ILLEGAL_INSTRUCTION at extent − 1,
   * in every test whose N − 1 or M − 1 was not a multiple of 8: the inner coordinate of a swizzled
   * box must be 16-byte aligned; session 12), so no copy lies wholly outside the tensor (each is at least partly inside, as every
   * copy of 'xwt' is) and its bytes surely count; what it brings sits in rows (columns) of the tile
   * past M (N), whose outputs are never stored, so the values there do not matter.
   */
  const copyTile = (mn: boolean, rows: number, dst: string, map: string, row0: string, kcol: string, extent: string, fb: string) => {
    if (!mn) return copy(dst, map, kcol, row0, fb);
    const d = k.reg('u32', 'boxdst'), r = k.reg('u32', 'boxrow'), last = k.reg('u32', 'lastrow');
    // the last 16-byte-aligned row (8 elements) below extent: a box's inner coordinate must be 16-byte aligned
    if (rows > MN_BOX) k.emit(`sub.u32 ${last}, ${extent}, 1`, `and.b32 ${last}, ${last}, -8`);
    for (let j = 0; j < rows / MN_BOX; j++) {
      if (j === 0) copy(dst, map, row0, kcol, fb); // row0 < extent: the tile exists
      else {
        k.emit(`add.u32 ${d}, ${dst}, ${j * MN_BOX_BYTES}`, `add.u32 ${r}, ${row0}, ${j * MN_BOX}`, `min.u32 ${r}, ${r}, ${last}`);
        copy(d, map, r, kcol, fb);
      }
    }
  };
  k.place(producer);
  k.comment('producer: warpgroup 0, one thread issues the bulk tensor copies');
  if (rebalance) k.emit('setmaxnreg.dec.sync.aligned.u32 40');
  const idle = k.reg('pred', 'idle');
  k.emit(`setp.ne.u32 ${idle}, ${tid}, 0`, `@${idle} bra ${end}`);
  forTiles((m0, n0) => {
    const kb = k.reg('u32', 'pkb'), kcol = k.reg('u32', 'kcol'), kdone = k.reg('pred', 'pkdone'), top = k.label('psteps'), out = k.label('pdone');
    const fb = k.reg('u32', 'pfb'), eb = k.reg('u32', 'peb'), par = k.reg('u32', 'par'), sa = k.reg('u32', 'sa'), sb = k.reg('u32', 'sb');
    k.emit(`mov.u32 ${kb}, 0`);
    k.place(top);
    k.emit(`setp.ge.u32 ${kdone}, ${kb}, ${steps}`, `@${kdone} bra ${out}`);
    // wait until the consumers have released this stage's previous use
    k.emit(`mad.lo.u32 ${eb}, ${stage}, 8, ${empty}`, `xor.b32 ${par}, ${phase}, 1`);
    waitParity(eb, par);
    k.emit(`mad.lo.u32 ${fb}, ${stage}, 8, ${full}`, `mbarrier.arrive.expect_tx.shared::cta.b64 _, [${fb}], ${stBytes}`);
    k.emit(`mad.lo.u32 ${sa}, ${stage}, ${stBytes}, ${base}`, `add.u32 ${sb}, ${sa}, ${bm * ROW_BYTES}`, `shl.b32 ${kcol}, ${kb}, 6`);
    copyTile(aMn, bm, sa, tmx, m0, kcol, M, fb);
    copyTile(bMn, s.bn, sb, tmw, n0, kcol, N, fb);
    advance();
    k.emit(`add.u32 ${kb}, ${kb}, 1`, `bra ${top}`);
    k.place(out);
  });
  k.place(end);
  return { name, text: k.render() };
}
