// AdamW's 'bf16-params' mode (src/train/adamw.ts header) and its parameter rule (src/train/bf16-params.ts).
// The host step against an independent f64 computation of the stated rounding: m, v as in 'bf16'
// (f64, rounded to f32, then to bf16 RNE by arithmetic on the exponent, not dtype.ts's bit trick), the
// bf16 parameter read as stored, updated from the rounded m, v in f64, rounded to f32 then to bf16;
// an f32 parameter (1-D) as in 'bf16'. Same operation order, so bit-exact. Sizes 1000, 7, 1; 6 steps.
import test from 'ava';
import { checkpointGraph } from '../../driver/load.js';
import { trainingGraph } from '../../driver/training-graph.js';
import { AdamW, roundBf16Params } from '../../src/train/adamw.js';
import { bf16StoredParams } from '../../src/train/bf16-params.js';
import { TINY } from '../helpers/train-tiny-model.js';

/** f32 value x rounded to bf16 (8 significant bits), ties to even: by scaling, independent of dtype.ts. */
function bf16Rne(x: number): number {
  if (!Number.isFinite(x) || x === 0) return x;
  const e = Math.max(Math.floor(Math.log2(Math.abs(x))), -126);
  let ulp = 2 ** (e - 7);
  if (Math.abs(x) / ulp >= 256) ulp *= 2;
  else if (Math.abs(x) / ulp < 128 && e > -126) ulp /= 2;
  const q = x / ulp, f = Math.floor(q), r = q - f;
  const n = r > 0.5 || (r === 0.5 && f % 2 !== 0) ? f + 1 : f;
  return n * ulp;
}

function rng(seed: number): () => number {
  let s = seed >>> 0;
  return () => ((s = (Math.imul(s, 1664525) + 1013904223) >>> 0) / 2 ** 32);
}

const PARAMS = [
  { name: 'w', shape: [8, 125], bf16: true }, // 1000 elements, decays, stored bf16
  { name: 'n', shape: [7], bf16: false }, // 7, no decay, f32
  { name: 'one', shape: [1, 1], bf16: true }, // 1, decays, bf16
];
const HP = { beta1: 0.9, beta2: 0.95, eps: 1e-8, weightDecay: 0.1 };
const MOC_MATRICES = ['w_gate', 'w_up', 'w_down'];
const size = (s: number[]) => s.reduce((a, b) => a * b, 1);

test('bf16 params: the host AdamW equals an independent f64 computation of the stated rounding, bit for bit', (t) => {
  const r = rng(43), steps = 6, lrs = [1e-3, 3e-3, 2e-2, 5e-3, 1e-4, 0];
  const weights = new Map(PARAMS.map((p) => [p.name, Float32Array.from({ length: size(p.shape) }, () => r() * 2 - 1)]));
  const bf16 = new Set(PARAMS.filter((p) => p.bf16).map((p) => p.name));
  roundBf16Params(weights, bf16);
  const opt = new AdamW(PARAMS.map((p) => ({ name: p.name, size: size(p.shape), shape: p.shape })), { ...HP, stateDType: 'bf16-params', bf16Params: bf16 });
  t.deepEqual([...opt.bf16Params], ['w', 'one']);
  const exp = new Map([...weights].map(([k, w]) => [k, { w: Array.from(w), m: w.map(() => 0), v: w.map(() => 0) }]));
  t.true(exp.get('w')!.w.every((x) => x === bf16Rne(x)), 'roundBf16Params rounded the initial weights');
  t.false(exp.get('n')!.w.every((x) => x === bf16Rne(x)), 'and left the f32 one');
  for (let step = 1; step <= steps; step++) {
    const lr = lrs[step - 1]!;
    const grads = new Map(PARAMS.map((p) => [p.name, Float32Array.from({ length: size(p.shape) }, () => (r() * 2 - 1) * 10 ** (r() * 6 - 4))]));
    opt.step(weights, grads, lr);
    const stepSize = lr / (1 - HP.beta1 ** step), bc2 = Math.sqrt(1 - HP.beta2 ** step);
    for (const p of PARAMS) {
      const e = exp.get(p.name)!, g = grads.get(p.name)!;
      const keep = p.shape.length >= 2 ? Math.fround(1 - lr * HP.weightDecay) : 1;
      for (let i = 0; i < e.w.length; i++) {
        const m = bf16Rne(Math.fround(e.m[i]! + (g[i]! - e.m[i]!) * (1 - HP.beta1)));
        const v = bf16Rne(Math.fround(e.v[i]! * HP.beta2 + (1 - HP.beta2) * g[i]! * g[i]!));
        e.m[i] = m;
        e.v[i] = v;
        const w = Math.fround(Math.fround(e.w[i]! * keep) - (stepSize * m) / (Math.sqrt(v) / bc2 + HP.eps));
        e.w[i] = p.bf16 ? bf16Rne(w) : w;
      }
    }
  }
  const st = opt.state();
  for (const p of PARAMS) {
    const e = exp.get(p.name)!;
    t.deepEqual(Array.from(weights.get(p.name)!), e.w, `weights of ${p.name}`);
    t.deepEqual(Array.from(st.m.get(p.name)!), Array.from(e.m), `m of ${p.name}`);
    t.deepEqual(Array.from(st.v.get(p.name)!), Array.from(e.v), `v of ${p.name}`);
  }
  t.true(Array.from(weights.get('w')!).every((x) => x === bf16Rne(x)), 'bf16 params hold bf16 values');
  t.false(Array.from(weights.get('n')!).every((x) => x === bf16Rne(x)), 'the f32 param does not');
});

