// The prefill program on the Hopper GEMM (LowerOptions.wgmma; gemm-sm90.ts), without a GPU:
// - on compute capability 9.0 exactly, unless MOCC_CUDA_WGMMA=0; without the option nothing changes (the programs' snapshots, test/targets/lowered-programs.test.ts, are the
//   byte-for-byte check; here: the option changes no decode launch);
// - with it, every X·Wᵀ linear of the 1B preset (Q, K, V, gate, up, logits store; O, down accumulate
//   into the residual) is a gemm90 launch with the persistent grid, dynamic shared memory and tensor
//   maps over the cast input and the weight; the MoC down GEMM too, in the 'xw' layout over W_downᵀ
//   ([F, d] as stored: an N-major W);
//   the numbers below are worked by hand
//   from the 1B shapes and gemm-sm90.ts's header (128×256 tiles, 4 stages of 64-wide K steps);
// - the buffer plan sees a tensor map's buffer (it must outlive the GEMMs reading it through maps);
// - its sm_90a kernels assemble with ptxas.
import test from 'ava';
import { buildLlamaGraph } from '../../src/import/llama-graph.js';
import { PRESET_1B } from '../../src/model/presets.js';
import { swigluToMoc } from '../../passes/swiglu-to-moc.js';
import { loadModel } from '../../driver/load.js';
import { bufArgIds, remapBufArgs } from '../../targets/buffer-plan.js';
import { wgmmaWanted } from '../../targets/cuda/index.js';
import { lowerToCuda } from '../../targets/cuda/lower.js';
import { gridDimFor, type Arg, type Launch, type Step } from '../../targets/cuda/program.js';
import { CHECKPOINTS } from '../helpers/fixtures.js';
import { findPtxas, ptxasRequirement, testsNeeding } from '../helpers/requires.js';
import { assemblePtx, NO_LOCAL_MEMORY } from '../helpers/ptxas.js';

const spec1 = { ...PRESET_1B, nLayers: 1 };
const graph1B = (moc?: { k: number }) => {
  const g = buildLlamaGraph(spec1, (n) => (n.includes('norm') ? 'f32' : 'bf16'));
  return moc ? swigluToMoc.run(g, moc) : g;
};
const launches = (steps: Step[]) => steps.filter((s): s is Step & Launch & { kind: 'launch' } => s.kind === 'launch');

test('wgmma is wanted on compute capability 9.0 unless MOCC_CUDA_WGMMA=0', (t) => {
  t.true(wgmmaWanted([9, 0], { MOCC_CUDA_WGMMA: '1' }));
  t.true(wgmmaWanted([9, 0], {}));
  t.false(wgmmaWanted([9, 0], { MOCC_CUDA_WGMMA: '0' }));
  t.false(wgmmaWanted([8, 0], { MOCC_CUDA_WGMMA: '1' }));
  t.false(wgmmaWanted([10, 0], { MOCC_CUDA_WGMMA: '1' }));
  t.false(wgmmaWanted([9, 1], { MOCC_CUDA_WGMMA: '1' }));
});

test('without the option there are no sm_90a kernels; with it the decode launches are unchanged', (t) => {
  const g = graph1B();
  const off = lowerToCuda(g, spec1), on = lowerToCuda(g, spec1, { wgmma: true });
  t.is(off.kernelsSm90a, undefined);
  t.false(JSON.stringify(off.prefill).includes('tmap'));
  t.deepEqual(on.steps, off.steps);
  t.deepEqual(on.greedyTail, off.greedyTail);
  // gemm.ts's X·Wᵀ GEMMs are gone from the sm_80/sm_90 module, nothing else changed in it
  t.deepEqual([...off.kernels.keys()].filter((k) => k.startsWith('gemm_xwt_')).sort(), ['gemm_xwt_bf16_m128n128k32_w2x4', 'gemm_xwt_bf16_m128n128k32_w2x4_acc']);
  t.deepEqual([...on.kernels.keys()].sort(), [...off.kernels.keys()].filter((k) => !k.startsWith('gemm_xwt_')).sort());
});

