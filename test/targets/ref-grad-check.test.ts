// Every gradient rule (src/ir/grad-rules.ts) against central finite differences, in float64: the
// rule's backward nodes run on the ref kernels with inFloat64 (targets/ref/precision.ts), so the
// check tests the calculus, not float32 rounding. For each op: L = Σ_j ⟨y_j, R_j⟩ over its float
// outputs with random R_j; the rule, fed dy_j = R_j, must give ∂L/∂x for every element of every
// float input, within 1e-6 (relative to the gradient's scale). Shapes are small and awkward.
import test from 'ava';
import { GRAD_RULES, type GradContext } from '../../src/ir/grad.js';
import { opDef } from '../../src/ir/ops.js';
import type { AttrValue, Node, Operand, TensorType } from '../../src/ir/types.js';
import { evalNode, type Value } from '../../targets/ref/eval-node.js';
import { inFloat64 } from '../../targets/ref/precision.js';
import { rng } from '../helpers/random.js';

interface In {
  shape: number[];
  /** Integer inputs (tokens, positions, indices) are given; float ones are random. */
  ints?: number[];
  /** No gradient expected (the rule must return null): e.g. the teacher's logits. */
  noGrad?: boolean;
}
interface Case {
  name: string;
  op: string;
  attrs?: Record<string, AttrValue>;
  inputs: In[];
  /** Outputs that get no gradient (null), to exercise a rule's missing-gradient path. */
  nullOutputs?: number[];
  /** Non-negative float inputs (none here) could go here; scale of random inputs. */
  scale?: number;
}

const ROPE = { heads: 2, head_dim: 6, theta: 10000 };
const LLAMA3 = { scaling: 'llama3', factor: 8, low_freq_factor: 1, high_freq_factor: 4, original_max_pos: 16 };
const idx = [0, 4, 7, 1, 2, 8, 3, 5, 6, 0, 1, 2]; // 4 rows × 3 kept channels of 9, ascending per row

const CASES: Case[] = [
  { name: 'embedding (repeated tokens)', op: 'embedding', inputs: [{ shape: [7, 5] }, { shape: [6], ints: [3, 0, 3, 6, 1, 3] }] },
  { name: 'rmsnorm', op: 'rmsnorm', attrs: { eps: 1e-5 }, inputs: [{ shape: [4, 7] }, { shape: [7] }] },
  { name: 'linear', op: 'linear', inputs: [{ shape: [5, 7] }, { shape: [3, 7] }] },
  { name: 'logits', op: 'logits', inputs: [{ shape: [5, 7] }, { shape: [11, 7] }] },
  { name: 'rope half', op: 'rope', attrs: { ...ROPE, style: 'half' }, inputs: [{ shape: [3, 12] }, { shape: [3], ints: [0, 5, 17] }] },
  { name: 'rope interleaved', op: 'rope', attrs: { ...ROPE, style: 'interleaved' }, inputs: [{ shape: [3, 12] }, { shape: [3], ints: [2, 0, 9] }] },
  { name: 'rope llama3 scaling', op: 'rope', attrs: { ...ROPE, theta: 500000, style: 'half', ...LLAMA3 }, inputs: [{ shape: [3, 12] }, { shape: [3], ints: [1, 30, 400] }] },
  {
    name: 'attention (GQA, two sequences)', op: 'attention', attrs: { heads: 4, kv_heads: 2, head_dim: 3 },
    inputs: [{ shape: [5, 12] }, { shape: [5, 6] }, { shape: [5, 6] }, { shape: [5], ints: [0, 0, 0, 1, 1] }], scale: 2,
  },
  { name: 'silu', op: 'silu', inputs: [{ shape: [3, 5] }], scale: 4 },
  { name: 'sigmoid', op: 'sigmoid', inputs: [{ shape: [3, 5] }], scale: 4 },
  { name: 'mul', op: 'mul', inputs: [{ shape: [3, 5] }, { shape: [3, 5] }] },
  { name: 'add', op: 'add', inputs: [{ shape: [3, 5] }, { shape: [3, 5] }] },
  { name: 'transpose', op: 'transpose', inputs: [{ shape: [3, 5] }] },
  { name: 'split', op: 'split', attrs: { parts: 3 }, inputs: [{ shape: [2, 6] }] },
  { name: 'split, one part without gradient', op: 'split', attrs: { parts: 3 }, inputs: [{ shape: [2, 6] }], nullOutputs: [1] },
  { name: 'moc_gather', op: 'moc_gather', inputs: [{ shape: [4, 9] }, { shape: [4, 3], ints: idx }] },
  { name: 'moc_up', op: 'moc_up', inputs: [{ shape: [4, 5] }, { shape: [9, 5] }, { shape: [4, 3], ints: idx }] },
  { name: 'moc_down', op: 'moc_down', inputs: [{ shape: [4, 3] }, { shape: [9, 5] }, { shape: [4, 3], ints: idx }] },
  { name: 'cross_entropy (a masked row)', op: 'cross_entropy', inputs: [{ shape: [5, 11], ints: undefined }, { shape: [5], ints: [3, -1, 10, 0, 3] }], scale: 3 },
  {
    name: 'lm_head_loss (blocks of 2 rows, a masked row)', op: 'lm_head_loss', attrs: { chunk_rows: 2 },
    inputs: [{ shape: [5, 7] }, { shape: [11, 7] }, { shape: [5], ints: [3, -1, 10, 0, 3] }], scale: 2,
  },
  {
    name: 'kl_div τ=2 (a masked row)', op: 'kl_div', attrs: { temperature: 2 },
    inputs: [{ shape: [5, 11] }, { shape: [5, 11], noGrad: true }, { shape: [5], ints: [0, 0, -1, 0, 0] }], scale: 3,
  },
];

