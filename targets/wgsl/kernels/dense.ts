// WGSL kernel generators for the dense ops of a LLaMA forward pass: embedding, RMSNorm, GEMV
// (linear layers and logits), RoPE, the KV-cache append, causal GQA attention, the elementwise ops
// and greedy argmax. Each matches its counterpart in targets/ref/kernels.ts (argmax: src/run/sample.ts).
//
// Two families (kernel.ts, Variant): 'cpu' kernels never use a workgroup barrier and give each
// invocation one output element or row; 'gpu' kernels let a workgroup cooperate through workgroup
// memory where an op reduces (RMSNorm, GEMV, attention, argmax). Ops without a reduction (embedding,
// RoPE, KV append, elementwise) are one coalesced element per invocation, which suits both, so both
// variants get the same code and the same key there.
import {
  f32Lit,
  pad8,
  unpackFn,
  weightArrayType,
  weightStride,
  type Variant,
  type WeightDType,
  type WgslKernel,
  assemble,
  checkInts,
  ELEM_WG,
  groups,
  type StorageBuffer,
} from '../kernel.js';
import { histCount, SELECT_KEY } from './moc-fused.js';

/** Invocations per workgroup of the cooperating 'gpu' kernels (WebGPU's default limit). */
const COOP_WG = 256;

/**
 * WGSL `fn wat(r: u32, e: u32) -> f32`: element e of row r of the weight bound as `name`, whose rows
 * hold `cols` elements (padded as kernel.ts describes).
 */
function weightAt(dtype: WeightDType, cols: number, name: string): string {
  const s = weightStride(dtype, cols);
  if (dtype === 'f32') return `fn wat(r: u32, e: u32) -> f32 { return ${name}[r * ${s}u + e]; }`;
  return `${unpackFn(dtype)}
fn wat(r: u32, e: u32) -> f32 { return wpair(${name}[r * ${s}u + (e >> 1u)])[e & 1u]; }`;
}

/**
 * WGSL `fn name(lid: u32, v: f32) -> f32`: combines the `v` of each run of `width` consecutive
 * invocations (a power of two) with `op` through `red`, and returns the run's result to all of them.
 * Every invocation of the workgroup must call it (it holds barriers); it leaves `red` free for reuse.
 */
function segmentReduce(name: string, width: number, op: 'sum' | 'max'): string {
  const combine = op === 'sum' ? 'red[lid] + red[lid + s]' : 'max(red[lid], red[lid + s])';
  return `fn ${name}(lid: u32, v: f32) -> f32 {
  red[lid] = v;
  workgroupBarrier();
  for (var s = ${width / 2}u; s > 0u; s >>= 1u) {
    if (lid % ${width}u < s) { red[lid] = ${combine}; }
    workgroupBarrier();
  }
  let r = red[lid - lid % ${width}u];
  workgroupBarrier(); // all have read their result before anyone writes red again
  return r;
}`;
}

/** y[t,:] = table[tokens[t]] for the tokens whose rows this binding holds (rowBase .. rowBase+rows-1). */
export function embedding(dtype: WeightDType, d: number, rows: number, rowBase: number, _variant: Variant): WgslKernel {
  checkInts('embedding', { d, rows });
  checkInts('embedding', { rowBase }, 0);
  const body = `
${weightAt(dtype, d, 'table')}
@compute @workgroup_size(${ELEM_WG})
fn main(@builtin(global_invocation_id) g: vec3<u32>) {
  let e = g.x;
  let t = g.y;
  let tok = tokens[t];
  // Rows of other chunks of the table are another dispatch's: leave them alone.
  if (e >= ${d}u || tok < ${rowBase} || tok >= ${rowBase + rows}) { return; }
  y[t * ${d}u + e] = wat(u32(tok - ${rowBase}), e);
}`;
  const buffers: StorageBuffer[] = [
    { name: 'y', access: 'read_write', type: 'array<f32>' },
    { name: 'table', access: 'read', type: weightArrayType(dtype) },
    { name: 'tokens', access: 'read', type: 'array<i32>' },
  ];
  return assemble(`embedding/${dtype}/d${d}/rows${rowBase}+${rows}`, buffers, body, [groups(d, ELEM_WG), 'T', 1]);
}

