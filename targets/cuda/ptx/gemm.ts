// Tensor-core GEMM for sm_80 (runs on sm_90 too): Y[M, N] = X[M, K] · W[N, K]ᵀ, the linear layout.
// X and W f16/bf16, f32 accumulation, Y f32: stored (epilogue 'store') or added to what Y holds
// ('accumulate': the residual add of a prefill, or gradient accumulation). The CUDA lowering uses it
// for every linear of a multi-token call (targets/cuda/lower.ts, prefill program).
//
// Tiling. One CTA computes a BM×BN tile of Y, its warps arranged warpsM × warpsN, each warp a
// (BM/warpsM) × (BN/warpsN) sub-tile made of 16×8 mma.sync.m16n8k16 tiles. K is walked in steps of
// BK = 32: a step's X and W tiles are copied global → shared with cp.async (16 bytes a thread, two
// stages: the copy of step k+1 is in flight while step k is multiplied), read shared → registers
// with ldmatrix.x4 and multiplied with two mma k-slices of 16.
//
// Invariants (the device layout, layout.ts): X and W rows have stride pad8(K) elements and their
// padding is zero, so K need not be a multiple of 8: a 16-byte chunk is loaded whole when it starts
// below pad8(K) (the padded elements add 0). Y rows have stride pad8(N) f32; nothing is written
// past column N - 1 or row M - 1. Chunks outside X's M rows or W's N rows, or past pad8(K), are
// zero-filled by cp.async (src-size 0, from the matrix base so no address leaves the buffer).
// M, N, K are run-time parameters: one kernel serves every shape of a tile configuration.
//
// Shared rows are BK + 8 = 40 elements (80 bytes): the eight 16-byte rows one ldmatrix phase reads
// fall in eight distinct 16-byte bank groups (80·r mod 128 covers them all), so no bank conflicts.
//
// Fragments (PTX ISA, "Matrix Fragments for mma.m16n8k16", g = lane / 4, q = lane % 4):
//   A (16×16, row): a0 (g, 2q..2q+1), a1 (g+8, 2q..), a2 (g, 2q+8..), a3 (g+8, 2q+8..)
//   B (16×8, col):  b0 (k 2q..2q+1, n g), b1 (k 2q+8.., n g)
//   C (16×8):       c0,c1 (g, 2q..2q+1), c2,c3 (g+8, 2q..2q+1)
// ldmatrix.x4 gives register i the 8×8 matrix whose row addresses lanes 8i..8i+7 supply, each lane
// holding (row lane/4, columns 2(lane%4)..+1) of it. So for A, lane l points at row l%16, k offset
// 8·(l/16) (matrices: rows 0-7/k0, rows 8-15/k0, rows 0-7/k8, rows 8-15/k8 = a0..a3); for W (n rows,
// k columns: B's col layout), lane l points at n row (l%8) + 8·(l/16), k offset 8·((l/8)%2)
// (matrices: n0-7/k0, n0-7/k8, n8-15/k0, n8-15/k8 = b0, b1 of n-tile 0, then of n-tile 1).
import { KernelBuilder } from './builder.js';
import type { Kernel } from './dense.js';

export interface GemmSpec {
  dtype: 'bf16' | 'f16';
  /** CTA tile rows (of Y and X) and columns (of Y; rows of W). */
  bm: number;
  bn: number;
  warpsM: number;
  warpsN: number;
  /** 'store' (default): Y = X·Wᵀ; 'accumulate': Y += X·Wᵀ. */
  epilogue?: 'store' | 'accumulate';
}

/** The default tile: 128×128×32, 8 warps of 64×32. */
export const GEMM_DEFAULT: Omit<GemmSpec, 'dtype'> = { bm: 128, bn: 128, warpsM: 2, warpsN: 4 };

const BK = 32;
/** Shared row length in elements: BK plus 8 of padding against bank conflicts. */
const SROW = BK + 8;

export const gemmThreads = (s: GemmSpec): number => s.warpsM * s.warpsN * 32;

export function gemmName(s: GemmSpec): string {
  return `gemm_xwt_${s.dtype}_m${s.bm}n${s.bn}k${BK}_w${s.warpsM}x${s.warpsN}${s.epilogue === 'accumulate' ? '_acc' : ''}`;
}

