// Tensor-core GEMM for sm_80 (runs on sm_90 too), f16/bf16 operands, f32 accumulation, in three
// operand layouts (GemmSpec.layout). In every layout the output is Y[M, N] and K is the reduction:
//   'xwt' (default, the linear layer): Y = X·Wᵀ, x = X [M, K], w = W [N, K].
//   'xw'  (a linear's input gradient):  Y = X·W,  x = X [M, K], w = W [K, N] (dX = dY·W: X is dY,
//         M = tokens, K = the linear's output width, N = its input width).
//   'xtw' (a linear's weight gradient): Y = Xᵀ·W, x = X [K, M], w = W [K, N] (dW = dYᵀ·X: x is dY
//         [T, out], w is the layer input [T, in], K = T the token count, the long dimension).
// Every matrix, Y included, has rows of pad8(its row length) elements with zero padding (the device
// layout, layout.ts): x rows are pad8(K) ('xwt', 'xw') or pad8(M) ('xtw'); w rows pad8(K) ('xwt')
// or pad8(N); y rows pad8(N) (pad8(F) for silu_pair).
// Epilogues (GemmSpec.epilogue): 'store' Y = ·, f32; 'accumulate' Y += · (f32: the residual add of a
// prefill, gradient accumulation); 'store_bf16' Y = · as bf16 (an output that feeds another GEMM);
// 'silu_pair' / 'silu_pair_bf16' a SwiGLU FFN's gate and up in one GEMM (xwt only): w is the gate and
// up weights interleaved (SILU_PAIR below), Y[M, F] = silu(X·Gᵀ)·(X·Uᵀ), f32 or bf16, and the
// kernel's N parameter is F. The CUDA lowering uses 'xwt' for every linear of a multi-token call
// (targets/cuda/lower.ts, prefill program).
//
// Tiling. One CTA computes a BM×BN tile of Y, its warps arranged warpsM × warpsN, each warp a
// (BM/warpsM) × (BN/warpsN) sub-tile made of 16×8 mma.sync.m16n8k16 tiles. K is walked in steps of
// BK = 32: a step's A (from x) and B (from w) tiles are copied global → shared with cp.async (16
// bytes a thread, two stages: the copy of step k+1 is in flight while step k is multiplied), read
// shared → registers with ldmatrix.x4 and multiplied with two mma k-slices of 16.
//
// Shared tiles. An operand stored K-contiguous ([·, K]: A of 'xwt'/'xw', B of 'xwt') is a tile of
// BM (BN) rows of BK + 8 = 40 elements (80 bytes): the eight 16-byte rows one ldmatrix phase reads
// fall in eight distinct 16-byte bank groups (80·r mod 128 covers them all). An operand stored
// [K, ·] (B of 'xw'/'xtw', A of 'xtw') is copied as it is stored: BK rows of BN (BM) + 8 elements,
// 16·(BN/8 + 1) bytes with BN/8 even, so again eight consecutive rows hit eight distinct groups; it
// is read with ldmatrix.trans (below).
//
// Tails. M, N, K are run-time parameters: one kernel serves every shape of a tile configuration.
// A K-contiguous chunk is loaded whole when it starts below pad8(K) (the zero padding adds 0); a
// [K, ·] chunk when its row is below K and it starts below pad8(its row length). Chunks outside
// that, or past the M (N) rows, are zero-filled by cp.async (src-size 0, from the matrix base so no
// address leaves the buffer). Nothing is written past column N - 1 or row M - 1 of Y.
//
// Fragments (PTX ISA, "Matrix Fragments for mma.m16n8k16", g = lane / 4, q = lane % 4):
//   A (16×16, row): a0 (g, 2q..2q+1), a1 (g+8, 2q..), a2 (g, 2q+8..), a3 (g+8, 2q+8..)
//   B (16×8, col):  b0 (k 2q..2q+1, n g), b1 (k 2q+8.., n g)
//   C (16×8):       c0,c1 (g, 2q..2q+1), c2,c3 (g+8, 2q..2q+1)
// ldmatrix.x4 gives register i the 8×8 matrix whose row addresses lanes 8i..8i+7 supply, each lane
// holding (row lane/4, columns 2(lane%4)..+1) of it; with .trans it holds (rows 2(lane%4)..+1,
// column lane/4) of the stored matrix, i.e. of the transposed one the same (row, columns) pair.
// K-contiguous tiles: for A, lane l points at row l%16, k offset 8·(l/16) (matrices: rows 0-7/k0,
// rows 8-15/k0, rows 0-7/k8, rows 8-15/k8 = a0..a3); for B (n rows, k columns: B's col layout),
// lane l points at n row (l%8) + 8·(l/16), k offset 8·((l/8)%2) (matrices: n0-7/k0, n0-7/k8,
// n8-15/k0, n8-15/k8 = b0, b1 of n-tile 0, then of n-tile 1).
// [K, ·] tiles with .trans: lane l points at the k row and m (n) column that make the same four
// matrices: A: k row (l%8) + 8·(l/16), m column 8·((l/8)%2); B: k row (l%8) + 8·((l/8)%2), n column
// 8·(l/16). (A stored block (k 0-7, m 0-7) read transposed is a0: lane holds m g, k 2q..2q+1.)
import { KernelBuilder } from './builder.js';
import { siluTimes, type Kernel } from './dense.js';
import { pad8 } from './layout.js';

