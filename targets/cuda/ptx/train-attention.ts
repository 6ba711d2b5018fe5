// Causal GQA attention within packed sequences and its gradient in f32, plain SIMT (the reference
// path of training; the tensor-core fast path is flash-attention.ts / flash-attention-backward.ts).
// Oracle: targets/ref/kernels.ts seqAttention (the attention op) and targets/ref/train-kernels.ts
// attentionGrad (attention_grad). No warp shuffles, votes or atomics: test/helpers/ptx-sim.ts runs
// every kernel here on the CPU, and every sum has a fixed order (bitwise the same run to run).
//
// Visibility. Row t sees key s iff start(t) ≤ s ≤ t, start(t) = the first row of t's sequence (seq:
// int32 [T], one id per row; a sequence's rows are contiguous and an id is not reused later, as the
// ref requires), found by binary search (flash-attention-backward.ts binarySearch): O(log T) loads.
//
// Three kernels, block NT threads (a power of two, default ATTENTION_THREADS), scale = 1/√hd:
//   attentionForward  — block (t, h): out[t,h] = Σ_s P_s·v_s, P = softmax(q·kᵀ·scale) over the span.
//   attentionGradQ    — block (t, h): recomputes M = max_s S_s, L = Σ_s exp(S_s − M) and
//                       D = Σ_s P_s·(dy·v_s) (= dy·o), writes them to stats[t, h], and
//                       dq[t,h] = Σ_s dS_s·k_s with dS_s = P_s·(dy·v_s − D)·scale.
//   attentionGradKV   — block (s, g), g a kv head: loops over the (t, h) pairs that see key s, t in
//                       s .. end(s)−1 (end by binary search) and h in g's query heads, t-major (the
//                       ref's order); P and dS from stats: dv[s,g] = Σ P·dy[t,h], dk[s,g] = Σ dS·q[t,h].
//                       Runs after attentionGradQ (it reads stats).
// Work inside a block: keys (or (t, h) pairs) in tiles of NT, one a thread: that thread computes its
// score (an hd-long dot of a global row with a row staged in shared memory) and writes its weight
// (P, or dS) to shared memory; then "lanes" accumulate weight·row over the tile: with hd ≤ NT,
// thread tid owns column tid mod hd for the tile entries j ≡ tid div hd (mod P = ⌊NT/hd⌋), and the P
// partial sums are added in part order at the end; with hd > NT, thread tid owns columns tid + m·NT.
// Cost, per visible (t, s, h): forward 2 dots (max pass, then exp pass) + 1 multiply-add per column;
// backward: Q kernel 4 dots (max; exp and dy·v; S and dy·v again) + 1 per column, KV kernel 2 dots + 2
// per column; about 3× flash attention's arithmetic, all f32 SIMT. Memory: stats is T·heads·16 bytes,
// nothing quadratic. Row reads are per-thread rows (not coalesced across threads; L1/L2-served).
//
// Layout. q, dy, out, dq: [T, pad8(heads·hd)] f32; k, v, dk, dv: [T, pad8(kvHeads·hd)] f32; head h's
// columns h·hd .. h·hd+hd−1, kv head g = ⌊h / (heads/kvHeads)⌋. stats: f32 [T, heads, 4] =
// (M, L, D, 0). Only logical columns are written; padding is never read.
// Precision: f32 sums (per-thread partials, then a tree or part order) against the ref's float64;
// exp through ex2.approx (relative error ~2^-22).
import { f32Imm, KernelBuilder } from './builder.js';
import type { Kernel } from './dense.js';
import { binarySearch } from './flash-attention-backward.js';
import { pad8 } from './layout.js';
import { blockReduceTree } from './train-reduce.js';

export interface TrainAttentionSpec {
  heads: number;
  kvHeads: number;
  hd: number;
  /** Threads a block (a power of two, ≥ 32; default ATTENTION_THREADS). */
  threads?: number;
}

export const ATTENTION_THREADS = 128;

const threadsOf = (s: TrainAttentionSpec) => s.threads ?? ATTENTION_THREADS;
const tag = (s: TrainAttentionSpec) => `h${s.heads}_kv${s.kvHeads}_hd${s.hd}_t${threadsOf(s)}`;

