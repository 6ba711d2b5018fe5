// The prefill flash attention kernel (targets/cuda/ptx/flash-attention.ts).
// - Everywhere (ptxas): every spec we ship assembles for sm_80 and sm_90 with no local memory.
// - Everywhere (CPU): the float64 reference below on cases worked out by hand.
// - On a CUDA device (skipped elsewhere, also in CI): random q and caches, cache rows past pos+T-1
//   filled with NaN (a read past the causal limit poisons the result), NaN-poisoned o and lse (an
//   unwritten element stays NaN; rows past T-1 and lse past heads·T must stay NaN), against the float64
//   reference computed from the same rounded inputs the kernel sees.
import test from 'ava';
import { FA_THREADS, flashAttention, flashAttentionGrid, flashAttentionOperands, flashAttentionSharedBytes, type FlashAttentionSpec } from '../../targets/cuda/ptx/flash-attention.js';
import { decodeToF32, encodeFromF32 } from '../../src/util/dtype.js';
import { download, freeAll, launch, pad8, padF32, poisoned, randomF32, rng, upload, weight } from '../helpers/cuda.js';
import { cudaDeviceRequirement, findPtxas, ptxasRequirement, testsNeeding } from '../helpers/requires.js';
import { assertEachAssembles } from '../helpers/ptxas.js';

const ptxas = findPtxas();
const ptxasTest = testsNeeding(ptxasRequirement(ptxas));

/** (heads, kvHeads, hd): stories260K (hd 8), 1B preset heads (hd 64), MHA, hd 128 with GQA 3. */
const SHAPES: [number, number, number][] = [[8, 4, 8], [4, 4, 64], [32, 32, 64], [6, 2, 128]];
const CACHES = ['f32', 'bf16', 'f16'] as const;
const OUTS = ['f32', 'bf16'] as const;

// ---- ptxas ----
const asmSpecs: FlashAttentionSpec[] = [
  ...SHAPES.flatMap(([heads, kvHeads, hd]) => CACHES.flatMap((cache) => OUTS.map((out) => ({ heads, kvHeads, hd, cache, out, lse: true })))),
  // the other paddings and tile widths: hd 16 (no padding), 24, 40 (padded), 80 (64-position tiles at 45 KB), 96 (32-position tiles)
  ...[16, 24, 40, 80, 96].map((hd) => ({ heads: 4, kvHeads: 2, hd, cache: 'bf16' as const, out: 'bf16' as const, lse: true })),
  { heads: 8, kvHeads: 4, hd: 64, cache: 'bf16', out: 'f32', lse: false },
  // an f32 cache multiplied as f16 (an f16 model's prefill over an f32 cache)
  ...OUTS.map((out) => ({ heads: 8, kvHeads: 4, hd: 64, cache: 'f32' as const, operands: 'f16' as const, out, lse: true })),
];
ptxasTest('flash attention: every spec assembles for sm_80 and sm_90 with no local memory', (t) => {
  assertEachAssembles(t, asmSpecs.map(flashAttention));
});

test('flash attention: text is deterministic, uses the tensor-core path, and fits 48 KB of static shared memory', (t) => {
  for (let hd = 8; hd <= 128; hd += 8) {
    for (const cache of CACHES) {
      const spec: FlashAttentionSpec = { heads: 4, kvHeads: 2, hd, cache, out: 'bf16', lse: true };
      const a = flashAttention(spec);
      t.is(a.text, flashAttention(spec).text);
      t.true(flashAttentionSharedBytes(spec) <= 48 * 1024, `hd ${hd}: ${flashAttentionSharedBytes(spec)} bytes`);
      const mt = cache === 'f16' ? 'f16' : 'bf16';
      t.regex(a.text, new RegExp(`mma\\.sync\\.aligned\\.m16n8k16\\.row\\.col\\.f32\\.${mt}\\.${mt}\\.f32`));
      t.regex(a.text, /ldmatrix\.sync\.aligned\.m8n8\.x4\.trans\.shared\.b16/);
      if (cache === 'f32') t.notRegex(a.text, /cp\.async/);
      else t.regex(a.text, /cp\.async\.cg\.shared\.global/);
    }
  }
  t.deepEqual(flashAttentionGrid({ heads: 6, kvHeads: 2, hd: 128, cache: 'bf16', out: 'f32', lse: false }, 130), [3, 6, 1]);
});

test('flash attention rejects a head dimension it cannot tile, and heads not a multiple of kvHeads', (t) => {
  for (const hd of [0, 12, 136]) t.throws(() => flashAttention({ heads: 4, kvHeads: 4, hd, cache: 'bf16', out: 'f32', lse: false }), { message: /hd must be/ });
  t.throws(() => flashAttention({ heads: 6, kvHeads: 4, hd: 64, cache: 'bf16', out: 'f32', lse: false }), { message: /multiple of kvHeads/ });
});

