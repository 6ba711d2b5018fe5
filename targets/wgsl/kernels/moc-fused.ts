// The fused MoC FFN of the 'gpu' kernels: three dispatches instead of five, because through Dawn on
// an H100 each dependent dispatch costs about as much as moving the kept weights (bench/NOTES.md).
//
//   1. gate GEMV (dense.ts gemv with `hist`): G, and per token a histogram of G's selection keys by
//      their top HIST_BITS bits, counted with atomics as the rows finish. The histogram tells every
//      later workgroup which bin holds the K-th largest key without a pass of its own.
//   2. mocSelectUp: workgroup w owns channels [64w, 64w + 64). It reads the histogram, finds that
//      bin, and decides exactly which of its own channels are kept (keys above the bin: kept; below:
//      dropped; in it: ranked against every key of the bin, ties → lower channel). Then it computes
//      h[c] = SiLU(G[c])·(x·W_up[c]) for its kept channels and writes two words of the keep mask.
//      Every workgroup finds the same threshold from the same data, so no workgroup waits for another.
//   3. mocDownMasked: y[j] = (res[j] +) Σ_{c kept} h[c]·W_downT[c, j], a workgroup per 32 columns,
//      summing in a fixed order (deterministic). It also zeroes the histogram for the next FFN.
//
// Exactly mocSelect {k} + mocUp + SiLU·mul + mocDown of targets/ref (the same kept set, ties and NaN
// included); the sums run in another order than the ref's, so results match to rounding. The
// histogram is state between dispatches: zero before stage 1 (a new buffer is), zero after stage 3.
import {
  pad8,
  unpackFn,
  type WeightDType,
  type WgslKernel,
  assemble,
  checkInts,
  type StorageBuffer,
} from '../kernel.js';
import { MAX_SELECT_CHANNELS, rowVec4s, SELECT_KEY, weightVec4 } from './moc.js';

/** Bits of a selection key the gate GEMV's histogram counts by, and its bins per token. */
export const HIST_BITS = 12;
export const HIST_BINS = 1 << HIST_BITS;

/** WGSL that counts output `v` of token `t` into the histogram (the gate GEMV's epilogue). */
export function histCount(v: string, t: string): string {
  return `atomicAdd(&hist[${t} * ${HIST_BINS}u + (selKey(bitcast<u32>(${v})) >> ${32 - HIST_BITS}u)], 1u)`;
}
export { SELECT_KEY };

/** Channels a mocSelectUp workgroup owns (two mask words), and its invocations. */
const OWN = 64;
const WG = 256;
/** Invocations that sum one kept row of W_up (a team), and kept rows a team can take. */
const TEAM = 32;
const TEAMS = WG / TEAM;
const SLOTS = OWN / TEAMS;

/**
 * n copies of a statement, one per i, joined by lines. The kernels unroll their loads this way: from
 * a WGSL loop the driver's compiler here (NVIDIA, through Dawn and Vulkan) issued one load after
 * another's latency, even at constant trip counts (bench/wgsl/fused-ablation.ts measured it).
 */
const unrolled = (n: number, line: (i: number) => string): string => Array.from({ length: n }, (_, i) => line(i)).join('\n');

/** WGSL: the sum of n terms, written out (left to right: a fixed order). */
const sum = (n: number, term: (i: number) => string): string => Array.from({ length: n }, (_, i) => term(i)).join(' + ');

/** Words of the keep mask per token. */
export const maskWords = (F: number): number => Math.ceil(F / 32);

/** WGSL: the 8 weights of chunk c (elements 8c..8c+7) of the row starting at vector r, as two vec4s. */
function chunkFn(dtype: WeightDType): string {
  if (dtype === 'f32') return 'fn chunk(r: u32, c: u32) -> array<vec4<f32>, 2> { return array<vec4<f32>, 2>(w[r + 2u * c], w[r + 2u * c + 1u]); }';
  return `${unpackFn(dtype)}
fn chunk(r: u32, c: u32) -> array<vec4<f32>, 2> {
  let v = w[r + c];
  return array<vec4<f32>, 2>(vec4<f32>(wpair(v.x), wpair(v.y)), vec4<f32>(wpair(v.z), wpair(v.w)));
}`;
}