/**
 * The same ops again with shapes drawn from a seed (1..7 rows, odd widths, random kept channels,
 * sequence boundaries and tokens), so no rule is right only for the sizes written above.
 */
function randomCases(seed: number): Case[] {
  const r = rng(seed);
  const int = (lo: number, hi: number) => lo + Math.floor(((r() + 1) / 2) * (hi - lo + 1));
  const T = int(1, 7), d = int(1, 9), out = int(1, 6), V = int(2, 13), F = int(3, 11), K = int(1, F);
  const tokens = Array.from({ length: T }, () => int(0, V - 1));
  const keptRows = Array.from({ length: T }, () => {
    const all = Array.from({ length: F }, (_, i) => i);
    for (let i = F - 1; i > 0; i--) { const j = int(0, i); [all[i], all[j]] = [all[j]!, all[i]!]; } // Fisher–Yates
    return all.slice(0, K).sort((a, b) => a - b);
  }).flat();
  const kvHeads = int(1, 2), heads = kvHeads * int(1, 2), hd = 2 * int(1, 3);
  let s = 0;
  const seqIds = Array.from({ length: T }, (_, i) => (i > 0 && r() > 0.4 ? ++s : s));
  const name = (op: string) => `${op}, random shapes (seed ${seed})`;
  return [
    { name: name('embedding'), op: 'embedding', inputs: [{ shape: [V, d] }, { shape: [T], ints: tokens }] },
    { name: name('rmsnorm'), op: 'rmsnorm', attrs: { eps: 1e-5 }, inputs: [{ shape: [T, d] }, { shape: [d] }] },
    { name: name('linear'), op: 'linear', inputs: [{ shape: [T, d] }, { shape: [out, d] }] },
    { name: name('rope'), op: 'rope', attrs: { heads, head_dim: hd, theta: 10000, style: r() > 0 ? 'half' : 'interleaved' }, inputs: [{ shape: [T, heads * hd] }, { shape: [T], ints: Array.from({ length: T }, () => int(0, 50)) }] },
    { name: name('attention'), op: 'attention', attrs: { heads, kv_heads: kvHeads, head_dim: hd }, inputs: [{ shape: [T, heads * hd] }, { shape: [T, kvHeads * hd] }, { shape: [T, kvHeads * hd] }, { shape: [T], ints: seqIds }], scale: 2 },
    { name: name('mul'), op: 'mul', inputs: [{ shape: [T, d] }, { shape: [T, d] }] },
    { name: name('moc_gather'), op: 'moc_gather', inputs: [{ shape: [T, F] }, { shape: [T, K], ints: keptRows }] },
    { name: name('moc_up'), op: 'moc_up', inputs: [{ shape: [T, d] }, { shape: [F, d] }, { shape: [T, K], ints: keptRows }] },
    { name: name('moc_down'), op: 'moc_down', inputs: [{ shape: [T, K] }, { shape: [F, d] }, { shape: [T, K], ints: keptRows }] },
    { name: name('cross_entropy'), op: 'cross_entropy', inputs: [{ shape: [T, V] }, { shape: [T], ints: tokens.map((t, i) => (i === T - 1 ? -1 : t)) }], scale: 3 },
    { name: name('kl_div'), op: 'kl_div', attrs: { temperature: 0.5 + ((r() + 1) / 2) * 2 }, inputs: [{ shape: [T, V] }, { shape: [T, V], noGrad: true }, { shape: [T], ints: tokens }], scale: 3 },
  ];
}

const f32 = (shape: number[]): TensorType => ({ dtype: 'f32', shape });
const typeOfIn = (i: In): TensorType => (i.ints ? { dtype: 'i32', shape: i.shape } : f32(i.shape));
const size = (s: readonly (number | string)[]) => s.reduce<number>((a, d) => a * (d as number), 1);

