// Tensor-core flash attention in the CUDA training executor under the bf16 matmul mode
// (targets/cuda/train/ops-attention-bf16.ts over flash-attention.ts's packed-sequence forward,
// spec.seq, and flash-attention-backward.ts).
//
// Without a GPU (mma.sync and ldmatrix do not run on the PTX interpreter, so there is NO numeric CPU
// test of the tensor-core path here; the GPU tests below are the numeric check):
// - the prefill kernels' PTX (seq off) is byte-for-byte what it was before spec.seq existed (hash);
// - the packed forward assembles for sm_80 and sm_90 with no local memory, for the models' head dims
//   (stories260K hd 8 with GQA 8:4, the 1B preset's hd 64 with 32:32) and the other tilings;
// - trainOpOf: the flash entries under 'bf16' for an hd the kernels take, ops.ts's f32 SIMT entry for
//   another (TINY's hd 6: its whole launch list keeps train-attention.ts's kernels) and under 'f32';
// - the launch list of the stories260K training graph under 'bf16': every attention / attention_grad
//   node launches the casts and flash kernels worked out here from the graph's shapes and the layout in
//   ops-attention-bf16.ts's header (kernels, grids, blocks, pointers, scratch offsets, T), and each
//   entry's scratchBytes is exactly the bytes of that layout.
// On a GPU (skipped without one):
// - the packed forward kernel alone against a float64 reference of the same bf16-rounded inputs
//   (o and lse), T = 1, 7, 65, 200, sequences [1,5], [17,47,1], [64,3] or one, GQA 8:4 and 4:4, hd 8
//   and 64, NaN-poisoned outputs with an extra row that must stay NaN;
// - the attention_grad entry alone (casts, forward recompute, pre, dkdv, dq) against ref attentionGrad
//   of the bf16-rounded q, k, v, dy, the same sizes, garbage in the inputs' padding, scratch poisoned;
// - stories260K dense end to end under 'bf16' against the ref executor and the bf16 oracle
//   (test/helpers/train-bf16-oracle.ts, which rounds the attention operands too), longer T.
import test from 'ava';
import { createHash } from 'node:crypto';
import { trainingGraph } from '../../driver/training-graph.js';
import type { CheckpointPolicy } from '../../passes/checkpoint.js';
import { checkpointGraph } from '../../driver/load.js';
import type { Graph, Node } from '../../src/ir/types.js';
import { MODEL_INPUTS } from '../../src/model/graph-inputs.js';
import { runTrainingGraph } from '../../targets/ref/train.js';
import { attentionGrad } from '../../targets/ref/train-kernels.js';
import { FA_THREADS, flashAttention, flashAttentionGrid, type FlashAttentionSpec } from '../../targets/cuda/ptx/flash-attention.js';
import { CudaTrainingExecutor } from '../../targets/cuda/train/executor.js';
import { cudaTrainDevice } from '../../targets/cuda/train/cuda-device.js';
import type { DevPtr, LaunchArg } from '../../targets/cuda/train/device.js';
import { trainOpOf, TRAIN_OPS, type Launch, type OpContext } from '../../targets/cuda/train/ops.js';
import { BF16_ATTENTION_OPS } from '../../targets/cuda/train/ops-attention-bf16.js';
import { padRows } from '../../targets/cuda/train/values.js';
import { pad8 } from '../../targets/cuda/ptx/layout.js';
import { storiesTraining } from '../helpers/stories-training.js';
import { batch, POISON, randomWeights, TINY } from '../helpers/train-tiny-model.js';
import { relErrors, roundBf16, runTrainingGraphBf16Matmuls } from '../helpers/train-bf16-oracle.js';
import { recordingDevice } from '../helpers/recording-device.js';
import { magnitudes, packedReference, seqOf } from '../helpers/attention-check.js';
import { download, freeAll, launch, padF32, poisoned, randomF32, rng, upload, weight } from '../helpers/cuda.js';
import { cudaDeviceRequirement, findPtxas, ptxasRequirement, testsNeeding } from '../helpers/requires.js';
import { assertEachAssembles } from '../helpers/ptxas.js';

