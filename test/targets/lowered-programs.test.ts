// The complete lowered programs of both GPU targets — every launch/dispatch with its grid, block and
// arguments, the buffer plan, the constants, the weights, the kernel texts — for stories260K (dense,
// MoC K=32, MoC 2:8) and a 1B-preset-shaped graph, hashed and snapshot-tested. The snapshots were
// taken from the lowerings as they stood before they were rebuilt on the shared analysis in
// targets/lowering/: a refactor that keeps them passes launches the same kernels the same way.
// MOCC_DUMP_PROGRAMS=dir writes each program as JSON there, to diff when a hash changes.
import test from 'ava';
import { createHash } from 'node:crypto';
import { mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { buildLlamaGraph } from '../../src/import/llama-graph.js';
import type { ModelSpec } from '../../src/import/spec.js';
import type { Graph } from '../../src/ir/types.js';
import { loadModel } from '../../driver/load.js';
import { swigluToMoc, type MocSelection } from '../../passes/swiglu-to-moc.js';
import { lowerToCuda } from '../../targets/cuda/lower.js';
import { sessionLowerOptions } from '../../targets/cuda/index.js';
import { lowerToWgsl } from '../../targets/wgsl/lower.js';
import { constImage, weightImage } from '../../targets/lowering/device-image.js';
import { CHECKPOINTS } from '../helpers/fixtures.js';
import { PRESET_1B } from '../../src/model/presets.js';

const sha = (v: unknown) => createHash('sha256').update(JSON.stringify(v)).digest('hex').slice(0, 16);

/** Hashes of each part of a program (so a changed hash says which part changed), and its sizes. */
function fingerprint(label: string, program: Record<string, unknown>, kernels: [string, string][]) {
  const dump = process.env.MOCC_DUMP_PROGRAMS;
  if (dump) {
    mkdirSync(dump, { recursive: true });
    writeFileSync(join(dump, `${label.replace(/[^\w.-]+/g, '_')}.json`), JSON.stringify({ ...program, kernels }, null, 1));
  }
  const { steps, greedyTail, buffers, weights, consts, ...rest } = program;
  return {
    sizes: { steps: (steps as unknown[]).length, kernels: kernels.length, buffers: (buffers as unknown[]).length, weights: (weights as unknown[]).length, consts: (consts as unknown[]).length },
    sha256: { steps: sha(steps), greedyTail: sha(greedyTail), buffers: sha(buffers), weights: sha(weights), consts: sha(consts), kernels: sha(kernels), rest: sha(rest) },
  };
}

type Case = { label: string; graph: () => { graph: Graph; spec: ModelSpec; close?: () => void } };
const stories = (selection: MocSelection | 'dense') => () => {
  const m = loadModel(CHECKPOINTS.gguf, { selection });
  return { graph: m.graph, spec: m.spec, close: () => m.close() };
};
const preset1B = (selection?: MocSelection) => () => {
  const graph = buildLlamaGraph(PRESET_1B, (n) => (n.includes('norm') ? 'f32' : 'bf16'));
  return { graph: selection ? swigluToMoc.run(graph, selection) : graph, spec: PRESET_1B };
};
const CASES: Case[] = [
  { label: 'stories260K dense', graph: stories('dense') },
  { label: 'stories260K MoC K=32', graph: stories({ k: 32 }) },
  { label: 'stories260K MoC 2:8', graph: stories({ pattern: { a: 2, b: 8 } }) },
  { label: '1B preset dense', graph: preset1B() },
  { label: '1B preset MoC K=1024', graph: preset1B({ k: 1024 }) },
  { label: '1B preset MoC 2:8', graph: preset1B({ pattern: { a: 2, b: 8 } }) },
];

for (const c of CASES) {
  test(`${c.label}: the lowered CUDA and WGSL programs match their snapshots`, (t) => {
    const { graph, spec, close } = c.graph();
    try {
      // the decode launches alone (prefill: false), as the snapshots were first taken
      const cuda = (suffix: string, options?: Parameters<typeof lowerToCuda>[2]) => {
        const p = lowerToCuda(graph, spec, { ...options, prefill: false });
        const { kernels, ...program } = p;
        t.snapshot(fingerprint(`${c.label} cuda${suffix}`, program, [...kernels]), `cuda${suffix}`);
      };
      cuda('');
      // the baseline lowering sessions keep for benchmarks (targets/cuda/index.ts): the same hashes as
      // the programs verified on the H100 before issue 16 (this file's snapshots at b908e85)
      cuda(' verified', sessionLowerOptions({ baseline: true, warm: true, wgmma: false }));
      // the prefill program (tensor-core GEMMs; only where weights are 16-bit) and the kernels it adds
      const full = lowerToCuda(graph, spec);
      const decodeKernels = lowerToCuda(graph, spec, { prefill: false }).kernels;
      if (full.prefill) {
        const added = [...full.kernels].filter(([name]) => !decodeKernels.has(name));
        t.snapshot(fingerprint(`${c.label} cuda prefill`, { ...full.prefill, greedyTail: [], weights: full.weights, consts: full.consts }, added), 'cuda prefill');
      } else t.not(spec, PRESET_1B, 'the 1B preset (bf16 weights) has a prefill program');
      if (graph.nodes.some((n) => n.op === 'moc_select' && n.attrs.k !== undefined)) cuda(' warm off', { warm: false });
      const wgsl = (suffix: string, options: Parameters<typeof lowerToWgsl>[2]) => {
        const { kernels, ...program } = lowerToWgsl(graph, spec, options);
        t.snapshot(fingerprint(`${c.label} wgsl${suffix}`, program, Object.entries(kernels).map(([k, v]) => [k, JSON.stringify(v)])), `wgsl${suffix}`);
      };
      wgsl(' cpu', { variant: 'cpu' });
      wgsl(' gpu', { variant: 'gpu' });
      // weights bound in row ranges: stories260K's token table and W_down exceed 40 KiB
      if (c.label.startsWith('stories')) wgsl(' gpu 40KiB bindings', { variant: 'gpu', maxBindingBytes: 40 * 1024 });
    } finally {
      close?.();
    }
  });
}

// The device images of every weight and constant a program names (stored dtype, rows padded to 8;
// transposes and RoPE tables computed on the host): f32 weights (stories260K.gguf) and f16 ones
// (the Q8_0 file, dequantized to f16).
for (const [label, path] of [['f32', CHECKPOINTS.gguf], ['f16', CHECKPOINTS.gguf.replace(/\.gguf$/, '.Q8_0.gguf')]] as const) {
  test(`stories260K MoC K=32 (${label} weights): the device images of its weights and constants match their snapshot`, (t) => {
    const m = loadModel(path, { selection: { k: 32 } });
    try {
      const p = lowerToCuda(m.graph, m.spec);
      t.true(p.consts.some((c) => c.kind === 'transpose') && p.consts.some((c) => c.kind === 'rope'));
      t.true([...m.weights.values()].some((w) => w.dtype === label));
      const images = Object.fromEntries([
        ...p.weights.map((name) => [name, sha(Buffer.from(weightImage(m.weights.get(name)!)).toString('base64'))]),
        ...p.consts.map((c) => [c.name, sha(Buffer.from(constImage(c, m.weights, m.spec.maxSeqLen)).toString('base64'))]),
      ]);
      t.snapshot(images);
    } finally {
      m.close();
    }
  });
}
