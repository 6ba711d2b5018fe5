// Benchmark (not a test): training tokens/s of the ref target. One training step (forward, loss,
// backward: targets/ref/train.ts runTrainingGraph; no optimizer) of stories260K, dense (policies none
// and gcp) and MoC K=32 (none and moc-gcp), at B=4,T=128 and B=8,T=256. Each case runs one untimed
// step first (JIT warm-up), then --steps timed steps; it prints the best and the median step.
//
//   node --import tsx bench/ref-train-speed.ts [--steps N] [--small] [--ops]
//
// --steps N   timed steps per case (default 3)
// --small     only B=4,T=128
// --ops       also print the milliseconds per op of the last step (MoC K=32, moc-gcp, B=4,T=128)
//
// Token ids are a fixed pseudo-random pattern (the kernels' cost does not depend on them), so runs
// of two commits are comparable; run both in one session (the machine is shared, the figures move).
import { join } from 'node:path';
import { loadModel } from '../driver/load.js';
import { trainingGraph } from '../driver/training-graph.js';
import type { CheckpointPolicy } from '../passes/checkpoint.js';
import type { Graph, TensorType } from '../src/ir/types.js';
import { paramF32 } from '../src/model/runnable.js';
import { projectRoot } from '../src/util/project-root.js';
import { evalNode, type Value } from '../targets/ref/eval-node.js';
import { runTrainingGraph } from '../targets/ref/train.js';

const HF = join(projectRoot(), 'fixtures/stories260K/hf');
const CASES: { model: string; k?: number; policy: CheckpointPolicy }[] = [
  { model: 'dense', policy: 'none' },
  { model: 'dense', policy: 'gcp' },
  { model: 'MoC K=32', k: 32, policy: 'none' },
  { model: 'MoC K=32', k: 32, policy: 'moc-gcp' },
];

const flag = (name: string) => process.argv.includes(name);
const at = process.argv.indexOf('--steps');
const steps = at >= 0 ? Number(process.argv[at + 1]) : 3;
if (!(steps >= 1)) throw new Error('--steps takes a number ≥ 1');
const shapes = flag('--small') ? [[4, 128]] : [[4, 128], [8, 256]];

/** The graph inputs of a batch of B sequences of T tokens. */
function batch(B: number, T: number): Record<string, Value> {
  const R = B * T;
  return {
    tokens: Int32Array.from({ length: R }, (_, i) => (i * 7919) % 512),
    pos: Int32Array.from({ length: R }, (_, i) => i % T),
    seq: Int32Array.from({ length: R }, (_, i) => Math.floor(i / T)),
    targets: Int32Array.from({ length: R }, (_, i) => (i * 31) % 512),
  };
}

/** Milliseconds per op of one step of g: runTrainingGraph's loop, timed node by node (values never freed). */
function opTimes(g: Graph, weights: ReadonlyMap<string, Float32Array>, inputs: Record<string, Value>, rows: number): Map<string, number> {
  const types = new Map<string, TensorType>();
  for (const i of g.inputs) types.set(i.name, i.type);
  for (const p of g.params) types.set(`@${p.name}`, p.type);
  for (const n of g.nodes) for (const o of n.outputs) types.set(o.name, o.type);
  const values = new Map<string, Value>(Object.entries(inputs));
  const ms = new Map<string, number>();
  for (const n of g.nodes) {
    const ins = n.inputs.map((o) => (o.kind === 'param' ? weights.get(o.name) : values.get(o.name))!);
    const t0 = performance.now();
    const outs = evalNode(n, ins, (i, axis) => {
      const o = n.inputs[i]!;
      const d = types.get(o.kind === 'param' ? `@${o.name}` : o.name)!.shape[axis]!;
      return typeof d === 'number' ? d : rows;
    });
    ms.set(n.op, (ms.get(n.op) ?? 0) + performance.now() - t0);
    n.outputs.forEach((o, k) => values.set(o.name, outs[k]!));
  }
  return ms;
}

const models = new Map<number | undefined, ReturnType<typeof loadModel>>();
console.log(`stories260K, ref target, one training step (forward + loss + backward); ${steps} timed steps after one warm-up`);
for (const c of CASES) {
  if (!models.has(c.k)) models.set(c.k, loadModel(HF, c.k ? { selection: { k: c.k } } : {}));
  const m = models.get(c.k)!;
  const g = trainingGraph(m.graph, { loss: { kind: 'cross_entropy' }, policy: c.policy });
  const weights = new Map(m.graph.params.map((p) => [p.name, paramF32(m.weights, p)]));
  for (const [B, T] of shapes) {
    const R = B! * T!;
    const inputs = batch(B!, T!);
    runTrainingGraph(g, weights, inputs, R);
    const times: number[] = [];
    for (let s = 0; s < steps; s++) {
      const t0 = performance.now();
      runTrainingGraph(g, weights, inputs, R);
      times.push(performance.now() - t0);
    }
    times.sort((a, b) => a - b);
    const best = times[0]!, median = times[Math.floor(times.length / 2)]!;
    const tps = (ms: number) => ((R / ms) * 1000).toFixed(0);
    console.log(`${`${c.model}, ${c.policy}`.padEnd(20)} B=${B} T=${String(T).padEnd(4)} best ${best.toFixed(0).padStart(5)} ms = ${tps(best).padStart(5)} tok/s; median ${tps(median).padStart(5)} tok/s`);
  }
}
if (flag('--ops')) {
  const m = models.get(32)!;
  const g = trainingGraph(m.graph, { loss: { kind: 'cross_entropy' }, policy: 'moc-gcp' });
  const weights = new Map(m.graph.params.map((p) => [p.name, paramF32(m.weights, p)]));
  const ms = opTimes(g, weights, batch(4, 128), 512);
  console.log('ms per op, MoC K=32, moc-gcp, B=4 T=128 (JIT warm):');
  for (const [op, t] of [...ms].sort((a, b) => b[1] - a[1])) if (t >= 0.5) console.log(`  ${op.padEnd(18)} ${t.toFixed(1)}`);
}
