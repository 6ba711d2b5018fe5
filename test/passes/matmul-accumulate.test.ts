// matmul-accumulate (passes/matmul-accumulate.ts): before/after IR text written out by hand (the
// folds of matmul and rmsnorm_grad and the adds that must stay); the fold table's ops agree with the
// op table; the verifier's rule for a consumed input (src/ir/verify.ts) and
// the memory plan's in-place storage (passes/memory-plan.ts) on hand-made graphs; on training graphs
// (the tiny LLaMA dense and MoC, stories260K dense gcp and MoC moc-gcp): the result verifies, the ref
// target and the bf16-GEMM oracle compute the same bits with and without the fold, the CUDA
// executor's f32 mode on the PTX interpreter too (the accumulate variants of the matmul and
// rmsnorm_grad kernels; the bf16 GEMMs do not run on the interpreter), and under bf16 on a recording
// device each fold removes one add launch and turns its producer's kernel into the accumulate one
// writing where the acc input is. The 1B preset's census (adds removed, arena) as bench/NOTES.md
// session 17 states it. On a GPU: the bf16 executor's outputs with and without the fold, bit for bit.
// With ptxas: the accumulate kernels assemble.
import test from 'ava';
import { checkpointGraph } from '../../driver/load.js';
import { trainingGraph } from '../../driver/training-graph.js';
import { ACCUMULATE_FOLDS, foldableAdds, matmulAccumulate } from '../../passes/matmul-accumulate.js';
import { opDef } from '../../src/ir/ops.js';
import { checkArena, planMemory } from '../../passes/memory-plan.js';
import { parseGraph } from '../../src/ir/parse.js';
import { printGraph } from '../../src/ir/print.js';
import { verifyGraph } from '../../src/ir/verify.js';
import type { Graph } from '../../src/ir/types.js';
import { PRESET_1B } from '../../src/model/presets.js';
import { runTrainingGraph } from '../../targets/ref/train.js';
import { CudaTrainingExecutor, executorGraph, executorPlan, type TrainingExecutorOptions } from '../../targets/cuda/train/executor.js';
import { trainMatmulAccumulateFromEnv } from '../../targets/cuda/train/ops-bf16.js';
import { recordingDevice } from '../helpers/recording-device.js';
import { simTrainDevice } from '../helpers/train-sim-device.js';
import { gpuSwitchKeepsBits, storiesTraining, type StoriesCase } from '../helpers/stories-training.js';
import { assertRewrite, sameBits } from '../helpers/pass-checks.js';
import { runTrainingGraphBf16Matmuls } from '../helpers/train-bf16-oracle.js';
import { batch, POISON, randomWeights, TINY } from '../helpers/train-tiny-model.js';
import { findPtxas, ptxasRequirement, testsNeeding } from '../helpers/requires.js';
import { assertEachAssembles } from '../helpers/ptxas.js';
import { pad8 } from '../../targets/cuda/ptx/layout.js';

/** The test graph around its body: the same inputs, params and outputs before and after. */
const block = (body: string) => `graph block
  input %x : f32[T,8]
  input %dq : f32[T,6]
  input %dk : f32[T,6]
  input %dv : f32[T,6]
  param @wq : f32[6,8]
  param @wk : f32[6,8]
  param @wv : f32[6,8]
${body}
  output %dx
  output %r
  output %u
  output %dwk
end
`;

const BEFORE = block(`  %v = matmul(%dv, @wv) : f32[T,8]
  %k = matmul(%dk, @wk) : f32[T,8]
  %dwk = matmul_tn(%dk, %x) : f32[6,8]
  %s = add(%v, %k) : f32[T,8]
  %q = matmul(%dq, @wq) : f32[T,8]
  %dx = add(%q, %s) : f32[T,8]
  %h = matmul(%dq, @wk) : f32[T,8]
  %r = add(%x, %h) : f32[T,8]
  %e = fill_like(%x) {value=1} : f32[T,8]
  %o = matmul(%dv, @wq) : f32[T,8]
  %t = add(%e, %o) : f32[T,8]
  %u = mul(%t, %e) : f32[T,8]`);