// ---- the float64 reference ----
interface Reference {
  /** [T, heads·hd] */
  o: Float64Array;
  /** Σ p·|v| / Σ p per output element: the scale its rounding error is relative to. */
  mag: Float64Array;
  /** [heads, T] */
  lse: Float64Array;
}

/** Causal GQA attention of q [T, heads·hd] over cache rows [·, kvHeads·hd] (unpadded), row t seeing rows 0 .. pos+t. */
function reference(q: Float32Array, kc: Float32Array, vc: Float32Array, pos: number, T: number, heads: number, kvHeads: number, hd: number): Reference {
  const qw = heads * hd, kvw = kvHeads * hd, group = heads / kvHeads, scale = 1 / Math.sqrt(hd);
  const o = new Float64Array(T * qw), mag = new Float64Array(T * qw), lse = new Float64Array(heads * T);
  const s = new Float64Array(pos + T);
  for (let t = 0; t < T; t++) {
    const n = pos + t + 1;
    for (let h = 0; h < heads; h++) {
      const qo = t * qw + h * hd, ko = Math.floor(h / group) * hd;
      let max = -Infinity;
      for (let j = 0; j < n; j++) {
        let d = 0;
        for (let i = 0; i < hd; i++) d += q[qo + i]! * kc[j * kvw + ko + i]!;
        s[j] = d * scale;
        max = Math.max(max, s[j]!);
      }
      let l = 0;
      for (let j = 0; j < n; j++) l += (s[j] = Math.exp(s[j]! - max));
      lse[h * T + t] = max + Math.log(l);
      for (let i = 0; i < hd; i++) {
        let acc = 0, a = 0;
        for (let j = 0; j < n; j++) {
          const v = vc[j * kvw + ko + i]!;
          acc += s[j]! * v;
          a += s[j]! * Math.abs(v);
        }
        o[qo + i] = acc / l;
        mag[qo + i] = a / l;
      }
    }
  }
  return { o, mag, lse };
}

test('the reference on hand-worked cases: equal scores average V; scores ln 3 and 0 weigh 3:1', (t) => {
  // q = 0: every score is 0, row t averages V rows 0 .. pos+t and lse = ln(pos+t+1)
  const hd = 8, pos = 2, T = 3;
  const v = Float32Array.from({ length: (pos + T) * hd }, (_, i) => Math.floor(i / hd) + 1); // row j holds j+1
  const r = reference(new Float32Array(T * hd), new Float32Array((pos + T) * hd), v, pos, T, 1, 1, hd);
  for (let row = 0; row < T; row++) {
    const n = pos + row + 1;
    t.true(Math.abs(r.o[row * hd]! - (n + 1) / 2) < 1e-12, `row ${row}: ${r.o[row * hd]}`);
    t.true(Math.abs(r.lse[row]! - Math.log(n)) < 1e-12);
  }
  // one query row at pos 1 over two keys with scaled scores ln 3 and 0: o = (3·v0 + v1)/4, lse = ln 4;
  // two query heads on one KV head (GQA) see the same keys
  const q = new Float32Array(2 * hd); q[0] = 1; q[hd] = 1;
  const k = new Float32Array(2 * hd); k[0] = Math.sqrt(hd) * Math.log(3);
  const vv = new Float32Array(2 * hd); vv[0] = 4; vv[hd] = -8;
  const g = reference(q, k, vv, 1, 1, 2, 1, hd);
  for (const h of [0, 1]) {
    t.true(Math.abs(g.o[h * hd]! - (3 * 4 - 8) / 4) < 1e-6, `head ${h}: ${g.o[h * hd]}`);
    t.true(Math.abs(g.mag[h * hd]! - (3 * 4 + 8) / 4) < 1e-6);
    t.true(Math.abs(g.lse[h]! - Math.log(4)) < 1e-6);
  }
});

// ---- on the GPU ----
const cudaTest = testsNeeding(cudaDeviceRequirement());
let nextSeed = 1;

/** Values as `dtype` holds them (f32 → f32 unchanged). */
function rounded(x: Float32Array, dtype: 'f32' | 'bf16' | 'f16'): Float32Array {
  return dtype === 'f32' ? x : decodeToF32(dtype, encodeFromF32(dtype, x), x.length);
}

const BF16_NAN = 0x7fc0;