/** Runs one node on the ref kernels (float64 inside inFloat64). */
function run(op: string, attrs: Record<string, AttrValue>, types: TensorType[], values: Value[]): { outs: Value[]; outTypes: TensorType[] } {
  const outTypes = opDef(op).infer(types, attrs);
  const node: Node = { op, inputs: types.map((_, i) => ({ kind: 'value', name: `i${i}` })), attrs, outputs: outTypes.map((type, i) => ({ name: `o${i}`, type })) };
  return { outs: evalNode(node, values, (i, axis) => types[i]!.shape[axis] as number), outTypes };
}

for (const c of [...CASES, ...randomCases(11), ...randomCases(29)]) {
  test(`gradient rule of ${c.name} matches central finite differences (f64)`, (t) => {
    inFloat64(() => {
      const r = rng(0x9e37 + c.name.length * 131 + c.op.length);
      const attrs = c.attrs ?? {};
      const types = c.inputs.map(typeOfIn);
      const x: Value[] = c.inputs.map((i) => (i.ints ? Int32Array.from(i.ints) : Float64Array.from({ length: size(i.shape) }, () => r() * (c.scale ?? 1)) as unknown as Float32Array));
      const { outs, outTypes } = run(c.op, attrs, types, x);
      const R = outTypes.map((ot, j) => (c.nullOutputs?.includes(j) ? null : Float64Array.from({ length: size(ot.shape) }, () => r())));
      const loss = (xs: Value[]) => run(c.op, attrs, types, xs).outs.reduce((s, y, j) => s + (R[j] ? (y as Float32Array).reduce((a, v, e) => a + v * R[j]![e]!, 0) : 0), 0);

      // The rule, run eagerly: each emitted node is evaluated at once.
      const env = new Map<string, { v: Value; type: TensorType }>();
      const n: Node = {
        op: c.op, attrs,
        inputs: types.map((_, i) => ({ kind: 'value', name: `x${i}` })),
        outputs: outTypes.map((type, j) => ({ name: `y${j}`, type })),
      };
      types.forEach((ty, i) => env.set(`x${i}`, { v: x[i]!, type: ty }));
      outTypes.forEach((ty, j) => env.set(`y${j}`, { v: outs[j]!, type: ty }));
      let fresh = 0;
      const operand = (name: string): Operand => ({ kind: 'value', name });
      const get = (o: Operand) => env.get(o.name)!;
      const ctx: GradContext = {
        emit(op, inputs, a = {}) {
          const res = run(op, a, inputs.map((o) => get(o).type), inputs.map((o) => get(o).v));
          return res.outs.map((v, k) => {
            const name = `b${fresh++}`;
            env.set(name, { v, type: res.outTypes[k]! });
            return operand(name);
          });
        },
        output: (_node, j) => operand(`y${j}`),
        typeOf: (o) => get(o).type,
      };
      const dOut = R.map((rj, j) => {
        if (!rj) return null;
        env.set(`dy${j}`, { v: rj as unknown as Float32Array, type: outTypes[j]! });
        return operand(`dy${j}`);
      });
      const rule = GRAD_RULES.get(c.op)!;
      const dIn = rule.backward(ctx, n, dOut);
      t.is(dIn.length, c.inputs.length);

      let checked = 0, worst = 0;
      c.inputs.forEach((inp, i) => {
        if (inp.ints || inp.noGrad) {
          t.is(dIn[i], null, `input ${i} gets no gradient`);
          return;
        }
        const g = get(dIn[i]!).v as Float32Array;
        t.is(g.length, x[i]!.length, `gradient of input ${i} has the input's size`);
        const scale = Math.max(1, ...Array.from(g, Math.abs));
        for (let e = 0; e < g.length; e++) {
          const h = 1e-5;
          const plus = x.slice(), minus = x.slice();
          plus[i] = (x[i] as Float32Array).slice(); (plus[i] as Float32Array)[e]! += h;
          minus[i] = (x[i] as Float32Array).slice(); (minus[i] as Float32Array)[e]! -= h;
          const fd = (loss(plus) - loss(minus)) / (2 * h);
          const err = Math.abs(fd - g[e]!) / scale;
          worst = Math.max(worst, err);
          if (err > 1e-6) t.fail(`input ${i} element ${e}: rule ${g[e]} vs finite difference ${fd}`);
          checked++;
        }
      });
      t.true(checked > 0 || c.inputs.every((i) => i.ints || i.noGrad));
      t.log(`${checked} elements checked, worst relative error ${worst.toExponential(1)}`);
    });
  });
}

test('moc_select has no gradient (the selection is piecewise constant)', (t) => {
  const rule = GRAD_RULES.get('moc_select')!;
  t.deepEqual(rule.needs, { inputs: [], outputs: [] });
  t.deepEqual(rule.backward({} as GradContext, {} as Node, [{ kind: 'value', name: 'd' }]), [null]);
});

test('every op with a gradient rule has a finite-difference case here', (t) => {
  const covered = new Set(CASES.map((c) => c.op));
  t.deepEqual([...GRAD_RULES.keys()].filter((op) => op !== 'moc_select' && !covered.has(op)), []);
});
