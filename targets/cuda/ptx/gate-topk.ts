// MoC decode: the gate GEMV G = x·W_gateᵀ whose last block of each token row runs Top-K over that
// row's G (LowerOptions.mocTopk 'gate', MOCC_CUDA_MOC_TOPK=1), so moc_topk's launch goes away: one
// launch a MoC layer fewer. moc_topk is one block of pure latency (ncu, session 13: 7.6 µs, DRAM
// 0.1%); here that block's work runs in a block that is already resident and already waited, and G
// is read from the L2 right after the GEMV wrote it.
//
// Layout and grid: the GEMV is dense.ts's gemv (emitGemv: its spec, parameters, row layout and
// grid gemvGrid(spec, T) of 256-thread blocks, unchanged), with the store epilogue; G keeps its
// buffer (the up·down kernel reads G at the kept channels). Params: y (G), x, w, [nw], then idx
// [T, pad8(K)] (u32), [tau], counters (gateTopkCounters(T) u32, one a row).
//
// Top-K: moc.ts's emitTopkSelect, topkSelect's own body, on the GEMV's 256 threads with
// selectShapeFor(F, 256) channels a thread (24 at F = 5461, where moc_topk has 704 threads of 8).
// The selection is fixed by τ (the K-th largest key, found exactly by the radix passes) and krem
// (how many keys equal to τ to take, lowest channels first), and each kept channel is stored at the
// count of kept channels below it: so the idx row (ascending) and τ are the same bits whatever the
// block's shape. A thread holds its keys in registers, and the kernel's register count is the
// larger of the GEMV's and the Top-K's, paid by every block: ptxas -v, sm_90, bf16 2048-wide rows:
// the gate GEMV alone 40 registers (6 blocks an SM), fused at F = 5461 (24 keys a thread) 75 (3
// blocks an SM: the 1B preset's 342 blocks still all resident on an H100's 132 SMs), at F = 8192
// (32 keys) 100, at 14336 (56) 128. So the fusion is used while selectShapeFor(F, 256).perThread ≤
// GATE_TOPK_MAX_PER_THREAD (24: F ≤ 6144, the 1B preset and smaller; not timed past it);
// past that the lowering keeps moc_topk (no local memory either way).
//
// Who runs Top-K, and why it sees every block's G (PTX memory model, as attentionSplit's merge in
// decode-attention.ts): after its G stores (lane 0 of each warp), a block syncs (bar.sync: every
// thread's stores precede thread 0's next operation in causality order), then thread 0 does
// atom.acq_rel.gpu.global.inc on counters[t] with bound blocks − 1. It returns the old count and
// stores old + 1, or 0 when old = blocks − 1: the block that reads blocks − 1 is the row's last
// to arrive, and the counter is back at 0 for the next launch (the next MoC layer, the next call,
// a graph replay) with no separate reset. Each arriving block's RMW is a release at gpu scope after
// its stores; the last block's RMW reads the value the chain of the others' RMWs wrote and is an
// acquire at gpu scope; bar.red.or.pred then orders it before every thread of that block reads G
// (ld.global.cg, around L1 anyway). Rows are independent (T > 1 when a prompt runs through the
// decode steps: one counter a row). Nothing waits on anyone: the last block needs no other block
// to make progress, so no ticket or spinning is needed (unlike moc.ts mocUpDown's tail).
//
// Counters: only this kernel touches the 'topk' region, and it touches it only after its
// griddepcontrol.wait (in emitGemv, after the weight prefetch). That wait returns once the
// previous kernel is complete, which itself passed its own wait only after its predecessor
// completed, and so on: so the previous launch of this kernel (an earlier layer or step) is
// complete, every counter back at 0, before any block of this launch counts.
//
// Programmatic dependent launch: each block runs griddepcontrol.launch_dependents right after its
// wait (emitGemv), so the next kernel (the fused up·down) may start while the GEMV and the Top-K
// block still run; it only warms the L2 (weights, and a τ hint) before its own griddepcontrol.wait,
// which returns when this whole grid — the Top-K block included — has completed and its writes are
// visible. So the up·down kernel cannot read idx before the Top-K block has written it. The τ hint
// (tau) it may read before its wait is racy by design, as with moc_topk (any value gives the same
// output: moc.ts UpDownSpec.warm).
import { KernelBuilder } from './builder.js';
import { emitGemv, gemvName, type GemvSpec, type Kernel } from './dense.js';
import { checkTopk, emitTopkSelect, selectShapeFor } from './moc.js';

