// WGSL kernel generators for the Mixture-of-Channels ops: channel selection (Top-K, and a:b blocks),
// the gather of the kept gate values, and the up and down projections of the kept channels only.
// Each matches its counterpart in targets/ref/kernels.ts (mocSelect, mocGather, mocUp, mocDown).
//
// Two families (kernel.ts, Variant): 'cpu' kernels never use a workgroup barrier and give each
// invocation one output (the selections: one token row, or one block of channels); 'gpu' kernels
// let a workgroup cooperate where an op selects or reduces. The gather and the down projection
// have nothing to cooperate on: one code for both. Weights are read 8 elements (16 bytes of f16 or
// bf16, two loads of f32) at a time, bound as vec4 arrays: rows are padded to 8 elements, so every
// row starts 16-byte aligned.
//
// The selections work on the gate's bits, never on its floats: g is bound as array<u32> (the same
// bytes as the f32 activation) and every comparison is between order-preserving u32 keys, so no
// float operation can canonicalize a NaN, flush a denormal or reorder -0 and +0.
import { selectedCount } from '../../../src/ir/ops.js';
import {
  pad8,
  unpackFn,
  type Variant,
  type WeightDType,
  type WgslKernel,
  assemble,
  checkInts,
  ELEM_WG,
  groups,
  type StorageBuffer,
} from '../kernel.js';

/**
 * WGSL `fn selKey(bits: u32) -> u32`: a u32 key of a float's bits whose order is the ref's order of
 * values (mocSelect): negative → ~bits, non-negative → bits | 0x80000000, with NaN (of any sign or
 * payload) ranked as -Inf and -0 as +0, so that those pairs tie and ties go to the lower channel.
 * (targets/cuda/ptx/moc.ts's selectKey is the same rule.) Branch-free: as
 * ifs, 22 keys an invocation cost the fused select several µs on the H100 (bench/wgsl/fused-ablation.ts).
 */
export const SELECT_KEY = `fn selKey(bits: u32) -> u32 {
  let b = select(bits, 0u, bits == 0x80000000u); // -0: the key of +0
  let key = select(b | 0x80000000u, ~b, (b & 0x80000000u) != 0u);
  return select(key, 0x007fffffu, (bits & 0x7fffffffu) > 0x7f800000u); // NaN: the key of -Inf
}`;

/** The selections' buffers: idx [T, n] out, g [T, F] as bits. */
const SELECT_BUFFERS: StorageBuffer[] = [
  { name: 'idx', access: 'read_write', type: 'array<i32>' },
  { name: 'g', access: 'read', type: 'array<u32>' },
];

/** The gpu Top-K kernel's radix digits, high first: their widths in bits. */
const TOPK_DIGITS = [11, 11, 10];
/** Invocations of the gpu Top-K workgroup; its bin totals are summed in TOPK_GROUPS groups. */
const TOPK_WG = 256;
const TOPK_GROUPS = 16;
/** The gpu Top-K kernel counts keys > τ and keys = τ in the two 16-bit halves of one u32. */
export const MAX_SELECT_CHANNELS = 65535;

/**
 * idx[t, 0..K) = the K channels with the largest g[t, :], ascending; ties → lower channel; NaN
 * ranks as -Inf, -0 as +0 (exactly mocSelect with {k: K}).
 *
 * Both variants find τ, the K-th largest key of the row, by a radix select, high digit first: each
 * pass counts the keys whose higher digits are τ's found so far by their next digit, then walks the
 * bins from the top to the one holding the krem-th largest (krem: how many of those keys are still
 * to take), which is τ's next digit. After the last pass krem is how many keys equal to τ to keep,
 * the lowest channels first. The compaction then keeps every key > τ and the first krem keys = τ.
 *
 * cpu: one invocation per token (grid [1, T, 1]), 4 passes of 8 bits with a 256-bin private
 * histogram, and a compaction in channel order.
 * gpu: one workgroup of 256 per token (grid [1, T, 1]). 3 passes of 11, 11 and 10 bits (2048 bins
 * spread a first digit of sign, exponent and 2 mantissa bits over many bins, so that the histogram's
 * atomics collide less). Invocation i owns the channels [i·R, (i+1)·R) (R = ⌈F/256⌉: 22 at F =
 * 5464, 56 at 14336) and reads their keys once, into a private array: reading g again in every
 * pass, one dependent load after another, cost about a third of the time on an H100 (a dispatch at
 * F = 5464: 30 → 23 µs; 14336: 57 → 34 µs), and 5464 keys do not fit in workgroup memory beside the
 * histogram. To find a pass's bin, invocation i sums bins [i·n, (i+1)·n), 16 of them sum 16 of
 * those totals each, and invocation 0 walks down 16 group totals, then 16 invocation totals, then n
 * bins. The compaction: one scan of the invocations' (keys > τ, keys = τ) counts tells each where
 * its kept channels go, in channel order. 17 barriers in all.
 */