// %s: both operands single-use matmul products: the later one (%k) folds into %v, at the add's place
// (after %dwk). %dx: the product first (add(%q, %s)), %s dies there: folds. %r: %x is a graph input
// (not folded). %t: %e is read after the add (by %u): not folded.
const AFTER = block(`  %v = matmul(%dv, @wv) : f32[T,8]
  %dwk = matmul_tn(%dk, %x) : f32[6,8]
  %s = matmul_acc(%dk, @wk, %v) : f32[T,8]
  %dx = matmul_acc(%dq, @wq, %s) : f32[T,8]
  %h = matmul(%dq, @wk) : f32[T,8]
  %r = add(%x, %h) : f32[T,8]
  %e = fill_like(%x) {value=1} : f32[T,8]
  %o = matmul(%dv, @wq) : f32[T,8]
  %t = add(%e, %o) : f32[T,8]
  %u = mul(%t, %e) : f32[T,8]`);

test('folds add(a, matmul) where the product has one reader and a dies there: before/after IR text', (t) => {
  assertRewrite(t, matmulAccumulate, BEFORE, AFTER);
});

const NORM_BEFORE = `graph norms
  input %x : f32[T,8]
  input %dy : f32[T,8]
  param @n : f32[8]
  param @m : f32[8]
  param @w : f32[8,8]
  %h = matmul(%dy, @w) : f32[T,8]
  %g, %g.1 = rmsnorm_grad(%x, @n, %dy) {eps=0.00001} : f32[T,8], f32[8]
  %s = add(%h, %g) : f32[T,8]
  %e, %e.1 = rmsnorm_grad(%x, @m, %s) {eps=0.00001} : f32[T,8], f32[8]
  %u = mul(%e.1, @m) : f32[8]
  %t = add(%s, %e) : f32[T,8]
  %f, %f.1 = rmsnorm_grad(%x, @n, %t) {eps=0.00001} : f32[T,8], f32[8]
  %v = add(%t, %f) : f32[T,8]
  %c, %c.1 = rmsnorm_grad(%x, @m, %dy) {eps=0.00001} : f32[T,8], f32[8]
  %dx = add(%c, %v) : f32[T,8]
  output %dx
  output %g.1
  output %u
  output %f.1
  output %c.1
end
`;

// %s: both operands single-use products (%h of a matmul, %g of an rmsnorm_grad): the later producer's
// (%g) folds, over %h, its dweight %g.1 now defined at the add's place. %t: %e.1 (the dweight) is
// read before the add (by %u): not folded. %v: %t is the rmsnorm_grad's dy: not folded. %dx: the
// product first (add(%c, %v)), %v dies there: folds.
const NORM_AFTER = `graph norms
  input %x : f32[T,8]
  input %dy : f32[T,8]
  param @n : f32[8]
  param @m : f32[8]
  param @w : f32[8,8]
  %h = matmul(%dy, @w) : f32[T,8]
  %s, %g.1 = rmsnorm_grad_acc(%x, @n, %dy, %h) {eps=0.00001} : f32[T,8], f32[8]
  %e, %e.1 = rmsnorm_grad(%x, @m, %s) {eps=0.00001} : f32[T,8], f32[8]
  %u = mul(%e.1, @m) : f32[8]
  %t = add(%s, %e) : f32[T,8]
  %f, %f.1 = rmsnorm_grad(%x, @n, %t) {eps=0.00001} : f32[T,8], f32[8]
  %v = add(%t, %f) : f32[T,8]
  %dx, %c.1 = rmsnorm_grad_acc(%x, @m, %dy, %v) {eps=0.00001} : f32[T,8], f32[8]
  output %dx
  output %g.1
  output %u
  output %f.1
  output %c.1
end
`;

test('folds add(a, rmsnorm_grad\'s dx) where dx has one reader, a dies there and the dweight is not read before: before/after IR text', (t) => {
  assertRewrite(t, matmulAccumulate, NORM_BEFORE, NORM_AFTER);
});