test('1B preset prefill with wgmma: every X·Wᵀ linear is a gemm90 launch with shared memory and tensor maps', (t) => {
  const p = lowerToCuda(graph1B(), spec1, { wgmma: true });
  const K90 = 'gemm90_xwt_bf16_f32_m128n256k64_s4';
  t.deepEqual([...p.kernelsSm90a!.keys()], [K90, `${K90}_acc`]);
  t.false(p.kernels.has(K90) || p.kernels.has(`${K90}_acc`), 'not in the sm_80/sm_90 module');
  const steps = launches(p.prefill!.steps);
  const gemms = steps.filter((s) => s.kernel.startsWith('gemm'));
  // node → (kernel, N, K): Q/K/V 2048×2048, O accumulates into the residual, gate/up 5461×2048, down accumulates (K 5461), logits 32000×2048
  t.deepEqual(gemms.map((s) => [s.node, s.kernel]), [
    ['l0.q_proj', K90], ['l0.k_proj', K90], ['l0.v', K90], ['l0.attn_out', `${K90}_acc`],
    ['l0.gate', K90], ['l0.up', K90], ['l0.ffn_out', `${K90}_acc`], ['logits', K90],
  ]);
  const want: Record<string, [string, number, number]> = {
    'l0.q_proj': ['layers.0.wq', 2048, 2048], 'l0.k_proj': ['layers.0.wk', 2048, 2048], 'l0.v': ['layers.0.wv', 2048, 2048], 'l0.attn_out': ['layers.0.wo', 2048, 2048],
    'l0.gate': ['layers.0.w_gate', 5461, 2048], 'l0.up': ['layers.0.w_up', 5461, 2048], 'l0.ffn_out': ['layers.0.w_down', 2048, 5461], logits: ['output', 32000, 2048],
  };
  // the residual both accumulating GEMMs add into: the embedding's buffer
  const residual = steps[0]!.args[0];
  for (const s of gemms) {
    const gemm = { dtype: 'bf16', out: 'f32', consumers: 2, bn: 256, stages: 4, ...(s.kernel.endsWith('_acc') ? { epilogue: 'accumulate' } : {}) };
    const [w, n, k] = want[s.node]!;
    t.is(s.block, 384, '3 warpgroups: producer + 2 consumers');
    // 4 stages of (128 X rows + 256 W rows) × 128 bytes, + 1024 to align the first
    t.is(s.shared, 4 * (128 + 256) * 128 + 1024);
    t.deepEqual(s.grid, [{ persistentTiles: { bm: 128, bn: 256, n } }, 1, 1]);
    // the X map reads the 16-bit copy written by the last launch before it that writes one (Q/K/V and
    // gate/up share one): a cast, or an RMSNorm or flash attention writing bf16 themselves
    const half = (a: Arg | undefined) => a?.kind === 'buf' && p.prefill!.buffers[a.id]!.dtype === 'bf16';
    const cast = steps.slice(0, steps.indexOf(s)).filter((c) => !c.kernel.startsWith('gemm') && half(c.args[0])).at(-1)!;
    t.regex(cast.kernel, /^(cast_bf16_w|rmsnorm_\w+_obf16|flash_attention_\w+_obf16|silu_mul_\w+_obf16)/, cast.kernel);
    const [y, tmx, tmw, ...sizes] = s.args;
    t.is(y!.kind, 'buf');
    if (s.kernel.endsWith('_acc')) t.deepEqual(y, residual, s.node);
    t.deepEqual(tmx, { kind: 'tmap', of: cast.args[0], rows: 'T', k, operand: 'x', gemm });
    t.deepEqual(tmw, { kind: 'tmap', of: { kind: 'weight', name: w }, rows: n, k, operand: 'w', gemm });
    t.deepEqual(sizes, [{ kind: 'T' }, { kind: 'u32', value: n }, { kind: 'u32', value: k }]);
  }
});

