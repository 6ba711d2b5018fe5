// The radix Top-K kernel (targets/cuda/ptx/moc.ts topkSelect) without a GPU: its PTX text run by the
// interpreter (test/helpers/ptx-sim.ts, which runs the shuffles, votes, warp reductions and shared
// atomics the kernel uses) against the ref target's mocSelect, on rows with ties, NaN, ±0 and ±∞, in
// NaN-poisoned idx rows (every slot must be written, none past K), and τ (the last row's K-th
// largest value, written for the fused up·down's L2 warm-up) against the float of the smallest kept
// key. topk-algorithm.test.ts checks the algorithm in plain TypeScript; this checks the emitted PTX.
import test from 'ava';
import { selectKey, selectKeyValue, selectShape, topkSelect } from '../../targets/cuda/ptx/moc.js';
import { ptxModule } from '../../targets/cuda/ptx/builder.js';
import { pad8 } from '../../targets/cuda/ptx/layout.js';
import { mocSelect } from '../../targets/ref/kernels.js';
import { PtxSim } from '../helpers/ptx-sim.js';
import { randomFrom as randomF32, rng } from '../helpers/random.js';

/** Rows of g: random, or few distinct values with the specials (ties across ±0 and NaN / −∞). */
function rows(T: number, f: number, r: () => number, ties: boolean): Float32Array {
  const g = randomF32(T * f, r, 4);
  if (ties) for (let i = 0; i < g.length; i++) g[i] = [NaN, -Infinity, Infinity, -0, 0, Math.round(g[i]! * 2) / 2][Math.floor(r() * 6)]!;
  return g;
}


for (const [f, k, T] of [[7, 3, 2], [172, 1, 2], [172, 32, 3], [172, 172, 1], [300, 57, 2], [1000, 999, 1], [5461, 1024, 2]] as const) {
  for (const ties of [false, true]) {
    test(`topk F${f} K${k} T=${T}${ties ? ' (ties, NaN, ±0, ±∞)' : ''}, interpreted: the ref's indices and τ`, (t) => {
      const r = rng(f * 31 + k + (ties ? 7 : 0));
      const g = rows(T, f, r, ties);
      const sim = new PtxSim(1 << 22);
      const gp = new Float32Array(T * pad8(f)).fill(NaN);
      for (let i = 0; i < T; i++) gp.set(g.subarray(i * f, (i + 1) * f), i * pad8(f));
      const gb = sim.upload(gp), idx = sim.alloc(T * pad8(k) * 4, NaN), tau = sim.alloc(4, NaN);
      sim.launch(ptxModule([topkSelect(f, k, { tau: true }).text], 'sm_80'), [1, T, 1], selectShape(f).threads, [idx.addr, gb.addr, tau.addr]);
      const got = new Int32Array(sim.download(idx, T * pad8(k)).buffer);
      const want = mocSelect(g, f, { k });
      let bad = 0, padWritten = 0;
      for (let t0 = 0; t0 < T; t0++) {
        for (let j = 0; j < k; j++) if (got[t0 * pad8(k) + j] !== want[t0 * k + j]) bad++;
        for (let j = k; j < pad8(k); j++) if (got[t0 * pad8(k) + j] !== new Int32Array(Float32Array.of(NaN).buffer)[0]) padWritten++;
      }
      t.is(bad, 0, `${bad} of ${T * k} indices differ from the ref`);
      t.is(padWritten, 0, 'slots past K written');
      const last = Array.from(want.subarray((T - 1) * k, T * k), (c) => selectKey(g[(T - 1) * f + c]!));
      const wantTau = selectKeyValue(Math.min(...last));
      const gotTau = sim.download(tau, 1)[0]!;
      t.true(Object.is(gotTau, wantTau), `τ ${gotTau}, want ${wantTau}`);
    });
  }
}