function check(s: TrainAttentionSpec): void {
  const NT = threadsOf(s);
  if (!(s.heads >= 1 && s.kvHeads >= 1 && s.heads % s.kvHeads === 0)) throw new Error(`train attention: heads ${s.heads} is not a multiple of kv heads ${s.kvHeads}`);
  if (!(s.hd >= 1)) throw new Error(`train attention: head dim ${s.hd}`);
  if (!(NT >= 32 && NT <= 1024 && (NT & (NT - 1)) === 0)) throw new Error(`train attention: ${NT} threads is not a power of two in 32..1024`);
}

/** Grid of attentionForward and attentionGradQ over T rows: (T, heads). Block threads(spec). */
export const attentionRowGrid = (s: TrainAttentionSpec, T: number): [number, number, number] => [T, s.heads, 1];
/** Grid of attentionGradKV over T key rows: (T, kvHeads). */
export const attentionKeyGrid = (s: TrainAttentionSpec, T: number): [number, number, number] => [T, s.kvHeads, 1];
export const attentionThreads = threadsOf;
/** Bytes of attentionGradQ's stats scratch (read by attentionGradKV). */
export const attentionStatsBytes = (s: TrainAttentionSpec, T: number): number => T * s.heads * 16;

const LOG2E = Math.LOG2E;
const NEG_INF = '0fFF800000';

/** Shared state of one kernel under construction. */
class Ctx {
  readonly NT: number;
  readonly group: number;
  readonly qStride: number; // elements a q / dy row
  readonly kvStride: number; // elements a k / v row
  readonly scale: string;
  readonly tid: string;
  constructor(readonly k: KernelBuilder, readonly s: TrainAttentionSpec) {
    check(s);
    this.NT = threadsOf(s);
    this.group = s.heads / s.kvHeads;
    this.qStride = pad8(s.heads * s.hd);
    this.kvStride = pad8(s.kvHeads * s.hd);
    this.scale = f32Imm(1 / Math.sqrt(s.hd));
    k.blockSize(this.NT);
    this.tid = k.special('%tid.x', 'tid');
  }

  /** Copies hd floats at global `src` into the shared array `dst` (then a barrier is needed). */
  stage(src: string, dst: string): void {
    const { k, tid, NT } = this;
    for (let base = 0; base < this.s.hd; base += NT) {
      const i = this.k.reg('u32', 'i'), p = k.reg('pred', 'p'), x = k.reg('f32', 'x'), a = k.reg('u32', 'sa');
      k.emit(`add.u32 ${i}, ${tid}, ${base}`, `setp.lt.u32 ${p}, ${i}, ${this.s.hd}`);
      k.emit(`@${p} ld.global.f32 ${x}, [${k.addr(src, i, 4)}]`, `mov.u32 ${a}, ${dst}`, `mad.lo.u32 ${a}, ${i}, 4, ${a}`, `@${p} st.shared.f32 [${a}], ${x}`);
    }
  }

  /** Σ_i row[i]·sh[i] over i = 0..hd−1 in i order (fma), row a global address, sh a shared array. */
  dot(row: string, sh: string): string {
    const { k } = this, hd = this.s.hd;
    const acc = k.reg('f32', 'dot');
    k.emit(`mov.f32 ${acc}, 0f00000000`);
    const v4 = hd % 4 === 0; // then every head's row is 16-byte aligned (rows are pad8, heads hd apart)
    for (let i = 0; i < hd; i += v4 ? 4 : 1) {
      const n = v4 ? 4 : 1, a = k.regs('f32', 'a', n), b = k.regs('f32', 'b', n);
      if (v4) k.emit(`ld.global.v4.f32 {${a.join(', ')}}, [${row}+${4 * i}]`, `ld.shared.v4.f32 {${b.join(', ')}}, [${sh}+${4 * i}]`);
      else k.emit(`ld.global.f32 ${a[0]}, [${row}+${4 * i}]`, `ld.shared.f32 ${b[0]}, [${sh}+${4 * i}]`);
      for (let j = 0; j < n; j++) k.emit(`fma.rn.f32 ${acc}, ${a[j]}, ${b[j]}, ${acc}`);
    }
    return acc;
  }

  /** exp(x − m) through ex2: 2^((x − m)·log2 e). */
  expMinus(x: string, m: string): string {
    const e = this.k.reg('f32', 'e');
    this.k.emit(`sub.f32 ${e}, ${x}, ${m}`, `mul.f32 ${e}, ${e}, ${f32Imm(LOG2E)}`, `ex2.approx.ftz.f32 ${e}, ${e}`);
    return e;
  }