export function topkSelect(F: number, K: number, variant: Variant): WgslKernel {
  checkInts('topkSelect', { F, K });
  if (K > F) throw new RangeError(`topkSelect: K = ${K} is more than the ${F} channels`);
  if (F > MAX_SELECT_CHANNELS) throw new RangeError(`topkSelect: selects over at most ${MAX_SELECT_CHANNELS} channels, got ${F}`);
  const body = variant === 'cpu' ? topkCpu(F, K) : topkGpu(F, K);
  return assemble(`moc_topk/${variant}/f${F}/k${K}`, SELECT_BUFFERS, body, [1, 'T', 1]);
}

function topkCpu(F: number, K: number): string {
  return `
const F = ${F}u;
const K = ${K}u;
${SELECT_KEY}

@compute @workgroup_size(1)
fn main(@builtin(workgroup_id) wid: vec3<u32>) {
  let t = wid.y;
  let row = t * F;
  var hist: array<u32, 256>;
  var prefix = 0u; // τ's digits found so far
  var decided = 0u; // the key bits they cover
  var krem = K; // how many of the keys matching them are still to take
  for (var digit = 0u; digit < 4u; digit++) {
    let shift = 24u - 8u * digit;
    for (var b = 0u; b < 256u; b++) { hist[b] = 0u; }
    for (var c = 0u; c < F; c++) {
      let key = selKey(g[row + c]);
      if ((key & decided) == prefix) { hist[(key >> shift) & 0xffu] += 1u; }
    }
    // from the top bin down to the one holding the krem-th largest (bin 0 at the latest)
    var b = 255u;
    for (; b > 0u && krem > hist[b]; b--) { krem -= hist[b]; }
    prefix |= b << shift;
    decided |= 0xffu << shift;
  }
  // prefix = τ: keep the keys > τ and the first krem keys = τ, in channel order
  var pos = t * K;
  for (var c = 0u; c < F; c++) {
    let key = selKey(g[row + c]);
    if (key > prefix || (key == prefix && krem > 0u)) {
      idx[pos] = i32(c);
      pos++;
      if (key == prefix) { krem--; }
    }
  }
}`;
}