test('no fold where a producer moved to its add would read a value an earlier fold consumed', (t) => {
  // %z folds %m's matmul, moving it to %z's place, where it reads %a; %y, between, may fold %g only
  // by writing over %a: that fold is dropped (else the verifier refuses: %a read after it is consumed)
  const g = parseGraph(`graph moved
  input %x : f32[T,8]
  input %dy : f32[T,8]
  param @n : f32[8]
  param @w : f32[8,8]
  %a = fill_like(%x) {value=2} : f32[T,8]
  %m = matmul(%a, @w) : f32[T,8]
  %b = fill_like(%x) {value=3} : f32[T,8]
  %g, %g.1 = rmsnorm_grad(%x, @n, %dy) {eps=0.00001} : f32[T,8], f32[8]
  %y = add(%a, %g) : f32[T,8]
  %z = add(%b, %m) : f32[T,8]
  output %y
  output %z
  output %g.1
end
`);
  verifyGraph(g);
  t.deepEqual([...foldableAdds(g).keys()], [5], 'only %z');
  const after = matmulAccumulate.run(g);
  t.notThrows(() => verifyGraph(after));
  t.deepEqual(after.nodes.map((n) => n.op), ['fill_like', 'fill_like', 'rmsnorm_grad', 'add', 'matmul_acc']);
});

test('the fold table agrees with the op table: each fused op takes its producer\'s inputs and attrs, then acc, which it consumes, with the producer\'s outputs', (t) => {
  for (const [producer, fused] of Object.entries(ACCUMULATE_FOLDS)) {
    const p = opDef(producer), f = opDef(fused);
    t.deepEqual(f.inputs.slice(0, -1), p.inputs, fused);
    t.is(f.consumes, p.inputs.length, `${fused} consumes its last input`);
    t.deepEqual(f.attrs, p.attrs, fused);
  }
});

test('no fold: the product read twice or kept as an output, a matmul_tn product, a = the product, a read by the matmul', (t) => {
  const g = (body: string, outputs = '  output %y') => parseGraph(`graph g
  input %x : f32[T,8]
  input %dy : f32[T,6]
  param @w : f32[6,8]
  param @sq : f32[8,8]
${body}
${outputs}
end
`);
  const stays = (what: string, graph: Graph) => {
    verifyGraph(graph);
    t.is(foldableAdds(graph).size, 0, what);
    t.is(printGraph(matmulAccumulate.run(graph)), printGraph(graph), what);
  };
  const a = '  %a = fill_like(%x) {value=2} : f32[T,8]';
  stays('product read twice', g(`${a}\n  %m = matmul(%dy, @w) : f32[T,8]\n  %y = add(%a, %m) : f32[T,8]\n  %z = mul(%m, %y) : f32[T,8]`, '  output %z'));
  stays('product a graph output', g(`${a}\n  %m = matmul(%dy, @w) : f32[T,8]\n  %y = add(%a, %m) : f32[T,8]`, '  output %y\n  output %m'));
  stays('a graph output', g(`${a}\n  %m = matmul(%dy, @w) : f32[T,8]\n  %y = add(%a, %m) : f32[T,8]`, '  output %y\n  output %a'));
  stays('matmul_tn product', g(`  %b = matmul_tn(%dy, %x) : f32[6,8]\n  %m = matmul_tn(%dy, %x) : f32[6,8]\n  %y = add(%b, %m) : f32[6,8]`));
  stays('add(m, m)', g(`  %m = matmul(%dy, @w) : f32[T,8]\n  %y = add(%m, %m) : f32[T,8]`));
  stays('a read by the matmul', g(`${a}\n  %m = matmul(%a, @sq) : f32[T,8]\n  %y = add(%a, %m) : f32[T,8]`));
});

const ACC = (body: string, outputs = '  output %y') => parseGraph(`graph g
  input %dy : f32[T,6]
  param @w : f32[6,8]
  param @p : f32[T,8]
${body}
${outputs}
end
`);

