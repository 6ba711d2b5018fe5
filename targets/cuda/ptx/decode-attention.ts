// Causal GQA attention of T new queries over the KV cache, split over the cached positions
// (flash-decoding): a row of n = pos + t + 1 positions is cut into at most S chunks, one block per
// (head, chunk) computes a partial softmax over its chunk (its max, its sum and its unnormalized
// output), and a second kernel merges a head's chunks with the usual rescaling.
//
// Why: one block per head (the kernel this replaced) ran 32 blocks on 132 SMs, so at long
// contexts the step read the cache at a fraction of the memory bandwidth. Here the grid is
// (heads, S, T) with S fixed at compile time (about 512 blocks per query row), and the chunk
// length follows the live length n on the device: chunk = g·⌈n / (S·g)⌉ positions (g = the rows
// a block reads per round). So the grid does not depend on the position (a decode step is one
// CUDA graph, captured once and replayed at every position), every live block has a full chunk
// (at n = 2048 on the 1B preset: 16 chunks of 128 positions, 512 blocks, all resident at once),
// and the blocks past the last chunk exit at once. A chunk length fixed at compile time would make
// the grid grow with the capacity instead (a 128k-context model: thousands of idle blocks a step).
// Keys and values are read 16 bytes a lane (8 bf16/f16 or 4 f32), several rows in flight.
// With merge 'last-block' there is no second kernel: the last split block of a (row, head) to finish
// does the merge (a launch fewer a layer; the combine was mostly launch latency, session 12).
import { f32Imm, KernelBuilder } from './builder.js';
import type { Kernel } from './dense.js';
import { elemBytes, kvTag, pad8 } from './layout.js';
import { unpackWords } from './load.js';
import type { KvDType } from '../program.js';

export interface DecodeAttentionSpec {
  heads: number;
  kvHeads: number;
  hd: number;
  /** The caches' element type. */
  cache: KvDType;
  /** Rows of the caches (the model's context). */
  capacity: number;
  /** Blocks per query row the split aims at (default TARGET_BLOCKS); S = that / heads, a power of two. */
  blocks?: number;
  /**
   * Who merges a head's partials: 'combine-kernel' (default), attentionCombine as a second launch;
   * 'last-block', the split kernel's last block to finish for that (row, head), see attentionSplit.
   */
  merge?: 'combine-kernel' | 'last-block';
  /**
   * Start reading before the previous kernel ends (programmatic launch): the split blocks issue
   * their first round of K/V loads for the rows older than pos[0] before griddepcontrol.wait, so
   * those bytes stream in while the QKV kernel still runs; see attentionSplit.
   */
  early?: boolean;
}

export const SPLIT_WARPS = 4;
export const SPLIT_THREADS = 32 * SPLIT_WARPS;
/**
 * Blocks per query row the split aims at: about 4 per SM of an H100 (132), all resident at once.
 * Measured on the H100 (session 12, with an L2 prefetch of the chunk before gridSync, since
 * removed: it made the step slower at every setting), 1B dense at 1024 / 2016 tokens of context:
 * 512 blocks 606 / 559 tok/s, 1024 blocks 652 / 594, 2048 blocks 670 / 575. MOCC_CUDA_SPLIT_BLOCKS
 * sets it for such sweeps (targets/cuda/index.ts).
 */
const TARGET_BLOCKS = 512;
const MAX_SPLITS = 64;

/** How a split block reads a head's rows. */
export interface SplitLayout {
  /** Cache elements a lane loads at once: 16 bytes' worth, or fewer where hd is not a multiple. */
  vecLen: number;
  /** Vectors in a head's row (hd / vecLen). */
  nvec: number;
  /** Lanes that share a row (a power of two, at most 32); they sum their partial dot products by shuffles. */
  lanes: number;
  /** Vectors each lane takes of a row (more than one only when a row is over 32 vectors). */
  vecsPerLane: number;
  /** Rows a warp reads per round (32 / lanes). */
  rowsPerWarp: number;
  /** Rows a block reads per round; a chunk is a whole number of rounds. */
  granule: number;
  /** Rounds a warp loads before it computes: their loads are all in flight at once. */
  unroll: number;
  /** S: the most chunks (blocks) per query row and head. */
  splits: number;
}

