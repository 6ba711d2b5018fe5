// Host census of the bf16 casts a 1B training step runs on the CUDA executor's bf16 path, after
// passes/bf16-gemm-operands.ts (the executor's graph): each explicit `cast` node by the op that
// produced its f32 source and whether that source has readers other than casts (if not, the
// producer could write bf16 itself and the f32 value would not exist), with the bytes each moves
// (4 read + 2 written an element). GEMM operands still cast inside their op (a group of one read)
// are counted by op and operand. No GPU, no checkpoint.
// Usage: npx tsx bench/cast-census.ts [--batch 64] [--seq 256] [--k 1024] [--configs moc:moc-gcp,dense:gcp]
import { checkpointGraph } from '../driver/load.js';
import { trainingGraph } from '../driver/training-graph.js';
import type { CheckpointPolicy } from '../passes/checkpoint.js';
import { GEMM_OPERANDS } from '../passes/bf16-gemm-operands.js';
import { PRESET_1B } from '../src/model/presets.js';
import { executorGraph } from '../targets/cuda/train/executor.js';
import type { Graph, TensorType } from '../src/ir/types.js';

const arg = (name: string) => { const i = process.argv.indexOf(name); return i > 0 ? process.argv[i + 1] : undefined; };
const BATCH = Number(arg('--batch') ?? 64), SEQ = Number(arg('--seq') ?? 256), K = Number(arg('--k') ?? 1024), rows = BATCH * SEQ;
const configs = (arg('--configs') ?? 'moc:moc-gcp,dense:gcp').split(',').map((c) => c.split(':') as ['dense' | 'moc', CheckpointPolicy]);
const elements = (t: TensorType) => t.shape.reduce<number>((n, d) => n * (typeof d === 'number' ? d : d === 'T' ? rows : NaN), 1);
const GB = (n: number) => (n / 1e9).toFixed(1);

for (const [ffn, policy] of configs) {
  const g0 = trainingGraph(checkpointGraph(PRESET_1B, (n) => (n.includes('norm') ? 'f32' : 'bf16'), ffn === 'dense' ? 'dense' : { k: K }), { loss: { kind: 'cross_entropy' }, policy });
  const g: Graph = executorGraph(g0, { matmul: 'bf16' });
  const producer = new Map<string, string>();
  const types = new Map<string, TensorType>();
  for (const i of g.inputs) types.set(i.name, i.type);
  const readers = new Map<string, string[]>();
  for (const n of g.nodes) {
    for (const o of n.outputs) (producer.set(o.name, n.op), types.set(o.name, o.type));
    for (const i of n.inputs) if (i.kind === 'value') readers.set(i.name, [...(readers.get(i.name) ?? []), n.op]);
  }
  const params = new Set(g.params.map((p) => p.name));
  const byKey = new Map<string, { n: number; bytes: number }>();
  const add = (key: string, elems: number) => { const e = byKey.get(key) ?? { n: 0, bytes: 0 }; e.n++; e.bytes += 6 * elems; byKey.set(key, e); };
  for (const n of g.nodes) {
    if (n.op === 'cast') {
      const src = n.inputs[0]!;
      const only = (readers.get(src.name) ?? []).every((op) => op === 'cast');
      add(`cast node of ${producer.get(src.name) ?? 'input'} output${only ? ' (only casts read it)' : ''}`, elements(n.outputs[0]!.type));
      continue;
    }
    for (const slot of GEMM_OPERANDS[n.op] ?? []) {
      const i = n.inputs[slot];
      const t = i?.kind === 'value' ? types.get(i.name) : undefined;
      if (i && t?.dtype === 'f32') add(`in-op cast: ${n.op} operand ${slot} (${producer.get(i.name) ?? 'input'} output)`, elements(t));
    }
  }
  console.log(`\n${ffn === 'dense' ? 'dense' : `MoC K=${K}`} ${policy}, ${BATCH} × ${SEQ}: casts by source (params excluded)`);
  console.log('| casts of | count | GB moved |\n|---|---|---|');
  for (const [key, { n, bytes }] of [...byKey].sort((a, b) => b[1].bytes - a[1].bytes)) console.log(`| ${key} | ${n} | ${GB(bytes)} |`);
}