  /** The global address of element (row, col) of a matrix at `base` with rows of `stride` elements. */
  rowAt(base: string, row: string, stride: number, col: number | string): string {
    const { k } = this;
    const r = k.addr(base, row, stride * 4);
    return typeof col === 'number' ? (col ? k.addr(r, col, 4) : r) : k.addr(r, col, 4);
  }

  /**
   * The lanes that accumulate weight·row over a tile (see the header): per thread the columns it
   * owns (c[m], valid where ok[m]), its part and whether it takes part at all.
   */
  lanes(): { c: string[]; ok: (string | null)[]; part: string; active: string; P: number } {
    const { k, tid, NT } = this, hd = this.s.hd;
    const part = k.reg('u32', 'part'), active = k.reg('pred', 'active');
    if (hd <= NT) {
      const P = Math.floor(NT / hd), c = k.reg('u32', 'col');
      k.emit(`rem.u32 ${c}, ${tid}, ${hd}`, `div.u32 ${part}, ${tid}, ${hd}`, `setp.lt.u32 ${active}, ${part}, ${P}`);
      return { c: [c], ok: [null], part, active, P };
    }
    const CP = Math.ceil(hd / NT);
    const c = k.regs('u32', 'col', CP), ok = c.map((_, m) => (hd % NT === 0 || m < CP - 1 ? null : k.reg('pred', 'colok')));
    k.emit(`mov.u32 ${part}, 0`, `setp.lt.u32 ${active}, ${tid}, ${NT}`);
    c.forEach((cm, m) => {
      k.emit(`add.u32 ${cm}, ${tid}, ${m * NT}`);
      if (ok[m]) k.emit(`setp.lt.u32 ${ok[m]}, ${cm}, ${hd}`);
    });
    return { c, ok, part, active, P: 1 };
  }

  /**
   * A tile's weights times key rows: w (this thread's entry, already 0 where it is masked) goes to
   * its shared slot wslot of the array wsh, then acc[0] += Σ_j w[j]·m[start + base + j] over the
   * tile's n-long entries (m a [T, kv] f32 matrix); the barriers on both sides let every thread see
   * the weights, and the next tile reuse the slot.
   */
  accumulateKeyRows(L: ReturnType<Ctx['lanes']>, n: string, base: string, start: string, w: string, wslot: string, wsh: string, m: string, acc: string[][]): void {
    const { k } = this;
    k.emit(`st.shared.f32 [${wslot}], ${w}`, 'bar.sync 0');
    this.accumulate(L, this.tileLen(n, base), [wsh], (jj) => {
      const row = k.reg('u32', 'row');
      k.emit(`add.u32 ${row}, ${start}, ${base}`, `add.u32 ${row}, ${row}, ${jj}`);
      return [k.addr(m, row, this.kvStride * 4)];
    }, acc);
    k.emit('bar.sync 0');
  }

  /**
   * acc[o][m] += w_o[j]·row_o(j)[c[m]] for this thread's tile entries j (part, part + P, … < len):
   * `weights[o]` a shared f32 array of NT, `rowOf(j)` the u64 global addresses of entry j's rows
   * (one per output o). No barrier inside.
   */
  accumulate(L: ReturnType<Ctx['lanes']>, len: string, weights: string[], rowOf: (j: string) => string[], acc: string[][]): void {
    const { k } = this;
    const j = k.reg('u32', 'j'), p = k.reg('pred', 'p'), top = k.label('acc'), out = k.label('acc_end');
    k.emit(`mov.u32 ${j}, ${L.part}`, `@!${L.active} bra ${out}`);
    k.place(top);
    k.emit(`setp.ge.u32 ${p}, ${j}, ${len}`, `@${p} bra ${out}`);
    const rows = rowOf(j);
    weights.forEach((wsh, o) => {
      const w = k.reg('f32', 'w'), a = k.reg('u32', 'wa');
      k.emit(`mov.u32 ${a}, ${wsh}`, `mad.lo.u32 ${a}, ${j}, 4, ${a}`, `ld.shared.f32 ${w}, [${a}]`);
      L.c.forEach((cm, m) => {
        const x = k.reg('f32', 'x'), g = L.ok[m] ? `@${L.ok[m]} ` : '';
        k.emit(`${g}ld.global.f32 ${x}, [${k.addr(rows[o]!, cm, 4)}]`, `${g}fma.rn.f32 ${acc[o]![m]}, ${w}, ${x}, ${acc[o]![m]}`);
      });
    });
    k.emit(`add.u32 ${j}, ${j}, ${L.P}`, `bra ${top}`);
    k.place(out);
  }

