// The distillation loss (`mocc recover`) and its gradient, chunked over the vocabulary like the
// cross-entropy of train-loss.ts, whose schedule, grids and pieces (rowStart, mergeRunning, storeMean,
// meanScale) these kernels share:
//
//   for each slab of the student's logits (v0 = 0, chunk, ...; the last c = V − v0):  klFold(slab)
//   klFinalize                                   → the mean loss, per-row (ls, lt) and loss
//   for each slab:  klGrad(slab)                 → dstudent of the slab
//
// Semantics are targets/ref/train-kernels.ts klDiv / klDivGrad (the oracle), with a = x/τ (τ > 0, the
// op's temperature, an f32 param) and ps, pt the softmaxes of the student's and the teacher's a:
// a row t with targets[t] < 0 counts nothing (no loss, a zero gradient row; targets serve only as
// the mask); n = the counted rows; loss = mean over them of τ²·KL(pt ‖ ps) (0 when n = 0);
// dstudent[t, v] = τ·(ps[v] − pt[v])·dloss / n on counted rows.
//
// One pass over a slab row gives both softmaxes' statistics. With lt, ls the log-sum-exps of a_t, a_s:
//   KL = Σ pt·(a_t − lt − a_s + ls) = W / St + (ls − lt),   W = Σ e^(a_t − mt)·(a_t − a_s),
// where (mt, St) is the teacher's (max, Σ e^(a_t − mt)) and Σ pt = 1. W scales with St when the
// teacher's running max moves, so the slabs merge as cross-entropy's do (mergeRunning's factors), and
// ls − lt = (ms − mt) + ln Ss − ln St keeps the large offsets (the maxes) out of the logarithms.
//
// Buffers (f32 unless said):
//   student [T, pad8(c)]: the slab (columns v0 .. v0 + c − 1 of the vocabulary), as the output GEMM
//           writes it; the executor's whole [T, V] logits are the one slab v0 = 0, c = V.
//   teacher [T, pad8(V)]: the whole teacher logits (a graph input in the executor's layout, values.ts);
//           a slab reads its columns v0 .. v0 + c − 1.
//   state   [T, 5]: after klFold of the slabs so far, (ms, Ss, mt, St, W) of each counted row over the
//           columns seen; klFinalize turns it, in place, into (ls, Ss, lt, St, τ²·KL) of the row.
//   loss    [2]: word 0 the mean loss (f32), word 1 n (u32), written by klFinalize.
//   targets [T] s32; dloss [1].
// Rows of uncounted targets are never read or written by klFold / klFinalize. The padding columns of
// the inputs are never read.
//
// Grids: klFold and klGrad one CTA a row (ceRowGrid(T)), klFinalize one CTA (ceFinalizeGrid); all
// LOSS_THREADS threads. Sums are per-thread strided partials combined by train-reduce.ts's
// shared-memory tree: SIMT (the PTX interpreter runs them), deterministic, no atomics. exp and log
// are ex2.approx / lg2.approx (relative error about 2^-22, PTX ISA), scaled by log2(e) and ln(2).
import { f32Imm, KernelBuilder } from './builder.js';
import type { Kernel } from './dense.js';
import { LOG2E, LOSS_THREADS, meanScale, mergeRunning, NEG_INF, rowAddr, rowStart, storeMean } from './train-loss.js';
import { blockReduceTree, stridedLoop } from './train-reduce.js';

/** f32 words of a row's state (ms, Ss, mt, St, W). */
export const KL_STATE_WORDS = 5;

const u64 = (name: string) => ({ name, type: 'u64' as const });
const u32 = (name: string) => ({ name, type: 'u32' as const });
const f32 = (name: string) => ({ name, type: 'f32' as const });

/** 1/τ from the f32 param `tau`. */
function invTau(k: KernelBuilder, tau: string): string {
  const inv = k.reg('f32', 'inv');
  k.emit(`rcp.rn.f32 ${inv}, ${tau}`);
  return inv;
}

/** Row t of the teacher at column v0: the matrix has rows of pad8(V). */
function teacherRow(k: KernelBuilder, teacher: string, t: string, V: string, v0: string): string {
  const ldV = k.reg('u32', 'ldv');
  k.emit(`add.u32 ${ldV}, ${V}, 7`, `and.b32 ${ldV}, ${ldV}, -8`);
  return k.addr(rowAddr(k, teacher, t, ldV, 4), v0, 4);
}