test('verify: matmul_acc consumes its acc (a value no later node reads, not kept, not also a or b), and types it', (t) => {
  const a = '  %a = fill_like(%dy) {value=2} : f32[T,6]\n  %b = matmul(%a, @w) : f32[T,8]';
  t.notThrows(() => verifyGraph(ACC(`${a}\n  %y = matmul_acc(%dy, @w, %b) : f32[T,8]`)));
  t.throws(() => verifyGraph(ACC(`${a}\n  %y = matmul_acc(%dy, @w, %b) : f32[T,8]\n  %z = add(%y, %b) : f32[T,8]`, '  output %z')), { message: /consumes %b, which a later node reads/ });
  t.throws(() => verifyGraph(ACC(`${a}\n  %y = matmul_acc(%dy, @w, %b) : f32[T,8]`, '  output %y\n  output %b')), { message: /consumes %b, which the graph keeps/ });
  t.throws(() => verifyGraph(ACC(`  %y = matmul_acc(%dy, @w, @p) : f32[T,8]`)), { message: /must be a value, not @p/ });
  t.throws(() => verifyGraph(ACC(`  %s = matmul_tn(%dy, %dy) : f32[6,6]\n  %y = matmul_acc(%s, %s, %s) : f32[6,6]`)), { message: /which it also reads as another input/ });
  t.throws(() => verifyGraph(ACC(`  %a = fill_like(%dy) {value=2} : f32[T,6]\n  %y = matmul_acc(%dy, @w, %a) : f32[T,8]`)), { message: /acc and a·b differ/ });
});

test('verify: rmsnorm_grad_acc consumes its acc (input 3), and types it as rmsnorm_grad\'s outputs', (t) => {
  const g = (body: string, outputs = '  output %y\n  output %dw') => parseGraph(`graph g
  input %x : f32[T,8]
  input %dy : f32[T,8]
  param @n : f32[8]
${body}
${outputs}
end
`);
  const a = '  %a = fill_like(%x) {value=2} : f32[T,8]';
  t.notThrows(() => verifyGraph(g(`${a}\n  %y, %dw = rmsnorm_grad_acc(%x, @n, %dy, %a) {eps=0.00001} : f32[T,8], f32[8]`)));
  t.throws(() => verifyGraph(g(`${a}\n  %y, %dw = rmsnorm_grad_acc(%x, @n, %dy, %a) {eps=0.00001} : f32[T,8], f32[8]\n  %z = add(%y, %a) : f32[T,8]`, '  output %z\n  output %dw')), { message: /consumes %a, which a later node reads/ });
  t.throws(() => verifyGraph(g(`  %y, %dw = rmsnorm_grad_acc(%x, @n, %dy, %x) {eps=0.00001} : f32[T,8], f32[8]`)), { message: /consumes %x, which it also reads as another input/ });
  t.throws(() => verifyGraph(g(`  %a = fill_like(@n) {value=2} : f32[8]\n  %y, %dw = rmsnorm_grad_acc(%x, @n, %dy, %a) {eps=0.00001} : f32[T,8], f32[8]`)), { message: /acc and x differ/ });
});

test('memory plan: matmul_acc\'s output takes its acc\'s storage, counted once; checkArena checks the link', (t) => {
  const g = ACC(`  %a = fill_like(%dy) {value=2} : f32[T,6]
  %b = matmul(%a, @w) : f32[T,8]
  %c = fill_like(%dy) {value=3} : f32[T,6]
  %y = matmul_acc(%c, @w, %b) : f32[T,8]
  %z = mul(%y, %y) : f32[T,8]`, '  output %z');
  verifyGraph(g);
  const p = planMemory(g, { T: 4 });
  t.is(p.offsets.get('y'), p.offsets.get('b'), 'in place');
  t.is(p.values.find((v) => v.name === 'y')!.shares, 'b');
  t.notThrows(() => checkArena(p));
  // T = 4: [T,6] 96 bytes, [T,8] 128. Live: step 1 dy, a, b = 320; step 2 dy, b, c = 320; step 3
  // (matmul_acc) b's storage and c = 224, not 352 with y counted beside b; step 4 y, z = 256
  t.is(p.peakBytes, 320, 'the storage counted once at the node');
  const moved = { ...p, offsets: new Map([...p.offsets, ['y', p.offsets.get('y')! + 4096]]) };
  t.throws(() => checkArena(moved), { message: /%y takes the storage of %b, which is elsewhere in the arena/ });
  const late = { ...p, values: p.values.map((v) => (v.name === 'b' ? { ...v, lastUse: v.lastUse + 1 } : v)) };
  t.throws(() => checkArena(late), { message: /%y takes the storage of %b, which is read at step 4/ });
});