  /**
   * Adds each output's P part sums in part order and calls store(o, c, value·mul) for the thread's
   * columns (mul a register or null). Every thread must run it (it has a barrier when P > 1).
   */
  finish(L: ReturnType<Ctx['lanes']>, acc: string[][], mul: string | null, store: (o: number, c: string, v: string, guard: string | null) => void): void {
    const { k, tid } = this, hd = this.s.hd;
    const scaled = (v: string) => {
      if (!mul) return v;
      const r = k.reg('f32', 'r');
      k.emit(`mul.f32 ${r}, ${v}, ${mul}`);
      return r;
    };
    if (L.P === 1) {
      const own = k.reg('pred', 'own');
      k.emit(`setp.lt.u32 ${own}, ${tid}, ${Math.min(hd, this.NT)}`); // hd ≤ NT: threads tid < hd; else all
      acc.forEach((row, o) => row.forEach((v, m) => {
        let g = own;
        if (L.ok[m]) {
          g = k.reg('pred', 'g');
          k.emit(`and.pred ${g}, ${own}, ${L.ok[m]}`);
        }
        store(o, L.c[m]!, scaled(v), g);
      }));
      return;
    }
    // hd ≤ NT/2: the parts' sums through shared memory, [o][part][hd]
    const sh = k.sharedArray('parts', 'f32', acc.length * L.P * hd, 4);
    const a = k.reg('u32', 'pa');
    k.emit(`mov.u32 ${a}, ${sh}`, `mad.lo.u32 ${a}, ${L.part}, ${hd * 4}, ${a}`, `mad.lo.u32 ${a}, ${L.c[0]}, 4, ${a}`);
    acc.forEach((row, o) => k.emit(`@${L.active} st.shared.f32 [${a}+${o * L.P * hd * 4}], ${row[0]}`));
    k.emit('bar.sync 0');
    const own = k.reg('pred', 'own'), b = k.reg('u32', 'pb'), skip = k.label('finish');
    k.emit(`setp.lt.u32 ${own}, ${tid}, ${hd}`, `@!${own} bra ${skip}`, `mov.u32 ${b}, ${sh}`, `mad.lo.u32 ${b}, ${tid}, 4, ${b}`);
    acc.forEach((_, o) => {
      const sum = k.reg('f32', 'sum'), x = k.reg('f32', 'x');
      k.emit(`ld.shared.f32 ${sum}, [${b}+${o * L.P * hd * 4}]`);
      for (let p = 1; p < L.P; p++) k.emit(`ld.shared.f32 ${x}, [${b}+${(o * L.P + p) * hd * 4}]`, `add.f32 ${sum}, ${sum}, ${x}`);
      store(o, tid, scaled(sum), null);
    });
    k.place(skip);
  }

  /** The first row of row `t`'s sequence: binary search over [0, t] for seq[x] = seq[t]. */
  seqStart(seq: string, t: string): string {
    const { k } = this;
    const s0 = k.reg('u32', 'seqt'), lo = k.reg('u32', 'start'), hi = k.reg('u32', 'hi'), sv = k.reg('u32', 'sv');
    k.emit(`ld.global.u32 ${s0}, [${k.addr(seq, t, 4)}]`, `mov.u32 ${lo}, 0`, `mov.u32 ${hi}, ${t}`);
    binarySearch(k, lo, hi, (x, p) => k.emit(`ld.global.u32 ${sv}, [${k.addr(seq, x, 4)}]`, `setp.eq.u32 ${p}, ${sv}, ${s0}`));
    return lo;
  }

  /** One past the last row of row `s`'s sequence: binary search over (s, T) for seq[x] ≠ seq[s]. */
  seqEnd(seq: string, s: string, T: string): string {
    const { k } = this;
    const s0 = k.reg('u32', 'seqs'), lo = k.reg('u32', 'end'), hi = k.reg('u32', 'hi'), sv = k.reg('u32', 'sv');
    k.emit(`ld.global.u32 ${s0}, [${k.addr(seq, s, 4)}]`, `add.u32 ${lo}, ${s}, 1`, `mov.u32 ${hi}, ${T}`);
    binarySearch(k, lo, hi, (x, p) => k.emit(`ld.global.u32 ${sv}, [${k.addr(seq, x, 4)}]`, `setp.ne.u32 ${p}, ${sv}, ${s0}`));
    return lo;
  }