/**
 * Stage 2. Bindings: h rw [T, F] f32 (kept channels: SiLU(G)·U; dropped: 0), mask rw [T,
 * maskWords(F)] u32 (bit c%32 of word c/32: channel c kept), x [T, d] f32, w = W_up [F, d], g [T, F]
 * (G's bits), hist [T, HIST_BINS] u32 (read). Grid [⌈F/64⌉, T, 1], 256 invocations.
 *
 * Everything a workgroup reads from memory for the selection is read at its start, together: its
 * 64 owned gate values, invocation i's 16 bins [16i, 16i + 16) (four 16-byte loads) and the keys of
 * channels i, i + 256, … Then, in workgroup memory: 16 invocations sum 16 bin totals each; each
 * invocation adds up the blocks above its own, and the one whose block holds the K-th largest key
 * walks its bins down to that key's bin b*, and how many of b*'s keys to take (krem). An owned
 * channel above b* is kept, below it dropped; in b* it is kept when fewer than krem keys of b* beat
 * it (larger, or equal on a lower channel), which every invocation counts among the keys it holds.
 * That work grows with how many keys share b*, so any G is exact (all keys equal included), and
 * typical ones are fast (about 1.6% of 5464 keys share a 12-bit bin). 6 barriers.
 *
 * The up projection: team q (32 invocations) takes the kept rows q, q + 8, …, lane l reading
 * 16-byte chunks l, l + 32, … of each and of x; one invocation per kept row sums its team's 32
 * partials in order (deterministic).
 */
