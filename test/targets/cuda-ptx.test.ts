// CI (no GPU): every PTX module `mocc compile --target cuda` emits — stories260K dense, MoC K=32 and
// a:b, and a 1B-preset-shaped graph — assembles with ptxas for sm_80 and sm_90; generated text is
// deterministic and snapshot-tested.
import test from 'ava';
import { execFileSync, spawnSync } from 'node:child_process';
import { readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { buildLlamaGraph } from '../../src/import/llama-graph.js';
import { MemoryTensor } from '../../src/import/tensor.js';
import { swigluToMoc } from '../../passes/swiglu-to-moc.js';
import { compileCuda } from '../../targets/cuda/index.js';
import { lowerToCuda } from '../../targets/cuda/lower.js';
import { counterLayout } from '../../targets/cuda/program.js';
import * as D from '../../targets/cuda/ptx/dense.js';
import * as M from '../../targets/cuda/ptx/moc.js';
import * as A from '../../targets/cuda/ptx/attention.js';
import * as DA from '../../targets/cuda/ptx/decode-attention.js';
import { mocc, tempDir } from '../helpers/cli.js';
import { CHECKPOINTS } from '../helpers/fixtures.js';
import { findPtxas, ptxasRequirement, testsNeeding } from '../helpers/requires.js';
import { assemblePtx, NO_LOCAL_MEMORY } from '../helpers/ptxas.js';
import { PRESET_1B } from '../../src/model/presets.js';

const ptxas = findPtxas();
/** Assembling needs ptxas (skipped without it; a failure in CI). */
const ptxasTest = testsNeeding(ptxasRequirement(ptxas));

function assembleAll(t: { true(v: boolean, m?: string): void; is(a: unknown, b: unknown, m?: string): void }, dir: string, arches = ['sm_80', 'sm_90']): number {
  const files = readdirSync(join(dir, 'ptx')).filter((f) => f.endsWith('.ptx'));
  for (const arch of arches) {
    // one ptxas call per module, as a driver JIT would see each
    for (const f of files) {
      const r = spawnSync(ptxas!, [`-arch=${arch}`, join(dir, 'ptx', f), '-o', '/dev/null'], { encoding: 'utf8' });
      t.is(r.status, 0, `${f} for ${arch}: ${r.stderr}`);
    }
  }
  return files.length;
}

ptxasTest('ptxas answers --version (CI validates PTX with it)', (t) => {
  t.regex(execFileSync(ptxas!, ['--version'], { encoding: 'utf8' }), /ptxas/i);
});

for (const [label, flags] of [['dense', ['--dense']], ['MoC K=32', ['--k', '32']], ['MoC 2:8', ['--pattern', '2:8']]] as const) {
  ptxasTest(`stories260K ${label}: every emitted module assembles for sm_80 and sm_90`, (t) => {
    const dir = tempDir(t);
    t.is(mocc('convert', CHECKPOINTS.gguf, '-o', join(dir, 'pkg'), ...flags).code, 0);
    const r = mocc('compile', join(dir, 'pkg'), '--target', 'cuda', '-o', join(dir, 'out'));
    t.is(r.code, 0, r.stderr);
    t.true(assembleAll(t, join(dir, 'out')) >= 9); // dense: 9 kernels (MoC: more)
    // sm_90 modules keep the programmatic-launch waits (and only Hopper assembles them)
    const r90 = mocc('compile', join(dir, 'pkg'), '--target', 'cuda', '--arch', 'sm_90', '-o', join(dir, 'out90'));
    t.is(r90.code, 0, r90.stderr);
    t.true(assembleAll(t, join(dir, 'out90'), ['sm_90']) >= 9);
    const sample = readdirSync(join(dir, 'out90', 'ptx')).find((f) => f.startsWith('attention'))!;
    t.regex(readFileSync(join(dir, 'out90', 'ptx', sample), 'utf8'), /griddepcontrol\.wait/);
    t.notRegex(readFileSync(join(dir, 'out', 'ptx', sample), 'utf8'), /griddepcontrol/);
  });
}

test('compile --arch rejects an arch it does not emit', (t) => {
  const dir = tempDir(t);
  t.is(mocc('convert', CHECKPOINTS.gguf, '-o', join(dir, 'pkg')).code, 0);
  const r = mocc('compile', join(dir, 'pkg'), '--target', 'cuda', '--arch', 'sm_70', '-o', join(dir, 'out'));
  t.is(r.code, 1);
  t.regex(r.stderr, /^mocc: cuda target: --arch must be one of sm_80, sm_90 \(got sm_70\)/);
});

for (const [label, sel] of [['dense', null], ['MoC K=1024', { k: 1024 }]] as const) {
  ptxasTest(`1B-preset-shaped IR (bf16) ${label}: every module assembles`, (t) => {
    let graph = buildLlamaGraph(PRESET_1B, (n) => (n.includes('norm') ? 'f32' : 'bf16'));
    if (sel) graph = swigluToMoc.run(graph, sel);
    const dir = tempDir(t);
    // compile needs no weight values: the program only names them
    compileCuda({ graph, spec: PRESET_1B, weights: new Map<string, MemoryTensor>() }, dir);
    t.true(assembleAll(t, dir) >= 8);
    compileCuda({ graph, spec: PRESET_1B, weights: new Map<string, MemoryTensor>() }, join(dir, 'sm90'), 'sm_90');
    t.true(assembleAll(t, join(dir, 'sm90'), ['sm_90']) >= 8);
  });
}

// The decode attention (split + combine) and the cache writers in every cache dtype, at awkward head
// sizes (hd 6: 2-element vectors; 96: 12 vectors on 16 lanes; 256: two vectors a lane) and GQA.
ptxasTest('decode attention (combine kernel and last-block merge) and KV-cache stores assemble for sm_80 and sm_90 in every cache dtype, without spills', (t) => {
  const kernels = new Map<string, string>();
  for (const cache of ['f32', 'bf16', 'f16'] as const) {
    for (const [heads, kvHeads, hd, capacity] of [[32, 32, 64, 2048], [8, 4, 8, 512], [32, 8, 128, 8192], [4, 1, 64, 2048], [12, 4, 96, 1024], [2, 2, 256, 300], [8, 8, 6, 64]] as const) {
      const s = { heads, kvHeads, hd, cache, capacity };
      for (const k of [DA.attentionSplit(s), DA.attentionCombine(s), DA.attentionSplit({ ...s, merge: 'last-block' }), DA.attentionSplit({ ...s, early: true }), DA.attentionSplit({ ...s, merge: 'last-block', early: true })]) kernels.set(k.name, k.text);
    }
    for (const k of [A.kvStore(512, cache), A.ropeStore(32, 8, 64, 'interleaved', cache), D.gemvMulti([
      { dtype: 'bf16', inDim: 256, outDim: 256, epilogue: 'store', rope: { hd: 64, style: 'half' } },
      { dtype: 'bf16', inDim: 256, outDim: 128, epilogue: 'store', rope: { hd: 64, style: 'half' }, toCache: true, cacheDtype: cache },
      { dtype: 'bf16', inDim: 256, outDim: 128, epilogue: 'store', toCache: true, cacheDtype: cache },
    ])]) kernels.set(k.name, k.text);
  }
  for (const arch of ['sm_80', 'sm_90'] as const) {
    const r = assemblePtx([...kernels.values()], arch);
    t.is(r.status, 0, `${arch}: ${r.stderr}`);
    t.notRegex(r.stderr, /[1-9]\d* bytes spill/, `${arch}: a kernel spills`);
  }
});

test('the KV cache dtype: auto follows 16-bit K/V weights (f32 otherwise), an explicit option wins, and the cache writers and the attention use it', (t) => {
  const bf16 = buildLlamaGraph({ ...PRESET_1B, nLayers: 1 }, (n) => (n.includes('norm') ? 'f32' : 'bf16'));
  const f16 = buildLlamaGraph({ ...PRESET_1B, nLayers: 1 }, (n) => (n.includes('norm') ? 'f32' : 'f16'));
  const f32 = buildLlamaGraph({ ...PRESET_1B, nLayers: 1 });
  const cases = [[bf16, undefined, 'bf16'], [bf16, 'auto', 'bf16'], [f16, undefined, 'f16'], [f32, undefined, 'f32'], [f32, 'bf16', 'bf16'], [bf16, 'f32', 'f32'], [bf16, 'f16', 'f16']] as const;
  for (const [g, option, want] of cases) {
    const p = lowerToCuda(g, PRESET_1B, option ? { kvCache: option } : {});
    t.is(p.kvCache.dtype, want, `${option ?? 'default'}`);
    const names = p.steps.flatMap((s) => (s.kind === 'launch' ? [s.kernel] : []));
    const tagged = (prefix: string) => names.filter((k) => k.startsWith(prefix)).every((k) => (want === 'f32' ? !/_kv(bf16|f16)/.test(k) : k.endsWith(`_kv${want}`)));
    t.true(tagged('gemv_multi') && tagged('attention_split'), names.join(', '));
  }
});

// What one layer lowers to, by kernel family: the fusions must happen (RMSNorm folded into the
// GEMVs, RoPE and the KV append in the Q/K/V GEMV, the dense FFN in two launches, the MoC FFN in four).
const family = (kernel: string) => kernel.replace(/_(?:bf16|f16|f32|half|interleaved|[a-z]+\d).*$/, '');
for (const [label, sel, perLayer] of [
  ['dense', null, ['gemv_multi+norm+rope', 'attention_split', 'attention_combine', 'gemv accumulate', 'gemv silu_pair+norm', 'gemv accumulate']],
  ['MoC K=1024', { k: 1024 }, ['gemv_multi+norm+rope', 'attention_split', 'attention_combine', 'gemv accumulate', 'gemv store+norm', 'moc_topk+tau', 'moc_updown+norm+warm', 'moc_reduce']],
] as const) {
  test(`1B preset ${label}: one layer is ${perLayer.length} launches, no separate RMSNorm`, (t) => {
    let graph = buildLlamaGraph(PRESET_1B, (n) => (n.includes('norm') ? 'f32' : 'bf16'));
    if (sel) graph = swigluToMoc.run(graph, sel);
    const p = lowerToCuda(graph, PRESET_1B);
    const launches = p.steps.filter((s) => s.kind === 'launch').map((s) => (s as { kernel: string }).kernel);
    const describe = (k: string) => {
      const base = k.startsWith('gemv_multi') ? 'gemv_multi' : k.startsWith('gemv_') ? `gemv ${/_(store|accumulate|silu_pair|silu_gate)_/.exec(k)![1]}` : family(k);
      return base + (/_n(f32|bf16|f16)/.test(k) ? '+norm' : '') + (/_rope[hi]\d+_cache_\d+_cache/.test(k) ? '+rope' : '') + (k.endsWith('_warm') ? '+warm' : '') + (k.endsWith('_tau') ? '+tau' : '');
    };
    const names = launches.map(describe);
    t.is(names.length, 2 + PRESET_1B.nLayers * perLayer.length, names.join(', '));
    t.deepEqual(names.slice(1, 1 + perLayer.length), [...perLayer]);
    t.deepEqual(names.slice(0, 1), ['embedding']);
    t.deepEqual(names.slice(-1), ['gemv store+norm']); // the final norm folded into the logits
    t.false(launches.some((k) => k.startsWith('rmsnorm')));
  });
}

test('decodeMerge last-block: one attention launch a layer (out, part, q, caches, pos, counters) over heads x capacity counters; the default lowering has neither', (t) => {
  const graph = buildLlamaGraph(PRESET_1B, (n) => (n.includes('norm') ? 'f32' : 'bf16'));
  const plain = lowerToCuda(graph, PRESET_1B);
  t.deepEqual(lowerToCuda(graph, PRESET_1B, { decodeMerge: 'combine-kernel' }), plain);
  t.false('counters' in plain);
  const attn = (p: typeof plain) => p.steps.flatMap((s) => (s.kind === 'launch' && s.kernel.startsWith('attention_') ? [s] : []));
  t.is(attn(plain).length, 2 * PRESET_1B.nLayers);
  const merged = lowerToCuda(graph, PRESET_1B, { decodeMerge: 'last-block' });
  const launches = attn(merged);
  t.is(launches.length, PRESET_1B.nLayers);
  t.true(launches.every((s) => s.kernel.startsWith('attention_split_merge_') && s.grid[2] === 'T'), launches.map((s) => s.kernel).join(', '));
  t.deepEqual(launches[0]!.args.map((a) => a.kind), ['buf', 'buf', 'buf', 'kv', 'kv', 'pos', 'counters']);
  t.deepEqual(launches[0]!.args.at(-1), { kind: 'counters', region: 'attention' });
  t.deepEqual(merged.counters, { attention: PRESET_1B.nHeads * PRESET_1B.maxSeqLen });
  // the rest of the step is the same launches
  const others = (p: typeof plain) => p.steps.flatMap((s) => (s.kind === 'launch' && !s.kernel.startsWith('attention_') ? [s.kernel] : []));
  t.deepEqual(others(merged), others(plain));
});

test('1B preset MoC: each layer\'s Top-K leaves its threshold in its own slot, which that layer\'s up·down kernel reads; warm: false lowers without', (t) => {
  const graph = swigluToMoc.run(buildLlamaGraph(PRESET_1B, (n) => (n.includes('norm') ? 'f32' : 'bf16')), { k: 1024 });
  const p = lowerToCuda(graph, PRESET_1B);
  t.is(p.selectHints, PRESET_1B.nLayers);
  const launches = p.steps.flatMap((s) => (s.kind === 'launch' ? [s] : []));
  const slotOf = (prefix: string) => launches.filter((s) => s.kernel.startsWith(prefix)).map((s) => s.args.flatMap((a) => (a.kind === 'tau' ? [a.slot] : [])));
  const upDowns = slotOf('moc_updown'), topks = slotOf('moc_topk');
  t.deepEqual(upDowns, Array.from({ length: PRESET_1B.nLayers }, (_, l) => [l]));
  t.deepEqual(topks, upDowns);
  const plain = lowerToCuda(graph, PRESET_1B, { warm: false });
  t.is(plain.selectHints, 0);
  t.false(plain.steps.some((s) => s.kind === 'launch' && (s.kernel.endsWith('_warm') || s.kernel.endsWith('_tau') || s.args.some((a) => a.kind === 'tau'))));
});

test('generated PTX is deterministic and matches the snapshots', (t) => {
  // generated twice: the same spec must give the same text
  const generate = () => [
    D.gemv({ dtype: 'bf16', inDim: 2048, outDim: 5461, epilogue: 'store' }),
    D.gemv({ dtype: 'f16', inDim: 64, outDim: 32, gather: { wRows: 172, gateWidth: 172 }, epilogue: 'silu_gate' }),
    M.topkSelect(172, 32), M.topkSelect(172, 32, { tau: true }), M.patternSelect(172, 2, 8), M.downPartial('bf16', 2048, 1024), M.downReduce(64, 4),
    DA.attentionSplit({ heads: 8, kvHeads: 4, hd: 8, cache: 'f32', capacity: 512 }), DA.attentionCombine({ heads: 8, kvHeads: 4, hd: 8, cache: 'f32', capacity: 512 }),
    DA.attentionSplit({ heads: 32, kvHeads: 8, hd: 64, cache: 'bf16', capacity: 2048 }), DA.attentionCombine({ heads: 32, kvHeads: 8, hd: 64, cache: 'bf16', capacity: 2048 }),
    A.ropeStore(8, 4, 8, 'half', 'f16'), A.kvStore(32, 'bf16'),
    A.rope(8, 8, 'interleaved'), D.rmsnorm('f32', 64, 1e-5), D.argmax(512),
    D.gemv({ dtype: 'bf16', inDim: 64, outDim: 172, epilogue: 'silu_pair', norm: { dtype: 'f32', eps: 1e-5 } }),
    M.mocUpDown({ dtype: 'bf16', d: 64, f: 172, kKeep: 32, norm: { dtype: 'f32', eps: 1e-5 } }), A.ropeStore(8, 4, 8, 'half'),
    D.gemv({ dtype: 'bf16', inDim: 5461, outDim: 2048, epilogue: 'accumulate', ...D.gemvLayout(5461, 2048) }),
    M.mocUpDown({ dtype: 'bf16', d: 64, f: 172, kKeep: 32, norm: { dtype: 'f32', eps: 1e-5 }, warm: true }),
    D.gemvMulti([
      { dtype: 'f32', inDim: 64, outDim: 64, epilogue: 'store', rope: { hd: 8, style: 'half' } },
      { dtype: 'f32', inDim: 64, outDim: 32, epilogue: 'store', rope: { hd: 8, style: 'half' }, toCache: true },
      { dtype: 'f32', inDim: 64, outDim: 32, epilogue: 'store', toCache: true },
    ]),
  ];
  const kernels = generate(), again = generate();
  kernels.forEach((k, i) => t.is(k.text, again[i]!.text, k.name));
  for (const k of kernels) t.snapshot(k.text, k.name);
});

test('a:b blocks wider than 64 channels are a clear error on cuda', (t) => {
  const g = swigluToMoc.run(buildLlamaGraph({ ...PRESET_1B, nLayers: 1 }), { pattern: { a: 8, b: 128 } });
  t.throws(() => lowerToCuda(g, PRESET_1B), { message: /blocks of at most 64 channels/ });
});

test('lowering a graph with an op the cuda target lacks is a clear error', (t) => {
  const g = buildLlamaGraph({ ...PRESET_1B, nLayers: 1 });
  const bad = { ...g, nodes: g.nodes.map((n) => (n.op === 'silu' ? { ...n, op: 'sigmoid' } : n)) };
  t.throws(() => lowerToCuda(bad, PRESET_1B), { message: /cuda target: cannot lower/ });
});