function topkGpu(F: number, K: number): string {
  const run = Math.ceil(F / TOPK_WG);
  const per = TOPK_WG / TOPK_GROUPS;
  return `
const F = ${F}u;
const K = ${K}u;
const WG = ${TOPK_WG}u;
const RUN = ${run}u; // channels per invocation
const DIGIT_BITS = array<u32, ${TOPK_DIGITS.length}>(${TOPK_DIGITS.map((b) => `${b}u`).join(', ')});
var<workgroup> hist: array<atomic<u32>, ${1 << Math.max(...TOPK_DIGITS)}>;
var<workgroup> part: array<u32, ${TOPK_WG}>; // a total per invocation
var<workgroup> grp: array<u32, ${TOPK_GROUPS}>; // a total per group of ${per} invocations
var<workgroup> found: vec2<u32>; // the pass's digit, and krem within its bin
${SELECT_KEY}

// part[i] = the total of invocation i's n bins
fn sumBins(i: u32, n: u32) {
  var s = 0u;
  for (var b = i * n; b < (i + 1u) * n; b++) { s += atomicLoad(&hist[b]); }
  part[i] = s;
}

// grp[i] = the total of group i's ${per} invocation totals
fn sumGroup(i: u32) {
  if (i >= ${TOPK_GROUPS}u) { return; }
  var s = 0u;
  for (var q = i * ${per}u; q < (i + 1u) * ${per}u; q++) { s += part[q]; }
  grp[i] = s;
}

// (the bin holding the krem-th largest matching key, krem within it), walking down from the top:
// the group, then its invocation, then that invocation's n bins (at the lowest of each at the latest)
fn findBin(n: u32, krem0: u32) -> vec2<u32> {
  var krem = krem0;
  var gi = ${TOPK_GROUPS - 1}u;
  for (; gi > 0u && krem > grp[gi]; gi--) { krem -= grp[gi]; }
  var q = gi * ${per}u + ${per - 1}u;
  for (; q > gi * ${per}u && krem > part[q]; q--) { krem -= part[q]; }
  var b = q * n + n - 1u;
  for (; b > q * n && krem > atomicLoad(&hist[b]); b--) { krem -= atomicLoad(&hist[b]); }
  return vec2<u32>(b, krem);
}

@compute @workgroup_size(${TOPK_WG})
fn main(@builtin(local_invocation_index) tid: u32, @builtin(workgroup_id) wid: vec3<u32>) {
  let t = wid.y;
  // this invocation's channels c0 .. c0+n-1 (n < RUN at the row's end, 0 past it), their keys read
  // once (slots past n hold the row's last key again, and count nowhere)
  let c0 = min(tid * RUN, F);
  let n = min(RUN, F - c0);
  var keys: array<u32, RUN>;
  for (var e = 0u; e < RUN; e++) { keys[e] = selKey(g[t * F + min(c0 + e, F - 1u)]); }
  var prefix = 0u; // τ's digits found so far
  var decided = 0u; // the key bits they cover
  var krem = K; // how many of the keys matching them are still to take
  var shift = 32u;
  for (var digit = 0u; digit < ${TOPK_DIGITS.length}u; digit++) {
    let bins = 1u << DIGIT_BITS[digit];
    shift -= DIGIT_BITS[digit];
    for (var i = tid; i < bins; i += WG) { atomicStore(&hist[i], 0u); }
    workgroupBarrier();
    for (var e = 0u; e < RUN; e++) {
      if (e < n && (keys[e] & decided) == prefix) { atomicAdd(&hist[(keys[e] >> shift) & (bins - 1u)], 1u); }
    }
    workgroupBarrier();
    sumBins(tid, bins / WG);
    workgroupBarrier();
    sumGroup(tid);
    workgroupBarrier();
    if (tid == 0u) { found = findBin(bins / WG, krem); }
    workgroupBarrier();
    prefix |= found.x << shift;
    decided |= (bins - 1u) << shift;
    krem = found.y;
  }

  // prefix = τ. Compaction: this invocation's keys counted (keys > τ in the high half, keys = τ in
  // the low), then an exclusive scan of the counts: within each group by one invocation, plus the
  // totals of the groups before.
  var counts = 0u;
  for (var e = 0u; e < RUN; e++) {
    if (e < n && keys[e] > prefix) { counts += 0x10000u; } else if (e < n && keys[e] == prefix) { counts += 1u; }
  }
  part[tid] = counts;
  workgroupBarrier();
  if (tid < ${TOPK_GROUPS}u) {
    var s = 0u;
    for (var q = tid * ${per}u; q < (tid + 1u) * ${per}u; q++) {
      let c = part[q];
      part[q] = s;
      s += c;
    }
    grp[tid] = s;
  }
  workgroupBarrier();
  var before = part[tid];
  for (var gi = 0u; gi < tid / ${per}u; gi++) { before += grp[gi]; }
  // a channel's place: the keys > τ before it, and the keys = τ before it that are kept
  var rank = before & 0xffffu; // keys = τ before this channel
  var pos = t * K + (before >> 16u) + min(rank, krem);
  for (var e = 0u; e < RUN; e++) {
    if (e < n && (keys[e] > prefix || (keys[e] == prefix && rank < krem))) {
      idx[pos] = i32(c0 + e);
      pos++;
    }
    if (e < n && keys[e] == prefix) { rank++; }
  }
}`;
}