  /**
   * A loop over tiles of NT entries, n entries in all (u32 register): body(j, valid, base) with
   * j = base + tid and `valid` = j < n. The loop condition is uniform, so the body may hold barriers.
   */
  tiles(n: string, body: (j: string, valid: string, base: string) => void): void {
    const { k, tid, NT } = this;
    const base = k.reg('u32', 'base'), j = k.reg('u32', 'j'), valid = k.reg('pred', 'valid'), p = k.reg('pred', 'p');
    const top = k.label('tile'), out = k.label('tile_end');
    k.emit(`mov.u32 ${base}, 0`);
    k.place(top);
    k.emit(`setp.ge.u32 ${p}, ${base}, ${n}`, `@${p} bra ${out}`, `add.u32 ${j}, ${base}, ${tid}`, `setp.lt.u32 ${valid}, ${j}, ${n}`);
    body(j, valid, base);
    k.emit(`add.u32 ${base}, ${base}, ${NT}`, `bra ${top}`);
    k.place(out);
  }

  /** A shared f32 array of NT and the address of this thread's slot in it. */
  slot(hint: string): [string, string] {
    const sh = this.k.sharedArray(hint, 'f32', this.NT, 4), a = this.k.reg('u32', 'sl');
    this.k.emit(`mov.u32 ${a}, ${sh}`, `mad.lo.u32 ${a}, ${this.tid}, 4, ${a}`);
    return [sh, a];
  }

  /** min(NT, n − base): the entries of the tile starting at base. */
  tileLen(n: string, base: string): string {
    const len = this.k.reg('u32', 'len');
    this.k.emit(`sub.u32 ${len}, ${n}, ${base}`, `min.u32 ${len}, ${len}, ${this.NT}`);
    return len;
  }

  zeros(rows: number, cols: number): string[][] {
    return Array.from({ length: rows }, () => Array.from({ length: cols }, () => {
      const r = this.k.reg('f32', 'acc');
      this.k.emit(`mov.f32 ${r}, 0f00000000`);
      return r;
    }));
  }
}

const ptrs = (names: string[]) => names.map((name) => ({ name, type: 'u64' as const }));

/**
 * The attention op's forward. Params out, q, k, v, seq (u64).
 * Grid attentionRowGrid(spec, T), block attentionThreads(spec).
 */