export function splitLayout(s: DecodeAttentionSpec): SplitLayout {
  const eb = elemBytes(s.cache);
  if (s.hd % 2 !== 0 || s.heads % s.kvHeads !== 0) throw new Error(`PTX generator bug: decode attention with hd ${s.hd}, ${s.heads} heads over ${s.kvHeads} (hd must be even, heads a multiple of kv heads)`);
  let vecLen = 16 / eb;
  while (s.hd % vecLen !== 0) vecLen /= 2;
  const nvec = s.hd / vecLen;
  let lanes = 1;
  while (lanes < nvec && lanes < 32) lanes *= 2;
  const vecsPerLane = Math.ceil(nvec / lanes);
  const rowsPerWarp = 32 / lanes;
  const granule = SPLIT_WARPS * rowsPerWarp;
  let splits = 1;
  while (splits * s.heads < (s.blocks ?? TARGET_BLOCKS) && splits < MAX_SPLITS) splits *= 2;
  splits = Math.max(1, Math.min(splits, Math.ceil(s.capacity / granule)));
  return { vecLen, nvec, lanes, vecsPerLane, rowsPerWarp, granule, unroll: Math.max(1, Math.floor(4 / vecsPerLane)), splits };
}

/** Floats of one partial result: hd of unnormalized output, then the max (log2 domain) and the sum. */
export const partialWidth = (hd: number): number => hd + 2;

/** Threads of the combine kernel: one a head dimension (at most 256, looping beyond). */
export const combineThreads = (hd: number): number => Math.min(256, 32 * Math.ceil(hd / 32));

/**
 * chunk = g·⌈n / (S·g)⌉, the positions each block of a row of n takes, and live = ⌈n / chunk⌉ ≤ S,
 * the blocks that have any. Both kernels emit this, so they agree on which partials exist.
 */
function emitChunks(k: KernelBuilder, n: string, lay: SplitLayout): { chunk: string; live: string } {
  const span = lay.splits * lay.granule;
  const chunk = k.reg('u32', 'chunk'), live = k.reg('u32', 'live');
  k.emit(`add.u32 ${chunk}, ${n}, ${span - 1}`, `div.u32 ${chunk}, ${chunk}, ${span}`, `mul.lo.u32 ${chunk}, ${chunk}, ${lay.granule}`);
  k.emit(`add.u32 ${live}, ${n}, ${chunk}`, `sub.u32 ${live}, ${live}, 1`, `div.u32 ${live}, ${live}, ${chunk}`);
  return { chunk, live };
}

/** n = pos[0] + t + 1: the positions query row t attends to. */
function emitLength(k: KernelBuilder, pos: string, t: string, op: 'ld.global' | 'ld.global.cg' = 'ld.global'): string {
  const n = k.reg('u32', 'n');
  k.emit(`${op}.u32 ${n}, [${pos}]`, `add.u32 ${n}, ${n}, ${t}`, `add.u32 ${n}, ${n}, 1`);
  return n;
}

/** How a load is issued: the instruction without its type (ld.global.cg: from L2, see attentionSplit's early reads), whether the registers are zeroed first where the guard fails, and into which registers (fresh ones by default). */
interface LoadHow {
  op?: 'ld.global' | 'ld.global.cg';
  zero?: boolean;
  into?: string[];
}

/** Loads `count` consecutive f32 at `a` (aligned to count·4 bytes, count a power of two), zeros where `guard` fails. */
function loadF32s(k: KernelBuilder, a: string, count: number, guard?: string, how: LoadHow = {}): string[] {
  const out = how.into ?? k.regs('f32', 'f', count), op = how.op ?? 'ld.global';
  if (guard && how.zero !== false) for (const r of out) k.emit(`mov.f32 ${r}, 0f00000000`);
  const g = guard ? `@${guard} ` : '';
  for (let i = 0; i < count; i += 4) {
    const part = out.slice(i, i + 4);
    const off = i ? `+${i * 4}` : '';
    if (part.length === 4) k.emit(`${g}${op}.v4.f32 {${part.join(', ')}}, [${a}${off}]`);
    else if (part.length === 2) k.emit(`${g}${op}.v2.f32 {${part.join(', ')}}, [${a}${off}]`);
    else k.emit(`${g}${op}.f32 ${part[0]}, [${a}${off}]`);
  }
  return out;
}

/** Registers for one vector of vecLen cache elements: f32 for f32, packed words for f16/bf16. */
const vecRegs = (k: KernelBuilder, dtype: KvDType, vecLen: number): string[] => (dtype === 'f32' ? k.regs('f32', 'f', vecLen) : k.regs('b32', 'w', vecLen / 2));

/** Issues the load of vecLen cache elements at `a` (zeros where `guard` fails) into vecRegs' registers. */
function loadVec(k: KernelBuilder, dtype: KvDType, vecLen: number, a: string, guard: string | undefined, how: LoadHow = {}): string[] {
  if (dtype === 'f32') return loadF32s(k, a, vecLen, guard, how);
  const words = how.into ?? vecRegs(k, dtype, vecLen), op = how.op ?? 'ld.global';
  if (guard && how.zero !== false) for (const r of words) k.emit(`mov.b32 ${r}, 0`);
  const g = guard ? `@${guard} ` : '';
  if (words.length === 1) k.emit(`${g}${op}.b32 ${words[0]}, [${a}]`);
  else k.emit(`${g}${op}.v${words.length}.b32 {${words.join(', ')}}, [${a}]`);
  return words;
}