/** y = x · inverseSqrt(mean(x²) + eps) · w, per row of x [T, d]. */
export function rmsnorm(dtype: WeightDType, d: number, eps: number, variant: Variant): WgslKernel {
  checkInts('rmsnorm', { d });
  const inv = `inverseSqrt(ss / ${d}.0 + ${f32Lit(eps)})`;
  // cpu: one invocation per row. gpu: a workgroup per row; invocation `lid` takes elements lid,
  // lid + 256, … (coalesced; a constant count, kept in registers between the two passes), and a
  // tree reduction gives every invocation the sum of squares.
  const per = Math.ceil(d / COOP_WG);
  const guard = (stmt: string): string => (d % COOP_WG ? `if (i < ${d}u) { ${stmt} }` : stmt);
  const body = variant === 'cpu'
    ? `
@compute @workgroup_size(1)
fn main(@builtin(workgroup_id) wid: vec3<u32>) {
  let row = wid.x * ${d}u;
  var ss = 0.0;
  for (var i = 0u; i < ${d}u; i++) { let v = x[row + i]; ss += v * v; }
  let inv = ${inv};
  for (var i = 0u; i < ${d}u; i++) { y[row + i] = x[row + i] * inv * wat(0u, i); }
}`
    : `
var<workgroup> red: array<f32, ${COOP_WG}>;
${segmentReduce('wg_sum', COOP_WG, 'sum')}
@compute @workgroup_size(${COOP_WG})
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
  let row = wid.x * ${d}u;
  var xs: array<f32, ${per}>;
  var part = 0.0;
  for (var k = 0u; k < ${per}u; k++) {
    let i = lid + k * ${COOP_WG}u;
    ${guard('xs[k] = x[row + i];')}
    part += xs[k] * xs[k];
  }
  let ss = wg_sum(lid, part);
  let inv = ${inv};
  for (var k = 0u; k < ${per}u; k++) {
    let i = lid + k * ${COOP_WG}u;
    ${guard('y[row + i] = xs[k] * inv * wat(0u, i);')}
  }
}`;
  const buffers: StorageBuffer[] = [
    { name: 'y', access: 'read_write', type: 'array<f32>' },
    { name: 'x', access: 'read', type: 'array<f32>' },
    { name: 'w', access: 'read', type: weightArrayType(dtype) },
  ];
  const key = `rmsnorm/${dtype}/d${d}/eps${f32Lit(eps)}/${variant}`;
  return assemble(key, buffers, `${weightAt(dtype, d, 'w')}\n${body}`, ['T', 1, 1]);
}

export interface GemvSpec {
  dtype: WeightDType;
  inDim: number;
  /** Rows of the weight binding: outputs rowBase .. rowBase+outDim-1 of y. */
  outDim: number;
  /** Row stride of y (the full output width when the weight is split into chunks). */
  outStride: number;
  rowBase: number;
  variant: Variant;
  /**
   * Adds a residual: y = res + W·x, with res [T, outStride] read through one more binding (a
   * transformer's skip connection, folded in to save the add's dispatch).
   */
  residual?: boolean;
  /**
   * Also counts each output into a per-token histogram of MoC selection keys (binding `hist`, after
   * the others): the gate GEMV of the fused MoC FFN (moc-fused.ts).
   */
  hist?: boolean;
  /** Lanes per row of the 'gpu' kernel in place of gemvLanes' choice (bench/wgsl/fused-ablation.ts). */
  lanes?: number;
}

/** Workgroups a 'gpu' kernel should have to keep a large GPU busy (two per SM of an H100). */
const FILL_GROUPS = 264;