export function attentionForward(s: TrainAttentionSpec): Kernel {
  const name = `train_attention_fwd_${tag(s)}`;
  const k = new KernelBuilder(name, ptrs(['out', 'q', 'k', 'v', 'seq']));
  const c = new Ctx(k, s), { tid } = c, hd = s.hd;
  const [out, q, kk, v, seq] = ['out', 'q', 'k', 'v', 'seq'].map((n) => k.ptrParam(n)) as [string, string, string, string, string];
  const t = k.special('%ctaid.x', 't'), h = k.special('%ctaid.y', 'h');
  const g = k.reg('u32', 'g');
  k.emit(`div.u32 ${g}, ${h}, ${c.group}`);
  const start = c.seqStart(seq, t), n = k.reg('u32', 'n');
  k.emit(`sub.u32 ${n}, ${t}, ${start}`, `add.u32 ${n}, ${n}, 1`);
  const hcol = k.reg('u32', 'hcol'), gcol = k.reg('u32', 'gcol');
  k.emit(`mul.lo.u32 ${hcol}, ${h}, ${hd}`, `mul.lo.u32 ${gcol}, ${g}, ${hd}`);
  const qsh = k.sharedArray('q', 'f32', hd, 16);
  c.stage(c.rowAt(q, t, c.qStride, hcol), qsh);
  k.emit('bar.sync 0');
  const kg = k.addr(kk, gcol, 4), vg = k.addr(v, gcol, 4);
  const score = (j: string) => {
    const row = k.reg('u32', 'row');
    k.emit(`add.u32 ${row}, ${start}, ${j}`);
    const d = c.dot(k.addr(kg, row, c.kvStride * 4), qsh);
    k.emit(`mul.f32 ${d}, ${d}, ${c.scale}`);
    return d;
  };
  // pass 1: the max score
  const m = k.reg('f32', 'm');
  k.emit(`mov.f32 ${m}, ${NEG_INF}`);
  c.tiles(n, (j, valid) => {
    const skip = k.label('skip');
    k.emit(`@!${valid} bra ${skip}`);
    k.emit(`max.f32 ${m}, ${m}, ${score(j)}`);
    k.place(skip);
  });
  blockReduceTree(k, m, tid, c.NT, 'max');
  // pass 2: P (unnormalized) per tile into shared memory, the lanes add P·v
  const L = c.lanes(), acc = c.zeros(1, L.c.length);
  const [wsh, wslot] = c.slot('p');
  const l = k.reg('f32', 'l');
  k.emit(`mov.f32 ${l}, 0f00000000`);
  c.tiles(n, (j, valid, base) => {
    const p = k.reg('f32', 'p'), skip = k.label('skip');
    k.emit(`mov.f32 ${p}, 0f00000000`, `@!${valid} bra ${skip}`);
    k.emit(`mov.f32 ${p}, ${c.expMinus(score(j), m)}`, `add.f32 ${l}, ${l}, ${p}`);
    k.place(skip);
    c.accumulateKeyRows(L, n, base, start, p, wslot, wsh, vg, acc);
  });
  blockReduceTree(k, l, tid, c.NT, 'add');
  const inv = k.reg('f32', 'inv');
  k.emit(`rcp.rn.f32 ${inv}, ${l}`);
  const orow = c.rowAt(out, t, c.qStride, hcol);
  c.finish(L, acc, inv, (_o, col, val, guard) => k.emit(`${guard ? `@${guard} ` : ''}st.global.f32 [${k.addr(orow, col, 4)}], ${val}`));
  return { name, text: k.render() };
}

/**
 * attention_grad, part 1: dq and the softmax statistics. Params dq, stats, q, k, v, seq, dy (u64).
 * Grid attentionRowGrid(spec, T), block attentionThreads(spec).
 */