/**
 * Grouped selection a:b, exactly mocSelect with {a, b}: per token, for each block of b consecutive
 * channels in order, its a largest (a last, shorter block: min(a, its length)), ascending; ties →
 * lower channel; NaN ranks as -Inf, -0 as +0. A row of idx holds selectedCount(F, {a, b}).
 * Channel j of a block is kept when its rank (the block's keys above it, plus the equal ones
 * before it) is below the number kept; its place is the number kept before it.
 *
 * cpu: one invocation per block (grid [blocks/64, T, 1]): the block's keys in a private array,
 * O(b²) compares. gpu: one invocation per channel (grid [blocks/⌊256/b⌋, T, 1]), ⌊256/b⌋ blocks a
 * workgroup: keys, then keep flags, through workgroup memory (2 barriers).
 */
export function patternSelect(F: number, a: number, b: number, variant: Variant): WgslKernel {
  checkInts('patternSelect', { F, a, b });
  if (a > b || b > 256) throw new RangeError(`patternSelect: ${a}:${b} needs a ≤ b ≤ 256`);
  const blocks = Math.ceil(F / b);
  const kOut = selectedCount(F, { a, b });
  const head = `
const F = ${F}u;
const A = ${a}u;
const B = ${b}u;
const BLOCKS = ${blocks}u;
const KOUT = ${kOut}u; // idx's row
${SELECT_KEY}`;
  const key = `moc_pattern/${variant}/f${F}/a${a}/b${b}`;
  if (variant === 'cpu') {
    const body = `${head}

@compute @workgroup_size(${ELEM_WG})
fn main(@builtin(global_invocation_id) gid: vec3<u32>) {
  let blk = gid.x;
  let t = gid.y;
  if (blk >= BLOCKS) { return; }
  let start = blk * B;
  let len = min(B, F - start);
  let keep = min(A, len);
  var keys: array<u32, B>;
  for (var j = 0u; j < len; j++) { keys[j] = selKey(g[t * F + start + j]); }
  var pos = t * KOUT + blk * A;
  for (var j = 0u; j < len; j++) {
    var rank = 0u;
    for (var i = 0u; i < len; i++) {
      if (keys[i] > keys[j] || (keys[i] == keys[j] && i < j)) { rank++; }
    }
    if (rank < keep) {
      idx[pos] = i32(start + j);
      pos++;
    }
  }
}`;
    return assemble(key, SELECT_BUFFERS, body, [groups(blocks, ELEM_WG), 'T', 1]);
  }
  const perWg = Math.floor(256 / b);
  const body = `${head}
const PER_WG = ${perWg}u; // blocks a workgroup
var<workgroup> keys: array<u32, ${perWg * b}>;
var<workgroup> kept: array<u32, ${perWg * b}>;

@compute @workgroup_size(${perWg * b})
fn main(@builtin(local_invocation_index) lid: u32, @builtin(workgroup_id) wid: vec3<u32>) {
  let t = wid.y;
  let blk = wid.x * PER_WG + lid / B;
  let j = lid % B;
  let base = lid - j; // the block's first slot in keys and kept
  let start = blk * B;
  let len = select(0u, min(B, F - start), blk < BLOCKS);
  let mine = j < len;
  if (mine) { keys[lid] = selKey(g[t * F + start + j]); }
  workgroupBarrier();
  var rank = 0u;
  for (var i = 0u; i < len; i++) {
    let k = keys[base + i];
    if (k > keys[lid] || (k == keys[lid] && i < j)) { rank++; }
  }
  let take = mine && rank < min(A, len);
  kept[lid] = select(0u, 1u, take);
  workgroupBarrier();
  if (take) {
    var pos = 0u;
    for (var i = 0u; i < j; i++) { pos += kept[base + i]; }
    idx[t * KOUT + blk * A + pos] = i32(start + j);
  }
}`;
  return assemble(key, SELECT_BUFFERS, body, [groups(blocks, perWg), 'T', 1]);
}

/**
 * z[t, k] = g[t, idx[t, k]], copied as bits (z and g bound as array<u32>). One element per
 * invocation, which suits both variants: the same code and key for both.
 */