test('the MoC prefill GEMMs move too: up (X·W_upᵀ, stored) and down (z·W_downᵀ in the xw layout, accumulated)', (t) => {
  const p = lowerToCuda(graph1B({ k: 1024 }), spec1, { wgmma: true });
  const gemms = launches(p.prefill!.steps).filter((s) => s.kernel.startsWith('gemm'));
  const kinds = gemms.map((s) => s.kernel.replace(/_bf16.*?(_acc)?$/, '$1'));
  // Q K V, O (+residual), gate, MoC up, MoC down (xw, +residual), logits
  t.deepEqual(kinds, ['gemm90_xwt', 'gemm90_xwt', 'gemm90_xwt', 'gemm90_xwt_acc', 'gemm90_xwt', 'gemm90_xwt', 'gemm90_xw_acc', 'gemm90_xwt']);
  // the down GEMM: y[T, d] += z[T, F] · W_downᵀ, W_downᵀ stored [F, d]; gemm90TensorMap's rows are M
  // for x and N for w in every layout, and its k the reduction, F
  const down = gemms[6]!, [, x, w, , N, K] = down.args;
  t.like(x, { kind: 'tmap', rows: 'T', k: PRESET_1B.dFfn, operand: 'x' });
  t.like(w, { kind: 'tmap', rows: PRESET_1B.dim, k: PRESET_1B.dFfn, operand: 'w' });
  t.like((w as Extract<Arg, { kind: 'tmap' }>).gemm, { layout: 'xw', epilogue: 'accumulate' });
  t.deepEqual([N, K], [{ kind: 'u32', value: PRESET_1B.dim }, { kind: 'u32', value: PRESET_1B.dFfn }]);
});

test('persistent grid: min(multiprocessors, ceil(T/bm)·ceil(n/bn)), at least 1; needs the device', (t) => {
  const d = { persistentTiles: { bm: 128, bn: 256, n: 2048 } };
  const h100 = { multiprocessors: 132 };
  t.is(gridDimFor(d, 300, h100), 24); // 3 row tiles × 8 column tiles
  t.is(gridDimFor(d, 2000, h100), 128); // 16 × 8
  t.is(gridDimFor(d, 4000, h100), 132); // 32 × 8 = 256 tiles, 132 CTAs loop
  t.is(gridDimFor({ persistentTiles: { bm: 128, bn: 256, n: 5461 } }, 2, h100), 22); // 1 × 22
  t.throws(() => gridDimFor(d, 300), { message: /multiprocessor/ });
  t.is(gridDimFor({ tilesOfT: 64 }, 130), 3);
});

test('the buffer plan sees the buffer under a tensor map, and renames it', (t) => {
  const gemm = { dtype: 'bf16' as const, out: 'f32' as const, consumers: 2, bn: 256, stages: 4 };
  const args: Arg[] = [{ kind: 'buf', id: 0 }, { kind: 'tmap', of: { kind: 'buf', id: 5 }, rows: 'T', k: 8, operand: 'x', gemm }, { kind: 'tmap', of: { kind: 'weight', name: 'w' }, rows: 8, k: 8, operand: 'w', gemm }];
  t.deepEqual(bufArgIds(args), [0, 5]);
  t.deepEqual(remapBufArgs(args, new Map([[0, 1], [5, 2]])), [{ kind: 'buf', id: 1 }, { ...args[1]!, of: { kind: 'buf', id: 2 } } as Arg, args[2]!]);
});

const ptxas = findPtxas();
testsNeeding(ptxasRequirement(ptxas))('the sm_90a kernels (store and accumulate, xwt and the MoC down xw) of the 1B preset MoC (bf16) and stories260K Q8_0→f16 prefill assemble for sm_90a', (t) => {
  const m = loadModel(CHECKPOINTS.gguf.replace(/\.gguf$/, '.Q8_0.gguf'), { selection: 'dense', dequantTo: 'f16' });
  let stories;
  try {
    stories = lowerToCuda(m.graph, m.spec, { wgmma: true });
  } finally {
    m.close();
  }
  const kernels = new Map([...lowerToCuda(graph1B({ k: 1024 }), spec1, { wgmma: true }).kernelsSm90a!, ...stories.kernelsSm90a!]);
  t.deepEqual([...kernels.keys()].sort(), ['gemm90_xw_bf16_f32_m128n256k64_s4_acc', 'gemm90_xwt_bf16_f32_m128n256k64_s4', 'gemm90_xwt_bf16_f32_m128n256k64_s4_acc', 'gemm90_xwt_f16_f32_m128n256k64_s4', 'gemm90_xwt_f16_f32_m128n256k64_s4_acc']);
  const r = assemblePtx([...kernels.values()], 'sm_90a');
  t.is(r.status, 0, r.stderr);
  t.notRegex(r.stderr, /warning/i, r.stderr);
});