/** Grid for Y[M, N]: x over column tiles, y over row tiles. */
export function gemmGrid(s: GemmSpec, m: number, n: number): [number, number, number] {
  return [Math.ceil(n / s.bn), Math.ceil(m / s.bm), 1];
}

function checkSpec(s: GemmSpec): { wtm: number; wtn: number } {
  const wtm = s.bm / s.warpsM, wtn = s.bn / s.warpsN, threads = gemmThreads(s);
  const bad = (why: string) => new Error(`PTX generator bug: GEMM tile ${gemmName(s)}: ${why}`);
  if (!Number.isInteger(wtm) || wtm % 16 !== 0) throw bad('warp tile rows must be a multiple of 16');
  if (!Number.isInteger(wtn) || wtn % 16 !== 0) throw bad('warp tile columns must be a multiple of 16');
  if (threads > 1024) throw bad('more than 1024 threads');
  // every thread copies whole rounds of 16-byte chunks
  if (((s.bm + s.bn) * BK) / 8 % threads !== 0 || (s.bm * BK) / 8 % threads !== 0) throw bad('tile chunks do not divide among the threads');
  if (2 * (s.bm + s.bn) * SROW * 2 > 48 * 1024) throw bad('more than 48 KB of static shared memory');
  return { wtm, wtn };
}

/**
 * The kernel. Params: y (f32, M × pad8(N)), x (M × pad8(K)), w (N × pad8(K)), then u32 M, N, K.
 * Grid gemmGrid(spec, M, N), block gemmThreads(spec).
 */
