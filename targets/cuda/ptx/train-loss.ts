// Cross-entropy loss and its gradient, chunked over the vocabulary, so that the [T, V] logits never
// exist whole (issue 18: the loss fused with the output projection). The output projection's GEMM
// (gemm.ts, epilogue 'store') writes one slab of logits at a time, columns v0 .. v0 + c - 1 of the
// vocabulary, as an f32 [T, c] matrix with rows of pad8(c) elements (the device layout, layout.ts);
// these kernels consume a slab and leave it free for the next one. The schedule of one step is:
//
//   for each slab (v0 = 0, chunk, 2·chunk, ...; the last c = V - v0):  GEMM → slab;  ceFold(slab)
//   ceFinalize                                   → the mean loss, per-row lse and loss
//   for each slab:  GEMM → slab;  ceGrad(slab)   → dlogits of the slab (then the slab's two GEMMs
//                                                   of the backward: dX += dlogits·W, dW = dlogitsᵀ·X)
//
// Semantics are targets/ref/train-kernels.ts crossEntropy / crossEntropyGrad (the oracle): a row t
// with targets[t] < 0 counts nothing (no loss, a zero gradient row); n = the counted rows; the loss
// is the mean over them (0 when n = 0); dlogits[t, v] = (softmax(logits[t])[v] − [v = target_t]) ·
// dloss / n. A target ≥ V is an error the ref reports; here it is the caller's to check on the host
// (such a row would never pick up its target logit: its loss is garbage).
//
// Buffers (f32 unless said):
//   state   [T, 2]: after ceFold of the slabs so far, (max, Σ exp(logit − max)) of each counted row
//           over the columns seen; ceFinalize turns it, in place, into (lse, loss) of the row.
//   tlogit  [T]: the target's logit, written by the ceFold of the slab that holds it.
//   loss    [2]: word 0 the mean loss (f32), word 1 n (u32), written by ceFinalize.
//   targets [T] s32; dloss [1] (the incoming gradient of the loss, on the device so a graph can
//           replay the step).
// Rows of uncounted targets are never read or written by ceFold / ceFinalize.
//
// Grids: ceFold and ceGrad one CTA a row (ceRowGrid(T)), ceFinalize one CTA; all LOSS_THREADS
// threads. Sums are per-thread strided partials combined by a shared-memory tree (train-reduce.ts):
// deterministic, no atomics. exp and log are ex2.approx / lg2.approx (relative error about 2^-22,
// PTX ISA), scaled by log2(e) and ln(2).
import { f32Imm, KernelBuilder } from './builder.js';
import type { Kernel } from './dense.js';
import { blockReduceTree, storeF32, stridedLoop } from './train-reduce.js';

export const LOSS_THREADS = 256;

/** ceFold's and ceGrad's grid: one CTA a row. */
export const ceRowGrid = (T: number): [number, number, number] => [T, 1, 1];
/** ceFinalize's grid. */
export const ceFinalizeGrid: [number, number, number] = [1, 1, 1];

export const NEG_INF = '0fFF800000';
export const LOG2E = f32Imm(Math.LOG2E);

// The pieces below are shared with the distillation loss (train-kl.ts), which folds, finalizes and
// scales its gradient the same way.

/** Row t's common start: t, its target, whether it counts, and the slab's row stride pad8(c). */
export function rowStart(k: KernelBuilder, targets: string, c: string) {
  const t = k.special('%ctaid.x', 't');
  const tgt = k.reg('s32', 'tgt'), counted = k.reg('pred', 'counted'), ld = k.reg('u32', 'ld');
  k.emit(`ld.global.s32 ${tgt}, [${k.addr(targets, t, 4)}]`, `setp.ge.s32 ${counted}, ${tgt}, 0`);
  k.emit(`add.u32 ${ld}, ${c}, 7`, `and.b32 ${ld}, ${ld}, -8`);
  return { t, tgt, counted, ld };
}

/** The address of row t of a matrix of rows of `ld` elements of `bytes` bytes. */
export function rowAddr(k: KernelBuilder, base: string, t: string, ld: string, bytes: number): string {
  const rb = k.reg('u32', 'rb'), off = k.reg('u64', 'off'), a = k.reg('u64', 'row');
  k.emit(`mul.lo.u32 ${rb}, ${ld}, ${bytes}`, `mul.wide.u32 ${off}, ${t}, ${rb}`, `add.s64 ${a}, ${base}, ${off}`);
  return a;
}