// ---- the prefill kernels unchanged ----
test('flash attention: the prefill kernels (seq off) are byte-for-byte those before spec.seq (hash of 73 specs)', (t) => {
  const specs: FlashAttentionSpec[] = [];
  for (const [heads, kvHeads, hd] of [[8, 4, 8], [4, 4, 64], [32, 32, 64], [6, 2, 128], [4, 2, 40], [4, 2, 96]] as const) {
    for (const cache of ['f32', 'bf16', 'f16'] as const) for (const out of ['f32', 'bf16'] as const) for (const lse of [false, true]) specs.push({ heads, kvHeads, hd, cache, out, lse });
  }
  specs.push({ heads: 8, kvHeads: 4, hd: 64, cache: 'f32', operands: 'f16', out: 'f32', lse: true });
  const h = createHash('sha256');
  for (const s of specs) h.update(flashAttention(s).text);
  // computed at 88d0778 (main before this change), the same loop
  t.is(h.digest('hex'), '1ad5dbc2f849e5513741c04128e860fb207f7d9b4b83dac2e29a18b681e6f7de');
  t.is(flashAttention({ ...specs[0]!, seq: false }).text, flashAttention(specs[0]!).text);
});

// ---- ptxas ----
/** (heads, kvHeads, hd): stories260K, the 1B preset, GQA hd 64, hd 128 (GQA 3), padded hd 40, hd 96 (32-key tiles). */
const SEQ_SHAPES: [number, number, number][] = [[8, 4, 8], [32, 32, 64], [8, 4, 64], [6, 2, 128], [4, 2, 40], [4, 2, 96]];
const ptxas = findPtxas();
testsNeeding(ptxasRequirement(ptxas))('packed-sequence flash attention assembles for sm_80 and sm_90 with no local memory', (t) => {
  assertEachAssembles(t, SEQ_SHAPES.flatMap(([heads, kvHeads, hd]) => [false, true].map((lse) => flashAttention({ heads, kvHeads, hd, cache: 'bf16', out: 'f32', lse, seq: true }))));
});

test('packed-sequence flash attention: own name, a seq param instead of pos, the sequence-start search, deterministic', (t) => {
  const s: FlashAttentionSpec = { heads: 8, kvHeads: 4, hd: 8, cache: 'bf16', out: 'f32', lse: true, seq: true };
  const k = flashAttention(s);
  t.is(k.name, 'flash_attention_seq_h8_kv4_hd8_bf16_of32_lse');
  t.is(k.text, flashAttention(s).text);
  t.regex(k.text, /\.param \.u64 seq/);
  t.notRegex(k.text, /\.param \.u64 pos/);
  t.regex(k.text, /shfl\.sync\.idx\.b32/);
  t.regex(k.text, /mma\.sync\.aligned\.m16n8k16\.row\.col\.f32\.bf16\.bf16\.f32/);
});

// ---- entry selection and the f32 fallback ----
const attNode = (op: string, hd: number): Node => ({ op, inputs: [], attrs: { heads: 2, kv_heads: 2, head_dim: hd }, outputs: [] }) as unknown as Node;
test('trainOpOf: flash entries under bf16 for hd 8..128 (multiple of 8), the f32 SIMT entries otherwise and under f32', (t) => {
  for (const op of ['attention', 'attention_grad']) {
    for (const hd of [8, 64, 128]) {
      t.is(trainOpOf(attNode(op, hd), 'bf16'), BF16_ATTENTION_OPS[op]);
      t.is(trainOpOf(attNode(op, hd), 'f32'), TRAIN_OPS[op]);
    }
    // hd the flash kernels do not tile: ops.ts's f32 SIMT kernels (train-attention.ts) run the node
    for (const hd of [6, 12, 136]) t.is(trainOpOf(attNode(op, hd), 'bf16'), TRAIN_OPS[op], `hd ${hd}`);
  }
});