/**
 * Lanes (invocations) per output row of the 'gpu' GEMV, a power of two from 4 to 256: first about 8
 * chunks of 8 elements a lane, so each lane keeps several 16-byte loads in flight while the
 * reduction stays short (d = 2048 gets 32 lanes: 8 rows a workgroup, 4000 workgroups for 32000
 * logits); then, where that leaves too few workgroups (a 2048→256 K/V projection would have 32),
 * fewer rows a workgroup, down to 2 chunks a lane.
 */
function gemvLanes(chunks: number, outDim: number): number {
  let lanes = 4;
  while (lanes < 64 && lanes * 16 <= chunks) lanes *= 2;
  while (lanes < COOP_WG && lanes * 4 <= chunks && groups(outDim, COOP_WG / lanes) < FILL_GROUPS) lanes *= 2;
  return lanes;
}

/**
 * y[t, rowBase + o] = Σ_i x[t,i]·w[o,i] for o < outDim. The weight is read 8 elements at a time
 * (one 16-byte vector of f16/bf16, two of f32); its row padding is zero, and x beyond inDim is
 * masked to zero.
 */
export function gemv(spec: GemvSpec): WgslKernel {
  const { dtype, inDim, outDim, outStride, rowBase, variant, residual = false, hist = false } = spec;
  if (hist && residual) throw new RangeError('gemv: a histogram of a residual sum is not a gate');
  checkInts('gemv', { inDim, outDim, outStride });
  checkInts('gemv', { rowBase }, 0);
  if (rowBase + outDim > outStride) throw new RangeError(`gemv: rows ${rowBase}+${outDim} exceed the output stride ${outStride}`);
  const chunks = pad8(inDim) / 8;
  const xVec = inDim % 8 === 0; // then every chunk of x is two aligned vec4s
  const weight = dtype === 'f32'
    ? `fn wdot8(o: u32, c: u32, xa: vec4<f32>, xb: vec4<f32>) -> f32 {
  let i = o * ${pad8(inDim) / 4}u + 2u * c;
  return dot(w[i], xa) + dot(w[i + 1u], xb);
}`
    : `${unpackFn(dtype)}
fn wdot8(o: u32, c: u32, xa: vec4<f32>, xb: vec4<f32>) -> f32 {
  let q = w[o * ${pad8(inDim) / 8}u + c];
  return dot(vec4<f32>(wpair(q.x), wpair(q.y)), xa) + dot(vec4<f32>(wpair(q.z), wpair(q.w)), xb);
}`;
  const xLoad = xVec
    ? `fn x4(t: u32, e: u32) -> vec4<f32> { return x[(t * ${inDim}u + e) >> 2u]; }`
    : `fn xs(t: u32, e: u32) -> f32 { return select(0.0, x[t * ${inDim}u + e], e < ${inDim}u); }
fn x4(t: u32, e: u32) -> vec4<f32> { return vec4<f32>(xs(t, e), xs(t, e + 1u), xs(t, e + 2u), xs(t, e + 3u)); }`;
  // Lane `lane` of `lanes` takes chunks lane, lane + lanes, …: a constant trip count, so the compiler
  // can unroll the loop and issue all of a lane's loads before the first is used. (Writing the loads
  // out as statements, as moc-fused.ts does, measured no faster here: 11.1 µs for 2048×5464 either way.)
  const partial = (lanes: number): string => `fn partial(o: u32, t: u32, lane: u32) -> f32 {
  var acc = 0.0;
  for (var k = 0u; k < ${Math.ceil(chunks / lanes)}u; k++) {
    let c = lane + k * ${lanes}u;
    ${chunks % lanes ? `if (c < ${chunks}u) { ` : ''}acc += wdot8(o, c, x4(t, 8u * c), x4(t, 8u * c + 4u));${chunks % lanes ? ' }' : ''}
  }
  return acc;
}`;
  const yAt = `y[t * ${outStride}u + ${rowBase}u + o]`;
  const plus = residual ? `res[t * ${outStride}u + ${rowBase}u + o] + ` : '';
  let body: string;
  let rowsPerGroup: number;
  if (variant === 'cpu') {
    rowsPerGroup = ELEM_WG;
    body = `
${partial(1)}
@compute @workgroup_size(${ELEM_WG})
fn main(@builtin(global_invocation_id) g: vec3<u32>) {
  let o = g.x;
  let t = g.y;
  if (o >= ${outDim}u) { return; }
  ${hist ? `let total = partial(o, t, 0u);
  ${yAt} = total;
  ${histCount('total', 't')};` : `${yAt} = ${plus}partial(o, t, 0u);`}
}`;
  } else {
    // A row per run of `lanes` consecutive invocations: neighbours read neighbouring 16-byte pieces
    // of the row (coalesced), then the run tree-sums its partials.
    const lanes = spec.lanes ?? gemvLanes(chunks, outDim);
    rowsPerGroup = COOP_WG / lanes;
    body = `
${partial(lanes)}
var<workgroup> red: array<f32, ${COOP_WG}>;
${segmentReduce('row_sum', lanes, 'sum')}
@compute @workgroup_size(${COOP_WG})
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
  let lane = lid % ${lanes}u;
  let o = wid.x * ${rowsPerGroup}u + lid / ${lanes}u;
  let t = wid.y;
  var part = 0.0;
  if (o < ${outDim}u) { part = partial(o, t, lane); }
  let total = row_sum(lid, part); // outside the branch: every invocation reaches the barriers
  if (lane == 0u && o < ${outDim}u) { ${yAt} = ${plus}total;${hist ? ` ${histCount('total', 't')};` : ''} }
}`;
  }
  const buffers: StorageBuffer[] = [
    { name: 'y', access: 'read_write', type: 'array<f32>' },
    { name: 'x', access: 'read', type: xVec ? 'array<vec4<f32>>' : 'array<f32>' },
    { name: 'w', access: 'read', type: dtype === 'f32' ? 'array<vec4<f32>>' : 'array<vec4<u32>>' },
    ...(residual ? [{ name: 'res', access: 'read' as const, type: 'array<f32>' }] : []),
    ...(hist ? [{ name: 'hist', access: 'read_write' as const, type: 'array<atomic<u32>>' }] : []),
  ];
  const key = `gemv/${dtype}/in${inDim}/out${outDim}/stride${outStride}/base${rowBase}/${variant}${residual ? '/res' : ''}${hist ? '/hist' : ''}${spec.lanes ? `/lanes${spec.lanes}` : ''}`;
  return assemble(key, buffers, `${weight}\n${xLoad}\n${hist ? `${SELECT_KEY}\n` : ''}${body}`, [groups(outDim, rowsPerGroup), 'T', 1]);
}

/**
 * Rotates x [T, heads·hd] in place, token t at position call.pos + t; `table` is the host's
 * [maxPos, hd/2] (cos, sin) table. One invocation per rotated pair.
 */
export function rope(heads: number, hd: number, style: 'half' | 'interleaved', _variant: Variant): WgslKernel {
  checkInts('rope', { heads, hd });
  if (hd % 2) throw new RangeError(`rope: head dim ${hd} is odd`);
  const half = hd / 2;
  const pair = style === 'half' ? ['base + i', `base + i + ${half}u`] : ['base + 2u * i', 'base + 2u * i + 1u'];
  const body = `
@compute @workgroup_size(${ELEM_WG})
fn main(@builtin(global_invocation_id) g: vec3<u32>) {
  let t = g.y;
  if (g.x >= ${heads * half}u) { return; }
  let i = g.x % ${half}u;
  let base = (t * ${heads}u + g.x / ${half}u) * ${hd}u;
  let cs = table[(call.pos + t) * ${half}u + i];
  let ia = ${pair[0]};
  let ib = ${pair[1]};
  let a = x[ia];
  let b = x[ib];
  x[ia] = a * cs.x - b * cs.y;
  x[ib] = a * cs.y + b * cs.x;
}`;
  const buffers: StorageBuffer[] = [
    { name: 'x', access: 'read_write', type: 'array<f32>' },
    { name: 'table', access: 'read', type: 'array<vec2<f32>>' },
  ];
  return assemble(`rope/h${heads}/hd${hd}/${style}`, buffers, body, [groups(heads * half, ELEM_WG), 'T', 1]);
}

/** Copies k, v [T, kvWidth] to rows call.pos + t of the caches. */
export function kvAppend(kvWidth: number): WgslKernel {
  checkInts('kvAppend', { kvWidth });
  const body = `
@compute @workgroup_size(${ELEM_WG})
fn main(@builtin(global_invocation_id) g: vec3<u32>) {
  let e = g.x;
  let t = g.y;
  if (e >= ${kvWidth}u) { return; }
  let dst = (call.pos + t) * ${kvWidth}u + e;
  kcache[dst] = k[t * ${kvWidth}u + e];
  vcache[dst] = v[t * ${kvWidth}u + e];
}`;
  const buffers: StorageBuffer[] = [
    { name: 'kcache', access: 'read_write', type: 'array<f32>' },
    { name: 'vcache', access: 'read_write', type: 'array<f32>' },
    { name: 'k', access: 'read', type: 'array<f32>' },
    { name: 'v', access: 'read', type: 'array<f32>' },
  ];
  return assemble(`kv_append/w${kvWidth}`, buffers, body, [groups(kvWidth, ELEM_WG), 'T', 1]);
}

/**
 * Causal GQA attention over the cache after the append: token t (position call.pos + t) attends to
 * cache rows 0..call.pos+t; query head h reads kv head h / (heads/kvHeads). Online softmax in f32.
 */
export function attention(heads: number, kvHeads: number, hd: number, variant: Variant): WgslKernel {
  checkInts('attention', { heads, kvHeads, hd });
  if (heads % kvHeads) throw new RangeError(`attention: ${heads} heads do not split into ${kvHeads} kv heads`);
  const kvw = kvHeads * hd;
  const consts = `const HD = ${hd}u;
const SCALE = ${f32Lit(1 / Math.sqrt(hd))};
const NEG = -1.0e30; // below every score; exp(NEG - score) is 0`;
  const head = `let h = wid.x;
  let t = wid.y;
  let qo = (t * ${heads}u + h) * HD;
  let ko = (h / ${heads / kvHeads}u) * HD;
  let n = call.pos + t + 1u;`;
  let body: string;
  if (variant === 'cpu') {
    // One invocation per (head, token): a running max m, sum l and output row acc over positions.
    body = `
${consts}
const KVW = ${kvw}u;
@compute @workgroup_size(1)
fn main(@builtin(workgroup_id) wid: vec3<u32>) {
  ${head}
  var acc: array<f32, HD>;
  var m = NEG;
  var l = 0.0;
  for (var s = 0u; s < n; s++) {
    var qk = 0.0;
    for (var i = 0u; i < HD; i++) { qk += q[qo + i] * kcache[s * KVW + ko + i]; }
    let score = qk * SCALE;
    let mNew = max(m, score);
    let corr = exp(m - mNew);
    let p = exp(score - mNew);
    l = l * corr + p;
    for (var i = 0u; i < HD; i++) { acc[i] = acc[i] * corr + p * vcache[s * KVW + ko + i]; }
    m = mNew;
  }
  for (var i = 0u; i < HD; i++) { out[qo + i] = acc[i] / l; }
}`;
  } else {
    // A workgroup per (head, token), over tiles of 256 positions. Scores: invocation j takes position
    // s0+j, its K row in 16-byte loads against q in workgroup memory. The tile's max updates the
    // running max; the weights p go to workgroup memory. P·V: invocation (g, i4) sums elements
    // 4·i4..4·i4+3 of the output over the tile's positions ≡ g (mod G), neighbours reading
    // neighbouring pieces of a V row, a constant count each so that the loads can all be in flight.
    // Partial sums of p and of the G groups are combined once at the end.
    if (hd % 4 || hd > COOP_WG) throw new RangeError(`attention: the gpu kernel needs a head dim that is a multiple of 4, at most ${COOP_WG}; got ${hd}`);
    const lanes = hd / 4;
    const G = Math.floor(COOP_WG / lanes);
    const per = Math.ceil(COOP_WG / G);
    const pv = `let row = min(s0 + j, n - 1u); // p is 0 past the last position: read a row that is there
        acc += ps[j] * vcache[row * KVW4 + ko4 + i4];`;
    body = `
${consts}
const WG = ${COOP_WG}u;
const KVW4 = ${kvw / 4}u;
const HD4 = ${lanes}u;
const G = ${G}u;
var<workgroup> qs: array<vec4<f32>, HD4>;
var<workgroup> ps: array<f32, WG>;
var<workgroup> red: array<f32, WG>;
var<workgroup> accs: array<vec4<f32>, WG>;
${segmentReduce('wg_max', COOP_WG, 'max')}
${segmentReduce('wg_sum', COOP_WG, 'sum')}
@compute @workgroup_size(${COOP_WG})
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
  ${head}
  let ko4 = ko / 4u;
  if (lid < HD4) { let b = qo + 4u * lid; qs[lid] = vec4<f32>(q[b], q[b + 1u], q[b + 2u], q[b + 3u]); }
  workgroupBarrier();
  let i4 = lid % HD4;
  let g = lid / HD4;
  var m = NEG;
  var lPart = 0.0;
  var acc = vec4<f32>(0.0);
  for (var s0 = 0u; s0 < n; s0 += WG) {
    let s = s0 + lid;
    var score = NEG;
    if (s < n) {
      var qk = 0.0;
      for (var k = 0u; k < HD4; k++) { qk += dot(qs[k], kcache[s * KVW4 + ko4 + k]); }
      score = qk * SCALE;
    }
    let mNew = max(m, wg_max(lid, score));
    let corr = exp(m - mNew);
    let p = select(0.0, exp(score - mNew), s < n);
    lPart = lPart * corr + p;
    ps[lid] = p; // the previous tile's readers are past this tile's wg_max barriers
    workgroupBarrier();
    acc *= corr;
    if (g < G) {
      for (var r = 0u; r < ${per}u; r++) {
        let j = g + r * G;
        ${COOP_WG % G ? `if (j < WG) {
        ${pv}
        }` : pv}
      }
    }
    m = mNew;
  }
  let l = wg_sum(lid, lPart);
  accs[lid] = acc;
  workgroupBarrier();
  if (lid < HD4) {
    var sum = vec4<f32>(0.0);
    for (var gi = 0u; gi < G; gi++) { sum += accs[gi * HD4 + lid]; }
    let o = sum / l;
    let b = qo + 4u * lid;
    out[b] = o.x;
    out[b + 1u] = o.y;
    out[b + 2u] = o.z;
    out[b + 3u] = o.w;
  }
}`;
  }
  const cacheType = variant === 'gpu' ? 'array<vec4<f32>>' : 'array<f32>';
  const buffers: StorageBuffer[] = [
    { name: 'out', access: 'read_write', type: 'array<f32>' },
    { name: 'q', access: 'read', type: 'array<f32>' },
    { name: 'kcache', access: 'read', type: cacheType },
    { name: 'vcache', access: 'read', type: cacheType },
  ];
  return assemble(`attention/h${heads}/kv${kvHeads}/hd${hd}/${variant}`, buffers, body, [heads, 'T', 1]);
}

export type ElementwiseOp = 'silu' | 'mul' | 'add' | 'silu_mul';

const ELEMENTWISE: Record<ElementwiseOp, string> = {
  silu: 'silu(a[i])',
  mul: 'a[i] * b[i]',
  add: 'a[i] + b[i]',
  silu_mul: 'silu(a[i]) * b[i]',
};

/** y = op(a[, b]) over [T, n]; y must be a buffer of its own. */
export function elementwise(op: ElementwiseOp, n: number): WgslKernel {
  checkInts('elementwise', { n });
  const body = `
fn silu(v: f32) -> f32 { return v / (1.0 + exp(-v)); }
@compute @workgroup_size(${ELEM_WG})
fn main(@builtin(global_invocation_id) g: vec3<u32>) {
  if (g.x >= ${n}u) { return; }
  let i = g.y * ${n}u + g.x;
  y[i] = ${ELEMENTWISE[op]};
}`;
  const buffers: StorageBuffer[] = [
    { name: 'y', access: 'read_write', type: 'array<f32>' },
    { name: 'a', access: 'read', type: 'array<f32>' },
  ];
  if (op !== 'silu') buffers.push({ name: 'b', access: 'read', type: 'array<f32>' });
  return assemble(`elementwise/${op}/n${n}`, buffers, body, [groups(n, ELEM_WG), 'T', 1]);
}

/**
 * out[0] = index of the largest logit of the last row, exactly as src/run/sample.ts argmax: a strict
 * `>` scan from index 0, so the first of equal maxima wins, a NaN never replaces the best, and a
 * NaN at index 0 is never replaced. NaN is tested on the bits (WGSL may assume floats are never NaN).
 */
export function argmax(vocab: number, variant: Variant): WgslKernel {
  checkInts('argmax', { vocab });
  const isNan = 'fn is_nan(v: f32) -> bool { return (bitcast<u32>(v) & 0x7fffffffu) > 0x7f800000u; }';
  // cpu: one invocation scans the row. gpu: one workgroup; invocation j scans j, j+256, … (coalesced,
  // a constant count so that loads can overlap) keeping the first best it sees, then a tree reduction
  // of (value, index) pairs in which the larger value or, when equal, the lower index wins; NONE
  // marks an invocation that saw only NaNs.
  const body = variant === 'cpu'
    ? `
${isNan}
@compute @workgroup_size(1)
fn main() {
  let row = (call.T - 1u) * ${vocab}u;
  var best = 0u;
  var bestV = logits[row];
  if (!is_nan(bestV)) {
    for (var i = 1u; i < ${vocab}u; i++) {
      let v = logits[row + i];
      if (!is_nan(v) && v > bestV) { best = i; bestV = v; }
    }
  }
  out[0] = best;
}`
    : `
${isNan}
const WG = ${COOP_WG}u;
const NONE = 0xffffffffu;
var<workgroup> vals: array<f32, WG>;
var<workgroup> idxs: array<u32, WG>;
fn beats(v: f32, i: u32, bestV: f32, best: u32) -> bool {
  if (i == NONE) { return false; }
  return best == NONE || v > bestV || (v == bestV && i < best);
}
@compute @workgroup_size(${COOP_WG})
fn main(@builtin(local_invocation_index) lid: u32) {
  let row = (call.T - 1u) * ${vocab}u;
  var best = NONE;
  var bestV = 0.0;
  for (var k = 0u; k < ${Math.ceil(vocab / COOP_WG)}u; k++) {
    let i = lid + k * WG;
    let v = logits[row + min(i, ${vocab - 1}u)];
    if (i < ${vocab}u && !is_nan(v) && beats(v, i, bestV, best)) { best = i; bestV = v; }
  }
  vals[lid] = bestV;
  idxs[lid] = best;
  workgroupBarrier();
  for (var s = WG / 2u; s > 0u; s >>= 1u) {
    if (lid < s && beats(vals[lid + s], idxs[lid + s], vals[lid], idxs[lid])) {
      vals[lid] = vals[lid + s];
      idxs[lid] = idxs[lid + s];
    }
    workgroupBarrier();
  }
  if (lid == 0u) { out[0] = select(idxs[0], 0u, is_nan(logits[row])); }
}`;
  const buffers: StorageBuffer[] = [
    { name: 'out', access: 'read_write', type: 'array<u32>' },
    { name: 'logits', access: 'read', type: 'array<f32>' },
  ];
  return assemble(`argmax/v${vocab}/${variant}`, buffers, body, [1, 1, 1]);
}
