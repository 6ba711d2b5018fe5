// AdamW, the lr schedule and clipping on hand-checked cases and bad arguments (PyTorch agreement is
// in adamw-reference.test.ts).
import test from 'ava';
import { throwsUser } from '../helpers/errors.js';
import { AdamW } from '../../src/train/adamw.js';
import { clipGlobalNorm } from '../../src/train/clip-grad.js';
import { checkSchedule, learningRate } from '../../src/train/schedule.js';

test('first AdamW step moves each element by lr·sign(g) (bias correction makes m̂/√v̂ = ±1)', (t) => {
  const opt = new AdamW([{ name: 'w', size: 3, shape: [3] }], { eps: 1e-12 });
  const w = new Map([['w', new Float32Array([1, 2, 3])]]);
  opt.step(w, new Map([['w', new Float32Array([0.5, -4, 1e-3])]]), 0.25);
  t.deepEqual(Array.from(w.get('w')!), [0.75, 2.25, 2.75]);
  t.is(opt.stepCount, 1);
});

test('decoupled weight decay: zero gradient leaves p·(1 − lr·wd) on a matrix, p on a vector', (t) => {
  const opt = new AdamW([{ name: 'mat', size: 2, shape: [1, 2] }, { name: 'vec', size: 2, shape: [2] }], { weightDecay: 0.5 });
  const w = new Map([['mat', new Float32Array([2, -4])], ['vec', new Float32Array([2, -4])]]);
  const g = new Map([['mat', new Float32Array(2)], ['vec', new Float32Array(2)]]);
  opt.step(w, g, 0.1);
  t.deepEqual(Array.from(w.get('mat')!), [Math.fround(2 * 0.95), Math.fround(-4 * 0.95)]);
  t.deepEqual(Array.from(w.get('vec')!), [2, -4]);
});

test('a decay function overrides the shape rule; params not given have no state and are not touched', (t) => {
  const opt = new AdamW([{ name: 'a', size: 1 }], { decay: (n) => n === 'a', weightDecay: 1 });
  t.deepEqual(opt.params(), [{ name: 'a', size: 1, decays: true }]);
  const frozen = new Float32Array([7]);
  const w = new Map([['a', new Float32Array([1])], ['frozen', frozen]]);
  opt.step(w, new Map([['a', new Float32Array([0])]]), 0.5);
  t.is(w.get('a')![0], 0.5);
  t.is(frozen[0], 7);
  t.deepEqual([...opt.state().m.keys()], ['a']);
});

test('AdamW refuses a missing shape under the default rule, missing or mis-sized gradients, bad state', (t) => {
  t.throws(() => new AdamW([{ name: 'x', size: 2 }]), { message: /no shape/ });
  t.throws(() => new AdamW([{ name: 'x', size: 2, shape: [3] }]), { message: /shape \[3\] but size 2/ });
  const opt = new AdamW([{ name: 'x', size: 2, shape: [2] }]);
  const w = new Map([['x', new Float32Array(2)]]);
  t.throws(() => opt.step(w, new Map(), 0.1), { message: /gradient x is missing/ });
  t.throws(() => opt.step(w, new Map([['x', new Float32Array(3)]]), 0.1), { message: /size 3, not 2/ });
  t.is(opt.stepCount, 0, 'a refused step changes nothing');
  t.throws(() => opt.load({ step: 1, m: new Map(), v: new Map() }), { message: /m for 0 parameters/ });
});

test('state() and load() round-trip: a restored optimizer continues identically', (t) => {
  const mk = () => new AdamW([{ name: 'x', size: 4, shape: [2, 2] }]);
  const g = (k: number) => new Map([['x', Float32Array.from([1, -2, 3, -4], (v) => v * Math.sin(k + 1))]]);
  const a = mk();
  const wa = new Map([['x', new Float32Array([0.1, 0.2, 0.3, 0.4])]]);
  for (let k = 0; k < 3; k++) a.step(wa, g(k), 0.01);
  const b = mk();
  b.load(a.state());
  const wb = new Map([['x', wa.get('x')!.slice()]]);
  for (let k = 3; k < 6; k++) {
    a.step(wa, g(k), 0.01);
    b.step(wb, g(k), 0.01);
  }
  t.deepEqual(wb.get('x'), wa.get('x'));
  t.is(b.stepCount, 6);
});

test('schedule: warm-up from 0, peak, cosine midpoint, minLr at and after the end', (t) => {
  const s = { lr: 1, minLr: 0.1, warmup: 4, steps: 14 };
  t.is(learningRate(0, s), 0);
  t.is(learningRate(2, s), 0.5);
  t.is(learningRate(4, s), 1);
  t.true(Math.abs(learningRate(9, s) - 0.55) < 1e-15);
  t.is(learningRate(14, s), 0.1);
  t.is(learningRate(100, s), 0.1);
  t.is(learningRate(5, { lr: 1, minLr: 0, warmup: 5, steps: 5 }), 0, 'steps = warmup is defined (llama2.c divides by zero)');
  t.is(learningRate(0, { lr: 2, minLr: 0, warmup: 0, steps: 10 }), 2, 'no warm-up starts at the peak');
});

test('checkSchedule refuses bad flags with one-line user errors', (t) => {
  throwsUser(t, () => checkSchedule({ lr: -1, minLr: 0, warmup: 0, steps: 1 }), 'learning rate -1');
  throwsUser(t, () => checkSchedule({ lr: 1, minLr: 2, warmup: 0, steps: 1 }), 'minimum learning rate 2');
  throwsUser(t, () => checkSchedule({ lr: 1, minLr: 0, warmup: 1.5, steps: 1 }), 'warm-up 1.5');
  t.notThrows(() => checkSchedule({ lr: 1, minLr: 0, warmup: 10, steps: 5 }));
});

test('clipGlobalNorm: returns the pre-clip norm, scales only above maxNorm', (t) => {
  const g = new Map([['a', new Float32Array([3])], ['b', new Float32Array([0, 4])]]);
  t.is(clipGlobalNorm(g, 10), 5);
  t.deepEqual(Array.from(g.get('b')!), [0, 4], 'below the limit: unchanged');
  t.is(clipGlobalNorm(g, 1), 5);
  t.is(g.get('a')![0], Math.fround(3 / (5 + 1e-6)));
  t.is(g.get('b')![1], Math.fround(4 / (5 + 1e-6)));
  const inf = new Map([['a', new Float32Array([Infinity, 1])]]);
  t.is(clipGlobalNorm(inf, 1), Infinity);
  t.is(inf.get('a')![1], 1, 'a non-finite norm scales nothing');
});