test('TINY (hd 6) under bf16: attention keeps the f32 SIMT kernels, no flash kernel launched', (t) => {
  const g = trainingGraph(checkpointGraph(TINY, () => 'f32', 'dense'), { loss: { kind: 'cross_entropy' }, policy: 'gcp' });
  const r = recordingDevice();
  new CudaTrainingExecutor(g, randomWeights(g, 7), 12, r.dev, { matmul: 'bf16' }).launch(batch([7, 5], TINY.vocabSize, 11));
  const names = r.launches.map((l) => l.kernel.name);
  t.true(names.some((n) => n.startsWith('train_attention_fwd_')) && names.some((n) => n.startsWith('train_attention_grad_kv_')));
  t.false(names.some((n) => n.startsWith('flash_attention')));
});

// ---- the launch list of stories260K under bf16 ----
const align256 = (n: number) => Math.ceil(n / 256) * 256;
/** The scratch layout of ops-attention-bf16.ts's header, byte offsets (written out here, not imported). */
function expectedScratch(T: number, heads: number, kvHeads: number, hd: number) {
  const qb = T * pad8(heads * hd) * 2, kvb = T * pad8(kvHeads * hd) * 2, of32 = T * pad8(heads * hd) * 4, stat = heads * T * 4;
  const q = 0, k = align256(qb), v = k + align256(kvb), dy = v + align256(kvb), o = dy + align256(qb), lse = o + align256(of32), d = lse + align256(stat);
  return { forward: { k: 0, v: align256(kvb), bytes: align256(kvb) + kvb }, grad: { q, k, v, dy, o, lse, d, bytes: d + stat } };
}
const plain = (l: Launch) => ({ kernel: l.kernel.name, grid: l.grid, block: l.block, args: l.args.map((a: LaunchArg) => ('ptr' in a ? { ptr: Number(a.ptr) } : a)) });