function check(spec: FlashAttentionSpec, T: number, pos: number): void {
  const { heads, kvHeads, hd, cache, out } = spec;
  const seed = nextSeed++;
  cudaTest.serial(`flash attention h${heads} kv${kvHeads} hd${hd} cache ${cache}${spec.operands ? ` as ${spec.operands}` : ''} out ${out}${spec.lse ? ' lse' : ''}: T=${T} pos=${pos} vs float64`, (t) => {
    t.teardown(freeAll);
    const r = rng(seed);
    const qw = heads * hd, kvw = kvHeads * hd, ldo = pad8(qw);
    // 64 poisoned rows past the last written one: whole tiles past the CTA's limit would read NaN
    const cap = pos + T + 64;
    const q = randomF32(T * qw, r, 4);
    const kv = [0, 1].map(() => {
      const x = new Float32Array(cap * kvw).fill(NaN);
      x.set(randomF32((pos + T) * kvw, r));
      return weight(x, cap, kvw, cache);
    });
    const posBuf = upload(Int32Array.of(pos));
    // o: T rows plus one more, all NaN; lse: heads·T plus 4 more
    const oRows = T + 1;
    const o = out === 'f32' ? poisoned(oRows * ldo * 4) : upload(new Uint16Array(oRows * ldo).fill(BF16_NAN));
    const lseBuf = poisoned((heads * T + 4) * 4);
    const args = [o, upload(padF32(q, T, qw)), kv[0]!.device, kv[1]!.device, posBuf, ...(spec.lse ? [lseBuf] : []), T];
    launch(flashAttention(spec), flashAttentionGrid(spec, T), FA_THREADS, args);

    let got: Float32Array;
    if (out === 'f32') {
      got = download(o, new Float32Array(oRows * ldo));
    } else {
      const raw = download(o, new Int32Array(Math.ceil((oRows * ldo) / 2)));
      got = decodeToF32('bf16', new Uint8Array(raw.buffer, 0, oRows * ldo * 2), oRows * ldo);
    }
    // the inputs the kernel multiplies: q in the mma type, the cache as staged (an f32 cache as its operand type)
    const mt = flashAttentionOperands(spec);
    const want = reference(rounded(q, mt), rounded(kv[0]!.exact, mt), rounded(kv[1]!.exact, mt), pos, T, heads, kvHeads, hd);
    // P·V multiplies P rounded to the mma type (relative error up to 2^-9 bf16, 2^-11 f16 per p), and
    // a bf16 output rounds once more: so an element is within those of its scale Σ p|v| / Σ p
    // (margin 2.5×); f32 accumulation and ex2.approx add about 1e-6. A wrong fragment or mask is O(1).
    const tol = 2.5 * ((mt === 'bf16' ? 2 ** -9 : 2 ** -11) + (out === 'bf16' ? 2 ** -9 : 0)) + 1e-5;
    let bad = 0, worst = 0, first = '';
    for (let row = 0; row < T; row++) {
      for (let c = 0; c < qw; c++) {
        const g = got[row * ldo + c]!, w = want.o[row * qw + c]!, m = want.mag[row * qw + c]!;
        const e = Math.abs(g - w) / Math.max(m, 1e-30);
        if (!(e <= tol)) {
          if (!bad) first = `row ${row} col ${c}: got ${g}, want ${w} (scale ${m.toExponential(2)})`;
          bad++;
        }
        if (Number.isFinite(e)) worst = Math.max(worst, e);
      }
    }
    t.is(bad, 0, `${bad} of ${T * qw} outputs off (NaN = unwritten or poisoned); first ${first}; worst ${worst.toExponential(2)}, tol ${tol.toExponential(2)}`);
    let written = 0;
    for (let i = T * ldo; i < oRows * ldo; i++) if (!Number.isNaN(got[i]!)) written++;
    t.is(written, 0, 'elements written past row T-1');

    const lse = download(lseBuf, new Float32Array(heads * T + 4));
    if (spec.lse) {
      // the lse adds the f32 exponentials of f32 scores: ~1e-6 relative; one position too many or too
      // few moves it by that position's weight, at least ~1e-3 at these sizes
      let lbad = 0, lfirst = '';
      for (let i = 0; i < heads * T; i++) {
        const d = Math.abs(lse[i]! - want.lse[i]!);
        if (!(d <= 5e-5 + 1e-6 * Math.abs(want.lse[i]!))) {
          if (!lbad) lfirst = `head ${Math.floor(i / T)} row ${i % T}: got ${lse[i]}, want ${want.lse[i]}`;
          lbad++;
        }
      }
      t.is(lbad, 0, `${lbad} of ${heads * T} lse values off; first ${lfirst}`);
    }
    t.true(lse.subarray(spec.lse ? heads * T : 0).every(Number.isNaN), 'lse written past heads·T (or without lse)');
  });
}

for (const [heads, kvHeads, hd] of SHAPES) {
  for (const cache of CACHES) {
    for (const out of OUTS) {
      for (const T of [1, 7, 64, 65, 130]) {
        for (const pos of [0, 5, 300]) check({ heads, kvHeads, hd, cache, out, lse: true }, T, pos);
      }
    }
    // without the lse parameter: o alone
    check({ heads, kvHeads, hd, cache, out: 'f32', lse: false }, 65, 5);
  }
  // an f32 cache multiplied as f16
  for (const out of OUTS) for (const [T, pos] of [[7, 0], [130, 5], [65, 300]] as const) check({ heads, kvHeads, hd, cache: 'f32', operands: 'f16', out, lse: true }, T, pos);
}