export function attentionGradQ(s: TrainAttentionSpec): Kernel {
  const name = `train_attention_grad_q_${tag(s)}`;
  const names = ['dq', 'stats', 'q', 'k', 'v', 'seq', 'dy'];
  const k = new KernelBuilder(name, ptrs(names));
  const c = new Ctx(k, s), { tid } = c, hd = s.hd;
  const [dq, stats, q, kk, v, seq, dy] = names.map((n) => k.ptrParam(n)) as [string, string, string, string, string, string, string];
  const t = k.special('%ctaid.x', 't'), h = k.special('%ctaid.y', 'h');
  const g = k.reg('u32', 'g');
  k.emit(`div.u32 ${g}, ${h}, ${c.group}`);
  const start = c.seqStart(seq, t), n = k.reg('u32', 'n');
  k.emit(`sub.u32 ${n}, ${t}, ${start}`, `add.u32 ${n}, ${n}, 1`);
  const hcol = k.reg('u32', 'hcol'), gcol = k.reg('u32', 'gcol');
  k.emit(`mul.lo.u32 ${hcol}, ${h}, ${hd}`, `mul.lo.u32 ${gcol}, ${g}, ${hd}`);
  const qsh = k.sharedArray('q', 'f32', hd, 16), dsh = k.sharedArray('dy', 'f32', hd, 16);
  c.stage(c.rowAt(q, t, c.qStride, hcol), qsh);
  c.stage(c.rowAt(dy, t, c.qStride, hcol), dsh);
  k.emit('bar.sync 0');
  const kg = k.addr(kk, gcol, 4), vg = k.addr(v, gcol, 4);
  const keyRow = (j: string) => {
    const row = k.reg('u32', 'row');
    k.emit(`add.u32 ${row}, ${start}, ${j}`);
    return row;
  };
  const score = (row: string) => {
    const d = c.dot(k.addr(kg, row, c.kvStride * 4), qsh);
    k.emit(`mul.f32 ${d}, ${d}, ${c.scale}`);
    return d;
  };
  const dyv = (row: string) => c.dot(k.addr(vg, row, c.kvStride * 4), dsh);
  // pass 1: M
  const m = k.reg('f32', 'm');
  k.emit(`mov.f32 ${m}, ${NEG_INF}`);
  c.tiles(n, (j, valid) => {
    const skip = k.label('skip');
    k.emit(`@!${valid} bra ${skip}`); // (its own emit: score() emits its lines as the argument is built)
    k.emit(`max.f32 ${m}, ${m}, ${score(keyRow(j))}`);
    k.place(skip);
  });
  blockReduceTree(k, m, tid, c.NT, 'max');
  // pass 2: L = Σ e_s and Σ e_s·(dy·v_s), e_s = exp(S_s − M)
  const l = k.reg('f32', 'l'), ed = k.reg('f32', 'ed');
  k.emit(`mov.f32 ${l}, 0f00000000`, `mov.f32 ${ed}, 0f00000000`);
  c.tiles(n, (j, valid) => {
    const skip = k.label('skip');
    k.emit(`@!${valid} bra ${skip}`);
    const row = keyRow(j), e = c.expMinus(score(row), m);
    k.emit(`add.f32 ${l}, ${l}, ${e}`, `fma.rn.f32 ${ed}, ${e}, ${dyv(row)}, ${ed}`);
    k.place(skip);
  });
  blockReduceTree(k, l, tid, c.NT, 'add');
  blockReduceTree(k, ed, tid, c.NT, 'add');
  const inv = k.reg('f32', 'inv'), D = k.reg('f32', 'D');
  k.emit(`rcp.rn.f32 ${inv}, ${l}`, `mul.f32 ${D}, ${ed}, ${inv}`);
  // the statistics for attentionGradKV
  const first = k.reg('pred', 'first'), zero = k.reg('f32', 'zero'), si = k.reg('u32', 'si');
  k.emit(`setp.eq.u32 ${first}, ${tid}, 0`, `mov.f32 ${zero}, 0f00000000`, `mad.lo.u32 ${si}, ${t}, ${s.heads}, ${h}`);
  k.emit(`@${first} st.global.v4.f32 [${k.addr(stats, si, 16)}], {${m}, ${l}, ${D}, ${zero}}`);
  // pass 3: dS per tile into shared memory, the lanes add dS·k
  const L = c.lanes(), acc = c.zeros(1, L.c.length);
  const [wsh, wslot] = c.slot('ds');
  c.tiles(n, (j, valid, base) => {
    const ds = k.reg('f32', 'ds'), skip = k.label('skip');
    k.emit(`mov.f32 ${ds}, 0f00000000`, `@!${valid} bra ${skip}`);
    const row = keyRow(j), p = k.reg('f32', 'p');
    k.emit(`mul.f32 ${p}, ${c.expMinus(score(row), m)}, ${inv}`);
    k.emit(`sub.f32 ${ds}, ${dyv(row)}, ${D}`, `mul.f32 ${ds}, ${ds}, ${p}`, `mul.f32 ${ds}, ${ds}, ${c.scale}`);
    k.place(skip);
    c.accumulateKeyRows(L, n, base, start, ds, wslot, wsh, kg, acc);
  });
  const orow = c.rowAt(dq, t, c.qStride, hcol);
  c.finish(L, acc, null, (_o, col, val, guard) => k.emit(`${guard ? `@${guard} ` : ''}st.global.f32 [${k.addr(orow, col, 4)}], ${val}`));
  return { name, text: k.render() };
}

/**
 * attention_grad, part 2: dk and dv. Params dk, dv, stats (attentionGradQ's), q, k, v, seq, dy (u64),
 * T (u32). Grid attentionKeyGrid(spec, T), block attentionThreads(spec).
 */