export function mocGather(F: number, K: number, _variant: Variant): WgslKernel {
  checkInts('mocGather', { F, K });
  const body = `
@compute @workgroup_size(${ELEM_WG})
fn main(@builtin(global_invocation_id) gid: vec3<u32>) {
  let k = gid.x;
  let t = gid.y;
  if (k >= ${K}u) { return; }
  z[t * ${K}u + k] = g[t * ${F}u + u32(idx[t * ${K}u + k])];
}`;
  const buffers: StorageBuffer[] = [
    { name: 'z', access: 'read_write', type: 'array<u32>' },
    { name: 'g', access: 'read', type: 'array<u32>' },
    { name: 'idx', access: 'read', type: 'array<i32>' },
  ];
  return assemble(`moc_gather/f${F}/k${K}`, buffers, body, [groups(K, ELEM_WG), 'T', 1]);
}

const SILU = 'fn silu(v: f32) -> f32 { return v / (1.0 + exp(-v)); }';

/** y[t, k] = Σ_i x[t, i]·W_up[idx[t, k], i]; W_up is [F, d]. */
export function mocUp(dtype: WeightDType, d: number, K: number, variant: Variant): WgslKernel {
  checkInts('mocUp', { d, K });
  return upKernel(`moc_up/${variant}/${dtype}/d${d}/k${K}`, dtype, d, K, variant);
}

/** z[t, k] = silu(g[t, idx[t, k]]) · Σ_i x[t, i]·W_up[idx[t, k], i]: mocUp with the gate fused. */
export function mocUpSilu(dtype: WeightDType, d: number, F: number, K: number, variant: Variant): WgslKernel {
  checkInts('mocUpSilu', { d, F, K });
  return upKernel(`moc_up_silu/${variant}/${dtype}/d${d}/f${F}/k${K}`, dtype, d, K, variant, F);
}

/** WGSL type of a weight bound as 16-byte vectors: a row is pad8(cols) elements, so rows stay aligned. */
export const weightVec4 = (dtype: WeightDType): string => (dtype === 'f32' ? 'array<vec4<f32>>' : 'array<vec4<u32>>');
/** A weight row's length in those vectors. */
export const rowVec4s = (dtype: WeightDType, cols: number): number => (dtype === 'f32' ? pad8(cols) / 4 : pad8(cols) / 8);

/**
 * WGSL helpers of the up projection, which reads weights 8 elements (one 16-byte load of f16/bf16,
 * two of f32) and x 4 at a time: `xv(i)`, x[i..i+4) (i a multiple of 4); `dot8(row, c, xlo, xhi)`,
 * chunk c (elements 8c..8c+7) of the weight row that starts at vector `row`, dotted with the 8 x
 * values; and with d not a multiple of 8, `tail(row, xr)`, the row's last d mod 8 elements dotted
 * with x's row at xr. x is bound as vec4s where d is a multiple of 8 (every chunk whole and aligned).
 */
function upHelpers(dtype: WeightDType, d: number): string {
  const full = Math.floor(d / 8);
  const xv = d % 8 === 0
    ? 'fn xv(i: u32) -> vec4<f32> { return x[i / 4u]; }'
    : 'fn xv(i: u32) -> vec4<f32> { return vec4<f32>(x[i], x[i + 1u], x[i + 2u], x[i + 3u]); }';
  const dot8 = dtype === 'f32'
    ? `fn dot8(row: u32, c: u32, xlo: vec4<f32>, xhi: vec4<f32>) -> f32 {
  return dot(xlo, w[row + 2u * c]) + dot(xhi, w[row + 2u * c + 1u]);
}`
    : `fn dot8(row: u32, c: u32, xlo: vec4<f32>, xhi: vec4<f32>) -> f32 {
  let v = w[row + c];
  return dot(xlo, vec4<f32>(wpair(v.x), wpair(v.y))) + dot(xhi, vec4<f32>(wpair(v.z), wpair(v.w)));
}`;
  const elem = dtype === 'f32' ? 'w[row + e / 4u][e % 4u]' : 'wpair(w[row + e / 8u][(e / 2u) % 4u])[e % 2u]';
  const tail = d % 8 === 0 ? '' : `
fn tail(row: u32, xr: u32) -> f32 {
  var acc = 0.0;
  for (var e = ${full * 8}u; e < ${d}u; e++) { acc += x[xr + e] * ${elem}; }
  return acc;
}`;
  return `${unpackFn(dtype)}
${xv}
${dot8}${tail}`;
}