/** e^(x − m) with x, m already divided by τ. */
function expShifted(k: KernelBuilder, out: string, x: string, m: string): void {
  k.emit(`sub.f32 ${out}, ${x}, ${m}`, `mul.f32 ${out}, ${out}, ${LOG2E}`, `ex2.approx.ftz.f32 ${out}, ${out}`);
}

/**
 * Folds slab [T, c] of the student (columns v0 ..) and the same columns of the teacher into state.
 * Params state, student, teacher, targets, v0, c (≥ 1), V, tau. The slab with v0 = 0 starts the
 * state; every other slab merges into it, in any order after the first.
 */
export function klFold(): Kernel {
  const name = 'kl_fold';
  const k = new KernelBuilder(name, [...['state', 'student', 'teacher', 'targets'].map(u64), u32('v0'), u32('c'), u32('V'), f32('tau')]);
  k.blockSize(LOSS_THREADS);
  const state = k.ptrParam('state'), student = k.ptrParam('student'), teacher = k.ptrParam('teacher'), targets = k.ptrParam('targets');
  const v0 = k.u32Param('v0'), c = k.u32Param('c'), V = k.u32Param('V'), inv = invTau(k, k.f32Param('tau'));
  const tid = k.special('%tid.x', 'tid');
  const { t, counted, ld } = rowStart(k, targets, c);
  const done = k.label('done');
  k.emit(`@!${counted} bra ${done}`); // the same for every thread of the CTA: no barrier is left half-met
  const rowS = rowAddr(k, student, t, ld, 4), rowT = teacherRow(k, teacher, t, V, v0);
  const xs = k.reg('f32', 'xs'), xt = k.reg('f32', 'xt');
  /** xs, xt = column j of the student and the teacher, divided by τ. */
  const load = (j: string) => k.emit(`ld.global.f32 ${xs}, [${k.addr(rowS, j, 4)}]`, `ld.global.f32 ${xt}, [${k.addr(rowT, j, 4)}]`, `mul.f32 ${xs}, ${xs}, ${inv}`, `mul.f32 ${xt}, ${xt}, ${inv}`);

  k.comment('the slab row maxes of student and teacher (over x/tau): strided, then the trees');
  const ms = k.reg('f32', 'ms'), mt = k.reg('f32', 'mt');
  k.emit(`mov.f32 ${ms}, ${NEG_INF}`, `mov.f32 ${mt}, ${NEG_INF}`);
  stridedLoop(k, tid, c, LOSS_THREADS, (j) => (load(j), k.emit(`max.f32 ${ms}, ${ms}, ${xs}`, `max.f32 ${mt}, ${mt}, ${xt}`)));
  blockReduceTree(k, ms, tid, LOSS_THREADS, 'max');
  blockReduceTree(k, mt, tid, LOSS_THREADS, 'max');

  k.comment('Ss, St: sums of exp(x - max); W: sum of exp(xt - mt) (xt - xs)');
  const ss = k.reg('f32', 'ss'), st = k.reg('f32', 'st'), w = k.reg('f32', 'w'), es = k.reg('f32', 'es'), et = k.reg('f32', 'et'), d = k.reg('f32', 'd');
  k.emit(`mov.f32 ${ss}, 0f00000000`, `mov.f32 ${st}, 0f00000000`, `mov.f32 ${w}, 0f00000000`);
  stridedLoop(k, tid, c, LOSS_THREADS, (j) => {
    load(j);
    expShifted(k, es, xs, ms);
    expShifted(k, et, xt, mt);
    k.emit(`add.f32 ${ss}, ${ss}, ${es}`, `add.f32 ${st}, ${st}, ${et}`, `sub.f32 ${d}, ${xt}, ${xs}`, `fma.rn.f32 ${w}, ${et}, ${d}, ${w}`);
  });
  for (const v of [ss, st, w]) blockReduceTree(k, v, tid, LOSS_THREADS, 'add');

  k.comment('thread 0: merge into the running state (W scales as St does)');
  const p = k.reg('pred', 'p');
  k.emit(`setp.ne.u32 ${p}, ${tid}, 0`, `@${p} bra ${done}`);
  const sa = k.addr(state, t, 4 * KL_STATE_WORDS);
  const first = k.reg('pred', 'first'), merged = k.label('merged');
  k.emit(`setp.eq.u32 ${first}, ${v0}, 0`, `@${first} bra ${merged}`);
  const mso = k.reg('f32', 'mso'), sso = k.reg('f32', 'sso'), mto = k.reg('f32', 'mto'), sto = k.reg('f32', 'sto'), wo = k.reg('f32', 'wo');
  k.emit(`ld.global.f32 ${mso}, [${sa}]`, `ld.global.f32 ${sso}, [${sa}+4]`, `ld.global.f32 ${mto}, [${sa}+8]`, `ld.global.f32 ${sto}, [${sa}+12]`, `ld.global.f32 ${wo}, [${sa}+16]`);
  mergeRunning(k, mso, sso, ms, ss);
  const { a, b } = mergeRunning(k, mto, sto, mt, st);
  k.emit(`mul.f32 ${w}, ${w}, ${b}`, `fma.rn.f32 ${w}, ${wo}, ${a}, ${w}`);
  k.place(merged);
  k.emit(`st.global.f32 [${sa}], ${ms}`, `st.global.f32 [${sa}+4], ${ss}`, `st.global.f32 [${sa}+8], ${mt}`, `st.global.f32 [${sa}+12], ${st}`, `st.global.f32 [${sa}+16], ${w}`);
  k.place(done);
  return { name, text: k.render() };
}

