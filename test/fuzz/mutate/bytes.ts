// Format-blind mutations of serialized bytes or JSON text: the cases structure-aware ones cannot reach
// (a flipped length byte, a file cut mid-field, a key written twice).
import type { Rng } from '../prng.js';

/** One of: flip bits, overwrite with edge bytes, truncate, append, insert or delete a run. `hot` bytes (a header) get most hits. */
export function mutateBytes(r: Rng, b: Uint8Array, hot = b.length): Uint8Array {
  const at = (): number => (b.length === 0 ? 0 : r.chance(0.8) ? r.int(Math.max(1, Math.min(hot, b.length))) : r.int(b.length));
  return r.weighted<Uint8Array>([
    [4, () => {
      const out = b.slice();
      for (let n = r.range(1, 4); n > 0 && out.length > 0; n--) out[at()]! ^= 1 << r.int(8);
      return out;
    }],
    [3, () => {
      const out = b.slice();
      for (let n = r.range(1, 3); n > 0 && out.length > 0; n--) out[at()] = r.pick([0, 1, 0x7f, 0x80, 0xff, 0x9b, 0x20]);
      return out;
    }],
    [2, () => b.slice(0, r.chance(0.5) ? at() : r.int(b.length + 1))],
    [1, () => {
      const extra = new Uint8Array(r.pick([1, 3, 4, 8, 32, 100]));
      if (r.chance(0.5)) for (let i = 0; i < extra.length; i++) extra[i] = r.int(256);
      const out = new Uint8Array(b.length + extra.length);
      const p = r.chance(0.5) ? b.length : at();
      out.set(b.subarray(0, p));
      out.set(extra, p);
      out.set(b.subarray(p), p + extra.length);
      return out;
    }],
    [1, () => {
      // Delete n bytes at p (fewer at the end of the file).
      const p = at();
      const n = Math.min(r.pick([1, 2, 4, 8, 16]), b.length - p);
      const out = new Uint8Array(b.length - n);
      out.set(b.subarray(0, p));
      out.set(b.subarray(p + n), p);
      return out;
    }],
  ]);
}

/** Text-level JSON mutations: a key written twice, a character dropped or changed, the text cut, a BOM. */
export function mutateJsonText(r: Rng, text: string): string {
  return r.weighted<string>([
    [3, () => {
      // Repeat one `"key":` pair's key right after itself with another value (JSON.parse keeps the last).
      const keys = [...text.matchAll(/"((?:[^"\\]|\\.)*)":/g)];
      if (keys.length === 0) return text;
      const m = r.pick(keys);
      const dup = `${m[0]}${r.pick(['0', '1', '1e9', '"x"', 'null', '[]', '{}', '4096.25'])},`;
      return text.slice(0, m.index) + dup + text.slice(m.index);
    }],
    [2, () => {
      const p = r.int(text.length + 1);
      return text.slice(0, p) + text.slice(p + 1);
    }],
    [2, () => {
      const p = r.int(text.length + 1);
      return text.slice(0, p) + r.pick(['{', '}', '[', ']', ',', ':', '"', '\\', '0', '-', '\n', '\u0000', ' ']) + text.slice(p);
    }],
    [1, () => text.slice(0, r.int(text.length + 1))],
    [1, () => '\ufeff' + text],
  ]);
}