/** Kept channels a gpu up-projection workgroup computes, and its invocations. */
const UP_ROWS = 4;
const UP_WG = 128;

/**
 * The up projection, with `F` the fused SiLU gate (g bound last). cpu: one output per invocation
 * (grid [K/64, T, 1]), its row's chunks in order. gpu: a workgroup of 128 per 4 kept channels (grid
 * [K/4, T, 1]: 256 workgroups at K = 1024): invocation i takes chunks i, i + 128, … of x and of all
 * 4 gathered W_up rows, so x is read once per workgroup rather than once per row; then a tree
 * reduction of the 4 sums over the 128 invocations.
 */
function upKernel(key: string, dtype: WeightDType, d: number, K: number, variant: Variant, F?: number): WgslKernel {
  const fused = F !== undefined;
  const gate = (ch: string) => (fused ? ` * silu(g[t * ${F}u + ${ch}])` : '');
  const out = fused ? 'z' : 'y';
  const buffers: StorageBuffer[] = [
    { name: out, access: 'read_write', type: 'array<f32>' },
    { name: 'x', access: 'read', type: d % 8 === 0 ? 'array<vec4<f32>>' : 'array<f32>' },
    { name: 'w', access: 'read', type: weightVec4(dtype) },
    { name: 'idx', access: 'read', type: 'array<i32>' },
    ...(fused ? [{ name: 'g', access: 'read' as const, type: 'array<f32>' }] : []),
  ];
  const full = Math.floor(d / 8);
  const head = `
const D = ${d}u;
const K = ${K}u;
const W4 = ${rowVec4s(dtype, d)}u; // a weight row in vec4s
${upHelpers(dtype, d)}
${fused ? SILU : ''}`;
  if (variant === 'cpu') {
    const body = `${head}

@compute @workgroup_size(${ELEM_WG})
fn main(@builtin(global_invocation_id) gid: vec3<u32>) {
  let k = gid.x;
  let t = gid.y;
  if (k >= K) { return; }
  let ch = u32(idx[t * K + k]);
  let row = ch * W4;
  let xr = t * D;
  var acc = 0.0;
  for (var c = 0u; c < ${full}u; c++) { acc += dot8(row, c, xv(xr + 8u * c), xv(xr + 8u * c + 4u)); }
  ${d % 8 ? 'acc += tail(row, xr);' : ''}
  ${out}[t * K + k] = acc${gate('ch')};
}`;
    return assemble(key, buffers, body, [groups(K, ELEM_WG), 'T', 1]);
  }
  const rows = [...Array(UP_ROWS).keys()];
  const each = (f: (r: number) => string) => rows.map(f).join('\n');
  const body = `${head}
var<workgroup> red: array<f32, ${UP_ROWS * UP_WG}>; // row r's sums at r·${UP_WG}

@compute @workgroup_size(${UP_WG})
fn main(@builtin(local_invocation_index) lid: u32, @builtin(workgroup_id) wid: vec3<u32>) {
  let t = wid.y;
  let k0 = wid.x * ${UP_ROWS}u;
  let xr = t * D;
  // this workgroup's channels (a slot past K repeats the last kept channel; its sum is not stored)
${each((r) => `  let ch${r} = u32(idx[t * K + min(k0 + ${r}u, K - 1u)]);`)}
${each((r) => `  var acc${r} = 0.0;`)}
  for (var c = lid; c < ${full}u; c += ${UP_WG}u) {
    let xlo = xv(xr + 8u * c);
    let xhi = xv(xr + 8u * c + 4u);
${each((r) => `    acc${r} += dot8(ch${r} * W4, c, xlo, xhi);`)}
  }
${d % 8 ? `  if (lid == 0u) {\n${each((r) => `    acc${r} += tail(ch${r} * W4, xr);`)}\n  }\n` : ''}${each((r) => `  red[${r * UP_WG}u + lid] = acc${r};`)}
  workgroupBarrier();
  for (var s = ${UP_WG / 2}u; s > 0u; s >>= 1u) {
    if (lid < s) {
${each((r) => `      red[${r * UP_WG}u + lid] += red[${r * UP_WG}u + lid + s];`)}
    }
    workgroupBarrier();
  }
${each((r) => `  if (lid == ${r}u && k0 + ${r}u < K) { ${out}[t * K + k0 + ${r}u] = red[${r * UP_WG}u]${gate(`ch${r}`)}; }`)}
}`;
  return assemble(key, buffers, body, [groups(K, UP_ROWS), 'T', 1]);
}