export function mocSelectUp(dtype: WeightDType, d: number, F: number, K: number): WgslKernel {
  checkInts('mocSelectUp', { d, F, K });
  if (K > F) throw new RangeError(`mocSelectUp: K = ${K} is more than the ${F} channels`);
  if (F > MAX_SELECT_CHANNELS) throw new RangeError(`mocSelectUp: selects over at most ${MAX_SELECT_CHANNELS} channels, got ${F}`);
  const run = Math.ceil(F / WG);
  const chunks = pad8(d) / 8;
  const perLane = Math.ceil(chunks / TEAM);
  const xVec = d % 4 === 0;
  const buffers: StorageBuffer[] = [
    { name: 'h', access: 'read_write', type: 'array<f32>' },
    { name: 'mask', access: 'read_write', type: 'array<u32>' },
    { name: 'x', access: 'read', type: xVec ? 'array<vec4<f32>>' : 'array<f32>' },
    { name: 'w', access: 'read', type: weightVec4(dtype) },
    { name: 'g', access: 'read', type: 'array<u32>' },
    { name: 'hist', access: 'read', type: 'array<vec4<u32>>' },
  ];
  // x[t, e..e+4) as a vec4 (zeros past d: W_up's row padding is zero too, but x has no padding)
  const x4 = xVec
    ? 'fn x4(t: u32, e: u32) -> vec4<f32> { return select(vec4<f32>(0.0), x[(t * D + min(e, D - 4u)) / 4u], e < D); }'
    : `fn xs(t: u32, e: u32) -> f32 { return select(0.0, x[t * D + min(e, D - 1u)], e < D); }
fn x4(t: u32, e: u32) -> vec4<f32> { return vec4<f32>(xs(t, e), xs(t, e + 1u), xs(t, e + 2u), xs(t, e + 3u)); }`;
  const body = `
const D = ${d}u;
const F = ${F}u;
const K = ${K}u;
const SHIFT = ${32 - HIST_BITS}u; // key >> SHIFT = its bin
const WORDS = ${maskWords(F)}u;
const CHUNKS = ${chunks}u; // 8-element chunks of a W_up row
const W4 = ${rowVec4s(dtype, d)}u; // a W_up row in 16-byte vectors
${SELECT_KEY}
${chunkFn(dtype)}
${x4}
fn silu(v: f32) -> f32 { return v / (1.0 + exp(-v)); }

var<workgroup> part: array<u32, ${WG}>; // keys in bins [16i, 16i + 16)
var<workgroup> grp: array<u32, 16>; // keys in part[16q .. 16q + 16)
var<workgroup> found: vec2<u32>; // (b*, krem)
var<workgroup> ownG: array<u32, ${OWN}>; // the owned channels' gate values (bits)
var<workgroup> cand: array<u32, ${OWN}>; // owned channels in b*
var<workgroup> nCand: atomic<u32>;
var<workgroup> beaten: array<atomic<u32>, ${OWN}>; // keys of b* that beat an owned channel's
var<workgroup> kept: array<u32, ${OWN}>; // owned channels kept, in slots
var<workgroup> nKept: atomic<u32>;
var<workgroup> maskBits: array<atomic<u32>, ${OWN / 32}>;
var<workgroup> red: array<f32, ${SLOTS * WG}>; // slot s, invocation i: red[s·${WG} + i]

// (Loads are written out and not behind data-dependent branches, so that an invocation's loads
// issue together instead of one latency after another.)
@compute @workgroup_size(${WG})
fn main(@builtin(local_invocation_index) lid: u32, @builtin(workgroup_id) wid: vec3<u32>) {
  let t = wid.y;
  let c0 = wid.x * ${OWN}u;
  if (lid < ${OWN}u) {
    ownG[lid] = g[t * F + min(c0 + lid, F - 1u)];
    atomicStore(&beaten[lid], 0u);
  }
  // this invocation's 16 bins
${unrolled(4, (q) => `  let b${q} = hist[t * ${HIST_BINS / 4}u + lid * 4u + ${q}u];`)}
  let s = ${sum(4, (q) => `b${q}.x + b${q}.y + b${q}.z + b${q}.w`)};
  part[lid] = s;
  if (lid == 0u) {
    atomicStore(&nKept, 0u);
    atomicStore(&nCand, 0u);
${unrolled(OWN / 32, (m) => `    atomicStore(&maskBits[${m}], 0u);`)}
  }
  workgroupBarrier();
  if (lid < 16u) { grp[lid] = ${sum(16, (i) => `part[lid * 16u + ${i}u]`)}; }
  workgroupBarrier();
  // keys in the blocks above this invocation's: whole groups above, then the rest of its group
  let mine = lid / 16u;
  let above = ${sum(16, (q) => `select(0u, grp[${q}u], ${q}u > mine)`)}
    + ${sum(16, (i) => `select(0u, part[mine * 16u + ${i}u], mine * 16u + ${i}u > lid)`)};
  if (above < K && above + s >= K) {
    // b*: walk this invocation's bins down from the top to the one holding the K-th largest key
    let bins = array<u32, 16>(${[0, 1, 2, 3].map((q) => `b${q}.x, b${q}.y, b${q}.z, b${q}.w`).join(', ')});
    var krem = K - above;
    var b = 0u;
    var done = false;
${unrolled(16, (i) => `    if (!done) { if (krem <= bins[${15 - i}]) { b = ${15 - i}u; done = true; } else { krem -= bins[${15 - i}]; } }`)}
    found = vec2<u32>(lid * 16u + b, krem);
  }
  workgroupBarrier();
  let bstar = found.x;
  let krem = found.y;
  // The keys of channels lid, lid + 256, … (0 past F: below every real key, so it beats none), for
  // the ranks in b*: read once b* is known, so they are not held across the barriers before.
${unrolled(run, (e) => `  let k${e} = select(0u, selKey(g[t * F + min(lid + ${e * WG}u, F - 1u)]), lid + ${e * WG}u < F);`)}
  // the owned channels in b*, listed
  if (lid < ${OWN}u && c0 + lid < F && (selKey(ownG[lid]) >> SHIFT) == bstar) { cand[atomicAdd(&nCand, 1u)] = lid; }
  workgroupBarrier();
  // for each of them, the keys of b* this invocation holds that beat it (larger, or equal on a lower
  // channel); & and | rather than && and ||, which are branches
  let nc = atomicLoad(&nCand);
  for (var i = 0u; i < nc; i++) {
    let j = cand[i];
    let kj = selKey(ownG[j]);
    let cj = c0 + j;
    let n = ${sum(run, (e) => `select(0u, 1u, ((k${e} >> SHIFT) == bstar) & ((k${e} > kj) | ((k${e} == kj) & (lid + ${e * WG}u < cj))))`)};
    if (n > 0u) { atomicAdd(&beaten[j], n); }
  }
  workgroupBarrier();
  if (lid < ${OWN}u && c0 + lid < F) {
    let bin = selKey(ownG[lid]) >> SHIFT;
    if (bin > bstar || (bin == bstar && atomicLoad(&beaten[lid]) < krem)) {
      kept[atomicAdd(&nKept, 1u)] = lid; // the slot only picks the team: each row's sum is the same in any slot
      atomicOr(&maskBits[lid / 32u], 1u << (lid % 32u));
    } else {
      h[t * F + c0 + lid] = 0.0;
    }
  }
  workgroupBarrier();
  let n = atomicLoad(&nKept);
  if (lid < ${OWN / 32}u && wid.x * ${OWN / 32}u + lid < WORDS) { mask[t * WORDS + wid.x * ${OWN / 32}u + lid] = atomicLoad(&maskBits[lid]); }
  // the up projection of the kept rows: team q takes slots q, q + ${TEAMS}, … (a branch the
  // whole team takes or skips), lane l chunks l, l + ${TEAM}, … (Reading slot 1's row without the
  // branch, together with slot 0's, measured 1.2 µs slower on the H100: more loads for the L1.)
  let team = lid / ${TEAM}u;
  let lane = lid % ${TEAM}u;
${unrolled(SLOTS, (s) => `  var acc${s} = 0.0;
  if (team + ${s * TEAMS}u < n) {
    let r = (c0 + kept[team + ${s * TEAMS}u]) * W4;
${unrolled(perLane, (i) => `    let v${i} = chunk(r, min(lane + ${i * TEAM}u, CHUNKS - 1u));`)}
    acc${s} = ${sum(perLane, (i) => `select(0.0, dot(v${i}[0], x4(t, 8u * (lane + ${i * TEAM}u))) + dot(v${i}[1], x4(t, 8u * (lane + ${i * TEAM}u) + 4u)), lane + ${i * TEAM}u < CHUNKS)`).split(' + select').join('\n      + select')};
  }
  red[${s * WG}u + lid] = acc${s};`)}
  workgroupBarrier();
  if (lid < n) {
    let base = (lid / ${TEAMS}u) * ${WG}u + (lid % ${TEAMS}u) * ${TEAM}u;
    let u = ${sum(TEAM, (l) => `red[base + ${l}u]`)};
    let j = kept[lid];
    h[t * F + c0 + j] = silu(bitcast<f32>(ownG[j])) * u;
  }
}`;
  return assemble(`moc_select_up/${dtype}/d${d}/f${F}/k${K}`, buffers, body, [Math.ceil(F / OWN), 'T', 1]);
}