for (const [policy, T, lengths] of [['none', 32, [20, 12]], ['gcp', 45, [30, 15]], ['none', 160, [1, 64, 95]]] as [CheckpointPolicy, number, number[]][]) {
  test(`launch list under bf16, stories260K dense, policy ${policy}, T = ${T}: each attention node's casts and flash kernels`, (t) => {
    const { m, g, weights } = storiesTraining(policy);
    try {
      const h = recordingDevice();
      const ex = new CudaTrainingExecutor(g, weights, T, h.dev, { matmul: 'bf16' });
      ex.launch(batch(lengths, m.spec.vocabSize, 5));
      const S = h.allocs.at(-1)!.ptr; // the scratch: the executor's last allocation
      const at = (o: { name: string }) => Number(ex.valueTensor(o.name).ptr);
      const nodes = g.nodes.filter((n) => n.op === 'attention' || n.op === 'attention_grad');
      t.true(nodes.some((n) => n.op === 'attention') && nodes.some((n) => n.op === 'attention_grad'));
      const list = h.launches.map(plain);
      t.false(list.some((l) => l.kernel.startsWith('train_attention_')), 'no f32 attention kernel left');
      const fwdAt = list.flatMap((l, i) => (l.kernel.startsWith('flash_attention_seq_') ? [i] : []));
      t.is(fwdAt.length, nodes.length, 'one flash forward a node');
      const cast = (w: number, to: number, from: number) => ({ kernel: `cast_bf16_w${w}`, grid: [Math.ceil(pad8(w) / 2048), T, 1], block: 256, args: [{ ptr: to }, { ptr: from }] });
      const rows64 = Math.ceil(T / 64);
      let maxScratch = 0;
      nodes.forEach((n, i) => {
        const [H, KV, hd] = [n.attrs.heads as number, n.attrs.kv_heads as number, n.attrs.head_dim as number];
        t.deepEqual([H, KV, hd], [8, 4, 8], 'stories260K: 8 heads, 4 KV heads, hd 8');
        const qw = H * hd, kvw = KV * hd, sc = expectedScratch(T, H, KV, hd), tag = `h${H}_kv${KV}_hd${hd}`;
        const [q, k, v, seq] = [0, 1, 2, 3].map((j) => at(n.inputs[j]!)) as [number, number, number, number];
        const T32 = { u32: T }, p = (x: number) => ({ ptr: x });
        if (n.op === 'attention') {
          const f = sc.forward;
          t.deepEqual(list.slice(fwdAt[i]! - 2, fwdAt[i]! + 1), [
            cast(kvw, S + f.k, k), cast(kvw, S + f.v, v),
            { kernel: `flash_attention_seq_${tag}_bf16_of32`, grid: [rows64, H, 1], block: 128, args: [p(at(n.outputs[0]!)), p(q), p(S + f.k), p(S + f.v), p(seq), T32] },
          ], `%${n.outputs[0]!.name} (attention)`);
          maxScratch = Math.max(maxScratch, f.bytes);
          t.is(trainOpOf(n, 'bf16').scratchBytes!(ctxOf(n, T)), f.bytes);
        } else {
          const s = sc.grad, dy = at(n.inputs[4]!), [dq, dk, dv] = [0, 1, 2].map((j) => at(n.outputs[j]!)) as [number, number, number];
          const b = [p(S + s.q), p(S + s.k), p(S + s.v), p(S + s.dy)];
          t.deepEqual(list.slice(fwdAt[i]! - 4, fwdAt[i]! + 4), [
            cast(qw, S + s.q, q), cast(kvw, S + s.k, k), cast(kvw, S + s.v, v), cast(qw, S + s.dy, dy),
            { kernel: `flash_attention_seq_${tag}_bf16_of32_lse`, grid: [rows64, H, 1], block: 128, args: [p(S + s.o), p(q), p(S + s.k), p(S + s.v), p(seq), p(S + s.lse), T32] },
            { kernel: `flash_attention_bwd_pre_h${H}_hd${hd}_bf16_of32`, grid: [Math.ceil((T * H) / 128), 1, 1], block: 128, args: [p(S + s.d), p(S + s.dy), p(S + s.o), T32] },
            { kernel: `flash_attention_bwd_dkdv_${tag}_bf16`, grid: [rows64, KV, 1], block: 128, args: [p(dk), p(dv), ...b, p(S + s.lse), p(S + s.d), p(seq), T32] },
            { kernel: `flash_attention_bwd_dq_${tag}_bf16`, grid: [rows64, H, 1], block: 128, args: [p(dq), ...b, p(S + s.lse), p(S + s.d), p(seq), T32] },
          ], `%${n.outputs[0]!.name} (attention_grad)`);
          maxScratch = Math.max(maxScratch, s.bytes);
          t.is(trainOpOf(n, 'bf16').scratchBytes!(ctxOf(n, T)), s.bytes);
        }
      });
      t.true(ex.scratchBytes >= maxScratch, 'the scratch holds every attention node\'s pieces');
      t.log(`${nodes.length} attention nodes, attention_grad scratch ${maxScratch} bytes, executor scratch ${ex.scratchBytes}`);
    } finally {
      m.close();
    }
  });
}

/** An OpContext for scratchBytes alone: shapes from the node's attrs and T (inputs q, k, v, seq, dy). */
function ctxOf(n: Node, T: number): OpContext {
  return opContext(n, T, { ins: [], outs: [], scratch: 0 });
}

/** A hand-made OpContext of an attention node over device pointers (what the executor's context gives an entry). */
function opContext(n: Node, T: number, ptrs: { ins: DevPtr[]; outs: DevPtr[]; scratch: DevPtr }): OpContext {
  const qw = (n.attrs.heads as number) * (n.attrs.head_dim as number), kvw = (n.attrs.kv_heads as number) * (n.attrs.head_dim as number);
  const ins = [[T, qw], [T, kvw], [T, kvw], [T], [T, qw]], outs = n.op === 'attention' ? [[T, qw]] : [[T, qw], [T, kvw], [T, kvw]];
  const dim = (s: number[], axis: number) => s[axis < 0 ? s.length + axis : axis]!;
  return {
    node: n, T,
    input: (i) => ptrs.ins[i]!, output: (i) => ptrs.outs[i]!,
    inDim: (i, axis) => dim(ins[i]!, axis), outDim: (i, axis) => dim(outs[i]!, axis),
    scratch: (offset = 0) => (typeof ptrs.scratch === 'bigint' ? ptrs.scratch + BigInt(offset) : ptrs.scratch + offset),
    ropeTable: () => { throw new Error('no rope table'); },
  };
}