test('bf16 params: an f32 value given for a bf16 param is read rounded (as the device stores it)', (t) => {
  const mk = () => new AdamW([{ name: 'w', size: 3, shape: [1, 3] }], { stateDType: 'bf16-params', bf16Params: new Set(['w']) });
  const raw = Float32Array.of(1 + 2 ** -9 + 2 ** -12, -0.3, 2.5e-3), rounded = Float32Array.from(raw, bf16Rne);
  const g = new Map([['w', Float32Array.of(0.1, -0.2, 0.3)]]);
  const a = mk(), b = mk();
  a.step(new Map([['w', raw]]), g, 1e-3);
  b.step(new Map([['w', rounded]]), g, 1e-3);
  t.deepEqual(Array.from(raw), Array.from(rounded));
});

test('bf16 params are refused outside bf16-params mode, and must be updated params', (t) => {
  t.throws(() => new AdamW([{ name: 'w', size: 1, shape: [1, 1] }], { stateDType: 'bf16', bf16Params: new Set(['w']) }), { message: /only 'bf16-params'/ });
  t.throws(() => new AdamW([{ name: 'w', size: 1, shape: [1, 1] }], { stateDType: 'bf16-params', bf16Params: new Set(['x']) }), { message: /x is not one it updates/ });
});

test('bf16StoredParams: the tiny LLaMA\'s attention and FFN matrices (dense and MoC), not the norms nor a gathered embedding', (t) => {
  for (const ffn of ['dense', 'moc'] as const) {
    const g = trainingGraph(checkpointGraph({ ...TINY, nLayers: 1 }, () => 'f32', ffn === 'dense' ? 'dense' : { k: 12 }), { loss: { kind: 'cross_entropy' }, policy: 'none' });
    const got = bf16StoredParams(g);
    const all = g.params.map((p) => p.name);
    t.log(ffn, [...got].join(' '), '| f32:', all.filter((n) => !got.has(n)).join(' '));
    for (const p of g.params) {
      const isMatrix = p.type.shape.length === 2;
      const readByGather = g.nodes.some((n) => n.op === 'embedding' && n.inputs.some((x) => x.kind === 'param' && x.name === p.name));
      if (!isMatrix || readByGather) t.false(got.has(p.name), `${ffn}: ${p.name} stays f32`);
    }
    t.deepEqual([...got].sort(), ['wq', 'wk', 'wv', 'wo', ...(ffn === 'dense' ? ['w_gate', 'w_up', 'w_down'] : MOC_MATRICES)].map((n) => `layers.0.${n}`).sort());
  }
});
