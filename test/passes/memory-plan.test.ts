// memory-plan on stories260K's training graphs: the FFN activations live at the planned peak equal
// the MoC paper's per-token accounting (arXiv 2511.09323 Sec. 3; src/model/memory.ts) times the rows
// and layers, for each checkpoint policy, with f32 values (the ref target trains in f32) and i32
// indices (none, gcp, gcp-attn) or u16 (moc, moc-gcp, moc-gcp-attn), less the FFN input x (d a token
// a layer) under the -attn policies, which recompute it. And the arena the plan lays out is sound.
import test from 'ava';
import { loadModel } from '../../driver/load.js';
import { trainingGraph } from '../../driver/training-graph.js';
import type { CheckpointPolicy } from '../../passes/checkpoint.js';
import { CATEGORIES, checkArena, planMemory, type MemoryPlan } from '../../passes/memory-plan.js';
import { ffnActivationBytes, type FfnActivationBytes } from '../../src/model/memory.js';
import { CHECKPOINTS } from '../helpers/fixtures.js';

const B = 4, T = 64, ROWS = B * T;
const CASES: { label: string; selection: 'dense' | { k: number }; policy: CheckpointPolicy; column: keyof FfnActivationBytes; indexBytes: number; noX?: true }[] = [
  { label: 'dense', selection: 'dense', policy: 'none', column: 'dense', indexBytes: 4 },
  { label: 'dense', selection: 'dense', policy: 'gcp', column: 'denseGcp', indexBytes: 4 },
  { label: 'MoC K=32', selection: { k: 32 }, policy: 'none', column: 'moc', indexBytes: 4 },
  { label: 'MoC K=32', selection: { k: 32 }, policy: 'gcp', column: 'mocGcp', indexBytes: 4 },
  { label: 'MoC K=32', selection: { k: 32 }, policy: 'moc', column: 'moc', indexBytes: 2 },
  { label: 'MoC K=32', selection: { k: 32 }, policy: 'moc-gcp', column: 'mocGcp', indexBytes: 2 },
  { label: 'dense', selection: 'dense', policy: 'gcp-attn', column: 'denseGcp', indexBytes: 4, noX: true },
  { label: 'MoC K=32', selection: { k: 32 }, policy: 'gcp-attn', column: 'mocGcp', indexBytes: 4, noX: true },
  { label: 'MoC K=32', selection: { k: 32 }, policy: 'moc-gcp-attn', column: 'mocGcp', indexBytes: 2, noX: true },
];

const plans = new Map<string, MemoryPlan>();
function plan(selection: 'dense' | { k: number }, policy: CheckpointPolicy): MemoryPlan {
  const key = `${JSON.stringify(selection)} ${policy}`;
  if (!plans.has(key)) {
    const m = loadModel(CHECKPOINTS.hf, { selection });
    try {
      plans.set(key, planMemory(trainingGraph(m.graph, { loss: { kind: 'cross_entropy' }, policy }), { T: ROWS }));
    } finally {
      m.close();
    }
  }
  return plans.get(key)!;
}

for (const c of CASES) {
  test(`stories260K ${c.label}, ${c.policy}: FFN bytes at the peak = rows × Σ layers of the paper's ${c.column}${c.noX ? ' − d' : ''}`, (t) => {
    const m = loadModel(CHECKPOINTS.hf, { selection: c.selection });
    const { dim, dFfn, nLayers } = m.spec;
    const perLayerK = m.moc.perLayerK;
    m.close();
    const p = plan(c.selection, c.policy);
    const paper = perLayerK.reduce((s, k) => s + ffnActivationBytes(dim, dFfn, k, 4, c.indexBytes)[c.column] - (c.noX ? dim * 4 : 0), 0);
    t.is(perLayerK.length, nLayers);
    t.is(p.atPeak.ffn, ROWS * paper);
    // the live categories add up to the peak (weight gradients are counted apart)
    t.is(CATEGORIES.filter((k) => k !== 'weight gradients').reduce((s, k) => s + p.atPeak[k], 0), p.peakBytes);
  });
}

