// The bf16-output variants of the training kernels whose ops may write bf16 (src/ir/ops.ts
// BF16_OUTPUT_OPS, passes/bf16-producers.ts): rmsnorm (train-forward.ts rmsnormRows), rope_grad
// (train-elementwise.ts ropeGrad), moc_scatter (train-scatter.ts mocScatter), cross_entropy_grad
// (train-loss.ts ceGrad). The oracle is what they replace: the f32 kernel, then castRows (cast.ts,
// the `cast` node's kernel) of its output, its padding as the arena holds it before any write here
// (zeros) — bit for bit, padding included (a bf16 GEMM operand's padding is multiplied into the
// sum by gemm.ts). The bf16 outputs start as bf16 NaNs (every half word), so an element or padding
// column never written fails. Widths with padding (pad8(w) > w) and without; values that round
// to nearest even on a tie, NaN, ±0, ±Inf and subnormals where the kernel moves its input (moc_scatter).
// Each case runs interpreted and, with a GPU, on the GPU; every kernel assembles for sm_80 / sm_90.
import test from 'ava';
import { castGrid, castRows, CAST_THREADS } from '../../targets/cuda/ptx/cast.js';
import { ROPE_THREADS } from '../../targets/cuda/ptx/attention.js';
import { pad8 } from '../../targets/cuda/ptx/layout.js';
import { rmsnormRows, rmsnormRowsThreads } from '../../targets/cuda/ptx/train-forward.js';
import { ropeGrad, ropeGradGrid } from '../../targets/cuda/ptx/train-elementwise.js';
import { mocScatter, mocScatterGrid, SCATTER_THREADS } from '../../targets/cuda/ptx/train-scatter.js';
import { ceFinalize, ceFinalizeGrid, ceFold, ceGrad, ceRowGrid, LOSS_THREADS } from '../../targets/cuda/ptx/train-loss.js';
import { ropeTableImage } from '../../targets/lowering/rope-table.js';
import { randomF32, rng } from '../helpers/cuda.js';
import { findPtxas, ptxasRequirement, testsNeeding } from '../helpers/requires.js';
import { assemblePtx, NO_LOCAL_MEMORY } from '../helpers/ptxas.js';
import { padRows, randomDistinctIdx, runOn, simAndGpu, type BufInit, type TrainLaunch, type Where } from '../helpers/train-kernels.js';

const ptxasTest = testsNeeding(ptxasRequirement(findPtxas()));

ptxasTest('bf16-output training kernels assemble for sm_80 and sm_90, no local memory', (t) => {
  const kernels = [rmsnormRows(2048, 1e-5, 'bf16'), rmsnormRows(20, 1e-5, 'bf16'), ropeGrad(32, 64, 'half', 'bf16'), ropeGrad(3, 6, 'interleaved', 'bf16'), mocScatter(1024, 5464, 'bf16'), ceGrad('bf16')];
  for (const arch of ['sm_80', 'sm_90'] as const) {
    const r = assemblePtx(kernels.map((k) => k.text), arch);
    t.is(r.status, 0, `${arch}: ${r.stderr}`);
    for (const k of kernels) t.regex(r.stderr, new RegExp(`Compiling entry function '${k.name}'[^]*?${NO_LOCAL_MEMORY.source}`), `${arch} ${k.name}: ${r.stderr}`);
  }
});

test('the bf16 variants are named apart from the f32 kernels (a device loads a kernel once per name)', (t) => {
  t.is(rmsnormRows(20, 1e-5, 'bf16').name, `${rmsnormRows(20, 1e-5).name}_bf16`);
  t.is(ropeGrad(3, 6, 'half', 'bf16').name, `${ropeGrad(3, 6, 'half').name}_bf16`);
  t.is(mocScatter(5, 37, 'bf16').name, `${mocScatter(5, 37).name}_bf16`);
  t.not(ceGrad('bf16').name, ceGrad('f32').name);
});

/**
 * Runs `f32` (writing buffer 'y32', zeros at first) then castRows of y32 into 'ref', and separately
 * `bf16` (writing 'y16', bf16 NaNs at first), on the same inputs; y16 and ref as bf16 bits.
 */
