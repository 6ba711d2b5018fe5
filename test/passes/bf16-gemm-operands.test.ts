// bf16-gemm-operands (passes/bf16-gemm-operands.ts): before/after IR text written out by hand; the
// grouping rule on its own; on the stories260K training graphs (dense gcp, MoC moc-gcp and
// moc-gcp-attn): the result verifies, computes exactly what the input computes under bf16 GEMMs (the
// bf16-matmul oracle, test/helpers/train-bf16-oracle.ts, which rounds every GEMM operand itself, gives
// bit-identical outputs on both graphs: each cast sits where the GEMMs it feeds would have rounded),
// and plans about the same memory (the 1B preset's plan: less, dense gcp and MoC moc-gcp); and the CUDA executor (castOnce, recording device) makes exactly one cast
// launch fewer per GEMM read the pass shared, the new casts' launches reading the f32 value and writing
// the bf16 one in the arena, each GEMM reading it there without a cast of its own. On a GPU: the
// executor's outputs both ways, bit for bit.
import test from 'ava';
import { checkpointGraph, loadModel } from '../../driver/load.js';
import { PRESET_1B } from '../../src/model/presets.js';
import { modelWeights } from '../../driver/evaluate.js';
import { trainingGraph } from '../../driver/training-graph.js';
import { bf16GemmOperands, castGroups, GEMM_OPERANDS, WINDOW } from '../../passes/bf16-gemm-operands.js';
import { verifyGraph } from '../../src/ir/verify.js';
import { CudaTrainingExecutor, executorPlan } from '../../targets/cuda/train/executor.js';
import { CHECKPOINTS } from '../helpers/fixtures.js';
import { recordingDevice } from '../helpers/recording-device.js';
import { runTrainingGraphBf16Matmuls } from '../helpers/train-bf16-oracle.js';
import { batch } from '../helpers/train-tiny-model.js';
import { assertRewrite, sameBits } from '../helpers/pass-checks.js';
import { gpuSwitchKeepsBits, type StoriesCase } from '../helpers/stories-training.js';

/** The test graph around its body: the same inputs, params and outputs before and after. */
const block = (body: string) => `graph block
  input %x : f32[T,8]
  input %dy : f32[T,6]
  param @n : f32[8]
  param @wq : f32[6,8]
  param @wk : f32[6,8]
  param @wo : f32[8,6]
${body}
  output %y
  output %dh
  output %dwq
  output %dwo
  output %dk
end
`;

const BEFORE = block(`  %xn = rmsnorm(%x, @n) {eps=0.00001} : f32[T,8]
  %q = linear(%xn, @wq) : f32[T,6]
  %k = linear(%xn, @wk) : f32[T,6]
  %h = mul(%q, %k) : f32[T,6]
  %y = linear(%h, @wo) : f32[T,8]
  %dh = matmul(%dy, @wq) : f32[T,8]
  %dwq = matmul_tn(%dy, %xn) : f32[6,8]
  %dwo = matmul_tn(%dy, %h) : f32[6,6]
  %dk = matmul(%k, @wk) : f32[T,8]`);

// %xn: read by GEMMs only (q, k, dwq): one cast, before its first reader. %h: read by GEMMs only (y,
// dwo). %dy: a graph input read by three GEMMs. %k: read by mul (not a GEMM) and once by a GEMM: left
// to the GEMM's own cast. Params are never cast here.
const AFTER = block(`  %xn = rmsnorm(%x, @n) {eps=0.00001} : f32[T,8]
  %xn.bf16 = cast(%xn) {dtype="bf16"} : bf16[T,8]
  %q = linear(%xn.bf16, @wq) : f32[T,6]
  %k = linear(%xn.bf16, @wk) : f32[T,6]
  %h = mul(%q, %k) : f32[T,6]
  %h.bf16 = cast(%h) {dtype="bf16"} : bf16[T,6]
  %y = linear(%h.bf16, @wo) : f32[T,8]
  %dy.bf16 = cast(%dy) {dtype="bf16"} : bf16[T,6]
  %dh = matmul(%dy.bf16, @wq) : f32[T,8]
  %dwq = matmul_tn(%dy.bf16, %xn.bf16) : f32[6,8]
  %dwo = matmul_tn(%dy.bf16, %h.bf16) : f32[6,6]
  %dk = matmul(%k, @wk) : f32[T,8]`);

test('shares one cast among the GEMM reads of a value: before/after IR text', (t) => {
  assertRewrite(t, bf16GemmOperands, BEFORE, AFTER, 'a second run finds nothing more to share (bf16 values are not cast again)');
});

test('castGroups: all-GEMM readers form one group however far apart; otherwise runs of GEMM reads at most WINDOW nodes apart, groups of one dropped', (t) => {
  const gemm = (node: number, slot = 0) => ({ node, slot, gemm: true });
  const other = (node: number) => ({ node, slot: 0, gemm: false });
  t.deepEqual(castGroups([gemm(1), gemm(500)], false), [[gemm(1), gemm(500)]], 'only GEMMs read it: the f32 dies at the cast');
  t.deepEqual(castGroups([gemm(1), gemm(500)], true), [], 'a graph output keeps its f32: the far reads do not share');
  t.deepEqual(castGroups([gemm(1)], false), [], 'one read: nothing to share');
  t.deepEqual(castGroups([gemm(3, 0), gemm(3, 1)], false), [[gemm(3, 0), gemm(3, 1)]], 'one node reading it twice');
  const mixed = [gemm(10), gemm(12), other(13), gemm(12 + WINDOW), gemm(400), gemm(400 + WINDOW + 1)];
  t.deepEqual(castGroups(mixed, false), [[gemm(10), gemm(12), gemm(12 + WINDOW)]], 'a non-GEMM read: nearby runs only');
});