export function gemm(s: GemmSpec): Kernel {
  const { wtm, wtn } = checkSpec(s);
  const name = gemmName(s);
  const threads = gemmThreads(s);
  const k = new KernelBuilder(name, [
    { name: 'y', type: 'u64' }, { name: 'x', type: 'u64' }, { name: 'w', type: 'u64' },
    { name: 'M', type: 'u32' }, { name: 'N', type: 'u32' }, { name: 'K', type: 'u32' },
  ]);
  k.blockSize(threads);
  const y = k.ptrParam('y'), x = k.ptrParam('x'), w = k.ptrParam('w');
  const M = k.u32Param('M'), N = k.u32Param('N'), K = k.u32Param('K');
  const tid = k.special('%tid.x', 'tid'), bx = k.special('%ctaid.x', 'bx'), by = k.special('%ctaid.y', 'by');
  const kp = k.reg('u32', 'kp'), ldx = k.reg('u32', 'ldx'), m0 = k.reg('u32', 'm0'), n0 = k.reg('u32', 'n0');
  k.emit(`add.u32 ${kp}, ${K}, 7`, `and.b32 ${kp}, ${kp}, -8`, `shl.b32 ${ldx}, ${kp}, 1`);
  k.emit(`mul.lo.u32 ${m0}, ${by}, ${s.bm}`, `mul.lo.u32 ${n0}, ${bx}, ${s.bn}`);

  // Shared: two stages, each the X tile (bm rows) then the W tile (bn rows), rows of SROW elements.
  const stageBytes = (s.bm + s.bn) * SROW * 2;
  const sh = k.sharedArray('tiles', 'b8', 2 * stageBytes, 128);
  const shBase = k.reg('u32', 'shbase');
  k.emit(`mov.u32 ${shBase}, ${sh}`);

  // ---- the copies this thread issues for one K step: rows of X then rows of W, 4 chunks a row ----
  k.comment(`copy plan: ${((s.bm + s.bn) * BK) / 8 / threads} chunks of 16 bytes a thread per K step`);
  interface Copy { src: string; fallback: string; rowOk: string; kc: string; dst: string }
  const copies: Copy[] = [];
  const kc = k.reg('u32', 'kc'), crow = k.reg('u32', 'crow');
  k.emit(`and.b32 ${kc}, ${tid}, 3`, `shr.u32 ${crow}, ${tid}, 2`);
  const kcol = k.reg('u32', 'kcol'); // this thread's first element column within a step: 8·kc
  k.emit(`shl.b32 ${kcol}, ${kc}, 3`);
  const rowsPerRound = threads / 4;
  for (const [mat, base, rows, limit, first, shOff] of [['x', x, s.bm, M, m0, 0], ['w', w, s.bn, N, n0, s.bm * SROW * 2]] as const) {
    for (let r = 0; r < rows; r += rowsPerRound) {
      const row = k.reg('u32', `${mat}row`), ok = k.reg('pred', `${mat}ok`), src = k.reg('u64', `${mat}src`), dst = k.reg('u32', `${mat}dst`);
      const off = k.reg('u64', 'off');
      k.emit(`add.u32 ${row}, ${crow}, ${r}`);
      // shared destination: stage 0 address; stage 1 is stageBytes further
      k.emit(`mad.lo.u32 ${dst}, ${row}, ${SROW * 2}, ${shBase}`, `mad.lo.u32 ${dst}, ${kc}, 16, ${dst}`);
      if (shOff) k.emit(`add.u32 ${dst}, ${dst}, ${shOff}`);
      k.emit(`add.u32 ${row}, ${row}, ${first}`, `setp.lt.u32 ${ok}, ${row}, ${limit}`);
      // global source at K step 0: base + row·ldx + 16·kc
      k.emit(`mul.wide.u32 ${off}, ${row}, ${ldx}`, `add.s64 ${src}, ${base}, ${off}`, `mul.wide.u32 ${off}, ${kc}, 16`, `add.s64 ${src}, ${src}, ${off}`);
      copies.push({ src, fallback: base, rowOk: ok, kc: kcol, dst });
    }
  }

  const k0 = k.reg('u32', 'k0'), kcur = k.reg('u32', 'kcur'), kok = k.reg('pred', 'kok'), sz = k.reg('u32', 'sz');
  const ga = k.reg('u64', 'ga'), koff = k.reg('u64', 'koff'), sd = k.reg('u32', 'sd');
  /** Issues the copies of the K step starting at column `kcol0` into stage `stageOff` (bytes), and commits them. */
  const issueStep = (kcol0: string, stageOff: string) => {
    k.emit(`add.u32 ${kcur}, ${kcol0}, ${kcol}`, `setp.lt.u32 ${kok}, ${kcur}, ${kp}`, `mul.wide.u32 ${koff}, ${kcol0}, 2`);
    for (const c of copies) {
      const ok = k.reg('pred', 'ok');
      k.emit(`and.pred ${ok}, ${kok}, ${c.rowOk}`, `selp.u32 ${sz}, 16, 0, ${ok}`, `add.s64 ${ga}, ${c.src}, ${koff}`);
      k.emit(`@!${ok} mov.u64 ${ga}, ${c.fallback}`, `add.u32 ${sd}, ${c.dst}, ${stageOff}`);
      k.emit(`cp.async.cg.shared.global [${sd}], [${ga}], 16, ${sz}`);
    }
    k.emit('cp.async.commit_group');
  };

  // ---- accumulators and the per-lane ldmatrix offsets ----
  const mt = wtm / 16, nt = wtn / 8;
  const acc = Array.from({ length: mt }, () => Array.from({ length: nt }, () => k.regs('f32', 'acc', 4)));
  for (const row of acc) for (const a of row) for (const r of a) k.emit(`mov.f32 ${r}, 0f00000000`);
  const lane = k.reg('u32', 'lane'), warp = k.reg('u32', 'warp'), wm = k.reg('u32', 'wm'), wn = k.reg('u32', 'wn');
  k.emit(`and.b32 ${lane}, ${tid}, 31`, `shr.u32 ${warp}, ${tid}, 5`, `rem.u32 ${wn}, ${warp}, ${s.warpsN}`, `div.u32 ${wm}, ${warp}, ${s.warpsN}`);
  const t1 = k.reg('u32', 't'), t2 = k.reg('u32', 't');
  // A: row wm·wtm + l%16, k 8·(l/16)
  const aOff = k.reg('u32', 'aoff');
  k.emit(`and.b32 ${t1}, ${lane}, 15`, `mad.lo.u32 ${t1}, ${wm}, ${wtm}, ${t1}`, `shr.u32 ${t2}, ${lane}, 4`, `shl.b32 ${t2}, ${t2}, 3`);
  k.emit(`mad.lo.u32 ${aOff}, ${t1}, ${SROW}, ${t2}`, `shl.b32 ${aOff}, ${aOff}, 1`);
  // W: row wn·wtn + l%8 + 8·(l/16), k 8·((l/8)%2)
  const bOff = k.reg('u32', 'boff');
  k.emit(`and.b32 ${t1}, ${lane}, 7`, `shr.u32 ${t2}, ${lane}, 4`, `shl.b32 ${t2}, ${t2}, 3`, `add.u32 ${t1}, ${t1}, ${t2}`, `mad.lo.u32 ${t1}, ${wn}, ${wtn}, ${t1}`);
  k.emit(`shr.u32 ${t2}, ${lane}, 3`, `and.b32 ${t2}, ${t2}, 1`, `shl.b32 ${t2}, ${t2}, 3`);
  k.emit(`mad.lo.u32 ${bOff}, ${t1}, ${SROW}, ${t2}`, `shl.b32 ${bOff}, ${bOff}, 1`, `add.u32 ${bOff}, ${bOff}, ${s.bm * SROW * 2}`);

  // ---- the K loop: prologue copies step 0 into stage 0 ----
  const steps = k.reg('u32', 'steps'), it = k.reg('u32', 'it'), cur = k.reg('u32', 'cur'), nxt = k.reg('u32', 'nxt'), more = k.reg('pred', 'more');
  const zero = k.reg('u32', 'zero');
  k.emit(`add.u32 ${steps}, ${kp}, ${BK - 1}`, `shr.u32 ${steps}, ${steps}, 5`, `mov.u32 ${zero}, 0`, `mov.u32 ${k0}, 0`, `mov.u32 ${it}, 0`, `mov.u32 ${cur}, 0`);
  issueStep(zero, zero);
  const loop = k.label('kloop'), done = k.label('kdone'), skip = k.label('nocopy');
  const knext = k.reg('u32', 'knext');
  k.place(loop);
  k.emit(`setp.ge.u32 ${more}, ${it}, ${steps}`, `@${more} bra ${done}`);
  // copy step it+1 into the other stage (an empty group past the end keeps wait_group 1 uniform)
  k.emit(`xor.b32 ${nxt}, ${cur}, ${stageBytes}`, `add.u32 ${knext}, ${k0}, ${BK}`, `add.u32 ${t1}, ${it}, 1`, `setp.ge.u32 ${more}, ${t1}, ${steps}`);
  k.emit(`@${more} cp.async.commit_group`, `@${more} bra ${skip}`);
  issueStep(knext, nxt);
  k.place(skip);
  k.emit('cp.async.wait_group 1', 'bar.sync 0');
  // multiply the current stage: two k-slices of 16
  const aBase = k.reg('u32', 'abase'), bBase = k.reg('u32', 'bbase');
  k.emit(`add.u32 ${aBase}, ${shBase}, ${cur}`, `add.u32 ${aBase}, ${aBase}, ${aOff}`, `add.u32 ${bBase}, ${shBase}, ${cur}`, `add.u32 ${bBase}, ${bBase}, ${bOff}`);
  const afr = Array.from({ length: mt }, () => k.regs('b32', 'af', 4));
  const bfr = Array.from({ length: nt / 2 }, () => k.regs('b32', 'bf', 4));
  const mma = `mma.sync.aligned.m16n8k16.row.col.f32.${s.dtype}.${s.dtype}.f32`;
  for (let ks = 0; ks < BK; ks += 16) {
    for (let i = 0; i < mt; i++) k.emit(`ldmatrix.sync.aligned.m8n8.x4.shared.b16 {${afr[i]!.join(', ')}}, [${aBase}+${(i * 16 * SROW + ks) * 2}]`);
    for (let j = 0; j < nt / 2; j++) k.emit(`ldmatrix.sync.aligned.m8n8.x4.shared.b16 {${bfr[j]!.join(', ')}}, [${bBase}+${(j * 16 * SROW + ks) * 2}]`);
    for (let i = 0; i < mt; i++) {
      for (let j = 0; j < nt; j++) {
        const b = bfr[j >> 1]!.slice((j & 1) * 2, (j & 1) * 2 + 2);
        const d = acc[i]![j]!.join(', ');
        k.emit(`${mma} {${d}}, {${afr[i]!.join(', ')}}, {${b.join(', ')}}, {${d}}`);
      }
    }
  }
  // every warp is done reading this stage before the next iteration copies into it
  k.emit('bar.sync 0', `mov.u32 ${cur}, ${nxt}`, `mov.u32 ${k0}, ${knext}`, `add.u32 ${it}, ${it}, 1`, `bra ${loop}`);
  k.place(done);
  k.emit('cp.async.wait_group 0');

  // ---- epilogue: c0,c1 at (g, 2q..2q+1), c2,c3 at (g+8, ...) of each 16×8 tile; guarded stores ----
  const g = k.reg('u32', 'g'), q2 = k.reg('u32', 'q2'), r0 = k.reg('u32', 'r0'), c0 = k.reg('u32', 'c0'), ldy = k.reg('u32', 'ldy');
  k.emit(`shr.u32 ${g}, ${lane}, 2`, `and.b32 ${q2}, ${lane}, 3`, `shl.b32 ${q2}, ${q2}, 1`);
  k.emit(`mad.lo.u32 ${r0}, ${wm}, ${wtm}, ${m0}`, `add.u32 ${r0}, ${r0}, ${g}`, `mad.lo.u32 ${c0}, ${wn}, ${wtn}, ${n0}`, `add.u32 ${c0}, ${c0}, ${q2}`);
  k.emit(`add.u32 ${ldy}, ${N}, 7`, `and.b32 ${ldy}, ${ldy}, -8`, `shl.b32 ${ldy}, ${ldy}, 2`);
  const row = k.reg('u32', 'row'), col = k.reg('u32', 'col'), col1 = k.reg('u32', 'col1');
  const rowOk = k.reg('pred', 'rowok'), one = k.reg('pred', 'one'), both = k.reg('pred', 'both'), ya = k.reg('u64', 'ya'), yoff = k.reg('u64', 'yoff');
  for (let i = 0; i < mt; i++) {
    for (const half of [0, 1]) {
      k.emit(`add.u32 ${row}, ${r0}, ${i * 16 + half * 8}`, `setp.lt.u32 ${rowOk}, ${row}, ${M}`, `mul.wide.u32 ${yoff}, ${row}, ${ldy}`, `add.s64 ${ya}, ${y}, ${yoff}`);
      for (let j = 0; j < nt; j++) {
        const [v0, v1] = acc[i]![j]!.slice(half * 2, half * 2 + 2);
        const a = k.reg('u64', 'ys');
        // both columns in range: one 8-byte store (col is even and rows are pad8(N) floats, so aligned)
        k.emit(`add.u32 ${col}, ${c0}, ${j * 8}`, `add.u32 ${col1}, ${col}, 1`, `setp.lt.and.u32 ${both}, ${col1}, ${N}, ${rowOk}`, `setp.lt.and.u32 ${one}, ${col}, ${N}, ${rowOk}`);
        k.emit(`mul.wide.u32 ${yoff}, ${col}, 4`, `add.s64 ${a}, ${ya}, ${yoff}`, `xor.pred ${one}, ${one}, ${both}`);
        if (s.epilogue === 'accumulate') {
          // each element belongs to one thread of one CTA: a plain read-modify-write, no atomics
          const [o0, o1] = [k.reg('f32', 'yo'), k.reg('f32', 'yo')];
          k.emit(`@${both} ld.global.v2.f32 {${o0}, ${o1}}, [${a}]`, `@${one} ld.global.f32 ${o0}, [${a}]`);
          k.emit(`add.f32 ${v0}, ${v0}, ${o0}`, `add.f32 ${v1}, ${v1}, ${o1}`);
        }
        k.emit(`@${both} st.global.v2.f32 [${a}], {${v0}, ${v1}}`, `@${one} st.global.f32 [${a}], ${v0}`);
      }
    }
  }
  return { name, text: k.render() };
}