/**
 * Folds slab [T, c] (columns v0 ..) into state and picks up target logits. Params state, tlogit,
 * logits, targets, v0, c (c ≥ 1). The slab with v0 = 0 starts the state; every other slab merges
 * into it (m = max(m, m'), s = s·e^(m_old − m) + s'·e^(m' − m)), so slabs may come in any order
 * after the first.
 */
export function ceFold(): Kernel {
  const name = 'ce_fold';
  const k = new KernelBuilder(name, [...['state', 'tlogit', 'logits', 'targets'].map((n) => ({ name: n, type: 'u64' as const })), { name: 'v0', type: 'u32' as const }, { name: 'c', type: 'u32' as const }]);
  k.blockSize(LOSS_THREADS);
  const state = k.ptrParam('state'), tlogit = k.ptrParam('tlogit'), logits = k.ptrParam('logits'), targets = k.ptrParam('targets');
  const v0 = k.u32Param('v0'), c = k.u32Param('c');
  const tid = k.special('%tid.x', 'tid');
  const { t, tgt, counted, ld } = rowStart(k, targets, c);
  const done = k.label('done');
  k.emit(`@!${counted} bra ${done}`); // the same for every thread of the CTA: no barrier is left half-met
  const row = rowAddr(k, logits, t, ld, 4);
  const x = k.reg('f32', 'x');

  k.comment('the slab row max: strided over the threads, then the tree');
  const mx = k.reg('f32', 'mx');
  k.emit(`mov.f32 ${mx}, ${NEG_INF}`);
  stridedLoop(k, tid, c, LOSS_THREADS, (j) => k.emit(`ld.global.f32 ${x}, [${k.addr(row, j, 4)}]`, `max.f32 ${mx}, ${mx}, ${x}`));
  blockReduceTree(k, mx, tid, LOSS_THREADS, 'max');

  k.comment('sum of exp(x - max) over the slab row');
  const s = k.reg('f32', 's'), e = k.reg('f32', 'e');
  k.emit(`mov.f32 ${s}, 0f00000000`);
  stridedLoop(k, tid, c, LOSS_THREADS, (j) => k.emit(`ld.global.f32 ${x}, [${k.addr(row, j, 4)}]`, `sub.f32 ${e}, ${x}, ${mx}`, `mul.f32 ${e}, ${e}, ${LOG2E}`, `ex2.approx.ftz.f32 ${e}, ${e}`, `add.f32 ${s}, ${s}, ${e}`));
  blockReduceTree(k, s, tid, LOSS_THREADS, 'add');

  k.comment('thread 0: merge into the running state; the target logit if it is in this slab');
  const p = k.reg('pred', 'p');
  k.emit(`setp.ne.u32 ${p}, ${tid}, 0`, `@${p} bra ${done}`);
  const sa = k.addr(state, t, 8);
  const first = k.reg('pred', 'first'), merged = k.label('merged');
  k.emit(`setp.eq.u32 ${first}, ${v0}, 0`, `@${first} bra ${merged}`);
  const mo = k.reg('f32', 'mo'), so = k.reg('f32', 'so');
  k.emit(`ld.global.f32 ${mo}, [${sa}]`, `ld.global.f32 ${so}, [${sa}+4]`);
  mergeRunning(k, mo, so, mx, s);
  k.place(merged);
  k.emit(`st.global.f32 [${sa}], ${mx}`, `st.global.f32 [${sa}+4], ${s}`);
  // target - v0 as u32: a target left of the slab wraps to a huge value, so one compare covers both sides
  const rel = k.reg('u32', 'rel'), inSlab = k.reg('pred', 'in');
  k.emit(`sub.u32 ${rel}, ${tgt}, ${v0}`, `setp.lt.u32 ${inSlab}, ${rel}, ${c}`, `@!${inSlab} bra ${done}`);
  k.emit(`ld.global.f32 ${x}, [${k.addr(row, rel, 4)}]`, `st.global.f32 [${k.addr(tlogit, t, 4)}], ${x}`);
  k.place(done);
  return { name, text: k.render() };
}

/**
 * Merges a running (max, Σ exp(x − max)) pair (mo, so) with a new one (mx, s) into (mx, s):
 * mx = max(mo, mx), s = so·e^(mo − mx) + s·e^(mx_new − mx). Returns the two factors (a for the old
 * pair, b for the new), for sums weighted by the same exponentials (train-kl.ts).
 */