/** The GEMV's block size (dense.ts gemv); Top-K runs on all of it. */
export const GATE_TOPK_THREADS = 256;
/** The most G values a thread holds for Top-K (F ≤ 6144 at 256 threads; see the header); past it, moc_topk stays. */
export const GATE_TOPK_MAX_PER_THREAD = 24;

/** Whether Top-K over F channels can run in the gate GEMV's last block (see the header). */
export const gateTopkFits = (f: number): boolean => selectShapeFor(f, GATE_TOPK_THREADS).perThread <= GATE_TOPK_MAX_PER_THREAD;
/** The u32 counters gemvTopk needs for up to `rows` token rows: one arrival count a row. */
export const gateTopkCounters = (rows: number): number => rows;

/**
 * G[t, :] = x[t]·W_gateᵀ (spec: a plain store GEMV, outDim = F), then idx[t, 0..K) = Top-K of G[t, :]
 * as moc_topk writes it (and τ with `tau`), by the row's last block (see the header).
 * Grid gemvGrid(spec, T), block 256.
 */
export function gemvTopk(spec: GemvSpec, kKeep: number, opts: { tau?: boolean } = {}): Kernel {
  if (spec.epilogue !== 'store' || spec.gather || spec.rope || spec.toCache) throw new Error(`PTX generator bug: gemvTopk needs a plain store GEMV`);
  const f = spec.outDim;
  checkTopk(f, kKeep);
  if (!gateTopkFits(f)) throw new Error(`PTX generator bug: Top-K over ${f} channels does not fit the gate GEMV's block (gateTopkFits)`);
  const name = `${gemvName(spec)}_topk_k${kKeep}${opts.tau ? '_tau' : ''}`;
  const params = ['y', 'x', 'w', ...(spec.norm ? ['nw'] : []), 'idx', ...(opts.tau ? ['tau'] : []), 'counters'].map((n) => ({ name: n, type: 'u64' as const }));
  const k = new KernelBuilder(name, params);
  k.blockSize(GATE_TOPK_THREADS);
  const y = k.ptrParam('y'), x = k.ptrParam('x'), w = k.ptrParam('w');
  const nw = spec.norm ? k.ptrParam('nw') : undefined;
  const idx = k.ptrParam('idx'), counters = k.ptrParam('counters');
  const tid = k.special('%tid.x', 'tid'), bx = k.special('%ctaid.x', 'bx'), t = k.special('%ctaid.y', 't');
  emitGemv(k, spec, { y, x, w, idx: '', g: '', nw }, bx, tid, t);

  k.comment('arrival: the last block of row t to store its part of G runs Top-K (see the header)');
  const blocks = k.reg('u32', 'blocks'), bound = k.reg('u32', 'bound'), old = k.reg('u32', 'old');
  const t0 = k.reg('pred', 't0'), mine = k.reg('pred', 'mine'), last = k.reg('pred', 'last'), done = k.label('topkdone');
  k.emit(`mov.u32 ${blocks}, %nctaid.x`, `sub.u32 ${bound}, ${blocks}, 1`, `setp.eq.u32 ${t0}, ${tid}, 0`);
  const ca = k.addr(counters, t, 4);
  k.emit('bar.sync 0');
  // old = 0xffffffff in the other threads: never blocks − 1
  k.emit(`mov.u32 ${old}, 0xFFFFFFFF`, `@${t0} atom.acq_rel.gpu.global.inc.u32 ${old}, [${ca}], ${bound}`);
  k.emit(`setp.eq.u32 ${mine}, ${old}, ${bound}`, `bar.red.or.pred ${last}, 0, ${mine}`, `@!${last} bra ${done}`);
  emitTopkSelect(k, { f, kKeep, shape: selectShapeFor(f, GATE_TOPK_THREADS), tid, t, idx, g: y, tau: opts.tau ? () => k.ptrParam('tau') : undefined, load: 'ld.global.cg', gridSync: false });
  k.place(done);
  return { name, text: k.render() };
}