function toF32(k: KernelBuilder, dtype: KvDType, raw: string[]): string[] {
  if (dtype === 'f32') return raw;
  const out = k.regs('f32', 'v', raw.length * 2);
  unpackWords(k, dtype, raw, out);
  return out;
}

/** (m, l, acc) ← the merge of (m, l, acc) and (mo, lo, acco): both rescaled to the larger max. */
function emitMerge(k: KernelBuilder, m: string, l: string, acc: string[], mo: string, lo: string, acco: string[]): void {
  const M = k.reg('f32', 'M'), a = k.reg('f32', 'sa'), b = k.reg('f32', 'sb');
  k.emit(`max.f32 ${M}, ${m}, ${mo}`, `sub.f32 ${a}, ${m}, ${M}`, `ex2.approx.f32 ${a}, ${a}`, `sub.f32 ${b}, ${mo}, ${M}`, `ex2.approx.f32 ${b}, ${b}`);
  k.emit(`mul.f32 ${l}, ${l}, ${a}`, `fma.rn.f32 ${l}, ${lo}, ${b}, ${l}`, `mov.f32 ${m}, ${M}`);
  acc.forEach((r, i) => k.emit(`mul.f32 ${r}, ${r}, ${a}`, `fma.rn.f32 ${r}, ${acco[i]}, ${b}, ${r}`));
}

/**
 * The partial softmax of one chunk: block (h, c, t) takes positions [c·chunk, min(n, (c+1)·chunk))
 * of query row t, head h (KV head h / (heads/kvHeads)), and writes part[(t·heads + h)·S + c] =
 * (Σ_s 2^(x_s − m)·V_s [hd], m, Σ_s 2^(x_s − m)) with x_s = q·K_s·log2(e)/√hd and m the chunk's max.
 * In the block, `lanes` lanes share a row (16 bytes each of its K and V), so a warp reads
 * rowsPerWarp rows a round, `unroll` rounds in flight; each group of lanes keeps an online softmax,
 * then the groups merge by shuffles and the warps through shared memory. Positions past the chunk
 * are never read (their loads are predicated off), so stale or poisoned cache rows do not matter.
 * Params: part, q, ck, cv, pos. Grid (heads, S, T), block SPLIT_THREADS.
 *
 * merge 'last-block': params out, part, q, ck, cv, pos, counters, and the block that finishes a
 * (row t, head h) last also merges its live partials into out as attentionCombine does
 * (emitCombine). counters[t·heads + h] (u32, zero before the launch) counts the finished blocks:
 * after its partial is stored, a block syncs (bar.sync: every thread's stores precede thread 0 in
 * causality order), then thread 0 does atom.acq_rel.gpu.inc with bound live − 1, which returns the
 * old count and stores old + 1, or 0 when old = live − 1: so the block that sees live − 1 is the
 * last, and the counter is back at 0 for the next launch (a later layer or call, or a graph
 * replay) with no separate reset. Blocks past the last live chunk exit without counting. Memory
 * order (PTX memory model): each counting block's atom is a release at gpu scope, after its
 * partial's stores in causality order (program order, then the CTA barrier); the last block's atom
 * reads the value written by the chain of the others' atom RMWs (observation order runs through
 * atomic RMWs), and is an acquire at gpu scope; the barrier (bar.red) then orders it before every
 * thread's reads of the partials. So each partial's stores precede those reads in causality order
 * and the reads see them. The reads go around L1 anyway (ld.global.cg): nothing depends on how the
 * acquire is implemented for the SM's other threads.
 */