// ---- on the GPU ----
const gpuTest = testsNeeding(cudaDeviceRequirement());
/** (heads, kvHeads, hd): GQA 8:4 and MHA 4:4 at hd 8 (stories260K) and 64 (the 1B preset). */
const SHAPES: [number, number, number][] = [[8, 4, 8], [4, 4, 8], [8, 4, 64], [4, 4, 64]];
const LAYOUTS = (T: number): number[][] => [[], [1, 5], [17, 47, 1], [64, 3]].filter((l) => l.length === 0 || l.reduce((a, b) => a + b, 0) < T);
/** bf16 rounding of P (and of the operands' products) relative to the term scale, 2.5× margin (cuda-flash-attention.test.ts). */
const TOL_BF16 = 2.5 * 2 ** -9;
let seed = 900;

for (const [heads, kvHeads, hd] of SHAPES) {
  for (const T of [1, 7, 65, 200]) {
    for (const lengths of LAYOUTS(T)) {
      const s0 = seed++;
      gpuTest.serial(`GPU: packed flash forward h${heads} kv${kvHeads} hd${hd}, T = ${T}, sequences ${JSON.stringify(lengths)}: o and lse vs float64`, (t) => {
        t.teardown(freeAll);
        const r = rng(s0), qw = heads * hd, kvw = kvHeads * hd, ldo = pad8(qw);
        const seq = seqOf(T, lengths);
        const q = randomF32(T * qw, r, 4), k = weight(randomF32(T * kvw, r), T, kvw, 'bf16'), v = weight(randomF32(T * kvw, r), T, kvw, 'bf16');
        const spec: FlashAttentionSpec = { heads, kvHeads, hd, cache: 'bf16', out: 'f32', lse: true, seq: true };
        const o = poisoned((T + 1) * ldo * 4), lse = poisoned((heads * T + 4) * 4);
        launch(flashAttention(spec), flashAttentionGrid(spec, T), FA_THREADS, [o, upload(padF32(q, T, qw)), k.device, v.device, upload(seq), lse, T]);
        // the kernel rounds q to bf16 itself (cvt.rn, as castRows)
        const want = packedReference(roundBf16(q), k.exact, v.exact, seq, heads, kvHeads, hd);
        const got = download(o, new Float32Array((T + 1) * ldo));
        // P rounded to bf16 for P·V: within 2^-9 of Σ p|v| / Σ p (2.5× margin); f32 sums, ex2.approx ~1e-6
        const tol = TOL_BF16 + 1e-5;
        let bad = 0, first = '';
        for (let row = 0; row < T; row++) {
          for (let c = 0; c < qw; c++) {
            const g = got[row * ldo + c]!, w = want.o[row * qw + c]!, e = Math.abs(g - w) / Math.max(want.mag[row * qw + c]!, 1e-30);
            if (!(e <= tol) && !bad++) first = `row ${row} col ${c}: got ${g}, want ${w}`;
          }
        }
        t.is(bad, 0, `${bad} of ${T * qw} outputs off (NaN = unwritten); first ${first}`);
        t.true(got.subarray(T * ldo).every(Number.isNaN), 'o written past row T-1');
        // f32 exponentials of f32 scores: ~1e-6 relative; a key too many or too few moves lse by ≥ ~1e-3
        const l = download(lse, new Float32Array(heads * T + 4));
        let lbad = 0, lfirst = '';
        for (let i = 0; i < heads * T; i++) {
          if (!(Math.abs(l[i]! - want.lse[i]!) <= 5e-5 + 1e-6 * Math.abs(want.lse[i]!)) && !lbad++) lfirst = `head ${Math.floor(i / T)} row ${i % T}: got ${l[i]}, want ${want.lse[i]}`;
        }
        t.is(lbad, 0, `${lbad} lse values off; first ${lfirst}`);
        t.true(l.subarray(heads * T).every(Number.isNaN), 'lse written past heads·T');
      });
    }
  }
}