const FUSED = new Set(Object.values(ACCUMULATE_FOLDS));
/** The fused nodes of g, by op. */
const foldsOf = (g: Graph) => ({
  all: g.nodes.filter((n) => FUSED.has(n.op)),
  matmul: g.nodes.filter((n) => n.op === 'matmul_acc').length,
  norm: g.nodes.filter((n) => n.op === 'rmsnorm_grad_acc').length,
});
/** The input a fused node consumes (output 0 is written over it). */
const accOf = (n: Graph['nodes'][number]) => n.inputs[opDef(n.op).consumes!]!.name;

/** Bitwise equality of two output lists. */
const TINY_CASES: Array<[string, Graph]> = [
  ['tiny 2-layer LLaMA, gcp', trainingGraph(checkpointGraph(TINY, () => 'f32', 'dense'), { loss: { kind: 'cross_entropy' }, policy: 'gcp' })],
  ['tiny 1-layer LLaMA as MoC (K = 12 of 36), moc-gcp', trainingGraph(checkpointGraph({ ...TINY, nLayers: 1 }, () => 'f32', { k: 12 }), { loss: { kind: 'cross_entropy' }, policy: 'moc-gcp' })],
];

for (const [what, g] of TINY_CASES) {
  test(`interpreted: ${what}: the CUDA executor (f32 mode) with the folds (matmul_acc, rmsnorm_grad_acc) computes the same bits as without, in place, one add launch fewer a fold`, (t) => {
    const folded = matmulAccumulate.run(g);
    verifyGraph(folded);
    const kinds = foldsOf(folded), folds = kinds.all.length;
    t.true(kinds.matmul >= 2, `${kinds.matmul} matmul folds`);
    t.true(kinds.norm >= 2, `${kinds.norm} rmsnorm_grad folds`);
    const weights = randomWeights(g, 7), inputs = batch([7, 5], TINY.vocabSize, 11), T = 12;
    sameBits(t, runTrainingGraph(folded, weights, inputs, T).outputs, runTrainingGraph(g, weights, inputs, T).outputs, g.outputs);
    const run = (matmulAccumulate: boolean) => {
      const dev = simTrainDevice(16 << 20);
      const ex = new CudaTrainingExecutor(g, weights, T, dev, { poison: POISON, matmulAccumulate });
      try {
        const outputs = ex.run(inputs).outputs;
        return { outputs, launches: dev.launches, ex };
      } finally {
        ex.dispose();
      }
    };
    const off = run(false), on = run(true);
    t.is(foldsOf(on.ex.g).all.length, folds);
    for (const n of foldsOf(on.ex.g).all) t.is(on.ex.plan.offsets.get(n.outputs[0]!.name), on.ex.plan.offsets.get(accOf(n)), `%${n.outputs[0]!.name} in place`);
    sameBits(t, on.outputs, off.outputs, g.outputs);
    t.is(off.launches - on.launches, folds, 'one launch (the add) fewer a fold');
  });
}

const STORIES: StoriesCase[] = [
  ['dense, gcp', 'dense', 'gcp', { matmul: 'bf16' }],
  ['MoC K = 32, moc-gcp, dense MoC GEMMs', { k: 32 }, 'moc-gcp', { matmul: 'bf16', mocMatmul: 'dense-bf16' }],
];