export function mergeRunning(k: KernelBuilder, mo: string, so: string, mx: string, s: string): { a: string; b: string } {
  const mn = k.reg('f32', 'mn'), a = k.reg('f32', 'a'), b = k.reg('f32', 'b');
  k.emit(`max.f32 ${mn}, ${mo}, ${mx}`);
  k.emit(`sub.f32 ${a}, ${mo}, ${mn}`, `mul.f32 ${a}, ${a}, ${LOG2E}`, `ex2.approx.ftz.f32 ${a}, ${a}`);
  k.emit(`sub.f32 ${b}, ${mx}, ${mn}`, `mul.f32 ${b}, ${b}, ${LOG2E}`, `ex2.approx.ftz.f32 ${b}, ${b}`);
  k.emit(`mul.f32 ${s}, ${s}, ${b}`, `fma.rn.f32 ${s}, ${so}, ${a}, ${s}`, `mov.f32 ${mx}, ${mn}`);
  return { a, b };
}

/**
 * The loss from the folded state: per counted row lse = m + ln s and loss = lse − tlogit (written
 * over the state as (lse, loss)), and loss[0] = their mean (0 without counted rows), loss[1] = n.
 * Params loss, state, tlogit, targets, T. One CTA (ceFinalizeGrid) of LOSS_THREADS.
 */
export function ceFinalize(): Kernel {
  const name = 'ce_finalize';
  const k = new KernelBuilder(name, [...['loss', 'state', 'tlogit', 'targets'].map((n) => ({ name: n, type: 'u64' as const })), { name: 'T', type: 'u32' as const }]);
  k.blockSize(LOSS_THREADS);
  const loss = k.ptrParam('loss'), state = k.ptrParam('state'), tlogit = k.ptrParam('tlogit'), targets = k.ptrParam('targets');
  const T = k.u32Param('T');
  const tid = k.special('%tid.x', 'tid');
  const sum = k.reg('f32', 'sum'), n = k.reg('u32', 'n');
  k.emit(`mov.f32 ${sum}, 0f00000000`, `mov.u32 ${n}, 0`);
  const tgt = k.reg('s32', 'tgt'), skip = k.reg('pred', 'skip');
  const m = k.reg('f32', 'm'), s = k.reg('f32', 's'), xt = k.reg('f32', 'xt'), lse = k.reg('f32', 'lse'), l = k.reg('f32', 'l');
  stridedLoop(k, tid, T, LOSS_THREADS, (t) => {
    const next = k.label('next');
    k.emit(`ld.global.s32 ${tgt}, [${k.addr(targets, t, 4)}]`, `setp.lt.s32 ${skip}, ${tgt}, 0`, `@${skip} bra ${next}`);
    const sa = k.addr(state, t, 8);
    k.emit(`ld.global.f32 ${m}, [${sa}]`, `ld.global.f32 ${s}, [${sa}+4]`, `ld.global.f32 ${xt}, [${k.addr(tlogit, t, 4)}]`);
    // s ≥ 1 (the max's own term is 1), so lg2 is in its accurate range
    k.emit(`lg2.approx.f32 ${lse}, ${s}`, `fma.rn.f32 ${lse}, ${lse}, ${f32Imm(Math.LN2)}, ${m}`, `sub.f32 ${l}, ${lse}, ${xt}`);
    k.emit(`st.global.f32 [${sa}], ${lse}`, `st.global.f32 [${sa}+4], ${l}`, `add.f32 ${sum}, ${sum}, ${l}`, `add.u32 ${n}, ${n}, 1`);
    k.place(next);
  });
  storeMean(k, loss, sum, n, tid);
  return { name, text: k.render() };
}

/**
 * A finalize kernel's end: the per-thread partial `sum` (f32) and count `n` (u32) of counted rows
 * summed over the block, and thread 0 stores loss[0] = sum / n (0 when n = 0) and loss[1] = n.
 */
export function storeMean(k: KernelBuilder, loss: string, sum: string, n: string, tid: string): void {
  blockReduceTree(k, sum, tid, LOSS_THREADS, 'add');
  blockReduceTree(k, n, tid, LOSS_THREADS, 'add', 'u32');
  const p = k.reg('pred', 'p'), done = k.label('done');
  k.emit(`setp.ne.u32 ${p}, ${tid}, 0`, `@${p} bra ${done}`);
  const nf = k.reg('f32', 'nf'), mean = k.reg('f32', 'mean'), none = k.reg('pred', 'none');
  k.emit(`cvt.rn.f32.u32 ${nf}, ${n}`, `div.rn.f32 ${mean}, ${sum}, ${nf}`, `setp.eq.u32 ${none}, ${n}, 0`, `@${none} mov.f32 ${mean}, 0f00000000`);
  k.emit(`st.global.f32 [${loss}], ${mean}`, `st.global.u32 [${loss}+4], ${n}`);
  k.place(done);
}