export function attentionSplit(s: DecodeAttentionSpec): Kernel {
  const lay = splitLayout(s);
  const { heads, kvHeads, hd, cache } = s;
  const { vecLen, nvec, lanes: L, vecsPerLane: V, rowsPerWarp: R, unroll: U, splits: S } = lay;
  const W = SPLIT_WARPS, eb = elemBytes(cache), group = heads / kvHeads;
  const merged = s.merge === 'last-block';
  const name = `attention_split${merged ? '_merge' : ''}${s.early ? '_early' : ''}_h${heads}_kv${kvHeads}_hd${hd}_s${S}${kvTag(cache)}`;
  const params = merged ? ['out', 'part', 'q', 'ck', 'cv', 'pos', 'counters'] : ['part', 'q', 'ck', 'cv', 'pos'];
  const k = new KernelBuilder(name, params.map((n) => ({ name: n, type: 'u64' as const })));
  k.blockSize(SPLIT_THREADS);
  const part = k.ptrParam('part'), q = k.ptrParam('q'), ck = k.ptrParam('ck'), cv = k.ptrParam('cv'), pos = k.ptrParam('pos');
  const tid = k.special('%tid.x', 'tid'), h = k.special('%ctaid.x', 'h'), c = k.special('%ctaid.y', 'c'), t = k.special('%ctaid.z', 't');
  // (early: pos from L2 before the wait, see below; the host or the previous step's argmax wrote it)
  const n = emitLength(k, pos, t, s.early ? 'ld.global.cg' : 'ld.global');
  const { chunk, live } = emitChunks(k, n, lay);
  const start = k.reg('u32', 'start'), end = k.reg('u32', 'end'), p = k.reg('pred', 'p'), done = k.label('done');
  k.emit(`mul.lo.u32 ${start}, ${c}, ${chunk}`, `setp.ge.u32 ${p}, ${start}, ${n}`, `@${p} bra ${done}`);
  k.emit(`add.u32 ${end}, ${start}, ${chunk}`, `min.u32 ${end}, ${end}, ${n}`);
  const lane = k.reg('u32', 'lane'), warp = k.reg('u32', 'warp'), grp = k.reg('u32', 'grp'), sub = k.reg('u32', 'sub'), kvh = k.reg('u32', 'kvh');
  k.emit(`and.b32 ${lane}, ${tid}, 31`, `shr.u32 ${warp}, ${tid}, 5`, `shr.u32 ${grp}, ${lane}, ${Math.log2(L)}`, `and.b32 ${sub}, ${lane}, ${L - 1}`);
  k.emit(group === 1 ? `mov.u32 ${kvh}, ${h}` : `div.u32 ${kvh}, ${h}, ${group}`);

  // q, pre-scaled by log2(e)/√hd: loaded as its addresses are made, or (early) after the wait.
  // (Without `early` the instructions come in the order of the kernel checked on the H100 before
  // early reads existed: the same text, byte for byte.)
  const qrow = k.addr(q, t, pad8(heads * hd) * 4);
  const loadQ = (e: string, pv: string | undefined): string[] => {
    const vals = loadF32s(k, k.addr(qrow, e, 4), vecLen, pv);
    for (const v of vals) k.emit(`mul.f32 ${v}, ${v}, ${f32Imm(Math.LOG2E / Math.sqrt(hd))}`);
    return vals;
  };
  // This lane's vectors j_i = sub + L·i of the head (valid while < nvec)
  const valid: (string | undefined)[] = [], j: string[] = [], qe: string[] = [], qv: string[][] = [], kBase: string[] = [], vBase: string[] = [];
  for (let i = 0; i < V; i++) {
    const ji = k.reg('u32', 'j');
    k.emit(`add.u32 ${ji}, ${sub}, ${L * i}`);
    let pv: string | undefined;
    if ((i + 1) * L > nvec) {
      pv = k.reg('pred', 'pv');
      k.emit(`setp.lt.u32 ${pv}, ${ji}, ${nvec}`, `min.u32 ${ji}, ${ji}, ${nvec - 1}`);
    }
    const qei = k.reg('u32', 'qe'), ke = k.reg('u32', 'ke');
    k.emit(`mul.lo.u32 ${qei}, ${ji}, ${vecLen}`, `mad.lo.u32 ${ke}, ${kvh}, ${hd}, ${qei}`, `mad.lo.u32 ${qei}, ${h}, ${hd}, ${qei}`);
    if (!s.early) qv.push(loadQ(qei, pv));
    valid.push(pv); j.push(ji); qe.push(qei); kBase.push(k.addr(ck, ke, eb)); vBase.push(k.addr(cv, ke, eb));
  }
  const m = k.reg('f32', 'm'), l = k.reg('f32', 'l');
  let acc: string[][] = [];
  const initSoftmax = () => {
    acc = qv.map(() => k.regs('f32', 'acc', vecLen));
    // m starts finite (−1e30), so 2^(m − mNew) is never 2^(−inf + inf) = NaN: a group that saw no position keeps l = 0, acc = 0
    k.emit(`mov.f32 ${m}, ${f32Imm(-1e30)}`, `mov.f32 ${l}, 0f00000000`);
    for (const r of acc.flat()) k.emit(`mov.f32 ${r}, 0f00000000`);
  };
  if (!s.early) initSoftmax();

  // Round r of the chunk is rows start + r·W·R + [0, W·R): warp w takes start + r·W·R + w·R + grp,
  // U rounds' loads in flight at once (into the same registers every time round the loop).
  const rowBase = k.reg('u32', 'rowbase'), loop = k.label('rows'), loopDone = k.label('rowsdone');
  const rowBytes = pad8(kvHeads * hd) * eb;
  k.emit(`mad.lo.u32 ${rowBase}, ${warp}, ${R}, ${start}`);
  const rows: string[] = [], ok: string[] = [], kRaw: string[][][] = [], vRaw: string[][][] = [];
  /** Round u's row (rowBase + u·W·R + grp) and whether it is inside the chunk. */
  const emitRow = (u: number) => {
    if (rows[u] === undefined) (rows[u] = k.reg('u32', 'row')), (ok[u] = k.reg('pred', 'ok'));
    k.emit(`add.u32 ${rows[u]}, ${rowBase}, ${u * W * R}`, `add.u32 ${rows[u]}, ${rows[u]}, ${grp}`, `setp.lt.u32 ${ok[u]}, ${rows[u]}, ${end}`);
  };
  /** Round u's K and V loads where the row is inside the chunk (and `extra`, if given), into its registers (made by the first call). */
  const emitLoads = (u: number, how: LoadHow, extra?: string) => {
    kRaw[u] ??= [];
    vRaw[u] ??= [];
    for (let i = 0; i < V; i++) {
      let g = ok[u]!;
      for (const x of [valid[i], extra]) {
        if (!x) continue;
        const gg = k.reg('pred', 'g');
        k.emit(`and.pred ${gg}, ${g}, ${x}`);
        g = gg;
      }
      const ka = k.addr(kBase[i]!, rows[u]!, rowBytes), va = k.addr(vBase[i]!, rows[u]!, rowBytes);
      kRaw[u]![i] = loadVec(k, cache, vecLen, ka, g, { ...how, into: kRaw[u]![i] });
      vRaw[u]![i] = loadVec(k, cache, vecLen, va, g, { ...how, into: vRaw[u]![i] });
    }
  };
  const compute = s.early ? k.label('compute') : undefined;
  if (s.early) {
    // The first rounds' rows older than pos[0] are read before the wait: the kernels that wrote them
    // (the QKV kernels of earlier steps, or a prefill) completed before the kernel this one waits for
    // even started (every kernel waits before it lets the next start, builder.ts gridSync), and no
    // kernel writes them again in this step. ld.global.cg reads them from L2, where those writes are.
    // The rows from pos[0] on are this step's, written by the kernel just before: loaded after the wait.
    const p0 = k.reg('u32', 'p0');
    k.emit(`sub.u32 ${p0}, ${n}, ${t}`, `sub.u32 ${p0}, ${p0}, 1`);
    const fresh: string[] = [];
    for (let u = 0; u < U; u++) {
      emitRow(u);
      const old = k.reg('pred', 'old');
      fresh.push(k.reg('pred', 'fresh'));
      k.emit(`setp.lt.u32 ${old}, ${rows[u]}, ${p0}`, `setp.ge.u32 ${fresh[u]}, ${rows[u]}, ${p0}`);
      emitLoads(u, { op: 'ld.global.cg' }, old);
    }
    k.gridSync();
    for (let u = 0; u < U; u++) emitLoads(u, { zero: false }, fresh[u]);
    qe.forEach((e, i) => qv.push(loadQ(e, valid[i])));
    initSoftmax();
    // the first round is loaded: straight to its computation (the loop test is the same)
    k.emit(`setp.ge.u32 ${p}, ${rowBase}, ${end}`, `@${p} bra ${loopDone}`, `bra ${compute}`);
  }
  // The loop test is on the warp's first row, the same in all its lanes (the shuffles need them all).
  k.place(loop);
  k.emit(`setp.ge.u32 ${p}, ${rowBase}, ${end}`, `@${p} bra ${loopDone}`);
  for (let u = 0; u < U; u++) {
    emitRow(u);
    emitLoads(u, {});
  }
  if (compute) k.place(compute);
  const dots = k.regs('f32', 'dot', U);
  for (let u = 0; u < U; u++) {
    k.emit(`mov.f32 ${dots[u]}, 0f00000000`);
    for (let i = 0; i < V; i++) {
      const kf = toF32(k, cache, kRaw[u]![i]!);
      for (let e = 0; e < vecLen; e++) k.emit(`fma.rn.f32 ${dots[u]}, ${qv[i]![e]}, ${kf[e]}, ${dots[u]}`);
    }
    const sh = k.reg('f32', 'sh');
    for (let off = L / 2; off >= 1; off /= 2) k.emit(`shfl.sync.bfly.b32 ${sh}, ${dots[u]}, ${off}, 31, -1`, `add.f32 ${dots[u]}, ${dots[u]}, ${sh}`);
    k.emit(`@!${ok[u]} mov.f32 ${dots[u]}, 0fFF800000`); // past the chunk: weight 2^(−inf) = 0
  }
  const mNew = k.reg('f32', 'mn'), corr = k.reg('f32', 'corr');
  k.emit(`max.f32 ${mNew}, ${m}, ${dots[0]}`);
  for (let u = 1; u < U; u++) k.emit(`max.f32 ${mNew}, ${mNew}, ${dots[u]}`);
  k.emit(`sub.f32 ${corr}, ${m}, ${mNew}`, `ex2.approx.f32 ${corr}, ${corr}`, `mul.f32 ${l}, ${l}, ${corr}`, `mov.f32 ${m}, ${mNew}`);
  for (const r of acc.flat()) k.emit(`mul.f32 ${r}, ${r}, ${corr}`);
  for (let u = 0; u < U; u++) {
    const pe = k.reg('f32', 'pe');
    k.emit(`sub.f32 ${pe}, ${dots[u]}, ${mNew}`, `ex2.approx.f32 ${pe}, ${pe}`, `add.f32 ${l}, ${l}, ${pe}`);
    for (let i = 0; i < V; i++) {
      const vf = toF32(k, cache, vRaw[u]![i]!);
      for (let e = 0; e < vecLen; e++) k.emit(`fma.rn.f32 ${acc[i]![e]}, ${pe}, ${vf[e]}, ${acc[i]![e]}`);
    }
  }
  k.emit(`add.u32 ${rowBase}, ${rowBase}, ${U * W * R}`, `bra ${loop}`);
  k.place(loopDone);

  // The lane groups of a warp (lanes l, l+L, l+2L, … hold the same dimensions), by shuffles.
  for (let off = L; off < 32; off *= 2) {
    const mo = k.reg('f32', 'mo'), lo = k.reg('f32', 'lo');
    k.emit(`shfl.sync.bfly.b32 ${mo}, ${m}, ${off}, 31, -1`, `shfl.sync.bfly.b32 ${lo}, ${l}, ${off}, 31, -1`);
    const flat = acc.flat(), other = k.regs('f32', 'ao', flat.length);
    flat.forEach((r, i) => k.emit(`shfl.sync.bfly.b32 ${other[i]}, ${r}, ${off}, 31, -1`));
    emitMerge(k, m, l, flat, mo, lo, other);
  }
  // The warps, through shared memory: m[W], l[W], acc[W][hd] from the first lane group of each.
  const shM = k.sharedArray('m', 'f32', W, 4), shL = k.sharedArray('l', 'f32', W, 4), shA = k.sharedArray('acc', 'f32', W * hd, 16);
  const lead = k.reg('pred', 'lead'), first = k.reg('pred', 'first'), sa = k.reg('u32', 'sa');
  k.emit(`setp.lt.u32 ${lead}, ${lane}, ${L}`, `setp.eq.u32 ${first}, ${lane}, 0`);
  k.emit(`mov.u32 ${sa}, ${shM}`, `mad.lo.u32 ${sa}, ${warp}, 4, ${sa}`, `@${first} st.shared.f32 [${sa}], ${m}`);
  k.emit(`mov.u32 ${sa}, ${shL}`, `mad.lo.u32 ${sa}, ${warp}, 4, ${sa}`, `@${first} st.shared.f32 [${sa}], ${l}`);
  for (let i = 0; i < V; i++) {
    let g = lead;
    if (valid[i]) {
      g = k.reg('pred', 'g');
      k.emit(`and.pred ${g}, ${lead}, ${valid[i]}`);
    }
    const d0 = k.reg('u32', 'd0'), a = k.reg('u32', 'sa');
    k.emit(`mul.lo.u32 ${d0}, ${j[i]}, ${vecLen}`, `mad.lo.u32 ${d0}, ${warp}, ${hd}, ${d0}`, `mov.u32 ${a}, ${shA}`, `mad.lo.u32 ${a}, ${d0}, 4, ${a}`);
    for (let e = 0; e < vecLen; e++) k.emit(`@${g} st.shared.f32 [${a}+${e * 4}], ${acc[i]![e]}`);
  }
  k.emit('bar.sync 0');
  const M = k.reg('f32', 'M'), Lsum = k.reg('f32', 'L'), mw = k.regs('f32', 'mw', W), sc = k.regs('f32', 'sc', W), lw = k.reg('f32', 'lw');
  for (let w = 0; w < W; w++) k.emit(`ld.shared.f32 ${mw[w]}, [${shM}+${w * 4}]`);
  k.emit(`mov.f32 ${M}, ${mw[0]}`);
  for (let w = 1; w < W; w++) k.emit(`max.f32 ${M}, ${M}, ${mw[w]}`);
  k.emit(`mov.f32 ${Lsum}, 0f00000000`);
  for (let w = 0; w < W; w++) k.emit(`sub.f32 ${sc[w]}, ${mw[w]}, ${M}`, `ex2.approx.f32 ${sc[w]}, ${sc[w]}`, `ld.shared.f32 ${lw}, [${shL}+${w * 4}]`, `fma.rn.f32 ${Lsum}, ${lw}, ${sc[w]}, ${Lsum}`);
  const rowIdx = k.reg('u32', 'prow');
  k.emit(`mad.lo.u32 ${rowIdx}, ${t}, ${heads}, ${h}`, `mad.lo.u32 ${rowIdx}, ${rowIdx}, ${S}, ${c}`);
  const prow = k.addr(part, rowIdx, pad8(partialWidth(hd)) * 4);
  for (let d0 = 0; d0 < hd; d0 += SPLIT_THREADS) {
    const d = k.reg('u32', 'd'), skip = k.label('skip');
    k.emit(`add.u32 ${d}, ${tid}, ${d0}`);
    if (d0 + SPLIT_THREADS > hd) k.emit(`setp.ge.u32 ${p}, ${d}, ${hd}`, `@${p} bra ${skip}`);
    const o = k.reg('f32', 'o'), av = k.reg('f32', 'av'), a = k.reg('u32', 'sa');
    k.emit(`mov.f32 ${o}, 0f00000000`, `mov.u32 ${a}, ${shA}`, `mad.lo.u32 ${a}, ${d}, 4, ${a}`);
    for (let w = 0; w < W; w++) k.emit(`ld.shared.f32 ${av}, [${a}+${w * hd * 4}]`, `fma.rn.f32 ${o}, ${av}, ${sc[w]}, ${o}`);
    const oa = k.addr(prow, d, 4);
    k.emit(`st.global.f32 [${oa}], ${o}`);
    k.place(skip);
  }
  if (!merged) {
    k.emit(`setp.ne.u32 ${p}, ${tid}, 0`, `@${p} bra ${done}`, `st.global.f32 [${prow}+${hd * 4}], ${M}`, `st.global.f32 [${prow}+${hd * 4 + 4}], ${Lsum}`);
    k.place(done);
    return { name, text: k.render() };
  }
  // Merge in the last block (see the doc comment for why the partials are then visible)
  const t0 = k.reg('pred', 't0');
  k.emit(`setp.eq.u32 ${t0}, ${tid}, 0`, `@${t0} st.global.f32 [${prow}+${hd * 4}], ${M}`, `@${t0} st.global.f32 [${prow}+${hd * 4 + 4}], ${Lsum}`);
  const counters = k.ptrParam('counters'), ci = k.reg('u32', 'ci'), bound = k.reg('u32', 'bound'), old = k.reg('u32', 'old');
  const mine = k.reg('pred', 'mine'), last = k.reg('pred', 'last');
  k.emit(`mad.lo.u32 ${ci}, ${t}, ${heads}, ${h}`, `sub.u32 ${bound}, ${live}, 1`);
  const ca = k.addr(counters, ci, 4);
  k.emit('bar.sync 0');
  // old = 0xffffffff in the other threads: never live − 1 (live <= S)
  k.emit(`mov.u32 ${old}, 0xFFFFFFFF`, `@${t0} atom.acq_rel.gpu.global.inc.u32 ${old}, [${ca}], ${bound}`);
  k.emit(`setp.eq.u32 ${mine}, ${old}, ${bound}`, `bar.red.or.pred ${last}, 0, ${mine}`, `@!${last} bra ${done}`);
  const out = k.ptrParam('out');
  emitCombine(k, { lay, heads, hd, threads: SPLIT_THREADS, tid, h, t, live, part, out, load: 'ld.global.cg' });
  k.place(done);
  return { name, text: k.render() };
}