for (const [what, selection, policy, opts] of STORIES) {
  test(`stories260K ${what}: the bf16 executor's graph folds 5 adds a layer (3 into GEMMs, 2 into norm gradients), the same bits under the bf16 oracle; on a recording device each fold is one add launch fewer and an accumulate kernel into the acc's storage`, (t) => {
    const { m, g, weights } = storiesTraining(policy, selection);
    try {
      const off = executorGraph(g, { ...opts, matmulAccumulate: false }), on = executorGraph(g, opts);
      verifyGraph(on);
      const kinds = foldsOf(on), folds = kinds.all.length, layers = m.spec.nLayers;
      t.is(kinds.matmul, 3 * layers, 'dq·Wq + dk·Wk + dv·Wv (two), the FFN input\'s dx (one) a layer');
      t.is(kinds.norm, 2 * layers, 'the residual gradient plus each norm\'s dx (two) a layer');
      t.is(off.nodes.filter((n) => n.op === 'add').length - on.nodes.filter((n) => n.op === 'add').length, folds);
      const T = 45, inputs = batch([20, 25], m.spec.vocabSize, 7);
      sameBits(t, runTrainingGraphBf16Matmuls(on, weights, inputs, T), runTrainingGraphBf16Matmuls(off, weights, inputs, T), g.outputs);

      const launchesOf = (matmulAccumulate: boolean) => {
        const r = recordingDevice();
        const ex = new CudaTrainingExecutor(g, weights, T, r.dev, { ...opts, matmulAccumulate });
        ex.launch(inputs);
        return { ex, launches: r.launches };
      };
      const a = launchesOf(false), b = launchesOf(true);
      const count = (ls: { kernel: { name: string } }[], re: RegExp) => ls.filter((l) => re.test(l.kernel.name)).length;
      t.is(count(a.launches, /^add_f32_/) - count(b.launches, /^add_f32_/), folds, 'one add launch fewer a fold');
      t.is(a.launches.length - b.launches.length, folds, 'nothing else changes in number');
      t.is(count(b.launches, /^gemm_xw_bf16_.*_acc$/), kinds.matmul, 'one accumulate GEMM a matmul fold');
      t.is(count(b.launches, /^rmsnorm_grad_rows_.*_acc$/), kinds.norm, 'one accumulate norm-gradient kernel a norm fold');
      t.is(count(a.launches, /_acc$/), 0);
      for (const n of foldsOf(b.ex.g).all) {
        const y = Number(b.ex.valueTensor(n.outputs[0]!.name).ptr);
        t.is(y, Number(b.ex.valueTensor(accOf(n)).ptr), `%${n.outputs[0]!.name} at its acc's address`);
        t.true(b.launches.some((l) => /_acc$/.test(l.kernel.name) && Number((l.args[0] as { ptr: number }).ptr) === y), `%${n.outputs[0]!.name}'s accumulate kernel writes there`);
      }
      // The live bytes never grow (each fold drops a buffer); the arena may by one [T, d] f32 buffer:
      // the norm folds chain the residual gradient through every layer's backward in one storage
      // (each fold consumes the last one's output), which the greedy-by-size placement
      // (passes/memory-plan.ts) fits less tightly here (stories260K: +11520 bytes; the 1B arena: unchanged)
      t.true(b.ex.plan.peakBytes <= a.ex.plan.peakBytes, `live peak ${a.ex.plan.peakBytes} → ${b.ex.plan.peakBytes} bytes`);
      t.true(b.ex.arenaBytes <= a.ex.arenaBytes + T * pad8(m.spec.dim) * 4, `arena ${a.ex.arenaBytes} → ${b.ex.arenaBytes} bytes`);
      t.log(`${folds} folds; launches ${a.launches.length} → ${b.launches.length}; arena ${a.ex.arenaBytes} → ${b.ex.arenaBytes} bytes, live peak ${a.ex.plan.peakBytes} → ${b.ex.plan.peakBytes}`);
    } finally {
      m.close();
    }
  });
}

