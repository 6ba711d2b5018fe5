// AdamW's 'bf16' moment storage (src/train/adamw.ts header) against an independent f64 computation of
// the stated rounding: every element's m, v computed in f64 from the stored values, rounded to f32
// (Math.fround), then to bf16 round-to-nearest-even by arithmetic on the exponent (not dtype.ts's bit
// trick), the weight updated from the rounded m, v in f64 and rounded to f32. Both follow the same
// operation order, so the expected result is bit-exact. Sizes 1, 7, 1000 (no vector width matters on
// the host, but they match the kernel tests'), a decaying and a non-decaying tensor, 6 steps.
import test from 'ava';
import { AdamW } from '../../src/train/adamw.js';

/** f32 value x rounded to bf16 (8 significant bits), ties to even: by scaling, independent of dtype.ts. */
function bf16Rne(x: number): number {
  if (!Number.isFinite(x) || x === 0) return x;
  const e = Math.max(Math.floor(Math.log2(Math.abs(x))), -126); // subnormals keep the minimum exponent's ulp
  let ulp = 2 ** (e - 7);
  // log2 may misround at a power of two's edge: fix the exponent so that |x| / ulp is in [128, 256)
  if (Math.abs(x) / ulp >= 256) ulp *= 2;
  else if (Math.abs(x) / ulp < 128 && e > -126) ulp /= 2;
  const q = x / ulp, f = Math.floor(q), r = q - f;
  const n = r > 0.5 || (r === 0.5 && f % 2 !== 0) ? f + 1 : f;
  return n * ulp; // may reach 2^(e+1): still exact, and bf16's largest finite value is not reached here
}

function rng(seed: number): () => number {
  let s = seed >>> 0;
  return () => ((s = (Math.imul(s, 1664525) + 1013904223) >>> 0) / 2 ** 32);
}

const PARAMS = [
  { name: 'w', shape: [8, 125] }, // 1000 elements, decays
  { name: 'n', shape: [7] }, // 7, no decay
  { name: 'one', shape: [1, 1] }, // 1, decays
];
const HP = { beta1: 0.9, beta2: 0.95, eps: 1e-8, weightDecay: 0.1 };

function run(stateDType: 'f32' | 'bf16', steps: number) {
  const r = rng(42);
  const size = (s: number[]) => s.reduce((a, b) => a * b, 1);
  const weights = new Map(PARAMS.map((p) => [p.name, Float32Array.from({ length: size(p.shape) }, () => r() * 2 - 1)]));
  const gradsAt = PARAMS.map(() => [] as Float32Array[]);
  for (let t = 0; t < steps; t++) PARAMS.forEach((p, j) => gradsAt[j]!.push(Float32Array.from({ length: size(p.shape) }, () => (r() * 2 - 1) * 10 ** (r() * 6 - 4))));
  return { weights, gradsAt, size, opt: new AdamW(PARAMS.map((p) => ({ name: p.name, size: size(p.shape), shape: p.shape })), { ...HP, stateDType }) };
}

test('bf16 moments: the host AdamW equals an independent f64 computation of the stated rounding, bit for bit', (t) => {
  const steps = 6, lrs = [1e-3, 3e-3, 2e-2, 5e-3, 1e-4, 0];
  const { weights, gradsAt, opt } = run('bf16', steps);
  const exp = new Map([...weights].map(([k, w]) => [k, { w: Array.from(w), m: w.map(() => 0), v: w.map(() => 0) }]));
  for (let step = 1; step <= steps; step++) {
    const lr = lrs[step - 1]!;
    opt.step(weights, new Map(PARAMS.map((p, j) => [p.name, gradsAt[j]![step - 1]!])), lr);
    const stepSize = lr / (1 - HP.beta1 ** step), bc2 = Math.sqrt(1 - HP.beta2 ** step);
    PARAMS.forEach((p, j) => {
      const e = exp.get(p.name)!, g = gradsAt[j]![step - 1]!;
      const keep = p.shape.length >= 2 ? Math.fround(1 - lr * HP.weightDecay) : 1;
      for (let i = 0; i < e.w.length; i++) {
        const m = bf16Rne(Math.fround(e.m[i]! + (g[i]! - e.m[i]!) * (1 - HP.beta1)));
        const v = bf16Rne(Math.fround(e.v[i]! * HP.beta2 + (1 - HP.beta2) * g[i]! * g[i]!));
        e.m[i] = m;
        e.v[i] = v;
        e.w[i] = Math.fround(Math.fround(e.w[i]! * keep) - (stepSize * m) / (Math.sqrt(v) / bc2 + HP.eps));
      }
    });
  }
  const st = opt.state();
  t.is(st.step, steps);
  let rounded = 0;
  for (const p of PARAMS) {
    const e = exp.get(p.name)!;
    t.deepEqual(Array.from(weights.get(p.name)!), e.w, `weights of ${p.name}`);
    t.deepEqual(Array.from(st.m.get(p.name)!), Array.from(e.m), `m of ${p.name}`);
    t.deepEqual(Array.from(st.v.get(p.name)!), Array.from(e.v), `v of ${p.name}`);
    for (const a of [st.m.get(p.name)!, st.v.get(p.name)!]) rounded += a.filter((x) => x !== 0 && (new Uint32Array(Float32Array.of(x).buffer)[0]! & 0xffff) !== 0).length;
  }
  t.is(rounded, 0, 'every stored moment is a bf16 value');
});

test('bf16 moments change the result (the mode is not a no-op) but stay within bf16 rounding of f32 moments after one step', (t) => {
  const a = run('f32', 1), b = run('bf16', 1);
  const grads = (r: typeof a) => new Map(PARAMS.map((p, j) => [p.name, r.gradsAt[j]![0]!]));
  a.opt.step(a.weights, grads(a), 1e-2);
  b.opt.step(b.weights, grads(b), 1e-2);
  const sa = a.opt.state(), sb = b.opt.state();
  let differ = 0;
  for (const p of PARAMS) {
    const ma = sa.m.get(p.name)!, mb = sb.m.get(p.name)!;
    for (let i = 0; i < ma.length; i++) {
      if (ma[i] !== mb[i]) differ++;
      t.true(Math.abs(ma[i]! - mb[i]!) <= Math.abs(ma[i]!) * 2 ** -8, `m ${p.name}[${i}]: ${ma[i]} vs ${mb[i]}`);
    }
  }
  t.true(differ > 0);
});

test('bf16 moments: load() rounds f32 moments to bf16; state() then load() of a bf16 run is exact', (t) => {
  const { opt } = run('bf16', 0);
  const st = opt.state();
  st.step = 3;
  st.m.get('n')!.set([1 + 2 ** -9, 1 + 3 * 2 ** -9, -0.1, 0, 1e-30, 3.0e38, NaN]);
  opt.load(st);
  const got = Array.from(opt.state().m.get('n')!);
  t.deepEqual(got.slice(0, 5), [1, 1 + 2 ** -7, bf16Rne(Math.fround(-0.1)), 0, bf16Rne(Math.fround(1e-30))]);
  t.is(got[5], bf16Rne(Math.fround(3.0e38)));
  t.true(Number.isNaN(got[6]));
  const again = opt.state();
  opt.load(again);
  t.deepEqual(opt.state(), again);
  t.is(opt.stepCount, 3);
});

test('an unknown moment dtype is refused', (t) => {
  t.throws(() => new AdamW([{ name: 'a', size: 1, shape: [1] }], { stateDType: 'f16' as 'bf16' }), { message: /stateDType f16/ });
});