export type GemmLayout = 'xwt' | 'xw' | 'xtw';
export type GemmEpilogue = 'store' | 'accumulate' | 'store_bf16' | 'silu_pair' | 'silu_pair_bf16';

export interface GemmSpec {
  dtype: 'bf16' | 'f16';
  /** CTA tile rows (of Y) and columns (of Y; for silu_pair, of the interleaved gate/up product). */
  bm: number;
  bn: number;
  warpsM: number;
  warpsN: number;
  /** How x and w are stored (header): 'xwt' (default), 'xw' or 'xtw'. */
  layout?: GemmLayout;
  /** 'store' (default), 'accumulate', 'store_bf16', 'silu_pair', 'silu_pair_bf16' (header). */
  epilogue?: GemmEpilogue;
}

/** The default tile: 128×128×32, 8 warps of 64×32. */
export const GEMM_DEFAULT: Omit<GemmSpec, 'dtype'> = { bm: 128, bn: 128, warpsM: 2, warpsN: 4 };

const BK = 32;
/** Fragments of Y an 'accumulate' epilogue loads before adding and storing them (the epilogue's comment). */
const ACC_GROUP = 8;
/** Shared row length in elements of a K-contiguous tile: BK plus 8 of padding against bank conflicts. */
const SROW = BK + 8;

/**
 * SILU_PAIR, the one place that defines the interleaved gate/up weight of the silu_pair epilogue:
 * rows in blocks of 16, block b = gate rows 8b..8b+7 then up rows 8b..8b+7 (rows past F are zero),
 * so 2·pad8(F) rows. A warp's n-tiles come in pairs of 8 columns starting at a multiple of 16
 * (warp tiles are multiples of 16 columns), so n-tile 2j holds gate and 2j+1 up of the same features.
 */
export const siluPairRows = (f: number): number => 2 * pad8(f);

/**
 * The interleaved weight image of SILU_PAIR from gate and up, each `f` rows of `rowLen` elements
 * (logical rows, or device rows of pad8(K): the rows are only permuted).
 */
export function interleaveGateUp<T extends Float32Array | Uint16Array | Uint8Array>(gate: T, up: T, f: number, rowLen: number): T {
  if (gate.length !== f * rowLen || up.length !== f * rowLen) throw new Error(`interleaveGateUp: expected ${f}×${rowLen} gate and up, got ${gate.length} and ${up.length} elements`);
  const out = new (gate.constructor as new (n: number) => T)(siluPairRows(f) * rowLen);
  for (let r = 0; r < f; r++) {
    const dst = (16 * Math.floor(r / 8) + (r % 8)) * rowLen;
    out.set(gate.subarray(r * rowLen, (r + 1) * rowLen), dst);
    out.set(up.subarray(r * rowLen, (r + 1) * rowLen), dst + 8 * rowLen);
  }
  return out;
}