test('the 1B preset at 64 × 256 rows (bf16 GEMMs, shared casts): 120 of 168 adds fold (3 into GEMMs and 2 into norm gradients a layer); the arena does not grow (its peak is elsewhere), as bench/NOTES.md session 17 says', (t) => {
  for (const [selection, policy] of [['dense', 'gcp'], [{ k: 1024 }, 'moc-gcp']] as const) {
    const g = trainingGraph(checkpointGraph(PRESET_1B, (n) => (n.includes('norm') ? 'f32' : 'bf16'), selection), { loss: { kind: 'cross_entropy' }, policy });
    const adds = (x: Graph) => x.nodes.filter((n) => n.op === 'add').length;
    const off = executorGraph(g, { matmul: 'bf16', matmulAccumulate: false }), on = executorGraph(g, { matmul: 'bf16' });
    t.is(adds(off), 168, policy);
    t.is(foldsOf(on).matmul, 72, policy);
    t.is(foldsOf(on).norm, 48, policy);
    t.is(adds(on), 48, policy);
    const before = executorPlan(g, 64 * 256, { matmul: 'bf16', matmulAccumulate: false }).arenaBytes, after = executorPlan(g, 64 * 256, { matmul: 'bf16' });
    t.notThrows(() => checkArena(after));
    t.true(after.arenaBytes <= before, `${policy}: arena ${before} → ${after.arenaBytes}`);
    t.log(`${policy}: adds ${adds(off)} → ${adds(on)}; arena ${(before / 2 ** 30).toFixed(3)} → ${(after.arenaBytes / 2 ** 30).toFixed(3)} GiB`);
  }
});

test('the switch: MOCC_CUDA_TRAIN_MATMUL_ACC 0 | 1 | unset (the executor\'s default: folded with bf16 GEMMs only)', (t) => {
  t.is(trainMatmulAccumulateFromEnv({}), undefined);
  t.is(trainMatmulAccumulateFromEnv({ MOCC_CUDA_TRAIN_MATMUL_ACC: '0' }), false);
  t.is(trainMatmulAccumulateFromEnv({ MOCC_CUDA_TRAIN_MATMUL_ACC: '1' }), true);
  t.throws(() => trainMatmulAccumulateFromEnv({ MOCC_CUDA_TRAIN_MATMUL_ACC: 'yes' }), { message: /expected 0 or 1/ });
  const g = TINY_CASES[0]![1];
  const folds = (o: TrainingExecutorOptions) => executorGraph(g, o).nodes.filter((n) => n.op === 'matmul_acc').length;
  t.true(folds({ matmul: 'bf16' }) > 0);
  t.is(folds({ matmul: 'bf16', matmulAccumulate: false }), 0);
  t.is(folds({}), 0, 'f32 mode: off unless asked');
  t.true(folds({ matmulAccumulate: true }) > 0);
});

testsNeeding(ptxasRequirement(findPtxas()))('the accumulate kernels the fold launches (f32 SIMT matmul; bf16 mma.sync GEMMs; rmsnorm_grad rows) assemble for sm_80 and sm_90 with no local memory', (t) => {
  const g = TINY_CASES[0]![1], weights = randomWeights(g, 1);
  const acc = ([{}, { matmul: 'bf16' }] as TrainingExecutorOptions[]).flatMap((o) => new CudaTrainingExecutor(g, weights, 12, recordingDevice().dev, { ...o, matmulAccumulate: true }).kernels.filter((k) => k.name.endsWith('_acc')));
  t.deepEqual([...new Set(acc.map((k) => k.name.replace(/_k\d+_n\d+|_m\d+n\d+k\d+_w\dx\d|_d\d+_e[0-9A-F]+_r\d+/, '')))].sort(), ['gemm_xw_bf16_acc', 'matmul_f32_acc', 'rmsnorm_grad_rows_acc']);
  assertEachAssembles(t, acc);
});

// On a GPU (skipped without one): the bf16 executor's outputs with the fold equal, bit for bit, those
// without: the GEMM's accumulate epilogue adds the same f32 product to the same acc with one add.f32,
// as the add kernel does (mma.sync, or wgmma on Hopper).
gpuSwitchKeepsBits((what) => `GPU: stories260K ${what}, T = 45: the executor's loss and gradients with adds folded are bit-identical to adds kept`, STORIES, 'matmulAccumulate', { poison: POISON });
