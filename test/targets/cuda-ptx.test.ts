// CI (no GPU): every PTX module `mocc compile --target cuda` emits — stories260K dense, MoC K=32 and
// a:b, and a 1B-preset-shaped graph — assembles with ptxas for sm_80 and sm_90; generated text is
// deterministic and snapshot-tested.
import test from 'ava';
import { execFileSync, spawnSync } from 'node:child_process';
import { readdirSync } from 'node:fs';
import { join } from 'node:path';
import { buildLlamaGraph } from '../../src/import/llama-graph.js';
import type { ModelSpec } from '../../src/import/spec.js';
import { MemoryTensor } from '../../src/import/tensor.js';
import { swigluToMoc } from '../../passes/swiglu-to-moc.js';
import { compileCuda } from '../../targets/cuda/index.js';
import { lowerToCuda } from '../../targets/cuda/lower.js';
import * as D from '../../targets/cuda/ptx/dense.js';
import * as M from '../../targets/cuda/ptx/moc.js';
import * as A from '../../targets/cuda/ptx/attention.js';
import { mocc, tempDir } from '../helpers/cli.js';
import { CHECKPOINTS } from '../helpers/fixtures.js';

const ptxas = ['/usr/local/bin/ptxas', '/usr/local/cuda/bin/ptxas'].find((p) => spawnSync(p, ['--version']).status === 0);

function assembleAll(t: { true(v: boolean, m?: string): void; is(a: unknown, b: unknown, m?: string): void }, dir: string): number {
  const files = readdirSync(join(dir, 'ptx')).filter((f) => f.endsWith('.ptx'));
  for (const arch of ['sm_80', 'sm_90']) {
    // one ptxas call per module, as a driver JIT would see each
    for (const f of files) {
      const r = spawnSync(ptxas!, [`-arch=${arch}`, join(dir, 'ptx', f), '-o', '/dev/null'], { encoding: 'utf8' });
      t.is(r.status, 0, `${f} for ${arch}: ${r.stderr}`);
    }
  }
  return files.length;
}

test('ptxas is installed (CI validates PTX with it)', (t) => {
  t.truthy(ptxas, 'ptxas not found in /usr/local/bin or /usr/local/cuda/bin (CUDA toolkit)');
  if (ptxas) t.regex(execFileSync(ptxas, ['--version'], { encoding: 'utf8' }), /ptxas/i);
});

for (const [label, flags] of [['dense', ['--dense']], ['MoC K=32', ['--k', '32']], ['MoC 2:8', ['--pattern', '2:8']]] as const) {
  test(`stories260K ${label}: every emitted module assembles for sm_80 and sm_90`, (t) => {
    if (!ptxas) return t.fail('no ptxas');
    const dir = tempDir(t);
    t.is(mocc('convert', CHECKPOINTS.gguf, '-o', join(dir, 'pkg'), ...flags).code, 0);
    const r = mocc('compile', join(dir, 'pkg'), '--target', 'cuda', '-o', join(dir, 'out'));
    t.is(r.code, 0, r.stderr);
    t.true(assembleAll(t, join(dir, 'out')) >= 14);
  });
}

const PRESET_1B: ModelSpec = {
  arch: 'llama', dim: 2048, nLayers: 24, nHeads: 32, nKvHeads: 32, headDim: 64, dFfn: 5461, vocabSize: 32000,
  normEps: 1e-5, maxSeqLen: 2048, rope: { theta: 10000, style: 'half' }, tiedEmbeddings: false, bosId: 1, eosId: 2,
};

for (const [label, sel] of [['dense', null], ['MoC K=1024', { k: 1024 }]] as const) {
  test(`1B-preset-shaped IR (bf16) ${label}: every module assembles`, (t) => {
    if (!ptxas) return t.fail('no ptxas');
    let graph = buildLlamaGraph(PRESET_1B, (n) => (n.includes('norm') ? 'f32' : 'bf16'));
    if (sel) graph = swigluToMoc.run(graph, sel);
    const dir = tempDir(t);
    // compile needs no weight values: the program only names them
    compileCuda({ graph, spec: PRESET_1B, weights: new Map<string, MemoryTensor>() }, dir);
    t.true(assembleAll(t, dir) >= 12);
  });
}

test('generated PTX is deterministic and matches the snapshots', (t) => {
  const kernels = [
    D.gemv({ dtype: 'bf16', inDim: 2048, outDim: 5461, epilogue: 'store' }),
    D.gemv({ dtype: 'f16', inDim: 64, outDim: 32, gather: { wRows: 172, gateWidth: 172 }, epilogue: 'silu_gate' }),
    M.topkSelect(172, 32), M.patternSelect(172, 2, 8), M.downPartial('bf16', 2048, 1024), M.downReduce(64, 32),
    A.attention(8, 4, 8), A.rope(8, 8, 'interleaved'), D.rmsnorm('f32', 64, 1e-5), D.argmax(512),
  ];
  const again = [
    D.gemv({ dtype: 'bf16', inDim: 2048, outDim: 5461, epilogue: 'store' }),
    D.gemv({ dtype: 'f16', inDim: 64, outDim: 32, gather: { wRows: 172, gateWidth: 172 }, epilogue: 'silu_gate' }),
    M.topkSelect(172, 32), M.patternSelect(172, 2, 8), M.downPartial('bf16', 2048, 1024), M.downReduce(64, 32),
    A.attention(8, 4, 8), A.rope(8, 8, 'interleaved'), D.rmsnorm('f32', 64, 1e-5), D.argmax(512),
  ];
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