/**
 * The loss from the folded state: per counted row ls = ms + ln Ss, lt = mt + ln St and its loss
 * τ²·(W/St + (ms − mt) + ln Ss − ln St) (written over the state as (ls, Ss, lt, St, loss)), and
 * loss[0] = their mean (0 without counted rows), loss[1] = n. Params loss, state, targets, T, tau.
 */
export function klFinalize(): Kernel {
  const name = 'kl_finalize';
  const k = new KernelBuilder(name, [...['loss', 'state', 'targets'].map(u64), u32('T'), f32('tau')]);
  k.blockSize(LOSS_THREADS);
  const loss = k.ptrParam('loss'), state = k.ptrParam('state'), targets = k.ptrParam('targets');
  const T = k.u32Param('T'), tau = k.f32Param('tau');
  const tid = k.special('%tid.x', 'tid');
  const tau2 = k.reg('f32', 'tau2');
  k.emit(`mul.f32 ${tau2}, ${tau}, ${tau}`);
  const sum = k.reg('f32', 'sum'), n = k.reg('u32', 'n');
  k.emit(`mov.f32 ${sum}, 0f00000000`, `mov.u32 ${n}, 0`);
  const tgt = k.reg('s32', 'tgt'), skip = k.reg('pred', 'skip');
  const [ms, ss, mt, st, w] = ['ms', 'ss', 'mt', 'st', 'w'].map((h) => k.reg('f32', h)) as [string, string, string, string, string];
  const lgs = k.reg('f32', 'lgs'), lgt = k.reg('f32', 'lgt'), ls = k.reg('f32', 'ls'), lt = k.reg('f32', 'lt'), kl = k.reg('f32', 'kl'), dm = k.reg('f32', 'dm');
  const LN2 = f32Imm(Math.LN2);
  stridedLoop(k, tid, T, LOSS_THREADS, (t) => {
    const next = k.label('next');
    k.emit(`ld.global.s32 ${tgt}, [${k.addr(targets, t, 4)}]`, `setp.lt.s32 ${skip}, ${tgt}, 0`, `@${skip} bra ${next}`);
    const sa = k.addr(state, t, 4 * KL_STATE_WORDS);
    k.emit(`ld.global.f32 ${ms}, [${sa}]`, `ld.global.f32 ${ss}, [${sa}+4]`, `ld.global.f32 ${mt}, [${sa}+8]`, `ld.global.f32 ${st}, [${sa}+12]`, `ld.global.f32 ${w}, [${sa}+16]`);
    // Ss, St ≥ 1 (each max's own term is 1), so lg2 is in its accurate range
    k.emit(`lg2.approx.f32 ${lgs}, ${ss}`, `lg2.approx.f32 ${lgt}, ${st}`, `fma.rn.f32 ${ls}, ${lgs}, ${LN2}, ${ms}`, `fma.rn.f32 ${lt}, ${lgt}, ${LN2}, ${mt}`);
    k.emit(`div.rn.f32 ${kl}, ${w}, ${st}`, `sub.f32 ${dm}, ${ms}, ${mt}`, `add.f32 ${kl}, ${kl}, ${dm}`);
    k.emit(`sub.f32 ${dm}, ${lgs}, ${lgt}`, `fma.rn.f32 ${kl}, ${dm}, ${LN2}, ${kl}`, `mul.f32 ${kl}, ${kl}, ${tau2}`);
    k.emit(`st.global.f32 [${sa}], ${ls}`, `st.global.f32 [${sa}+8], ${lt}`, `st.global.f32 [${sa}+16], ${kl}`, `add.f32 ${sum}, ${sum}, ${kl}`, `add.u32 ${n}, ${n}, 1`);
    k.place(next);
  });
  storeMean(k, loss, sum, n, tid);
  return { name, text: k.render() };
}