/**
 * out[t, h·hd + d] = Σ_c 2^(m_c − M)·acc_c[d] / Σ_c 2^(m_c − M)·l_c over the live chunks c of row t,
 * head h (M their largest max), from attentionSplit's partials; the dead chunks' slots are not read.
 * Params: out, part, pos. Grid (heads, T), block combineThreads(hd).
 */
export function attentionCombine(s: DecodeAttentionSpec): Kernel {
  const lay = splitLayout(s);
  const { heads, hd } = s;
  const S = lay.splits, CT = combineThreads(hd);
  const name = `attention_combine_h${heads}_hd${hd}_s${S}_g${lay.granule}`;
  const k = new KernelBuilder(name, ['out', 'part', 'pos'].map((n) => ({ name: n, type: 'u64' as const })));
  k.blockSize(CT);
  const out = k.ptrParam('out'), part = k.ptrParam('part'), pos = k.ptrParam('pos');
  const tid = k.special('%tid.x', 'tid'), h = k.special('%ctaid.x', 'h'), t = k.special('%ctaid.y', 't');
  const n = emitLength(k, pos, t);
  const { live } = emitChunks(k, n, lay);
  emitCombine(k, { lay, heads, hd, threads: CT, tid, h, t, live, part, out, load: 'ld.global' });
  return { name, text: k.render() };
}