function both(where: Where, rows: number, width: number, inputs: Record<string, BufInit>, f32: TrainLaunch[], bf16: TrainLaunch[]): { got: Uint16Array; want: Uint16Array } {
  const n = rows * pad8(width);
  const cast: TrainLaunch = { kernel: castRows('bf16', width), grid: [castGrid(width), rows, 1], block: CAST_THREADS, args: ['ref', 'y32'] };
  const a = runOn(where, { ...inputs, y32: { data: new Float32Array(n) }, ref: { data: new Uint16Array(n).fill(0x7fc0) } }, [...f32, cast]);
  const b = runOn(where, { ...inputs, y16: { data: new Uint16Array(n).fill(0x7fc0) } }, bf16);
  const u16 = (x: Uint8Array) => new Uint16Array(x.buffer, x.byteOffset, x.byteLength / 2);
  return { got: u16(b.y16!), want: u16(a.ref!) };
}

/** '' when the bf16 bits agree everywhere (padding included), else the first difference and the count. */
function differences(got: Uint16Array, want: Uint16Array, width: number): string {
  let n = 0, first = '';
  for (let i = 0; i < want.length; i++) {
    if (got[i] === want[i]) continue;
    if (!n) first = `row ${Math.floor(i / pad8(width))} column ${i % pad8(width)}${i % pad8(width) >= width ? ' (padding)' : ''}: got 0x${got[i]!.toString(16)}, want 0x${want[i]!.toString(16)}`;
    n++;
  }
  return n ? `${n} of ${want.length} differ; first ${first}` : '';
}

/** f32 values whose bf16 rounding is the hard part: ties both ways, just off a tie, NaN, ±0, ±Inf, subnormals, the largest finite. */
const SPECIAL = new Float32Array(new Uint32Array([0x3f808000, 0x3f818000, 0xbf808000, 0x3f808001, 0x3f807fff, 0x7fc00000, 0x7f800000, 0xff800000, 0x00000000, 0x80000000, 0x00008000, 0x00018000, 0x7f7fffff, 0x7f7f8000]).buffer);

// [T, d]: padding (d = 20); none; two columns a thread (d > 2·32·… : nt = 576 for 1100)
for (const [T, d] of [[3, 20], [2, 64], [2, 1100]] as const) {
  simAndGpu(`rmsnorm T=${T} d=${d}: bf16 rows = the f32 kernel's rows cast, bit for bit`, (where) => (t) => {
    const r = rng(T * 13 + d);
    const x = padRows(randomF32(T * d, r, 3), T, d), w = Float32Array.from({ length: d }, () => 1 + 0.3 * r());
    const launch = (out: 'f32' | 'bf16'): TrainLaunch => ({ kernel: rmsnormRows(d, 1e-5, out), grid: [1, T, 1], block: rmsnormRowsThreads(d), args: [out === 'f32' ? 'y32' : 'y16', 'x', 'w'] });
    const { got, want } = both(where, T, d, { x: { data: x }, w: { data: w } }, [launch('f32')], [launch('bf16')]);
    t.is(differences(got, want, d), '');
  });
}

// [T, heads, hd, style]: padding (18, 20 wide); none (32)
for (const [T, heads, hd, style] of [[3, 3, 6, 'half'], [2, 4, 8, 'interleaved'], [4, 2, 10, 'half']] as const) {
  simAndGpu(`rope_grad ${style} T=${T} heads=${heads} hd=${hd}: bf16 rows = the f32 kernel's rows cast, bit for bit`, (where) => (t) => {
    const r = rng(T * 31 + heads * 7 + hd), w = heads * hd, maxPos = 50;
    const dy = randomF32(T * w, r, 2);
    dy.set(SPECIAL.subarray(0, Math.min(SPECIAL.length, dy.length)).filter((v) => Number.isFinite(v)));
    const pos = Int32Array.from({ length: T }, () => Math.floor(((r() + 1) / 2) * maxPos));
    const table = ropeTableImage({ name: 'rope', kind: 'rope', headDim: hd, theta: 10000 }, maxPos);
    const launch = (out: 'f32' | 'bf16'): TrainLaunch => ({ kernel: ropeGrad(heads, hd, style, out), grid: ropeGradGrid(heads, hd, style, T), block: ROPE_THREADS, args: [out === 'f32' ? 'y32' : 'y16', 'dy', 'table', 'pos'] });
    const { got, want } = both(where, T, w, { dy: { data: padRows(dy, T, w) }, table: { data: table }, pos: { data: pos } }, [launch('f32')], [launch('bf16')]);
    t.is(differences(got, want, w), '');
  });
}

