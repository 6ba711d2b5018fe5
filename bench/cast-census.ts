// Host census of the bf16 casts a 1B training step runs on the CUDA executor's bf16 path, after
// passes/bf16-gemm-operands.ts (the executor's graph): each explicit `cast` node by the op that
// produced its f32 source and whether that source has readers other than casts (if not, the
// producer could write bf16 itself and the f32 value would not exist), with the bytes each moves
// (4 read + 2 written an element). GEMM operands still cast inside their op (a group of one read)
// are counted by op and operand. No GPU, no checkpoint.
// --bf16-producers 0|1|both (default both): the graph without / with passes/bf16-producers.ts (the
// executor's default), which folds the casts of values only casts read into their producers; with
// both, also the traffic it saves, by producer: a folded value no longer makes its cast read 4 and
// write 2 bytes an element, and its producer writes 2 bytes an element instead of 4 — 8 bytes an
// element in all (plus a launch).
// Usage: npx tsx bench/cast-census.ts [--batch 64] [--seq 256] [--k 1024] [--configs moc:moc-gcp,dense:gcp] [--bf16-producers both]
import { checkpointGraph } from '../driver/load.js';
import { trainingGraph } from '../driver/training-graph.js';
import type { CheckpointPolicy } from '../passes/checkpoint.js';
import { GEMM_OPERANDS } from '../passes/bf16-gemm-operands.js';
import { PRESET_1B } from '../src/model/presets.js';
import { executorGraph } from '../targets/cuda/train/executor.js';
import { bf16ProducerValues } from '../passes/bf16-producers.js';
import type { Graph, TensorType } from '../src/ir/types.js';

const arg = (name: string) => { const i = process.argv.indexOf(name); return i > 0 ? process.argv[i + 1] : undefined; };
const BATCH = Number(arg('--batch') ?? 64), SEQ = Number(arg('--seq') ?? 256), K = Number(arg('--k') ?? 1024), rows = BATCH * SEQ;
const configs = (arg('--configs') ?? 'moc:moc-gcp,dense:gcp').split(',').map((c) => c.split(':') as ['dense' | 'moc', CheckpointPolicy]);
const PRODUCERS = arg('--bf16-producers') ?? 'both';
if (!['0', '1', 'both'].includes(PRODUCERS)) throw new Error(`cast-census: --bf16-producers ${PRODUCERS} is not 0, 1 or both`);
const modes = PRODUCERS === 'both' ? [false, true] : [PRODUCERS === '1'];
const elements = (t: TensorType) => t.shape.reduce<number>((n, d) => n * (typeof d === 'number' ? d : d === 'T' ? rows : NaN), 1);
const GB = (n: number) => (n / 1e9).toFixed(1);

for (const [ffn, policy] of configs) {
  const g0 = trainingGraph(checkpointGraph(PRESET_1B, (n) => (n.includes('norm') ? 'f32' : 'bf16'), ffn === 'dense' ? 'dense' : { k: K }), { loss: { kind: 'cross_entropy' }, policy });
  for (const bf16Producers of modes) census(g0, ffn, policy, bf16Producers);
  if (modes.length === 2) folded(executorGraph(g0, { matmul: 'bf16', bf16Producers: false }), ffn, policy);
}

/** The traffic bf16-producers saves on g (the graph with the casts): by producer op, 8 bytes an element of each value it folds (header). */
function folded(g: Graph, ffn: string, policy: CheckpointPolicy) {
  const producer = new Map(g.nodes.map((n) => [n.outputs[0]!.name, n]));
  const byOp = new Map<string, { n: number; casts: number; elems: number }>();
  for (const [v, casts] of bf16ProducerValues(g)) {
    const p = producer.get(v)!, e = byOp.get(p.op) ?? { n: 0, casts: 0, elems: 0 };
    e.n++, (e.casts += casts.length), (e.elems += elements(p.outputs[0]!.type));
    byOp.set(p.op, e);
  }
  console.log(`\n${ffn === 'dense' ? 'dense' : `MoC K=${K}`} ${policy}: what bf16-producers folds (saved: each cast's 6 B/element, and 2 of the producer's 4 B/element written)`);
  console.log('| producer | values | casts gone | elements | GB saved |\n|---|---|---|---|---|');
  let total = 0, casts = 0;
  for (const [op, e] of [...byOp].sort((a, b) => b[1].elems - a[1].elems)) {
    const saved = e.elems * 2 + e.casts * 6 * e.elems / e.n;
    total += saved, (casts += e.casts);
    console.log(`| ${op} | ${e.n} | ${e.casts} | ${(e.elems / 1e9).toFixed(2)}e9 | ${GB(saved)} |`);
  }
  console.log(`| all | | ${casts} | | ${GB(total)} |`);
}

function census(g0: Graph, ffn: string, policy: CheckpointPolicy, bf16Producers: boolean) {
  const g: Graph = executorGraph(g0, { matmul: 'bf16', bf16Producers });
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
  console.log(`\n${ffn === 'dense' ? 'dense' : `MoC K=${K}`} ${policy}, ${BATCH} × ${SEQ}, bf16-producers ${bf16Producers ? 'on' : 'off'}: casts by source (params excluded)`);
  console.log('| casts of | count | GB moved |\n|---|---|---|');
  for (const [key, { n, bytes }] of [...byKey].sort((a, b) => b[1].bytes - a[1].bytes)) console.log(`| ${key} | ${n} | ${GB(bytes)} |`);
  const all = [...byKey.values()].reduce((s, e) => ({ n: s.n + e.n, bytes: s.bytes + e.bytes }), { n: 0, bytes: 0 });
  console.log(`| all | ${all.n} | ${GB(all.bytes)} |`);
}
