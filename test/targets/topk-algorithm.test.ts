// The CUDA Top-K kernel's algorithm (targets/cuda/ptx/moc.ts, topkSelect), simulated step for step
// in plain TypeScript, against the ref target's mocSelect and against a sort by the kernel's keys.
// It checks the arithmetic the PTX relies on: each pass finds exactly one winning segment lane and
// one winning bin, krem stays in range, and the one packed scan puts every kept channel in place.
import test from 'ava';
import { mocSelect } from '../../targets/ref/kernels.js';
import { MAX_SELECT_CHANNELS, RADIX_PASSES, SEGMENTS, selectKey as key, selectShape, topkSelect } from '../../targets/cuda/ptx/moc.js';

const sum = (v: number[]) => v.reduce((a, b) => a + b, 0);

/** Among 32 lane counts, the one lane with (sum over higher lanes) < kth ≤ (that + its count). */
function winner(count: number[], kth: number): [lane: number, above: number] {
  const above = count.map((_, l) => sum(count.slice(l + 1))); // warpScan 'down' minus the lane's own
  const wins = count.map((n, l) => (above[l]! < kth && kth <= above[l]! + n ? l : -1)).filter((l) => l >= 0);
  if (wins.length !== 1) throw new Error(`${wins.length} winning lanes for k = ${kth}`);
  return [wins[0]!, above[wins[0]!]!];
}

/** topkSelect on one row, as the kernel does it. */
function simulate(row: Float32Array, K: number): number[] {
  const F = row.length;
  const { threads, perThread: E } = selectShape(F);
  const keys = Array.from({ length: F }, (_, c) => key(row[c]!));
  let prefix = 0, krem = K;
  RADIX_PASSES.forEach(([shift, bits], pass) => {
    const bins = 1 << bits, seg = bins / SEGMENTS, perLane = seg / 32;
    const hist = new Array<number>(bins).fill(0);
    for (const kc of keys) if (pass === 0 || kc >>> (shift + bits) === prefix >>> (shift + bits)) hist[(kc >>> shift) & (bins - 1)]++;
    const segTot = Array.from({ length: SEGMENTS }, (_, s) => sum(hist.slice(s * seg, (s + 1) * seg)));
    const [segLane, aboveSeg] = winner(segTot, krem);
    const kseg = krem - aboveSeg, first = segLane * seg;
    const laneBins = Array.from({ length: 32 }, (_, l) => hist.slice(first + l * perLane, first + (l + 1) * perLane));
    const [binLane, laneAbove] = winner(laneBins.map(sum), kseg);
    let digit = first + binLane * perLane, binAbove = laneAbove;
    if (perLane === 2) {
      const hiEnd = laneAbove + laneBins[binLane]![1]!; // the higher bin comes first
      if (kseg <= hiEnd) digit++;
      else binAbove = hiEnd;
    }
    krem = kseg - binAbove;
    prefix = (prefix | (digit << shift)) >>> 0;
  });
  // τ = prefix; one exclusive scan of (keys > τ) << 16 | (keys = τ) per thread
  const out = new Array<number>(K).fill(-1);
  let before = 0;
  for (let th = 0; th < threads; th++) {
    const cs = Array.from({ length: E }, (_, e) => th * E + e).filter((c) => c < F);
    const nGt = cs.filter((c) => keys[c]! > prefix).length, nEq = cs.filter((c) => keys[c] === prefix).length;
    let rank = before & 0xffff, pos = (before >>> 16) + Math.min(rank, krem);
    for (const c of cs) {
      const take = keys[c]! > prefix || (keys[c] === prefix && rank < krem);
      if (keys[c] === prefix) rank++;
      if (take) {
        if (pos >= K || out[pos] !== -1) throw new Error(`channel ${c} written at ${pos}`);
        out[pos++] = c;
      }
    }
    before = (before + nGt * 65536 + nEq) >>> 0;
  }
  if (out.includes(-1)) throw new Error('an output slot is not written');
  return out;
}

/** Reference by the kernel's keys: largest first, ties → lower channel; output ascending. */
function byKey(row: Float32Array, K: number): number[] {
  const ids = Array.from(row.keys());
  ids.sort((a, b) => key(row[b]!) - key(row[a]!) || a - b);
  return ids.slice(0, K).sort((a, b) => a - b);
}