/**
 * The gradient of the slab: dstudent[t, j] = τ·(e^(a_s − ls) − e^(a_t − lt))·dloss / n on counted rows
 * (a = logit/τ at column v0 + j), 0 on the others and on the padding columns c .. pad8(c) − 1 (the
 * backward GEMMs read whole padded rows). Params dstudent, student, teacher, state, loss, dloss,
 * targets, v0, c, V, tau; after klFinalize. dstudent may be the student slab itself (each element is
 * read, then written, by one thread).
 */
export function klGrad(): Kernel {
  const name = 'kl_grad';
  const k = new KernelBuilder(name, [...['dstudent', 'student', 'teacher', 'state', 'loss', 'dloss', 'targets'].map(u64), u32('v0'), u32('c'), u32('V'), f32('tau')]);
  k.blockSize(LOSS_THREADS);
  const dstudent = k.ptrParam('dstudent'), student = k.ptrParam('student'), teacher = k.ptrParam('teacher'), state = k.ptrParam('state');
  const loss = k.ptrParam('loss'), dloss = k.ptrParam('dloss'), targets = k.ptrParam('targets');
  const v0 = k.u32Param('v0'), c = k.u32Param('c'), V = k.u32Param('V'), tau = k.f32Param('tau'), inv = invTau(k, tau);
  const tid = k.special('%tid.x', 'tid');
  const { t, counted, ld } = rowStart(k, targets, c);
  // an uncounted row keeps ls = lt = 0, scale = 0 and is zeroed by the select below (n may be 0 then)
  const ls = k.reg('f32', 'ls'), lt = k.reg('f32', 'lt'), sa = k.addr(state, t, 4 * KL_STATE_WORDS);
  k.emit(`mov.f32 ${ls}, 0f00000000`, `mov.f32 ${lt}, 0f00000000`, `@${counted} ld.global.f32 ${ls}, [${sa}]`, `@${counted} ld.global.f32 ${lt}, [${sa}+8]`);
  const scale = meanScale(k, counted, loss, dloss);
  k.emit(`mul.f32 ${scale}, ${scale}, ${tau}`);
  const rowS = rowAddr(k, student, t, ld, 4), rowT = teacherRow(k, teacher, t, V, v0), dst = rowAddr(k, dstudent, t, ld, 4);
  const xs = k.reg('f32', 'xs'), xt = k.reg('f32', 'xt'), g = k.reg('f32', 'g'), live = k.reg('pred', 'live');
  stridedLoop(k, tid, ld, LOSS_THREADS, (j) => {
    k.emit(`setp.lt.u32 ${live}, ${j}, ${c}`, `and.pred ${live}, ${live}, ${counted}`, `mov.f32 ${xs}, 0f00000000`, `mov.f32 ${xt}, 0f00000000`);
    k.emit(`@${live} ld.global.f32 ${xs}, [${k.addr(rowS, j, 4)}]`, `@${live} ld.global.f32 ${xt}, [${k.addr(rowT, j, 4)}]`, `mul.f32 ${xs}, ${xs}, ${inv}`, `mul.f32 ${xt}, ${xt}, ${inv}`);
    expShifted(k, xs, xs, ls);
    expShifted(k, xt, xt, lt);
    k.emit(`sub.f32 ${g}, ${xs}, ${xt}`, `mul.f32 ${g}, ${g}, ${scale}`, `selp.f32 ${g}, ${g}, 0f00000000, ${live}`);
    k.emit(`st.global.f32 [${k.addr(dst, j, 4)}], ${g}`);
  });
  return { name, text: k.render() };
}
