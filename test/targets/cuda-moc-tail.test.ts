// The MoC reduce in the fused up·down kernel's tail blocks (LowerOptions.mocMerge 'tail',
// MOCC_CUDA_MOC_TAIL=1; moc.ts mocUpDown): on the CPU, the launches a decode step has with and without
// it (one moc_reduce fewer per MoC layer, nothing else changed), the switch read in one place, and the
// tail kernel assembling for sm_80 / sm_90 with no local memory. The kernel itself (atomics, spinning)
// cannot run on the PTX interpreter: its GPU tests are in cuda-kernels.test.ts (against ref and bit for
// bit the two-kernel path) and cuda-model.test.ts (stories260K logits against HF and the switch off).
import test from 'ava';
import { buildLlamaGraph } from '../../src/import/llama-graph.js';
import { loadModel } from '../../driver/load.js';
import { swigluToMoc } from '../../passes/swiglu-to-moc.js';
import { lowerToCuda } from '../../targets/cuda/lower.js';
import { optInLowering, sessionLowerOptions } from '../../targets/cuda/index.js';
import { counterLayout, type Program } from '../../targets/cuda/program.js';
import * as M from '../../targets/cuda/ptx/moc.js';
import { PRESET_1B } from '../../src/model/presets.js';
import { CHECKPOINTS } from '../helpers/fixtures.js';
import { assertEachAssembles } from '../helpers/ptxas.js';
import { ptxasRequirement, testsNeeding } from '../helpers/requires.js';

const ptxasTest = testsNeeding(ptxasRequirement());

const launches = (p: Program) => p.steps.filter((s) => s.kind === 'launch');
const count = (p: Program, prefix: string) => launches(p).filter((s) => s.kind === 'launch' && s.kernel.startsWith(prefix)).length;

/** The decode program as a session lowers it (attention merged in its last block, the session default), with and without the tail merge. */
function decodePrograms(graph: Parameters<typeof lowerToCuda>[0], spec: Parameters<typeof lowerToCuda>[1]) {
  const base = sessionLowerOptions({ warm: true, wgmma: false, optIn: { decodeMerge: 'last-block' } });
  return {
    off: lowerToCuda(graph, spec, { ...base, prefill: false }),
    on: lowerToCuda(graph, spec, { ...base, prefill: false, mocMerge: 'tail' }),
  };
}

function checkCounts(t: import('ava').ExecutionContext, off: Program, on: Program, layers: number) {
  const offN = launches(off).length, onN = launches(on).length;
  t.is(count(off, 'moc_reduce'), layers);
  t.is(count(on, 'moc_reduce'), 0);
  t.is(count(on, 'moc_updown'), layers);
  t.true(launches(on).every((s) => s.kind === 'launch' && (!s.kernel.startsWith('moc_updown') || s.kernel.endsWith('_tail'))));
  t.is(onN, offN - layers, `launches a decode step: ${offN} → ${onN}`);
  // every other launch is the same kernel in the same order
  const strip = (p: Program) => launches(p).map((s) => (s.kind === 'launch' ? s.kernel.replace(/_tail$/, '') : '')).filter((k) => !k.startsWith('moc_reduce'));
  t.deepEqual(strip(on), strip(off));
  t.is(on.counters?.moc, M.mocTailCounters(on.kvCache.capacity));
  t.is(off.counters?.moc, undefined);
  t.true(counterLayout(on.counters).total > counterLayout(off.counters).total);
  t.log(`decode step launches: ${offN} with moc_reduce, ${onN} with the tail merge (${layers} MoC layers); greedy tail +${on.greedyTail.length}`);
}

test('stories260K MoC K=32: the tail merge removes one moc_reduce launch per layer from the decode step, nothing else', (t) => {
  const m = loadModel(CHECKPOINTS.gguf, { selection: { k: 32 } });
  try {
    const { off, on } = decodePrograms(m.graph, m.spec);
    checkCounts(t, off, on, m.spec.nLayers);
  } finally {
    m.close();
  }
});

test('1B preset MoC K=1024 (bf16 graph): the tail merge removes one moc_reduce launch per layer from the decode step', (t) => {
  const graph = swigluToMoc.run(buildLlamaGraph(PRESET_1B, (n) => (n.includes('norm') ? 'f32' : 'bf16')), { k: 1024 });
  const { off, on } = decodePrograms(graph, PRESET_1B);
  checkCounts(t, off, on, PRESET_1B.nLayers);
  // the tail: 32 blocks of the 128 of a row (downReduce's blocks at d = 2048)
  t.is(M.mocTailBlocks(2048, 1024), 32);
  t.is(M.upDownSplit(1024).blocks, 128);
});

test('the switch: MOCC_CUDA_MOC_TAIL=1 only, read by optInLowering; the baseline lowering ignores it', (t) => {
  t.is(optInLowering({ MOCC_CUDA_MOC_TAIL: '1' }).mocMerge, 'tail');
  t.is(optInLowering({}).mocMerge, undefined);
  t.is(optInLowering({ MOCC_CUDA_MOC_TAIL: '0' }).mocMerge, undefined);
  t.is(sessionLowerOptions({ baseline: true, warm: true, wgmma: false, optIn: { mocMerge: 'tail' } }).mocMerge, undefined);
  t.is(sessionLowerOptions({ warm: true, wgmma: false, optIn: { mocMerge: 'tail' } }).mocMerge, 'tail');
});

test('mocTailBlocks: one per downReduce block, never more than the row has', (t) => {
  t.is(M.mocTailBlocks(64, 32), 1); // stories260K: 4 blocks a row, 1 reduce block
  t.is(M.mocTailBlocks(2048, 8), 1); // 1 block a row: it reduces all 32 column blocks itself
  t.is(M.mocTailBlocks(4096, 2688), 64);
  t.is(M.mocTailCounters(3), 7);
});

ptxasTest('the tail-merge up·down kernels assemble for sm_80 and sm_90 with no local memory', (t) => {
  const cases = [['bf16', 2048, 5461, 1024, true, true], ['bf16', 64, 172, 32, true, true], ['f32', 100, 300, 7, false, false], ['f16', 4096, 14336, 2688, true, true], ['f32', 2048, 5461, 1000, false, false], ['bf16', 2048, 5461, 8, true, false]] as const;
  assertEachAssembles(t, cases.map(([dtype, d, f, kKeep, norm, warm]) => M.mocUpDown({ dtype, d, f, kKeep, ...(norm ? { norm: { dtype: 'f32' as const, eps: 1e-5 } } : {}), warm, merge: 'tail' })));
});

test('downReduce is unchanged by its body moving into emitReduceColumns (the tail reuses it): its text holds one barrier and no atomics', (t) => {
  const text = M.downReduce(2048, 128).text;
  t.is(text.match(/bar\.sync/g)?.length, 1);
  t.false(/atom|ld\.acquire/.test(text));
  const tail = M.mocUpDown({ dtype: 'bf16', d: 2048, f: 5461, kKeep: 1024, merge: 'tail' }).text;
  t.true(tail.includes('atom.relaxed.gpu.global.inc.u32') && tail.includes('atom.acq_rel.gpu.global.add.u32') && tail.includes('ld.acquire.gpu.global.u32') && tail.includes('ld.global.cg.f32'));
});