function rng(seed: number): () => number {
  return () => {
    seed = (seed + 0x6d2b79f5) | 0;
    let x = Math.imul(seed ^ (seed >>> 15), 1 | seed);
    x = (x + Math.imul(x ^ (x >>> 7), 61 | x)) ^ x;
    return ((x ^ (x >>> 14)) >>> 0) / 2 ** 32;
  };
}

// the keys' order is mocSelect's (NaN = -Inf, -0 = +0), so any row is compared with it, -0 and -Inf included
const ROWS: Record<string, (f: number, r: () => number) => Float32Array> = {
  random: (f, r) => Float32Array.from({ length: f }, () => Math.sqrt(-2 * Math.log(1 - r())) * Math.cos(2 * Math.PI * r()) * 4),
  halves: (f, r) => Float32Array.from({ length: f }, (_, i) => (i % 17 === 3 ? NaN : i % 13 === 5 ? 0 : Math.round((r() - 0.5) * 16) / 2 + 0)), // + 0: no -0
  few: (f, r) => Float32Array.from({ length: f }, () => [NaN, 0, 1, 2, Infinity][Math.floor(r() * 5)]!),
  close: (f, r) => Float32Array.from({ length: f }, () => 1 + Math.floor(r() * 4096) * 2 ** -23), // differ in the last passes
  equal: (f) => new Float32Array(f).fill(1.5),
  nan: (f, r) => Float32Array.from({ length: f }, () => (r() < 0.7 ? NaN : -r())),
  signed: (f, r) => Float32Array.from({ length: f }, () => [NaN, -Infinity, -0, 0, -1, 1][Math.floor(r() * 6)]!),
};

test('the algorithm of topkSelect equals mocSelect', (t) => {
  const r = rng(1);
  let n = 0;
  for (const f of [1, 2, 3, 7, 172, 300, 1000, 4097, 5461, 5464, 14336]) {
    const ks = [...new Set([1, 2, 32, 57, 172, 1024, 2688, f - 1, f])].filter((k) => k >= 1 && k <= f);
    for (const [kind, make] of Object.entries(ROWS)) {
      const row = make(f, r);
      for (const k of ks) {
        t.deepEqual(simulate(row, k), [...mocSelect(row, f, { k })], `${kind} F=${f} K=${k}`);
        n++;
      }
    }
  }
  t.true(n > 300);
});

test('the algorithm of topkSelect orders as the ref: -0 ties +0, NaN (of either sign) ties -Inf', (t) => {
  const r = rng(2);
  const specials = [0x80000000, 0x00000000, 0xff800000, 0x7f800000, 0x7fc00000, 0xffc00001, 0x00000001, 0x80000001];
  for (const f of [5, 172, 5464]) {
    const bits = Uint32Array.from({ length: f }, () => (r() < 0.5 ? specials[Math.floor(r() * specials.length)]! : (r() * 2 ** 32) >>> 0));
    const row = new Float32Array(bits.buffer);
    for (const k of [1, 3, Math.ceil(f / 2), f]) {
      t.deepEqual(simulate(row, k), byKey(row, k), `F=${f} K=${k}: by the keys`);
      t.deepEqual(simulate(row, k), [...mocSelect(row, f, { k })], `F=${f} K=${k}: the ref`);
    }
  }
  t.true(key(-0) === key(0) && key(NaN) === key(-Infinity) && key(-Infinity) < key(-3e38) && key(-Infinity) > 0);
});

test('select shapes: 16-byte runs, at most 1024 threads, every channel owned; F above the counters is an error', (t) => {
  for (let f = 1; f <= MAX_SELECT_CHANNELS; f += f < 300 ? 1 : 97) {
    const { threads, perThread } = selectShape(f);
    if (perThread % 4 !== 0 || threads % 32 !== 0 || threads > 1024 || threads * perThread < f) t.fail(`F=${f}: ${threads}×${perThread}`);
  }
  t.throws(() => topkSelect(MAX_SELECT_CHANNELS + 1, 1), { message: /at most 65535 channels/ });
  t.throws(() => topkSelect(172, 173), { message: /K = 173/ });
});