/**
 * The merge of row t, head h's `live` partials into out[t, h·hd …] by a block of `threads` threads
 * (thread ids `tid`): attentionCombine's whole body, and the last block's work in attentionSplit
 * with merge 'last-block'. `load`: the instruction (without its type) that reads the partials.
 */
function emitCombine(k: KernelBuilder, o: { lay: SplitLayout; heads: number; hd: number; threads: number; tid: string; h: string; t: string; live: string; part: string; out: string; load: 'ld.global' | 'ld.global.cg' }): void {
  const { lay, heads, hd, threads: CT, tid, h, t, live, part, out, load } = o;
  const S = lay.splits, stride = pad8(partialWidth(hd)) * 4;
  const row0 = k.reg('u32', 'row0');
  k.emit(`mad.lo.u32 ${row0}, ${t}, ${heads}, ${h}`, `mul.lo.u32 ${row0}, ${row0}, ${S}`);
  const prow = k.addr(part, row0, stride);
  // each chunk's (m, l) into shared memory, (−inf, 0) for a dead one: it then weighs 2^(−inf) = 0
  const shM = k.sharedArray('m', 'f32', S, 4), shL = k.sharedArray('l', 'f32', S, 4);
  const p = k.reg('pred', 'p'), inS = k.reg('pred', 'ins');
  for (let c0 = 0; c0 < S; c0 += CT) {
    const c = k.reg('u32', 'c'), mv = k.reg('f32', 'mv'), lv = k.reg('f32', 'lv'), sa = k.reg('u32', 'sa');
    k.emit(`add.u32 ${c}, ${tid}, ${c0}`, `setp.lt.u32 ${p}, ${c}, ${live}`, `setp.lt.u32 ${inS}, ${c}, ${S}`, `min.u32 ${c}, ${c}, ${S - 1}`);
    const a = k.addr(prow, c, stride);
    k.emit(`mov.f32 ${mv}, 0fFF800000`, `mov.f32 ${lv}, 0f00000000`, `@${p} ${load}.f32 ${mv}, [${a}+${hd * 4}]`, `@${p} ${load}.f32 ${lv}, [${a}+${hd * 4 + 4}]`);
    k.emit(`mov.u32 ${sa}, ${shM}`, `mad.lo.u32 ${sa}, ${c}, 4, ${sa}`, `@${inS} st.shared.f32 [${sa}], ${mv}`);
    k.emit(`mov.u32 ${sa}, ${shL}`, `mad.lo.u32 ${sa}, ${c}, 4, ${sa}`, `@${inS} st.shared.f32 [${sa}], ${lv}`);
  }
  k.emit('bar.sync 0');
  const M = k.reg('f32', 'M'), L = k.reg('f32', 'L'), mc = k.reg('f32', 'mc'), lc = k.reg('f32', 'lc'), w = k.reg('f32', 'w');
  k.emit(`ld.shared.f32 ${M}, [${shM}]`);
  for (let c = 1; c < S; c++) k.emit(`ld.shared.f32 ${mc}, [${shM}+${c * 4}]`, `max.f32 ${M}, ${M}, ${mc}`);
  k.emit(`mov.f32 ${L}, 0f00000000`);
  for (let c = 0; c < S; c++) k.emit(`ld.shared.f32 ${mc}, [${shM}+${c * 4}]`, `ld.shared.f32 ${lc}, [${shL}+${c * 4}]`, `sub.f32 ${w}, ${mc}, ${M}`, `ex2.approx.f32 ${w}, ${w}`, `fma.rn.f32 ${L}, ${lc}, ${w}, ${L}`);
  const orow = k.addr(out, t, pad8(heads * hd) * 4);
  const G = 8; // chunks whose loads are in flight together
  for (let d0 = 0; d0 < hd; d0 += CT) {
    const d = k.reg('u32', 'd'), skip = k.label('skip');
    k.emit(`add.u32 ${d}, ${tid}, ${d0}`);
    if (d0 + CT > hd) k.emit(`setp.ge.u32 ${p}, ${d}, ${hd}`, `@${p} bra ${skip}`);
    const pd = k.addr(prow, d, 4);
    const o = k.reg('f32', 'o');
    k.emit(`mov.f32 ${o}, 0f00000000`);
    for (let g0 = 0; g0 < S; g0 += G) {
      const cs = Array.from({ length: Math.min(G, S - g0) }, (_, i) => g0 + i);
      const av = k.regs('f32', 'av', cs.length);
      cs.forEach((c, i) => k.emit(`mov.f32 ${av[i]}, 0f00000000`, `setp.gt.u32 ${p}, ${live}, ${c}`, `@${p} ${load}.f32 ${av[i]}, [${pd}+${c * stride}]`));
      cs.forEach((c, i) => k.emit(`ld.shared.f32 ${mc}, [${shM}+${c * 4}]`, `sub.f32 ${w}, ${mc}, ${M}`, `ex2.approx.f32 ${w}, ${w}`, `fma.rn.f32 ${o}, ${av[i]}, ${w}, ${o}`));
    }
    const oi = k.reg('u32', 'oi');
    k.emit(`div.rn.f32 ${o}, ${o}, ${L}`, `mad.lo.u32 ${oi}, ${h}, ${hd}, ${d}`);
    const oa = k.addr(orow, oi, 4);
    k.emit(`st.global.f32 [${oa}], ${o}`);
    k.place(skip);
  }
}