/** Garbage for an activation's padding: finite (the executor's arena holds finite numbers), large. */
const GARBAGE = 1e30;

for (const [heads, kvHeads, hd] of SHAPES) {
  for (const T of [1, 7, 65, 200]) {
    for (const lengths of LAYOUTS(T)) {
      const s0 = seed++;
      gpuTest.serial(`GPU: attention_grad entry (bf16) h${heads} kv${kvHeads} hd${hd}, T = ${T}, sequences ${JSON.stringify(lengths)}: vs ref attentionGrad of the bf16-rounded operands`, (t) => {
        const dev = cudaTrainDevice(), r = rng(s0), qw = heads * hd, kvw = kvHeads * hd;
        const seq = seqOf(T, lengths);
        const q = randomF32(T * qw, r, 2), k = randomF32(T * kvw, r), v = randomF32(T * kvw, r), dy = randomF32(T * qw, r);
        const n = { op: 'attention_grad', inputs: [], outputs: [{ name: 'dq' }], attrs: { heads, kv_heads: kvHeads, head_dim: hd } } as unknown as Node;
        const op = BF16_ATTENTION_OPS.attention_grad!;
        const bufs: DevPtr[] = [];
        const alloc = (bytes: number) => (bufs.push(dev.alloc(bytes)), bufs.at(-1)!);
        const NAN = 0x7fc00000;
        try {
          const padded = (x: Float32Array, w: number) => {
            const p = padRows(x, T, w).slice();
            for (let row = 0; row < T; row++) p.fill(GARBAGE, row * pad8(w) + w, (row + 1) * pad8(w));
            return p;
          };
          const ins = [[q, qw], [k, kvw], [v, kvw]].map(([x, w]) => {
            const b = alloc(T * pad8(w as number) * 4);
            dev.upload(b, padded(x as Float32Array, w as number));
            return b;
          });
          const seqBuf = alloc(T * 4);
          dev.upload(seqBuf, seq);
          const dyBuf = alloc(T * pad8(qw) * 4);
          dev.upload(dyBuf, padded(dy, qw));
          // outputs: T rows plus one, NaN
          const outs = [qw, kvw, kvw].map((w) => {
            const b = alloc((T + 1) * pad8(w) * 4);
            dev.fill(b, (T + 1) * pad8(w) * 4, NAN);
            return b;
          });
          const bytes = op.scratchBytes!(ctxOf(n, T)), scratch = alloc(bytes);
          dev.fill(scratch, Math.ceil(bytes / 4) * 4, NAN);
          for (const l of op.launches(opContext(n, T, { ins: [...ins, seqBuf, dyBuf], outs, scratch }))) dev.launch(l.kernel, l.grid, l.block, l.args);

          const [rq, rk, rv, rdy] = [q, k, v, dy].map(roundBf16) as [Float32Array, Float32Array, Float32Array, Float32Array];
          const want = attentionGrad(rq, rk, rv, seq, rdy, heads, kvHeads, hd);
          const mag = magnitudes(rq, rk, rv, seq, rdy, heads, kvHeads, hd);
          // as cuda-flash-attention-backward.test.ts, plus: D comes from the recomputed O, whose P was
          // rounded to bf16 (dRound), and lse from the kernel's f32 sums (~1e-6 relative on P)
          const tolF32 = 5e-5;
          (['dq', 'dk', 'dv'] as const).forEach((label, i) => {
            const w = i === 0 ? qw : kvw, ld = pad8(w), got = dev.download(outs[i]!, new Float32Array((T + 1) * ld));
            let bad = 0, first = '';
            for (let row = 0; row < T; row++) {
              for (let c = 0; c < w; c++) {
                const j = row * w + c, g = got[row * ld + c]!, x = want[i]![j]!;
                const bound = TOL_BF16 * (mag.term[label][j]! + mag.dRound[label][j]!) + tolF32 * mag.f32[label][j]!;
                if (!(Math.abs(g - x) <= Math.max(bound, 1e-30)) && !bad++) first = `row ${row} col ${c}: got ${g}, want ${x} (bound ${bound.toExponential(2)})`;
              }
            }
            t.is(bad, 0, `${label}: ${bad} of ${T * w} off (NaN = unwritten); first ${first}`);
            t.true(got.subarray(T * ld).every(Number.isNaN), `${label}: written past row T-1`);
          });
        } finally {
          for (const b of bufs) dev.free(b);
        }
      });
    }
  }
}