export const gemmThreads = (s: GemmSpec): number => s.warpsM * s.warpsN * 32;

const EPILOGUE_SUFFIX: Record<GemmEpilogue, string> = { store: '', accumulate: '_acc', store_bf16: '_obf16', silu_pair: '_silu', silu_pair_bf16: '_silu_obf16' };

export function gemmName(s: GemmSpec): string {
  return `gemm_${s.layout ?? 'xwt'}_${s.dtype}_m${s.bm}n${s.bn}k${BK}_w${s.warpsM}x${s.warpsN}${EPILOGUE_SUFFIX[s.epilogue ?? 'store']}`;
}

const isSilu = (s: GemmSpec) => s.epilogue === 'silu_pair' || s.epilogue === 'silu_pair_bf16';

/** Grid for Y[M, N] (N = F for silu_pair: its CTAs cover the 2·pad8(F) interleaved columns): x over column tiles, y over row tiles. */
export function gemmGrid(s: GemmSpec, m: number, n: number): [number, number, number] {
  return [Math.ceil((isSilu(s) ? siluPairRows(n) : n) / s.bn), Math.ceil(m / s.bm), 1];
}

/** Whether the A (x) and B (w) operands are stored K-contiguous, and their shared tile sizes in bytes. */
function operands(s: GemmSpec) {
  const layout = s.layout ?? 'xwt';
  const aK = layout !== 'xtw', bK = layout === 'xwt';
  const tileBytes = (kMajor: boolean, ext: number) => (kMajor ? ext * SROW * 2 : BK * (ext + 8) * 2);
  return { aK, bK, aBytes: tileBytes(aK, s.bm), bBytes: tileBytes(bK, s.bn) };
}

function checkSpec(s: GemmSpec): { wtm: number; wtn: number } {
  const wtm = s.bm / s.warpsM, wtn = s.bn / s.warpsN, threads = gemmThreads(s);
  const bad = (why: string) => new Error(`PTX generator bug: GEMM tile ${gemmName(s)}: ${why}`);
  if (!Number.isInteger(wtm) || wtm % 16 !== 0) throw bad('warp tile rows must be a multiple of 16');
  if (!Number.isInteger(wtn) || wtn % 16 !== 0) throw bad('warp tile columns must be a multiple of 16');
  if (threads > 1024) throw bad('more than 1024 threads');
  // every thread copies whole rounds of 16-byte chunks
  if (((s.bm + s.bn) * BK) / 8 % threads !== 0 || (s.bm * BK) / 8 % threads !== 0) throw bad('tile chunks do not divide among the threads');
  const { aBytes, bBytes } = operands(s);
  if (2 * (aBytes + bBytes) > 48 * 1024) throw bad('more than 48 KB of static shared memory');
  if (isSilu(s) && (s.layout ?? 'xwt') !== 'xwt') throw bad('silu_pair needs the xwt layout');
  return { wtm, wtn };
}

/**
 * How gemm.ts's and gemm-f32.ts's kernels start (their shared contract): params y, x, w, then u32 M,
 * N, K; the block's tile origin m0 = ctaid.y·bm, n0 = ctaid.x·bn; kp = pad8(K) and ldx, its bytes at
 * `elemBytes` an element (the row stride of a [·, K] operand).
 */
export function gemmKernelStart(name: string, threads: number, tile: { bm: number; bn: number }, elemBytes: 2 | 4) {
  const k = new KernelBuilder(name, [
    { name: 'y', type: 'u64' }, { name: 'x', type: 'u64' }, { name: 'w', type: 'u64' },
    { name: 'M', type: 'u32' }, { name: 'N', type: 'u32' }, { name: 'K', type: 'u32' },
  ]);
  k.blockSize(threads);
  const y = k.ptrParam('y'), x = k.ptrParam('x'), w = k.ptrParam('w');
  const M = k.u32Param('M'), N = k.u32Param('N'), K = k.u32Param('K');
  const tid = k.special('%tid.x', 'tid'), bx = k.special('%ctaid.x', 'bx'), by = k.special('%ctaid.y', 'by');
  const kp = k.reg('u32', 'kp'), ldx = k.reg('u32', 'ldx'), m0 = k.reg('u32', 'm0'), n0 = k.reg('u32', 'n0');
  k.emit(`add.u32 ${kp}, ${K}, 7`, `and.b32 ${kp}, ${kp}, -8`, `shl.b32 ${ldx}, ${kp}, ${Math.log2(elemBytes)}`);
  k.emit(`mul.lo.u32 ${m0}, ${by}, ${tile.bm}`, `mul.lo.u32 ${n0}, ${bx}, ${tile.bn}`);
  return { k, y, x, w, M, N, K, tid, bx, by, kp, ldx, m0, n0 };
}