/** Slices of kept channels per token that mocDown splits K into (at most 64, at least 16 channels each). */
export function mocDownSlices(K: number): number {
  checkInts('mocDownSlices', { K });
  return Math.min(64, Math.ceil(K / 16));
}

/** Invocations (8-column chunks) of a down-projection workgroup, and channels loaded together. */
const DOWN_WG = 64;
const DOWN_UNROLL = 4;

/**
 * The down projection, in two steps:
 *   1. mocDown: partial[t, s, j] = Σ_{k in slice s} z[t, k]·W_downT[idx[t, k], j], for the S =
 *      mocDownSlices(K) slices of P = ⌈K/S⌉ consecutive kept channels (the last may be short, or
 *      empty); partial is [T, S, d] f32, rows tight. Bindings [partial rw, z, w, idx].
 *   2. mocDownReduce(d, S): y[t, j] = Σ_s partial[t, s, j] in a fixed order (deterministic).
 * Splitting K gives a GPU enough to do: d = 2048 in 16-bit weights is only 256 16-byte chunks a row.
 * An invocation takes one 8-column chunk of one slice (64 a workgroup; grid [⌈d/8⌉/64, S, T]: 256
 * workgroups at d = 2048, K = 1024) and keeps 4 channels' 16-byte loads in flight. No barrier, so
 * both variants get the same code and key: one column an invocation was 6× slower on SwiftShader,
 * which then reads each channel's idx and z once per column rather than once per 8.
 */
export function mocDown(dtype: WeightDType, d: number, K: number, _variant: Variant): WgslKernel {
  checkInts('mocDown', { d, K });
  const slices = mocDownSlices(K);
  const chunks = pad8(d) / 8;
  const buffers: StorageBuffer[] = [
    { name: 'partial', access: 'read_write', type: 'array<f32>' },
    { name: 'z', access: 'read', type: 'array<f32>' },
    { name: 'w', access: 'read', type: weightVec4(dtype) },
    { name: 'idx', access: 'read', type: 'array<i32>' },
  ];
  // kept channel k${u}'s weights at this invocation's 8 columns, as lo${u} and hi${u}
  const load = (u: string) => `    let z${u} = z[t * K + k${u}];
    let r${u} = u32(idx[t * K + k${u}]) * W4;
${dtype === 'f32'
    ? `    let lo${u} = w[r${u} + 2u * c];\n    let hi${u} = w[r${u} + 2u * c + 1u];`
    : `    let v${u} = w[r${u} + c];\n    let lo${u} = vec4<f32>(wpair(v${u}.x), wpair(v${u}.y));\n    let hi${u} = vec4<f32>(wpair(v${u}.z), wpair(v${u}.w));`}`;
  const add = (u: string) => `    lo += z${u} * lo${u};\n    hi += z${u} * hi${u};`;
  const us = [...Array(DOWN_UNROLL).keys()].map(String);
  const store = d % 8
    ? `for (var e = 0u; e < 8u; e++) {
    if (8u * c + e < D) { partial[o + e] = select(hi[e % 4u], lo[e % 4u], e < 4u); }
  }`
    : `for (var e = 0u; e < 4u; e++) {
    partial[o + e] = lo[e];
    partial[o + 4u + e] = hi[e];
  }`;
  const body = `
const D = ${d}u;
const K = ${K}u;
const SLICES = ${slices}u;
const PER = ${Math.ceil(K / slices)}u; // kept channels a slice
const W4 = ${rowVec4s(dtype, d)}u; // a weight row in vec4s
${unpackFn(dtype)}

@compute @workgroup_size(${DOWN_WG})
fn main(@builtin(global_invocation_id) gid: vec3<u32>) {
  let c = gid.x; // columns 8c .. 8c+7
  let s = gid.y;
  let t = gid.z;
  if (c >= ${chunks}u) { return; }
  let k1 = min(s * PER + PER, K);
  var lo = vec4<f32>(0.0);
  var hi = vec4<f32>(0.0);
  var k = s * PER;
  // ${DOWN_UNROLL} channels at a time: all their loads before their sums
  for (; k + ${DOWN_UNROLL}u <= k1; k += ${DOWN_UNROLL}u) {
${us.map((u) => `    let k${u} = k + ${u}u;`).join('\n')}
${us.map(load).join('\n')}
${us.map(add).join('\n')}
  }
  for (; k < k1; k++) {
    let kx = k;
${load('x')}
${add('x')}
  }
  let o = (t * SLICES + s) * D + 8u * c;
  ${store}
}`;
  return assemble(`moc_down/${dtype}/d${d}/k${K}`, buffers, body, [groups(chunks, DOWN_WG), slices, 'T']);
}

