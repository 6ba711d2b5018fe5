// Values mutators put where a file expects something: numbers at the edges (the cases that found bugs:
// huge layer counts, integral floats, non-integers, Infinity), odd strings, and JSON of odd shapes.
import type { Rng } from '../prng.js';

export const EDGE_NUMBERS: readonly number[] = [
  0, -0, 1, -1, 2, 3, 7, 8, 15, 16, 17, 31, 32, 33, 64, 255, 256, 4096, 65535, 65536, 10158085, 16777215, 16777216,
  2 ** 31 - 1, 2 ** 31, 2 ** 32 - 1, 2 ** 32, 2 ** 32 + 1, 12884901888, 2 ** 53 - 1, 2 ** 53, 2 ** 53 + 2, 1e6, 1e9, 1e15, 1e38, 1e300,
  0.5, 1.5, 4096.25, 1e-5, 1e-45, 1e-300, -1e9, -(2 ** 31),
];

export const ODD_STRINGS: readonly string[] = [
  '', ' ', 'llama', 'LlamaForCausalLM', 'llama3', 'default', 'silu', 'F32', 'F16', 'BF16', 'I8', 'F64', 'Q8_0',
  'constructor', '__proto__', 'toString', 'hasOwnProperty', 'valueOf', '\n', 'a\nb', '\u0000', '\u001b[31mred', '\u2028',
  '\ud800', 'é', '🦙', 'x'.repeat(300), 'model.layers.07.mlp.up_proj.weight', '../x', '.',
];

export function edgeNumber(r: Rng): number {
  return r.weighted([
    [6, () => r.pick(EDGE_NUMBERS)],
    [2, () => r.range(-3, 300)],
    [1, () => (r.next() - 0.5) * 10 ** r.range(-10, 40)],
  ]);
}

export function oddString(r: Rng): string {
  return r.weighted([
    [5, () => r.pick(ODD_STRINGS)],
    [1, () => String.fromCharCode(...Array.from({ length: r.range(0, 12) }, () => r.int(0x80)))],
  ]);
}

/** A marker string that jsonWithDeep replaces by a deeply nested value in the JSON text. */
export const DEEP_MARKER = '\u0001DEEP\u0001';

/** Any JSON value: mostly scalars, sometimes arrays/objects, sometimes a marker for a very deep nest. */
export function jsonValue(r: Rng, depth = 0): unknown {
  return r.weighted<unknown>([
    [6, () => edgeNumber(r)],
    [3, () => oddString(r)],
    [1, () => null],
    [1, () => r.chance(0.5)],
    [depth < 2 ? 2 : 0, () => Array.from({ length: r.range(0, 4) }, () => jsonValue(r, depth + 1))],
    [depth < 2 ? 1 : 0, () => Object.fromEntries(Array.from({ length: r.range(0, 3) }, () => [oddString(r), jsonValue(r, depth + 1)]))],
    [1, () => DEEP_MARKER],
  ]);
}

/** JSON text of `v` with each DEEP_MARKER replaced by a value nested 2..20,000 levels deep. */
export function jsonWithDeep(r: Rng, v: unknown): string {
  const text = JSON.stringify(v);
  const marker = JSON.stringify(DEEP_MARKER);
  return text.split(marker).reduce((acc, part) => {
    const depth = r.pick([2, 50, 1000, 20_000]);
    const [open, close] = r.chance(0.7) ? ['[', ']'] : ['{"a":', '}'];
    return acc + open.repeat(depth) + JSON.stringify(edgeNumber(r)) + close.repeat(depth) + part;
  });
}
