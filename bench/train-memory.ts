// Benchmark (not a test): planned training memory per checkpoint policy, by category at the peak,
// beside the MoC paper's FFN accounting, for stories260K (B=8, T=256) and the 1B preset (B=64,
// T=256; dense for none/gcp, MoC K=1024 for all four). Plans only: nothing is trained or allocated.
//
//   node --import tsx bench/train-memory.ts [--save | --out FILE]
//
// --save writes bench/results/train-memory.{json,md} (tracked); without it they go to the system's
// temporary directory (bench/results-file.ts), or to --out FILE (.json; the .md beside it).
import { writeFileSync } from 'node:fs';
import { performance } from 'node:perf_hooks';
import { loadModel } from '../driver/load.js';
import { applicablePolicies, trainMemory, type PolicyMemory } from '../driver/train-memory.js';
import { buildLlamaGraph } from '../src/import/llama-graph.js';
import type { ModelSpec } from '../src/import/spec.js';
import type { Graph } from '../src/ir/types.js';
import { PRESET_1B } from '../src/model/presets.js';
import { projectRoot } from '../src/util/project-root.js';
import { swigluToMoc } from '../passes/swiglu-to-moc.js';
import { CATEGORIES, checkArena } from '../passes/memory-plan.js';
import { resultsFile } from './results-file.js';
import { humanBytes } from '../cli/train-memory-report.js';
import { join } from 'node:path';

const args = process.argv.slice(2);
const save = args.includes('--save');
const outAt = args.indexOf('--out');
const jsonPath = resultsFile({ save, ...(outAt >= 0 ? { out: args[outAt + 1]! } : {}) }, projectRoot(), 'train-memory.json');
const mdPath = jsonPath.replace(/\.json$/, '') + '.md';

interface Case { model: string; batch: number; seq: number; build: () => { graph: Graph; spec: ModelSpec; close?: () => void } }
const stories = (selection: 'dense' | { k: number }) => () => {
  const m = loadModel(join(projectRoot(), 'fixtures/stories260K/hf'), { selection });
  return { graph: m.graph, spec: m.spec, close: () => m.close() };
};
// f32 params: the ref target trains f32 master weights
const preset = (k?: number) => () => {
  const graph = buildLlamaGraph(PRESET_1B, () => 'f32');
  return { graph: k ? swigluToMoc.run(graph, { k }) : graph, spec: PRESET_1B };
};
const CASES: Case[] = [
  { model: 'stories260K dense', batch: 8, seq: 256, build: stories('dense') },
  { model: 'stories260K MoC K=32', batch: 8, seq: 256, build: stories({ k: 32 }) },
  { model: '1B preset dense', batch: 64, seq: 256, build: preset() },
  { model: '1B preset MoC K=1024', batch: 64, seq: 256, build: preset(1024) },
];

const started = performance.now();
const rows: (Omit<PolicyMemory, 'plan'> & { model: string; batch: number; seq: number; atPeak: Record<string, number>; peakBytes: number; arenaBytes: number; gradientBytes: number; planSeconds: number })[] = [];
for (const c of CASES) {
  const m = c.build();
  try {
    for (const policy of applicablePolicies(m.graph)) {
      const t0 = performance.now();
      const r = trainMemory(m, { batch: c.batch, seq: c.seq, policy });
      const planSeconds = (performance.now() - t0) / 1000;
      checkArena(r.plan);
      if (r.plan.atPeak.ffn !== r.paper.f32) throw new Error(`${c.model} ${policy}: FFN at the peak ${r.plan.atPeak.ffn} ≠ the paper's ${r.paper.f32}`);
      const { plan, ...rest } = r;
      rows.push({ model: c.model, batch: c.batch, seq: c.seq, ...rest, atPeak: plan.atPeak, peakBytes: plan.peakBytes, arenaBytes: plan.arenaBytes, gradientBytes: plan.gradientBytes, planSeconds });
      console.log(`${c.model} ${policy}: peak ${humanBytes(plan.peakBytes)}, FFN ${humanBytes(plan.atPeak.ffn)} (paper ${humanBytes(r.paper.f32)}), ${planSeconds.toFixed(2)} s`);
    }
  } finally {
    m.close?.();
  }
}
const seconds = (performance.now() - started) / 1000;
const command = `node --import tsx bench/train-memory.ts${save ? ' --save' : ''}`;
writeFileSync(jsonPath, JSON.stringify({ command, seconds, valueBytes: 4, rows }, null, 1) + '\n');

const MiB = (n: number) => (n / 2 ** 20).toFixed(1);
const cats = CATEGORIES.filter((c) => c !== 'weight gradients');
const md = [
  '# Planned training memory per checkpoint policy',
  '',
  `\`${command}\` — ${seconds.toFixed(1)} s in all (building each training graph through freeze/add-loss/autodiff/checkpoint and planning it; no training).`,
  '',
  'MiB (2^20 bytes). All plan figures are **f32** (values, weights, gradients: what the ref target trains in); MoC indices',
  'are i32 under none/gcp and u16 under moc/moc-gcp. Categories are the activations live at the planned peak',
  '(passes/memory-plan.ts; the peak is where the loss gradient is made, every saved activation still live).',
  '"paper FFN f32" is the paper\'s per-token accounting (Dense 4·d_ffn+d, Dense+GCP 2·d_ffn+d, MoC 4K+d, MoC+GCP',
  '2K+d values, + K indices) × rows × layers in f32 — it equals the plan\'s FFN column exactly (the bench checks it);',
  '"paper FFN bf16" is the same with bf16 values, as the paper reports it. AdamW = m and v, f32, per trainable value.',
  '',
  `| model | B×T | policy | ${cats.join(' | ')} | peak | arena | weight grads | AdamW | paper FFN f32 | paper FFN bf16 | plan s |`,
  `|---|---|---|${cats.map(() => '---:').join('|')}|---:|---:|---:|---:|---:|---:|---:|`,
  ...rows.map((r) => `| ${r.model} | ${r.batch}×${r.seq} | ${r.policy} | ${cats.map((c) => MiB(r.atPeak[c]!)).join(' | ')} | ${MiB(r.peakBytes)} | ${MiB(r.arenaBytes)} | ${MiB(r.gradientBytes)} | ${MiB(r.adamBytes)} | ${MiB(r.paper.f32)} | ${MiB(r.paper.bf16)} | ${r.planSeconds.toFixed(2)} |`),
  '',
  'Exact bytes are in train-memory.json.',
  '',
].join('\n');
writeFileSync(mdPath, md);
console.log(`wrote ${jsonPath} and ${mdPath} (${seconds.toFixed(1)} s)`);