/** Columns a gpu reduce workgroup sums, and the groups of invocations that share its slices. */
const REDUCE_COLS = 64;
const REDUCE_GROUPS = 4;

/**
 * Step 2 of mocDown: y[t, j] = Σ_s partial[t, s, j]. Bindings [y rw [T, d], partial [T, slices, d]].
 * cpu: one output per invocation, slices in order (grid [d/64, T, 1]). gpu: a workgroup of 4 × 64
 * per 64 columns (grid [d/64, T, 1]): group q sums slices q, q + 4, …, and group 0 adds the 4 group
 * sums in order (1 barrier). Both orders are fixed, so the result is deterministic.
 * With `residual`, y = res + Σ_s partial, res [T, d] read through a third binding (the skip
 * connection, folded in to save the add's dispatch).
 */
export function mocDownReduce(d: number, slices: number, variant: Variant, residual = false): WgslKernel {
  checkInts('mocDownReduce', { d, slices });
  const buffers: StorageBuffer[] = [
    { name: 'y', access: 'read_write', type: 'array<f32>' },
    { name: 'partial', access: 'read', type: 'array<f32>' },
    ...(residual ? [{ name: 'res', access: 'read' as const, type: 'array<f32>' }] : []),
  ];
  const key = `moc_down_reduce/${variant}/d${d}/s${slices}${residual ? '/res' : ''}`;
  const plus = residual ? 'res[t * D + j] + ' : '';
  const head = `
const D = ${d}u;
const SLICES = ${slices}u;`;
  if (variant === 'cpu') {
    const body = `${head}

@compute @workgroup_size(${ELEM_WG})
fn main(@builtin(global_invocation_id) gid: vec3<u32>) {
  let j = gid.x;
  let t = gid.y;
  if (j >= D) { return; }
  var acc = 0.0;
  for (var s = 0u; s < SLICES; s++) { acc += partial[(t * SLICES + s) * D + j]; }
  y[t * D + j] = ${plus}acc;
}`;
    return assemble(key, buffers, body, [groups(d, ELEM_WG), 'T', 1]);
  }
  const sums = [...Array(REDUCE_GROUPS).keys()].map((q) => `red[${q * REDUCE_COLS}u + col]`);
  const body = `${head}
var<workgroup> red: array<f32, ${REDUCE_GROUPS * REDUCE_COLS}>;

@compute @workgroup_size(${REDUCE_GROUPS * REDUCE_COLS})
fn main(@builtin(local_invocation_index) lid: u32, @builtin(workgroup_id) wid: vec3<u32>) {
  let t = wid.y;
  let col = lid % ${REDUCE_COLS}u;
  let q = lid / ${REDUCE_COLS}u;
  let j = wid.x * ${REDUCE_COLS}u + col;
  var acc = 0.0;
  if (j < D) {
    for (var s = q; s < SLICES; s += ${REDUCE_GROUPS}u) { acc += partial[(t * SLICES + s) * D + j]; }
  }
  red[lid] = acc;
  workgroupBarrier();
  if (q == 0u && j < D) { y[t * D + j] = ${residual ? `${plus}(${sums.join(' + ')})` : sums.join(' + ')}; }
}`;
  return assemble(key, buffers, body, [groups(d, REDUCE_COLS), 'T', 1]);
}