/**
 * The gradient's common factor dloss / n of a counted row (dloss [1] f32, n = loss[1] as a finalize
 * kernel left it), in a fresh register; 0 on an uncounted row (where n may be 0: nothing is divided).
 */
export function meanScale(k: KernelBuilder, counted: string, loss: string, dloss: string): string {
  const scale = k.reg('f32', 'scale'), n = k.reg('u32', 'n'), nf = k.reg('f32', 'nf');
  k.emit(`mov.f32 ${scale}, 0f00000000`, `@${counted} ld.global.f32 ${scale}, [${dloss}]`, `@${counted} ld.global.u32 ${n}, [${loss}+4]`);
  k.emit(`@${counted} cvt.rn.f32.u32 ${nf}, ${n}`, `@${counted} div.rn.f32 ${scale}, ${scale}, ${nf}`);
  return scale;
}

/**
 * The gradient of the slab: dlogits[t, j] = (exp(logits[t, j] − lse_t) − [v0 + j = target_t]) ·
 * dloss / n on counted rows, 0 on the others and on the padding columns c .. pad8(c) − 1 (the
 * backward GEMMs read whole padded rows). Params dlogits, logits, state, loss, dloss, targets, v0,
 * c; after ceFinalize. `out` 'f32': dlogits may be the slab itself (each element is read, then
 * written, by one thread); 'bf16': a separate [T, pad8(c)] bf16 matrix, the backward GEMMs' input.
 */
export function ceGrad(out: 'f32' | 'bf16'): Kernel {
  const name = `ce_grad_${out}`;
  const k = new KernelBuilder(name, [...['dlogits', 'logits', 'state', 'loss', 'dloss', 'targets'].map((n) => ({ name: n, type: 'u64' as const })), { name: 'v0', type: 'u32' as const }, { name: 'c', type: 'u32' as const }]);
  k.blockSize(LOSS_THREADS);
  const dlogits = k.ptrParam('dlogits'), logits = k.ptrParam('logits'), state = k.ptrParam('state'), loss = k.ptrParam('loss'), dloss = k.ptrParam('dloss'), targets = k.ptrParam('targets');
  const v0 = k.u32Param('v0'), c = k.u32Param('c');
  const tid = k.special('%tid.x', 'tid');
  const { t, tgt, counted, ld } = rowStart(k, targets, c);
  // an uncounted row keeps lse = 0, scale = 0 and is zeroed by the select below (n may be 0 then)
  const lse = k.reg('f32', 'lse');
  k.emit(`mov.f32 ${lse}, 0f00000000`, `@${counted} ld.global.f32 ${lse}, [${k.addr(state, t, 8)}]`);
  const scale = meanScale(k, counted, loss, dloss);
  const rel = k.reg('u32', 'rel');
  k.emit(`sub.u32 ${rel}, ${tgt}, ${v0}`);
  const src = rowAddr(k, logits, t, ld, 4), dst = rowAddr(k, dlogits, t, ld, out === 'f32' ? 4 : 2);
  const x = k.reg('f32', 'x'), g = k.reg('f32', 'g'), live = k.reg('pred', 'live'), hit = k.reg('pred', 'hit');
  stridedLoop(k, tid, ld, LOSS_THREADS, (j) => {
    k.emit(`setp.lt.u32 ${live}, ${j}, ${c}`, `and.pred ${live}, ${live}, ${counted}`, `mov.f32 ${x}, 0f00000000`);
    k.emit(`@${live} ld.global.f32 ${x}, [${k.addr(src, j, 4)}]`);
    k.emit(`sub.f32 ${g}, ${x}, ${lse}`, `mul.f32 ${g}, ${g}, ${LOG2E}`, `ex2.approx.ftz.f32 ${g}, ${g}`);
    k.emit(`setp.eq.u32 ${hit}, ${j}, ${rel}`, `@${hit} sub.f32 ${g}, ${g}, 0f3F800000`, `mul.f32 ${g}, ${g}, ${scale}`, `selp.f32 ${g}, ${g}, 0f00000000, ${live}`);
    storeF32(k, out, k.addr(dst, j, out === 'f32' ? 4 : 2), g);
  });
  return { name, text: k.render() };
}