/**
 * The kernel. Params: y, x, w (stored as the header's layout and epilogue say), then u32 M, N, K
 * (N = F for silu_pair). Grid gemmGrid(spec, M, N), block gemmThreads(spec).
 */
export function gemm(s: GemmSpec): Kernel {
  const { wtm, wtn } = checkSpec(s);
  const { aK, bK, aBytes, bBytes } = operands(s);
  const silu = isSilu(s);
  const name = gemmName(s);
  const threads = gemmThreads(s);
  const { k, y, x, w, M, N, K, tid, kp, ldx, m0, n0 } = gemmKernelStart(name, threads, s, 2);
  /** Row bytes of a [K, ·] operand of `count` columns: 2·pad8(count). */
  const rowBytes = (count: string) => {
    const r = k.reg('u32', 'ld');
    k.emit(`add.u32 ${r}, ${count}, 7`, `and.b32 ${r}, ${r}, -8`, `shl.b32 ${r}, ${r}, 1`);
    return r;
  };
  // silu_pair: w has 2·pad8(F) rows (N is F)
  let wRows = N;
  if (silu) {
    wRows = k.reg('u32', 'wrows');
    k.emit(`add.u32 ${wRows}, ${N}, 7`, `and.b32 ${wRows}, ${wRows}, -8`, `shl.b32 ${wRows}, ${wRows}, 1`);
  }

  // Shared: two stages, each the A tile then the B tile (header: Shared tiles).
  const stageBytes = aBytes + bBytes;
  const sh = k.sharedArray('tiles', 'b8', 2 * stageBytes, 128);
  const shBase = k.reg('u32', 'shbase');
  k.emit(`mov.u32 ${shBase}, ${sh}`);

  // ---- the copies this thread issues for one K step ----
  k.comment(`copy plan: ${((s.bm + s.bn) * BK) / 8 / threads} chunks of 16 bytes a thread per K step`);
  /** A chunk of a K-contiguous tile: valid while its row is (rowOk) and its K column is below pad8(K). */
  interface Copy { src: string; fallback: string; rowOk: string; kc: string; dst: string }
  /** A chunk of a [K, ·] tile: valid while its column is (colOk) and its row k0 + krow is below K; ld its row bytes. */
  interface CopyT { src: string; fallback: string; colOk: string; krow: string; dst: string; ld: string }
  const copies: Copy[] = [], copiesT: CopyT[] = [];
  let kcol = '';
  const rowsPerRound = threads / 4;
  if (aK || bK) {
    const kc = k.reg('u32', 'kc'), crow = k.reg('u32', 'crow');
    k.emit(`and.b32 ${kc}, ${tid}, 3`, `shr.u32 ${crow}, ${tid}, 2`);
    kcol = k.reg('u32', 'kcol'); // this thread's first element column within a step: 8·kc
    k.emit(`shl.b32 ${kcol}, ${kc}, 3`);
    // rows of A then rows of B, 4 chunks a row
    for (const [mat, base, rows, limit, first, shOff] of [['x', x, s.bm, M, m0, 0], ['w', w, s.bn, wRows, n0, aBytes]] as const) {
      if (!(mat === 'x' ? aK : bK)) continue;
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
  }
  // [K, ·] tiles: BK rows of `cols` elements, cols/8 chunks a row; chunk tid + r·threads of the tile
  for (const [mat, base, cols, limit, first, shOff] of [['x', x, s.bm, M, m0, 0], ['w', w, s.bn, N, n0, aBytes]] as const) {
    if (mat === 'x' ? aK : bK) continue;
    const ld = rowBytes(limit), cpr = cols / 8;
    for (let r = 0; r < (BK * cpr) / threads; r++) {
      const id = k.reg('u32', `${mat}id`), krow = k.reg('u32', `${mat}krow`), cc = k.reg('u32', `${mat}cc`), ok = k.reg('pred', `${mat}ok`);
      const src = k.reg('u64', `${mat}src`), dst = k.reg('u32', `${mat}dst`), off = k.reg('u64', 'off');
      k.emit(`add.u32 ${id}, ${tid}, ${r * threads}`, `div.u32 ${krow}, ${id}, ${cpr}`, `rem.u32 ${cc}, ${id}, ${cpr}`);
      k.emit(`mad.lo.u32 ${dst}, ${krow}, ${(cols + 8) * 2}, ${shBase}`, `mad.lo.u32 ${dst}, ${cc}, 16, ${dst}`);
      if (shOff) k.emit(`add.u32 ${dst}, ${dst}, ${shOff}`);
      // column first + 8·cc: a chunk starting below the count starts below its pad8, so is loaded whole
      k.emit(`mad.lo.u32 ${cc}, ${cc}, 8, ${first}`, `setp.lt.u32 ${ok}, ${cc}, ${limit}`);
      // global source at K step 0: base + krow·ld + 2·column
      k.emit(`mul.wide.u32 ${off}, ${krow}, ${ld}`, `add.s64 ${src}, ${base}, ${off}`, `mul.wide.u32 ${off}, ${cc}, 2`, `add.s64 ${src}, ${src}, ${off}`);
      copiesT.push({ src, fallback: base, colOk: ok, krow, dst, ld });
    }
  }

  const k0 = k.reg('u32', 'k0'), kcur = k.reg('u32', 'kcur'), kok = k.reg('pred', 'kok'), sz = k.reg('u32', 'sz');
  const ga = k.reg('u64', 'ga'), koff = k.reg('u64', 'koff'), sd = k.reg('u32', 'sd');
  /** Issues the copies of the K step starting at column `kcol0` into stage `stageOff` (bytes), and commits them. */
  const issueStep = (kcol0: string, stageOff: string) => {
    if (copies.length) k.emit(`add.u32 ${kcur}, ${kcol0}, ${kcol}`, `setp.lt.u32 ${kok}, ${kcur}, ${kp}`, `mul.wide.u32 ${koff}, ${kcol0}, 2`);
    for (const c of copies) {
      const ok = k.reg('pred', 'ok');
      k.emit(`and.pred ${ok}, ${kok}, ${c.rowOk}`, `selp.u32 ${sz}, 16, 0, ${ok}`, `add.s64 ${ga}, ${c.src}, ${koff}`);
      k.emit(`@!${ok} mov.u64 ${ga}, ${c.fallback}`, `add.u32 ${sd}, ${c.dst}, ${stageOff}`);
      k.emit(`cp.async.cg.shared.global [${sd}], [${ga}], 16, ${sz}`);
    }
    if (copiesT.length) {
      // rows left from this step on: a chunk of tile row krow is valid while krow < K − k0 (k0 < K)
      const krem = k.reg('u32', 'krem'), toff = k.reg('u64', 'toff');
      k.emit(`sub.u32 ${krem}, ${K}, ${kcol0}`);
      let lastLd = '';
      for (const c of copiesT) {
        const ok = k.reg('pred', 'ok');
        if (c.ld !== lastLd) k.emit(`mul.wide.u32 ${toff}, ${kcol0}, ${(lastLd = c.ld)}`);
        k.emit(`setp.lt.and.u32 ${ok}, ${c.krow}, ${krem}, ${c.colOk}`, `selp.u32 ${sz}, 16, 0, ${ok}`, `add.s64 ${ga}, ${c.src}, ${toff}`);
        k.emit(`@!${ok} mov.u64 ${ga}, ${c.fallback}`, `add.u32 ${sd}, ${c.dst}, ${stageOff}`);
        k.emit(`cp.async.cg.shared.global [${sd}], [${ga}], 16, ${sz}`);
      }
    }
    k.emit('cp.async.commit_group');
  };

  // ---- accumulators and the per-lane ldmatrix offsets (header: Fragments) ----
  const mt = wtm / 16, nt = wtn / 8;
  const acc = Array.from({ length: mt }, () => Array.from({ length: nt }, () => k.regs('f32', 'acc', 4)));
  for (const row of acc) for (const a of row) for (const r of a) k.emit(`mov.f32 ${r}, 0f00000000`);
  const lane = k.reg('u32', 'lane'), warp = k.reg('u32', 'warp'), wm = k.reg('u32', 'wm'), wn = k.reg('u32', 'wn');
  k.emit(`and.b32 ${lane}, ${tid}, 31`, `shr.u32 ${warp}, ${tid}, 5`, `rem.u32 ${wn}, ${warp}, ${s.warpsN}`, `div.u32 ${wm}, ${warp}, ${s.warpsN}`);
  const t1 = k.reg('u32', 't'), t2 = k.reg('u32', 't');
  const aOff = k.reg('u32', 'aoff');
  if (aK) {
    // A: row wm·wtm + l%16, k 8·(l/16)
    k.emit(`and.b32 ${t1}, ${lane}, 15`, `mad.lo.u32 ${t1}, ${wm}, ${wtm}, ${t1}`, `shr.u32 ${t2}, ${lane}, 4`, `shl.b32 ${t2}, ${t2}, 3`);
    k.emit(`mad.lo.u32 ${aOff}, ${t1}, ${SROW}, ${t2}`, `shl.b32 ${aOff}, ${aOff}, 1`);
  } else {
    // A stored [K, M]: k row (l%8) + 8·(l/16), m column wm·wtm + 8·((l/8)%2)
    k.emit(`and.b32 ${t1}, ${lane}, 7`, `shr.u32 ${t2}, ${lane}, 4`, `shl.b32 ${t2}, ${t2}, 3`, `add.u32 ${t1}, ${t1}, ${t2}`);
    k.emit(`shr.u32 ${t2}, ${lane}, 3`, `and.b32 ${t2}, ${t2}, 1`, `shl.b32 ${t2}, ${t2}, 3`, `mad.lo.u32 ${t2}, ${wm}, ${wtm}, ${t2}`);
    k.emit(`mad.lo.u32 ${aOff}, ${t1}, ${s.bm + 8}, ${t2}`, `shl.b32 ${aOff}, ${aOff}, 1`);
  }
  const bOff = k.reg('u32', 'boff');
  if (bK) {
    // W: row wn·wtn + l%8 + 8·(l/16), k 8·((l/8)%2)
    k.emit(`and.b32 ${t1}, ${lane}, 7`, `shr.u32 ${t2}, ${lane}, 4`, `shl.b32 ${t2}, ${t2}, 3`, `add.u32 ${t1}, ${t1}, ${t2}`, `mad.lo.u32 ${t1}, ${wn}, ${wtn}, ${t1}`);
    k.emit(`shr.u32 ${t2}, ${lane}, 3`, `and.b32 ${t2}, ${t2}, 1`, `shl.b32 ${t2}, ${t2}, 3`);
    k.emit(`mad.lo.u32 ${bOff}, ${t1}, ${SROW}, ${t2}`, `shl.b32 ${bOff}, ${bOff}, 1`, `add.u32 ${bOff}, ${bOff}, ${aBytes}`);
  } else {
    // B stored [K, N]: k row (l%8) + 8·((l/8)%2), n column wn·wtn + 8·(l/16)
    k.emit(`and.b32 ${t1}, ${lane}, 7`, `shr.u32 ${t2}, ${lane}, 3`, `and.b32 ${t2}, ${t2}, 1`, `shl.b32 ${t2}, ${t2}, 3`, `add.u32 ${t1}, ${t1}, ${t2}`);
    k.emit(`shr.u32 ${t2}, ${lane}, 4`, `shl.b32 ${t2}, ${t2}, 3`, `mad.lo.u32 ${t2}, ${wn}, ${wtn}, ${t2}`);
    k.emit(`mad.lo.u32 ${bOff}, ${t1}, ${s.bn + 8}, ${t2}`, `shl.b32 ${bOff}, ${bOff}, 1`, `add.u32 ${bOff}, ${bOff}, ${aBytes}`);
  }

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
  /** ldmatrix of the 16×16 block at tile offset (16·t along m or n, ks along k), per the operand's storage. */
  const ldm = (kMajor: boolean, ext: number, base: string, t: number, ks: number, regs: string[]) =>
    kMajor
      ? `ldmatrix.sync.aligned.m8n8.x4.shared.b16 {${regs.join(', ')}}, [${base}+${(t * 16 * SROW + ks) * 2}]`
      : `ldmatrix.sync.aligned.m8n8.x4.trans.shared.b16 {${regs.join(', ')}}, [${base}+${(ks * (ext + 8) + t * 16) * 2}]`;
  for (let ks = 0; ks < BK; ks += 16) {
    for (let i = 0; i < mt; i++) k.emit(ldm(aK, s.bm, aBase, i, ks, afr[i]!));
    for (let j = 0; j < nt / 2; j++) k.emit(ldm(bK, s.bn, bBase, j, ks, bfr[j]!));
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
  const bf16Out = s.epilogue === 'store_bf16' || s.epilogue === 'silu_pair_bf16';
  const ob = bf16Out ? 2 : 4;
  const g = k.reg('u32', 'g'), q2 = k.reg('u32', 'q2'), r0 = k.reg('u32', 'r0'), c0 = k.reg('u32', 'c0'), ldy = k.reg('u32', 'ldy');
  k.emit(`shr.u32 ${g}, ${lane}, 2`, `and.b32 ${q2}, ${lane}, 3`, `shl.b32 ${q2}, ${q2}, 1`);
  if (!silu) {
    k.emit(`mad.lo.u32 ${r0}, ${wm}, ${wtm}, ${m0}`, `add.u32 ${r0}, ${r0}, ${g}`, `mad.lo.u32 ${c0}, ${wn}, ${wtn}, ${n0}`, `add.u32 ${c0}, ${c0}, ${q2}`);
  } else {
    // output feature of n-tile pair 0: half the interleaved column of its gate tile (SILU_PAIR)
    k.emit(`mad.lo.u32 ${r0}, ${wm}, ${wtm}, ${m0}`, `add.u32 ${r0}, ${r0}, ${g}`, `mad.lo.u32 ${c0}, ${wn}, ${wtn}, ${n0}`, `shr.u32 ${c0}, ${c0}, 1`, `add.u32 ${c0}, ${c0}, ${q2}`);
  }
  k.emit(`add.u32 ${ldy}, ${N}, 7`, `and.b32 ${ldy}, ${ldy}, -8`, `shl.b32 ${ldy}, ${ldy}, ${ob === 4 ? 2 : 1}`);
  const row = k.reg('u32', 'row'), col = k.reg('u32', 'col'), col1 = k.reg('u32', 'col1');
  const rowOk = k.reg('pred', 'rowok'), one = k.reg('pred', 'one'), both = k.reg('pred', 'both'), ya = k.reg('u64', 'ya'), yoff = k.reg('u64', 'yoff');
  /** Stores v0, v1 at columns col, col + 1 (both in range) or v0 alone (one), as f32 or bf16. */
  const store = (a: string, v0: string, v1: string) => {
    if (!bf16Out) {
      k.emit(`@${both} st.global.v2.f32 [${a}], {${v0}, ${v1}}`, `@${one} st.global.f32 [${a}], ${v0}`);
    } else {
      // cvt.rn.bf16x2.f32 d, hi, lo: the first source goes to the upper half (column + 1)
      const packed = k.reg('b32', 'packed'), h = k.reg('b16', 'h');
      k.emit(`cvt.rn.bf16x2.f32 ${packed}, ${v1}, ${v0}`, `@${both} st.global.b32 [${a}], ${packed}`);
      k.emit(`cvt.rn.bf16.f32 ${h}, ${v0}`, `@${one} st.global.b16 [${a}], ${h}`);
    }
  };
  // 'accumulate': Y's old values are loaded ACC_GROUP fragments at a time, all before the group's adds
  // and stores, not one dependent load-add-store after another (gemm-sm90.ts's epilogue, where that
  // ran the accumulate GEMMs at half the store GEMMs' rate: bench/NOTES.md session 17)
  const group = s.epilogue === 'accumulate' ? {
    old: k.regs('f32', 'yog', 2 * ACC_GROUP), addr: k.regs('u64', 'yag', ACC_GROUP), both: k.regs('pred', 'bg', ACC_GROUP), one: k.regs('pred', 'og', ACC_GROUP),
  } : undefined;
  for (let i = 0; i < mt; i++) {
    for (const half of [0, 1]) {
      k.emit(`add.u32 ${row}, ${r0}, ${i * 16 + half * 8}`, `setp.lt.u32 ${rowOk}, ${row}, ${M}`, `mul.wide.u32 ${yoff}, ${row}, ${ldy}`, `add.s64 ${ya}, ${y}, ${yoff}`);
      if (group) {
        for (let j0 = 0; j0 < nt; j0 += ACC_GROUP) {
          const js = Array.from({ length: Math.min(ACC_GROUP, nt - j0) }, (_, x) => j0 + x);
          // guards (as the store path's: an element outside both is neither read nor written) and loads
          js.forEach((j, x) => {
            k.emit(`add.u32 ${col}, ${c0}, ${j * 8}`, `add.u32 ${col1}, ${col}, 1`, `setp.lt.and.u32 ${group.both[x]}, ${col1}, ${N}, ${rowOk}`, `setp.lt.and.u32 ${group.one[x]}, ${col}, ${N}, ${rowOk}`);
            k.emit(`mul.wide.u32 ${yoff}, ${col}, ${ob}`, `add.s64 ${group.addr[x]}, ${ya}, ${yoff}`, `xor.pred ${group.one[x]}, ${group.one[x]}, ${group.both[x]}`);
            k.emit(`@${group.both[x]} ld.global.v2.f32 {${group.old[2 * x]}, ${group.old[2 * x + 1]}}, [${group.addr[x]}]`, `@${group.one[x]} ld.global.f32 ${group.old[2 * x]}, [${group.addr[x]}]`);
          });
          js.forEach((j, x) => {
            const [v0, v1] = acc[i]![j]!.slice(half * 2, half * 2 + 2);
            k.emit(`add.f32 ${v0}, ${v0}, ${group.old[2 * x]}`, `add.f32 ${v1}, ${v1}, ${group.old[2 * x + 1]}`);
            k.emit(`@${group.both[x]} st.global.v2.f32 [${group.addr[x]}], {${v0}, ${v1}}`, `@${group.one[x]} st.global.f32 [${group.addr[x]}], ${v0}`);
          });
        }
        continue;
      }
      // silu_pair: n-tiles 2j (gate) and 2j+1 (up) make output columns c0 + 8j, + 1
      for (let j = 0; j < (silu ? nt / 2 : nt); j++) {
        const [v0, v1] = acc[i]![silu ? 2 * j : j]!.slice(half * 2, half * 2 + 2);
        const a = k.reg('u64', 'ys');
        // both columns in range: one 8-byte (4-byte) store (col is even and rows are pad8(N) elements, so aligned)
        k.emit(`add.u32 ${col}, ${c0}, ${j * 8}`, `add.u32 ${col1}, ${col}, 1`, `setp.lt.and.u32 ${both}, ${col1}, ${N}, ${rowOk}`, `setp.lt.and.u32 ${one}, ${col}, ${N}, ${rowOk}`);
        k.emit(`mul.wide.u32 ${yoff}, ${col}, ${ob}`, `add.s64 ${a}, ${ya}, ${yoff}`, `xor.pred ${one}, ${one}, ${both}`);
        if (silu) {
          // u ← silu(g)·u, the gate's registers overwritten
          const [u0, u1] = acc[i]![2 * j + 1]!.slice(half * 2, half * 2 + 2);
          siluTimes(k, v0!, u0!);
          siluTimes(k, v1!, u1!);
          store(a, u0!, u1!);
        } else store(a, v0!, v1!);
      }
    }
  }
  return { name, text: k.render() };
}