/**
 * A mocDownMasked workgroup's 8-column chunks (4: 64 bytes of a bf16 row, two memory sectors), the
 * invocations on each chunk (row lanes), its columns, and the groups each column's partial sums
 * are added in. For the 2048×5464 FFN on the H100 (bench/wgsl/fused-ablation.ts): 1 chunk 7.2 µs,
 * 2 chunks 6.1, 4 chunks 5.9 (4 chunks 0.14–0.21 µs faster in each of five runs of the probe).
 */
const CPW = 4;

/**
 * Kept channels a mocDownMasked workgroup can list: its workgroup memory (the list, 256 counts, 16
 * group counts, 256 partial sums) stays within 16 KiB, WebGPU's default limit.
 */
export const MAX_FUSED_K = (16384 - 4 * (WG + 16 + WG)) / 4;

/**
 * Stage 3. y[t, j] = (res[t, j] +) Σ_{c kept} h[t, c]·W_downT[c, j], W_downT stored [F, d], K
 * channels kept per token. Bindings: y rw [T, d], hist rw [T, HIST_BINS] (zeroed), h [T, F], mask
 * [T, maskWords(F)], w, (res [T, d]). Grid [⌈d/32⌉, T, 1], 256 invocations, a workgroup per 32
 * columns (64 bytes of each bf16 row). The workgroup lists the kept channels in order from the mask
 * (a scan of the words' bit counts); invocation i then takes chunk i % 4 of list entries i/4,
 * i/4 + 64, … (K/64 rows each, all loads issued together), and the 64 partial sums of each column
 * are added in a fixed order (8 groups of 8, then the 8 group sums): deterministic.
 */
