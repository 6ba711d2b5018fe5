// f32 GEMM on CUDA cores (FFMA): the "simple path" of issue 16 for models whose linears have f32
// weights, so their prefill can run as GEMMs without rounding anything to 16 bits. It is gemm.ts's
// 'xwt' contract in f32: Y[M, N] (+)= X[M, K]·W[N, K]ᵀ, x = X [M, K], w = W [N, K], y = Y [M, N],
// every matrix with rows of pad8(its row length) f32 elements and zero padding (layout.ts); the same
// parameters (y, x, w, u32 M, N, K) and grid (x over column tiles of BN, y over row tiles of BM) as
// gemm.ts, so the lowering launches both alike. Epilogues 'store' (Y = ·) and 'accumulate' (Y += ·,
// the residual add of a prefill; each element is one thread's, a plain read-modify-write).
// Arithmetic: every product is accumulated with fma.rn.f32 in increasing k, one accumulator per
// element: the sum an f32 loop over k computes (no reassociation), ~1e-7 relative to Σ|x·w|.
//
// Tiling (the classic shared-memory SGEMM). A CTA of (BM/TM)·(BN/TN) threads computes a BM×BN tile
// of Y; thread (ty, tx) = (tid / (BN/TN), tid % (BN/TN)) holds the TM×TN register tile of rows
// ty·TM.., columns tx·TN... K is walked in steps of BK = 16. Each step's X rows (BM×BK) and W rows
// (BN×BK) are read from global memory as 16-byte chunks (4 floats along k: chunk c of the tile is
// row c / 4, k 4·(c % 4)) and stored to shared memory transposed, k-major: As[k][BM + 4],
// Bs[k][BN + 4], so that at each k a thread reads its TM rows and TN columns as TM/4 + TN/4 16-byte
// ld.shared.v4 (the +4 keeps each k row 16-byte aligned). Two shared stages: the global loads of step
// s+1 go to registers before step s is multiplied, and are stored to the other stage after it; one
// bar.sync a step (a stage is written only after every thread passed the barrier that ended its reads).
// Bank use: a quarter warp (8 threads of one ty, TN·8 consecutive floats of Bs) reads As at one
// address (a broadcast) and Bs without conflict when TN = 4.
//
// Tails. M, N, K are run-time parameters. A chunk is loaded when its row is below M (N) and its k
// start below pad8(K) (4 | pad8(K), so a chunk starting there lies wholly in the row: the zero
// padding adds 0); otherwise it is zero. K = 0 makes no K step: Y = 0 ('store'), Y unchanged
// ('accumulate'). Nothing is written past column N - 1 or row M - 1: four columns are one
// st.global.v4 when all four are below N (column a multiple of 4, rows pad8(N) floats: 16-byte
// aligned), else one scalar store per column below N.
import { gemmKernelStart } from './gemm.js';
import type { Kernel } from './dense.js';

export type GemmF32Epilogue = 'store' | 'accumulate';

export interface GemmF32Spec {
  /** CTA tile rows and columns of Y. */
  bm: number;
  bn: number;
  /** Register tile of a thread: rows and columns of Y (multiples of 4). */
  tm: number;
  tn: number;
  /** 'store' (default) or 'accumulate' (header). */
  epilogue?: GemmF32Epilogue;
}

/** The default tile: 64×64, 256 threads of 4×4. */
export const GEMM_F32_DEFAULT: GemmF32Spec = { bm: 64, bn: 64, tm: 4, tn: 4 };

const BK = 16;

export const gemmF32Threads = (s: GemmF32Spec): number => (s.bm / s.tm) * (s.bn / s.tn);

/** Every f32 GEMM kernel's name starts so (lower.ts tells an f32 prefill program by it). */
export const GEMM_F32_PREFIX = 'gemm_xwt_f32';

export function gemmF32Name(s: GemmF32Spec): string {
  return `${GEMM_F32_PREFIX}_m${s.bm}n${s.bn}k${BK}_t${s.tm}x${s.tn}${s.epilogue === 'accumulate' ? '_acc' : ''}`;
}

/** Grid for Y[M, N]: x over column tiles, y over row tiles (as gemm.ts's gemmGrid). */
export function gemmF32Grid(s: GemmF32Spec, m: number, n: number): [number, number, number] {
  return [Math.ceil(n / s.bn), Math.ceil(m / s.bm), 1];
}