// [T, K, F]: padding (37); none (64); K past a round of 4-channel loads, with a tail (the f32 and bf16 kernels
// both stage the row in shared memory); bf16 rows past 48 KiB (the direct kernel, f32 too). dy holds every
// special value: the scatter moves values, so the rounding alone is tested.
for (const [T, K, F] of [[3, 5, 37], [2, 8, 64], [2, 1027, 1102], [1, 6, 24580]] as const) {
  simAndGpu(`moc_scatter T=${T} K=${K} F=${F}: bf16 rows = the f32 kernel's rows cast, bit for bit`, (where) => (t) => {
    const r = rng(T * 5 + K + F);
    const dy = randomF32(T * K, r);
    dy.set(SPECIAL.subarray(0, Math.min(SPECIAL.length, dy.length)));
    const idx = randomDistinctIdx(T, K, F, r);
    const launch = (out: 'f32' | 'bf16'): TrainLaunch => ({ kernel: mocScatter(K, F, out), grid: mocScatterGrid(T), block: SCATTER_THREADS, args: [out === 'f32' ? 'y32' : 'y16', 'dy', 'idx'] });
    const { got, want } = both(where, T, F, { dy: { data: padRows(dy, T, K) }, idx: { data: padRowsI32(idx, T, K) } }, [launch('f32')], [launch('bf16')]);
    t.is(differences(got, want, F), '');
  });
}

// [T, V]: padding (37) with an uncounted row; none (40). The loss kernels first (the gradient reads their state), as the executor runs them.
for (const [T, V] of [[5, 37], [3, 40]] as const) {
  simAndGpu(`cross_entropy_grad T=${T} V=${V}: bf16 rows = the f32 kernel's rows cast, bit for bit`, (where) => (t) => {
    const r = rng(T * 3 + V);
    const logits = randomF32(T * V, r, 4);
    const targets = Int32Array.from({ length: T }, (_, i) => (i === 1 ? -1 : Math.floor(((r() + 1) / 2) * V) % V));
    const inputs: Record<string, BufInit> = {
      logits: { data: padRows(logits, T, V) }, targets: { data: targets }, dloss: { data: Float32Array.of(0.75) },
      state: { data: new Float32Array(T * 2) }, tlogit: { data: new Float32Array(T) }, loss: { data: new Float32Array(2) },
    };
    const loss: TrainLaunch[] = [
      { kernel: ceFold(), grid: ceRowGrid(T), block: LOSS_THREADS, args: ['state', 'tlogit', 'logits', 'targets', 0, V] },
      { kernel: ceFinalize(), grid: ceFinalizeGrid, block: LOSS_THREADS, args: ['loss', 'state', 'tlogit', 'targets', T] },
    ];
    const grad = (out: 'f32' | 'bf16'): TrainLaunch => ({ kernel: ceGrad(out), grid: ceRowGrid(T), block: LOSS_THREADS, args: [out === 'f32' ? 'y32' : 'y16', 'logits', 'state', 'loss', 'dloss', 'targets', 0, V] });
    const { got, want } = both(where, T, V, inputs, [...loss, grad('f32')], [...loss, grad('bf16')]);
    t.is(differences(got, want, V), '');
  });
}

function padRowsI32(x: Int32Array, rows: number, cols: number): Int32Array {
  const out = new Int32Array(rows * pad8(cols));
  for (let r = 0; r < rows; r++) out.set(x.subarray(r * cols, (r + 1) * cols), r * pad8(cols));
  return out;
}