export function mocDownMasked(dtype: WeightDType, d: number, F: number, K: number, residual = false, chunksPerGroup: 1 | 2 | 4 = CPW): WgslKernel {
  checkInts('mocDownMasked', { d, F, K });
  const cpw = chunksPerGroup, RL = WG / cpw, COLS = 8 * cpw, GROUPS = WG / COLS; // chunksPerGroup ≠ 4: for bench/wgsl/fused-ablation.ts
  if (K > F) throw new RangeError(`mocDownMasked: K = ${K} is more than the ${F} channels`);
  if (K > MAX_FUSED_K) throw new RangeError(`mocDownMasked: lists at most ${MAX_FUSED_K} kept channels, got K = ${K}`);
  const chunks = pad8(d) / 8;
  const groupsX = Math.ceil(chunks / cpw);
  const rows = Math.ceil(K / RL);
  const words = maskWords(F);
  const wordsPer = Math.ceil(words / WG);
  const buffers: StorageBuffer[] = [
    { name: 'y', access: 'read_write', type: 'array<f32>' },
    { name: 'hist', access: 'read_write', type: 'array<u32>' },
    { name: 'h', access: 'read', type: 'array<f32>' },
    { name: 'mask', access: 'read', type: 'array<u32>' },
    { name: 'w', access: 'read', type: weightVec4(dtype) },
    ...(residual ? [{ name: 'res', access: 'read' as const, type: 'array<f32>' }] : []),
  ];
  const body = `
const D = ${d}u;
const F = ${F}u;
const K = ${K}u;
const BINS = ${HIST_BINS}u;
const WORDS = ${words}u;
const WPI = ${wordsPer}u; // mask words an invocation scans
const W4 = ${rowVec4s(dtype, d)}u;
const CHUNKS = ${chunks}u;
${chunkFn(dtype)}

// the kept channels' list, then (after a barrier) the partial sums as bits: column e, invocation i at e·${WG} + i
var<workgroup> share: array<u32, ${Math.max(K, 8 * WG)}>;
var<workgroup> part: array<u32, ${WG}>; // kept channels in invocation i's words
var<workgroup> grp: array<u32, 16>;
var<workgroup> red: array<f32, ${WG}>; // column e, group q of ${RL / GROUPS} row lanes: red[e·${GROUPS} + q]

@compute @workgroup_size(${WG})
fn main(@builtin(local_invocation_index) lid: u32, @builtin(workgroup_id) wid: vec3<u32>) {
  let t = wid.y;
  // the next FFN's histogram starts from zero (stage 2, its only reader, has run)
  for (var b = wid.x * ${WG}u + lid; b < BINS; b += ${groupsX * WG}u) { hist[t * BINS + b] = 0u; }
  // list the kept channels in order: counts, their exclusive scan, then each invocation's channels
  var words: array<u32, WPI>;
  var count = 0u;
  for (var k = 0u; k < WPI; k++) {
    let wi = lid * WPI + k;
    words[k] = select(0u, mask[t * WORDS + min(wi, WORDS - 1u)], wi < WORDS);
    count += countOneBits(words[k]);
  }
  part[lid] = count;
  workgroupBarrier();
  if (lid < 16u) { grp[lid] = ${sum(16, (i) => `part[lid * 16u + ${i}u]`)}; }
  workgroupBarrier();
  let mine = lid / 16u;
  var at = ${sum(16, (q) => `select(0u, grp[${q}u], ${q}u < mine)`)}
    + ${sum(16, (i) => `select(0u, part[mine * 16u + ${i}u], mine * 16u + ${i}u < lid)`)};
  for (var k = 0u; k < WPI; k++) {
    var bits = words[k];
    while (bits != 0u) {
      if (at < K) { share[at] = (lid * WPI + k) * 32u + firstTrailingBit(bits); }
      at++;
      bits &= bits - 1u;
    }
  }
  workgroupBarrier();
  // this invocation's rows: list entries rl, rl + ${RL}, … (rl = lid / ${cpw}), at chunk cq of each
  let cq = min(wid.x * ${cpw}u + lid % ${cpw}u, CHUNKS - 1u);
  let rl = lid / ${cpw}u;
  var acc = array<vec4<f32>, 2>(vec4<f32>(0.0), vec4<f32>(0.0));
${unrolled(rows, (r) => `  let c${r} = share[min(rl + ${r * RL}u, K - 1u)];
  let h${r} = select(0.0, h[t * F + c${r}], rl + ${r * RL}u < K);
  let v${r} = chunk(c${r} * W4, cq);`)}
${unrolled(rows, (r) => `  acc[0] += h${r} * v${r}[0];
  acc[1] += h${r} * v${r}[1];`)}
  workgroupBarrier(); // the list is read: share now holds the partial sums, column e's ${RL} at e·${RL}
  let e0 = (lid % ${cpw}u) * 8u;
  for (var e = 0u; e < 4u; e++) {
    share[(e0 + e) * ${RL}u + rl] = bitcast<u32>(acc[0][e]);
    share[(e0 + 4u + e) * ${RL}u + rl] = bitcast<u32>(acc[1][e]);
  }
  workgroupBarrier();
  {
    // column lid / ${GROUPS}, group q: ${RL / GROUPS} partial sums
    let col = lid / ${GROUPS}u;
    let q = lid % ${GROUPS}u;
    red[col * ${GROUPS}u + q] = ${sum(RL / GROUPS, (i) => `bitcast<f32>(share[col * ${RL}u + q * ${RL / GROUPS}u + ${i}u])`)};
  }
  workgroupBarrier();
  let j = wid.x * ${COLS}u + lid;
  if (lid < ${COLS}u && j < D) {
    let total = ${sum(GROUPS, (q) => `red[lid * ${GROUPS}u + ${q}u]`)};
    y[t * D + j] = ${residual ? 'res[t * D + j] + total' : 'total'};
  }
}`;
  return assemble(`moc_down_masked/${dtype}/d${d}/f${F}/k${K}${residual ? '/res' : ''}${cpw === CPW ? '' : `/cpw${cpw}`}`, buffers, body, [groupsX, 'T', 1]);
}
