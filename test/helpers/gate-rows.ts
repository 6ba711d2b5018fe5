// Gate rows that make MoC channel selection hard (ties, NaN of any payload, ±0, ±Inf, denormals,
// rows of one value), for the tests of every selection kernel against ref.mocSelect.
import { randomF32 } from './webgpu.js';

/** F floats with bit patterns drawn from `bits` (seeded). */
function fromBits(F: number, seed: number, bits: number[]): Float32Array {
  const r = randomF32(F, seed);
  const u = Uint32Array.from(r, (v) => bits[Math.min(bits.length - 1, Math.floor(((v + 1) / 2) * bits.length))]!);
  return new Float32Array(u.buffer);
}

const NAN = 0x7fc00000, NEG_NAN = 0xffc00001, SNAN = 0x7f800001, NEG_ZERO = 0x80000000, INF = 0x7f800000, NEG_INF = 0xff800000;
const bitsOf = (...v: number[]) => v.map((x) => new Uint32Array(Float32Array.of(x).buffer)[0]!);

/** Gate rows that make selection hard, each F long. */
export const ROWS: Record<string, (F: number, seed: number) => Float32Array> = {
  random: (F, seed) => randomF32(F, seed, 4),
  ties: (F, seed) => fromBits(F, seed, bitsOf(-1, 0, 1)),
  // NaN of both signs and payloads, ±0, ±Inf, the smallest denormals of both signs, and random values
  specials: (F, seed) => {
    const special = fromBits(F, seed, [NAN, NEG_NAN, SNAN, NEG_ZERO, 0, INF, NEG_INF, 1, 0x80000001]);
    const random = randomF32(F, seed + 1, 2);
    return special.map((v, i) => (i % 2 ? random[i]! : v));
  },
  nanInf: (F, seed) => fromBits(F, seed, [NAN, NEG_NAN, NEG_INF, NEG_ZERO, 0]), // NaN ties -Inf, -0 ties +0
  equal: (F) => new Float32Array(F).fill(0.25),
  allNan: (F) => new Float32Array(F).fill(NaN),
  // values that differ only in their low mantissa bits: the radix passes' last digits decide
  close: (F, seed) => randomF32(F, seed).map((v) => 1 + Math.floor((v + 1) * 2048) * 2 ** -23),
};

/** T rows of the given kinds, one after another. */
export function gateRows(F: number, kinds: string[], seed: number): Float32Array {
  const g = new Float32Array(kinds.length * F);
  kinds.forEach((kind, t) => g.set(ROWS[kind]!(F, seed + 17 * t), t * F));
  return g;
}