// End to end. Measured on the CPU (the oracle, whose attention operands are rounded as the casts do):
// oracle vs ref ≤ 5.0e-2 per tensor (max|Δ|/max|ref|) at these T, the oracle against itself with the
// weights perturbed by 1e-6 ≤ 3.5e-2 (bf16 roundings flipping by a whole ulp and spreading, see
// cuda-train-bf16.test.ts). The GPU adds f32 accumulation and the kernels' bf16 P (2^-9 of an
// attention output's Σ p|v|, not in the oracle), each of the order of such a perturbation. Hence
// ≤ 8e-2 against the oracle, ≤ 1.5e-1 against the ref, loss ≤ 1e-2 relative. A wrong mask (a key of
// another sequence), GQA head or tail row is an O(1) error in the attention gradients.
for (const [policy, T, lengths] of [['none', 45, [30, 15]], ['gcp', 130, [1, 64, 65]], ['none', 200, [17, 47, 1, 135]]] as [CheckpointPolicy, number, number[]][]) {
  gpuTest(`GPU: stories260K dense, 5 layers, T = ${T}, sequences ${JSON.stringify(lengths)}, policy ${policy}, bf16 matmuls and flash attention: loss and gradients vs the oracle and the ref`, (t) => {
    const { m, g, weights } = storiesTraining(policy);
    const ex = new CudaTrainingExecutor(g, weights, T, cudaTrainDevice(), { poison: POISON, matmul: 'bf16' });
    try {
      t.true(ex.kernels.some((k) => k.name.startsWith('flash_attention_bwd_dq_')), 'the flash kernels run');
      const inputs = batch(lengths, m.spec.vocabSize, 5);
      t.is(inputs[MODEL_INPUTS.tokens]!.length, T);
      const got = ex.run(inputs).outputs;
      const oracle = runTrainingGraphBf16Matmuls(g, weights, inputs, T) as Float32Array[];
      const ref = runTrainingGraph(g, weights, inputs, T).outputs as Float32Array[];
      const vsOracle = relErrors(g, got, oracle), vsRef = relErrors(g, got, ref);
      t.true(vsOracle[0]!.rel <= 1e-2, `loss ${got[0]![0]} vs the oracle's ${oracle[0]![0]}`);
      for (const [i, e] of vsOracle.entries()) {
        if (i === 0) continue;
        t.true(e.rel <= 8e-2, `%${e.name}: ${e.rel.toExponential(2)} of max |oracle|`);
        t.true(vsRef[i]!.rel <= 1.5e-1, `%${e.name}: ${vsRef[i]!.rel.toExponential(2)} of max |ref|`);
      }
      const worst = (es: { name: string; rel: number }[]) => es.reduce((a, b) => (b.rel > a.rel ? b : a));
      t.log(`loss ${got[0]![0]} (oracle ${oracle[0]![0]}, ref ${ref[0]![0]}); worst vs oracle %${worst(vsOracle).name} ${worst(vsOracle).rel.toExponential(2)}, vs ref %${worst(vsRef).name} ${worst(vsRef).rel.toExponential(2)}`);
    } finally {
      ex.dispose();
      m.close();
    }
  });
}
