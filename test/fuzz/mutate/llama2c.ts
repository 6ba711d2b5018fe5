// llama2.c .bin: the 7 header ints (edge values, ± a little, one byte changed, the vocab sign that says
// whether a classifier follows) and the file length (cut, extended, a classifier appended).
import { readFileSync } from 'node:fs';
import { CHECKPOINTS } from '../../helpers/fixtures.js';
import { llama2cBytes, tinyLlama2cBody, tinyLlama2cHeader } from '../../helpers/tiny-models.js';
import type { Rng } from '../prng.js';
import { mutateBytes } from './bytes.js';
import { edgeNumber } from './values.js';
import type { FuzzFiles } from './types.js';

let fixture: { header: number[]; body: Uint8Array } | undefined;

export function llama2cCase(r: Rng): FuzzFiles {
  let header: number[];
  let body: Uint8Array;
  if (r.chance(0.05)) {
    if (!fixture) {
      const b = readFileSync(CHECKPOINTS.llama2c);
      fixture = { header: Array.from({ length: 7 }, (_, i) => b.readInt32LE(i * 4)), body: new Uint8Array(b.subarray(28)) };
    }
    header = [...fixture.header];
    body = fixture.body;
  } else {
    header = tinyLlama2cHeader();
    body = tinyLlama2cBody();
  }
  for (let n = r.range(1, 2); n > 0; n--) {
    const i = r.int(7);
    r.weighted<void>([
      [3, () => { header[i] = edgeNumber(r) | 0; }],
      [3, () => { header[i] = header[i]! + r.pick([-2, -1, 1, 2, 8]); }],
      [3, () => { const b = r.int(4); header[i] = (header[i]! & ~(0xff << (8 * b))) | (r.int(256) << (8 * b)); }],
      [1, () => { header[5] = -header[5]!; }],
    ]);
  }
  let bytes = llama2cBytes(header, body);
  r.weighted<void>([
    [4, () => {}],
    [2, () => { bytes = bytes.slice(0, r.int(bytes.length + 1)); }],
    [1, () => { bytes = mutateBytes(r, bytes, 28); }],
    [1, () => {
      // A classifier [vocab, dim] appended, which a negative vocab_size says is there.
      const extra = Math.max(0, Math.min(1 << 20, Math.abs(header[5]! * header[0]!) * 4));
      const out = new Uint8Array(bytes.length + extra);
      out.set(bytes);
      bytes = out;
    }],
  ]);
  return { files: { 'model.bin': bytes }, open: 'model.bin' };
}