export function attentionGradKV(s: TrainAttentionSpec): Kernel {
  const name = `train_attention_grad_kv_${tag(s)}`;
  const names = ['dk', 'dv', 'stats', 'q', 'k', 'v', 'seq', 'dy'];
  const k = new KernelBuilder(name, [...ptrs(names), { name: 'T', type: 'u32' }]);
  const c = new Ctx(k, s), hd = s.hd;
  const [dk, dv, stats, q, kk, v, seq, dy] = names.map((n) => k.ptrParam(n)) as [string, string, string, string, string, string, string, string];
  const T = k.u32Param('T');
  const sRow = k.special('%ctaid.x', 's'), g = k.special('%ctaid.y', 'g');
  const end = c.seqEnd(seq, sRow, T);
  const n = k.reg('u32', 'n'), gcol = k.reg('u32', 'gcol'), h0 = k.reg('u32', 'h0');
  k.emit(`sub.u32 ${n}, ${end}, ${sRow}`, `mul.lo.u32 ${n}, ${n}, ${c.group}`, `mul.lo.u32 ${gcol}, ${g}, ${hd}`, `mul.lo.u32 ${h0}, ${g}, ${c.group}`);
  const ksh = k.sharedArray('k', 'f32', hd, 16), vsh = k.sharedArray('v', 'f32', hd, 16);
  c.stage(c.rowAt(kk, sRow, c.kvStride, gcol), ksh);
  c.stage(c.rowAt(v, sRow, c.kvStride, gcol), vsh);
  k.emit('bar.sync 0');
  const L = c.lanes(), acc = c.zeros(2, L.c.length); // [dv, dk]
  const [psh, pslot] = c.slot('p'), [dsh, dslot] = c.slot('ds');
  const osh = k.sharedArray('off', 'u32', c.NT, 4), oslot = k.reg('u32', 'ol');
  k.emit(`mov.u32 ${oslot}, ${osh}`, `mad.lo.u32 ${oslot}, ${c.tid}, 4, ${oslot}`);
  c.tiles(n, (j, valid, base) => {
    // entry j: query row t = s + ⌊j / group⌋, head h = g·group + j mod group
    const p = k.reg('f32', 'p'), ds = k.reg('f32', 'ds'), off = k.reg('u32', 'off'), skip = k.label('skip');
    k.emit(`mov.f32 ${p}, 0f00000000`, `mov.f32 ${ds}, 0f00000000`, `mov.u32 ${off}, 0`, `@!${valid} bra ${skip}`);
    const t = k.reg('u32', 't'), h = k.reg('u32', 'h'), si = k.reg('u32', 'si');
    k.emit(`div.u32 ${t}, ${j}, ${c.group}`, `rem.u32 ${h}, ${j}, ${c.group}`, `add.u32 ${t}, ${t}, ${sRow}`, `add.u32 ${h}, ${h}, ${h0}`);
    k.emit(`mul.lo.u32 ${off}, ${h}, ${hd}`, `mad.lo.u32 ${off}, ${t}, ${c.qStride}, ${off}`, `mad.lo.u32 ${si}, ${t}, ${s.heads}, ${h}`);
    const M = k.reg('f32', 'M'), l = k.reg('f32', 'L'), D = k.reg('f32', 'D'), z = k.reg('f32', 'z');
    k.emit(`ld.global.v4.f32 {${M}, ${l}, ${D}, ${z}}, [${k.addr(stats, si, 16)}]`);
    const sc = c.dot(k.addr(q, off, 4), ksh);
    k.emit(`mul.f32 ${sc}, ${sc}, ${c.scale}`);
    const inv = k.reg('f32', 'inv');
    k.emit(`rcp.rn.f32 ${inv}, ${l}`, `mul.f32 ${p}, ${c.expMinus(sc, M)}, ${inv}`); // P as attentionGradQ computes it
    k.emit(`sub.f32 ${ds}, ${c.dot(k.addr(dy, off, 4), vsh)}, ${D}`, `mul.f32 ${ds}, ${ds}, ${p}`, `mul.f32 ${ds}, ${ds}, ${c.scale}`);
    k.place(skip);
    k.emit(`st.shared.f32 [${pslot}], ${p}`, `st.shared.f32 [${dslot}], ${ds}`, `st.shared.u32 [${oslot}], ${off}`, 'bar.sync 0');
    c.accumulate(L, c.tileLen(n, base), [psh, dsh], (jj) => {
      const a = k.reg('u32', 'oa'), o = k.reg('u32', 'o');
      k.emit(`mov.u32 ${a}, ${osh}`, `mad.lo.u32 ${a}, ${jj}, 4, ${a}`, `ld.shared.u32 ${o}, [${a}]`);
      return [k.addr(dy, o, 4), k.addr(q, o, 4)];
    }, acc);
    k.emit('bar.sync 0');
  });
  const dvRow = c.rowAt(dv, sRow, c.kvStride, gcol), dkRow = c.rowAt(dk, sRow, c.kvStride, gcol);
  c.finish(L, acc, null, (o, col, val, guard) => k.emit(`${guard ? `@${guard} ` : ''}st.global.f32 [${k.addr(o === 0 ? dvRow : dkRow, col, 4)}], ${val}`));
  return { name, text: k.render() };
}