/** Bytes of one shared stage: As [BK][BM + 4] then Bs [BK][BN + 4], f32. */
const aBytesOf = (s: GemmF32Spec) => BK * (s.bm + 4) * 4;
const stageBytesOf = (s: GemmF32Spec) => aBytesOf(s) + BK * (s.bn + 4) * 4;

function checkSpec(s: GemmF32Spec): void {
  const bad = (why: string) => new Error(`PTX generator bug: f32 GEMM tile ${gemmF32Name(s)}: ${why}`);
  if (s.tm % 4 !== 0 || s.tn % 4 !== 0 || s.tm <= 0 || s.tn <= 0) throw bad('register tile sides must be positive multiples of 4');
  if (s.bm % s.tm !== 0 || s.bn % s.tn !== 0) throw bad('the register tile must divide the CTA tile');
  const threads = gemmF32Threads(s);
  if (threads > 1024 || threads % 32 !== 0) throw bad('threads must be whole warps, at most 1024');
  // every thread loads whole rounds of 16-byte chunks of each operand
  if (((s.bm * BK) / 4) % threads !== 0 || ((s.bn * BK) / 4) % threads !== 0) throw bad('tile chunks do not divide among the threads');
  if (2 * stageBytesOf(s) > 48 * 1024) throw bad('more than 48 KB of static shared memory');
}

/**
 * The kernel. Params: y, x, w (header), then u32 M, N, K. Grid gemmF32Grid(spec, M, N), block
 * gemmF32Threads(spec).
 */