const CASES: StoriesCase[] = [
  ['dense, gcp', 'dense', 'gcp', { matmul: 'bf16' }],
  ['MoC K = 32, moc-gcp, dense MoC GEMMs', { k: 32 }, 'moc-gcp', { matmul: 'bf16', mocMatmul: 'dense-bf16' }],
  ['MoC K = 32, moc-gcp-attn, dense MoC GEMMs', { k: 32 }, 'moc-gcp-attn', { matmul: 'bf16', mocMatmul: 'dense-bf16' }],
];

for (const [what, selection, policy, opts] of CASES) {
  test(`stories260K ${what}: verifies, bit-identical under the bf16-GEMM oracle, about the same memory planned, and the executor's casts fall by the reads shared`, (t) => {
    const m = loadModel(CHECKPOINTS.hf, { selection });
    try {
      const g = trainingGraph(m.graph, { loss: { kind: 'cross_entropy' }, policy });
      const after = bf16GemmOperands.run(g);
      verifyGraph(after);
      const casts = after.nodes.filter((n) => n.op === 'cast');
      const shared = new Set(casts.map((c) => c.outputs[0]!.name));
      const reads = after.nodes.reduce((s, n) => s + n.inputs.filter((o, i) => o.kind === 'value' && shared.has(o.name) && GEMM_OPERANDS[n.op]?.includes(i)).length, 0);
      t.true(casts.length > 0 && reads > casts.length, `${casts.length} casts for ${reads} GEMM reads`);
      t.false(after.nodes.some((n) => n.op !== 'cast' && !GEMM_OPERANDS[n.op] && n.inputs.some((o) => shared.has(o.name))), 'only GEMM operands read the bf16 values');

      const T = 45, weights = modelWeights(m);
      const inputs = batch([20, 25], m.spec.vocabSize, 7);
      const want = runTrainingGraphBf16Matmuls(g, weights, inputs, T), got = runTrainingGraphBf16Matmuls(after, weights, inputs, T);
      sameBits(t, got, want, g.outputs);

      // at this size the bf16 copies can land at the peak (moc-gcp: +0.4%); at the 1B preset's the plan falls (below)
      // this pass alone: the casts bf16-producers would fold stay (its own test: bf16-producers.test.ts)
      const alone = { ...opts, bf16Producers: false };
      const per = executorPlan(g, T, { ...opts, castOnce: false }).arenaBytes, once = executorPlan(g, T, alone).arenaBytes;
      t.true(once <= per * 1.01, `arena ${once} within 1% of ${per} bytes`);

      const launchesOf = (castOnce: boolean) => {
        const r = recordingDevice();
        const ex = new CudaTrainingExecutor(g, weights, T, r.dev, { ...alone, castOnce });
        ex.launch(inputs);
        return { ex, launches: r.launches };
      };
      const isCast = (name: string) => /^cast_bf16_w\d+$/.test(name);
      const a = launchesOf(false), b = launchesOf(true);
      const castCount = (l: { kernel: { name: string } }[]) => l.filter((x) => isCast(x.kernel.name)).length;
      t.is(castCount(a.launches) - castCount(b.launches), reads - casts.length, 'one cast launch fewer per shared read, less the casts added');
      t.is(a.launches.length - b.launches.length, reads - casts.length, 'nothing else changes in number');
      // each added cast: reads its f32 value's arena address, writes its bf16 value's
      for (const c of casts) {
        const to = Number(b.ex.valueTensor(c.outputs[0]!.name).ptr), from = Number(b.ex.valueTensor(c.inputs[0]!.name).ptr);
        t.true(b.launches.some((l) => isCast(l.kernel.name) && Number((l.args[0] as { ptr: number }).ptr) === to && Number((l.args[1] as { ptr: number }).ptr) === from), `%${c.outputs[0]!.name}'s launch`);
      }
      t.log(`${casts.length} casts for ${reads} GEMM reads; cast launches ${castCount(a.launches)} → ${castCount(b.launches)}; arena ${per} → ${once} bytes`);
    } finally {
      m.close();
    }
  });
}

test('the 1B preset at 64 × 256 rows: the shared casts plan a smaller arena (dense gcp, MoC K = 1024 moc-gcp), as bench/train-plan-1b.ts prints', (t) => {
  for (const [selection, policy] of [['dense', 'gcp'], [{ k: 1024 }, 'moc-gcp']] as const) {
    const g = trainingGraph(checkpointGraph(PRESET_1B, (n) => (n.includes('norm') ? 'f32' : 'bf16'), selection), { loss: { kind: 'cross_entropy' }, policy });
    const per = executorPlan(g, 64 * 256, { matmul: 'bf16', castOnce: false }).arenaBytes, once = executorPlan(g, 64 * 256, { matmul: 'bf16' }).arenaBytes;
    t.true(once < per * 0.95, `${policy}: arena ${(once / 2 ** 30).toFixed(2)} GiB < 0.95 × ${(per / 2 ** 30).toFixed(2)}`);
    t.log(`${policy}: arena ${(per / 2 ** 30).toFixed(2)} → ${(once / 2 ** 30).toFixed(2)} GiB`);
  }
});

// On a GPU (skipped without one): the executor's outputs with shared casts (and, by default, the
// casts of values only casts read folded into their producers: passes/bf16-producers.ts) equal, bit
// for bit, those of every GEMM casting its own operands (the same rounding of the same values, the same GEMMs).
gpuSwitchKeepsBits((what) => `GPU: stories260K ${what}, T = 45: the executor's loss and gradients with shared casts are bit-identical to a cast per GEMM`, CASES, 'castOnce');