test('the accounting by hand: d=64, d_ffn=172, K=32, 5 layers', (t) => {
  // Dense 4·172+64 = 752 f32 per token per layer; MoC+GCP 2·32+64 = 128 f32 + 32 u16
  t.is(plan('dense', 'none').atPeak.ffn, ROWS * 5 * 752 * 4);
  t.is(plan('dense', 'gcp').atPeak.ffn, ROWS * 5 * (2 * 172 + 64) * 4);
  t.is(plan({ k: 32 }, 'moc-gcp').atPeak.ffn, ROWS * 5 * (128 * 4 + 32 * 2));
  t.is(plan({ k: 32 }, 'none').atPeak.ffn, ROWS * 5 * ((4 * 32 + 64) * 4 + 32 * 4));
  // -attn: x recomputed, 2·K f32 + K u16; dense 2·172 f32
  t.is(plan({ k: 32 }, 'moc-gcp-attn').atPeak.ffn, ROWS * 5 * (64 * 4 + 32 * 2));
  t.is(plan('dense', 'gcp-attn').atPeak.ffn, ROWS * 5 * 2 * 172 * 4);
  // the attention block saved (none … moc-gcp): normed input 64 + q 64 + k 32 + v 32 + output 64 f32
  t.is(plan({ k: 32 }, 'moc-gcp').atPeak.attention, ROWS * 5 * 256 * 4);
});

test('the -attn policies save no attention value: the peak loses the attention block and x, the rest is the same', (t) => {
  for (const [sel, base] of [['dense', 'gcp'], [{ k: 32 }, 'gcp'], [{ k: 32 }, 'moc-gcp']] as ['dense' | { k: number }, CheckpointPolicy][]) {
    const a = plan(sel, `${base}-attn` as CheckpointPolicy), b = plan(sel, base);
    t.is(a.atPeak.attention, 0, `${base}-attn`);
    t.is(b.atPeak.ffn - a.atPeak.ffn, ROWS * 5 * 64 * 4, `${base}-attn: x, d f32 a token a layer`);
    for (const k of ['norms', 'logits/loss', 'embedding', 'inputs', 'backward'] as const) t.is(a.atPeak[k], b.atPeak[k], `${base}-attn ${k}`);
    t.is(a.peakBytes, b.peakBytes - b.atPeak.attention - ROWS * 5 * 64 * 4);
  }
});

test('policies order as the paper has them: each saves less than the one before', (t) => {
  const ffn = (sel: 'dense' | { k: number }, p: CheckpointPolicy) => plan(sel, p).atPeak.ffn;
  t.true(ffn('dense', 'gcp') < ffn('dense', 'none'));
  t.true(ffn({ k: 32 }, 'moc') < ffn({ k: 32 }, 'none'));
  t.true(ffn({ k: 32 }, 'moc-gcp') < ffn({ k: 32 }, 'moc'));
  // only the FFN differs between policies: every other category is the same
  for (const k of ['attention', 'norms', 'logits/loss', 'embedding', 'inputs'] as const) t.is(plan({ k: 32 }, 'moc-gcp').atPeak[k], plan('dense', 'none').atPeak[k], k);
});

test('the arena: no two live values overlap, it holds at least the peak, and checkArena catches a bad plan', (t) => {
  for (const c of CASES) {
    const p = plan(c.selection, c.policy);
    t.notThrows(() => checkArena(p), `${c.label} ${c.policy}`);
    t.true(p.arenaBytes >= p.peakBytes, `${c.label} ${c.policy}: arena ${p.arenaBytes} ≥ peak ${p.peakBytes}`);
    t.true(p.gradientBytes > 0);
  }
  const good = plan({ k: 32 }, 'moc-gcp');
  // everything at offset 0: values live together now share bytes
  const collapsed: MemoryPlan = { ...good, offsets: new Map(good.values.map((v) => [v.name, 0])) };
  t.throws(() => checkArena(collapsed), { message: /live together and overlap in the arena/ });
  // one value moved onto a neighbour it is live with (the logits and their gradient)
  const moved = new Map(good.offsets);
  moved.set('d.loss.1', good.offsets.get('logits')! + 4);
  t.throws(() => checkArena({ ...good, offsets: moved }), { message: /%logits and %d.loss.1|%d.loss.1 and %logits/ });
});