export function gemmF32(s: GemmF32Spec): Kernel {
  checkSpec(s);
  const name = gemmF32Name(s);
  const threads = gemmF32Threads(s), tx0 = s.bn / s.tn;
  const aBytes = aBytesOf(s), stageBytes = stageBytesOf(s);
  const aRow = (s.bm + 4) * 4, bRow = (s.bn + 4) * 4; // bytes of one k row of As, Bs
  // kp = pad8(K); ldx = its bytes, the row stride of x and w (gemm.ts's start, f32 elements)
  const { k, y, x, w, M, N, K, tid, kp, ldx, m0, n0 } = gemmKernelStart(name, threads, s, 4);

  const sh = k.sharedArray('tiles', 'b8', 2 * stageBytes, 16);
  const shBase = k.reg('u32', 'shbase');
  k.emit(`mov.u32 ${shBase}, ${sh}`);

  // ---- this thread's chunks: chunk c = tid + r·threads of a tile is row c / 4, k 4·(c % 4) ----
  const kc = k.reg('u32', 'kc'), crow = k.reg('u32', 'crow'), kq = k.reg('u32', 'kq');
  k.emit(`and.b32 ${kc}, ${tid}, 3`, `shr.u32 ${crow}, ${tid}, 2`, `shl.b32 ${kq}, ${kc}, 2`);
  interface Chunk { src: string; rowOk: string; dst: string; rowBytes: number; v: string[] }
  const chunks: Chunk[] = [];
  const rowsPerRound = threads / 4;
  k.comment(`loads: ${(s.bm * BK) / 4 / threads} + ${(s.bn * BK) / 4 / threads} chunks of 16 bytes a thread per K step`);
  for (const [mat, base, rows, limit, first, rowBytes, shOff] of [['x', x, s.bm, M, m0, aRow, 0], ['w', w, s.bn, N, n0, bRow, aBytes]] as const) {
    for (let r = 0; r < rows; r += rowsPerRound) {
      const row = k.reg('u32', `${mat}row`), ok = k.reg('pred', `${mat}ok`), src = k.reg('u64', `${mat}src`), dst = k.reg('u32', `${mat}dst`), off = k.reg('u64', 'off');
      k.emit(`add.u32 ${row}, ${crow}, ${r}`);
      // shared (stage 0): element (k 4·kc, row) of the k-major tile; elements k + j are j·rowBytes further
      k.emit(`mad.lo.u32 ${dst}, ${kq}, ${rowBytes}, ${shBase}`, `mad.lo.u32 ${dst}, ${row}, 4, ${dst}`);
      if (shOff) k.emit(`add.u32 ${dst}, ${dst}, ${shOff}`);
      k.emit(`add.u32 ${row}, ${row}, ${first}`, `setp.lt.u32 ${ok}, ${row}, ${limit}`);
      // global at K step 0: base + row·ldx + 16·kc
      k.emit(`mul.wide.u32 ${off}, ${row}, ${ldx}`, `add.s64 ${src}, ${base}, ${off}`, `mul.wide.u32 ${off}, ${kc}, 16`, `add.s64 ${src}, ${src}, ${off}`);
      chunks.push({ src, rowOk: ok, dst, rowBytes, v: k.regs('f32', `${mat}v`, 4) });
    }
  }
  const kok = k.reg('pred', 'kok'), ok = k.reg('pred', 'ok'), kcur = k.reg('u32', 'kcur'), koff = k.reg('u64', 'koff'), ga = k.reg('u64', 'ga');
  const zero = '0f00000000';
  /** Loads the chunks of the K step starting at column kcol0 into their registers (zero where out of range). */
  const loadStep = (kcol0: string) => {
    k.emit(`add.u32 ${kcur}, ${kcol0}, ${kq}`, `setp.lt.u32 ${kok}, ${kcur}, ${kp}`, `mul.wide.u32 ${koff}, ${kcol0}, 4`);
    for (const c of chunks) {
      k.emit(`and.pred ${ok}, ${kok}, ${c.rowOk}`, `add.s64 ${ga}, ${c.src}, ${koff}`);
      k.emit(...c.v.map((r) => `mov.f32 ${r}, ${zero}`));
      k.emit(`@${ok} ld.global.v4.f32 {${c.v.join(', ')}}, [${ga}]`);
    }
  };
  const sd = k.reg('u32', 'sd');
  /** Stores the loaded chunks, transposed, into the stage at byte offset stageOff. */
  const storeStep = (stageOff: string) => {
    for (const c of chunks) {
      k.emit(`add.u32 ${sd}, ${c.dst}, ${stageOff}`);
      c.v.forEach((r, j) => k.emit(`st.shared.f32 [${sd}+${j * c.rowBytes}], ${r}`));
    }
  };

  // ---- accumulators; this thread's read offsets in a stage ----
  const acc = Array.from({ length: s.tm }, () => k.regs('f32', 'acc', s.tn));
  for (const row of acc) for (const r of row) k.emit(`mov.f32 ${r}, ${zero}`);
  const tx = k.reg('u32', 'tx'), ty = k.reg('u32', 'ty'), aOff = k.reg('u32', 'aoff'), bOff = k.reg('u32', 'boff');
  k.emit(`rem.u32 ${tx}, ${tid}, ${tx0}`, `div.u32 ${ty}, ${tid}, ${tx0}`);
  k.emit(`mul.lo.u32 ${aOff}, ${ty}, ${s.tm * 4}`, `mul.lo.u32 ${bOff}, ${tx}, ${s.tn * 4}`, `add.u32 ${bOff}, ${bOff}, ${aBytes}`);

  // ---- the K loop: the prologue fills stage 0 with step 0 ----
  const steps = k.reg('u32', 'steps'), it = k.reg('u32', 'it'), cur = k.reg('u32', 'cur'), nxt = k.reg('u32', 'nxt'), k0 = k.reg('u32', 'k0'), knext = k.reg('u32', 'knext');
  const more = k.reg('pred', 'more'), hasNext = k.reg('pred', 'hasnext'), t1 = k.reg('u32', 't');
  k.emit(`add.u32 ${steps}, ${kp}, ${BK - 1}`, `shr.u32 ${steps}, ${steps}, 4`, `mov.u32 ${k0}, 0`, `mov.u32 ${it}, 0`, `mov.u32 ${cur}, 0`);
  loadStep(k0);
  storeStep(cur);
  k.emit('bar.sync 0');
  const loop = k.label('kloop'), done = k.label('kdone'), noLoad = k.label('noload'), noStore = k.label('nostore');
  k.place(loop);
  k.emit(`setp.ge.u32 ${more}, ${it}, ${steps}`, `@${more} bra ${done}`);
  k.emit(`xor.b32 ${nxt}, ${cur}, ${stageBytes}`, `add.u32 ${knext}, ${k0}, ${BK}`, `add.u32 ${t1}, ${it}, 1`, `setp.lt.u32 ${hasNext}, ${t1}, ${steps}`);
  // the next step's global loads are in flight while this one is multiplied
  k.emit(`@!${hasNext} bra ${noLoad}`);
  loadStep(knext);
  k.place(noLoad);
  const aBase = k.reg('u32', 'abase'), bBase = k.reg('u32', 'bbase');
  k.emit(`add.u32 ${aBase}, ${shBase}, ${cur}`, `add.u32 ${aBase}, ${aBase}, ${aOff}`, `add.u32 ${bBase}, ${shBase}, ${cur}`, `add.u32 ${bBase}, ${bBase}, ${bOff}`);
  const a = k.regs('f32', 'a', s.tm), b = k.regs('f32', 'b', s.tn);
  for (let kk = 0; kk < BK; kk++) {
    for (let i = 0; i < s.tm; i += 4) k.emit(`ld.shared.v4.f32 {${a.slice(i, i + 4).join(', ')}}, [${aBase}+${kk * aRow + i * 4}]`);
    for (let j = 0; j < s.tn; j += 4) k.emit(`ld.shared.v4.f32 {${b.slice(j, j + 4).join(', ')}}, [${bBase}+${kk * bRow + j * 4}]`);
    for (let i = 0; i < s.tm; i++) for (let j = 0; j < s.tn; j++) k.emit(`fma.rn.f32 ${acc[i]![j]}, ${a[i]}, ${b[j]}, ${acc[i]![j]}`);
  }
  k.emit(`@!${hasNext} bra ${noStore}`);
  storeStep(nxt);
  k.place(noStore);
  // the stores to nxt are seen by every thread, and every thread is done reading cur, before either is touched again
  k.emit('bar.sync 0', `mov.u32 ${cur}, ${nxt}`, `mov.u32 ${k0}, ${knext}`, `add.u32 ${it}, ${it}, 1`, `bra ${loop}`);
  k.place(done);

  // ---- epilogue: rows m0 + ty·TM + i, columns n0 + tx·TN + 4j .. + 3 ----
  const r0 = k.reg('u32', 'r0'), c0 = k.reg('u32', 'c0'), ldy = k.reg('u32', 'ldy');
  k.emit(`mad.lo.u32 ${r0}, ${ty}, ${s.tm}, ${m0}`, `mad.lo.u32 ${c0}, ${tx}, ${s.tn}, ${n0}`);
  k.emit(`add.u32 ${ldy}, ${N}, 7`, `and.b32 ${ldy}, ${ldy}, -8`, `shl.b32 ${ldy}, ${ldy}, 2`);
  const row = k.reg('u32', 'row'), col = k.reg('u32', 'col'), rowOk = k.reg('pred', 'rowok'), all4 = k.reg('pred', 'all4'), one = k.reg('pred', 'one');
  const ya = k.reg('u64', 'ya'), yoff = k.reg('u64', 'yoff'), a4 = k.reg('u64', 'y4');
  const acc4 = s.epilogue === 'accumulate';
  const old = k.regs('f32', 'yo', 4);
  for (let i = 0; i < s.tm; i++) {
    k.emit(`add.u32 ${row}, ${r0}, ${i}`, `setp.lt.u32 ${rowOk}, ${row}, ${M}`, `mul.wide.u32 ${yoff}, ${row}, ${ldy}`, `add.s64 ${ya}, ${y}, ${yoff}`);
    for (let j = 0; j < s.tn; j += 4) {
      const v = acc[i]!.slice(j, j + 4);
      // all four columns below N: one 16-byte access
      k.emit(`add.u32 ${col}, ${c0}, ${j + 3}`, `setp.lt.and.u32 ${all4}, ${col}, ${N}, ${rowOk}`);
      k.emit(`add.u32 ${col}, ${c0}, ${j}`, `mul.wide.u32 ${yoff}, ${col}, 4`, `add.s64 ${a4}, ${ya}, ${yoff}`);
      if (acc4) {
        k.emit(`@${all4} ld.global.v4.f32 {${old.join(', ')}}, [${a4}]`);
        v.forEach((r, e) => k.emit(`@${all4} add.f32 ${r}, ${r}, ${old[e]}`));
      }
      k.emit(`@${all4} st.global.v4.f32 [${a4}], {${v.join(', ')}}`);
      // else each column below N alone (the row's tail); all4 implies one, so xor leaves one and not all4
      for (let e = 0; e < 4; e++) {
        k.emit(`add.u32 ${col}, ${c0}, ${j + e}`, `setp.lt.and.u32 ${one}, ${col}, ${N}, ${rowOk}`, `xor.pred ${one}, ${one}, ${all4}`);
        if (acc4) k.emit(`@${one} ld.global.f32 ${old[0]}, [${a4}+${e * 4}]`, `@${one} add.f32 ${v[e]}, ${v[e]}, ${old[0]}`);
        k.emit(`@${one} st.global.f32 [${a4}+${e * 4}], ${v[e]}`);
      }
    }
  }
  return { name, text: k.render() };
}
