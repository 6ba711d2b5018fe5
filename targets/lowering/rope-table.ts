// The RoPE cos/sin table a rope or attention node reads: one per distinct (head_dim, theta,
// scaling) — the name says all it depends on, so layers share one — computed on the host in
// float64 like the ref target, as (cos, sin) f32 pairs for each position and frequency.
import type { Node } from './analysis.js';
import { ropeInvFreq } from '../ref/kernels.js';
import type { ConstDecl } from './program.js';

export type RopeConst = Extract<ConstDecl, { kind: 'rope' }>;

/** The table a rope node (or the rope fused into an attention's inputs) needs. */
export function ropeTableConst(n: Node): RopeConst {
  const a = n.attrs;
  const name = `rope_table_hd${a.head_dim}_t${a.theta}${a.scaling ? `_l3_${a.factor}_${a.low_freq_factor}_${a.high_freq_factor}_${a.original_max_pos}` : ''}`;
  return {
    name, kind: 'rope', headDim: a.head_dim as number, theta: a.theta as number,
    ...(a.scaling === 'llama3' ? { llama3: { factor: a.factor as number, lowFreqFactor: a.low_freq_factor as number, highFreqFactor: a.high_freq_factor as number, originalMaxPos: a.original_max_pos as number } } : {}),
  };
}

/** The table's device image: maxPos × headDim/2 (cos, sin) pairs of f32. */
export function ropeTableImage(c: RopeConst, maxPos: number): Uint8Array {
  const inv = ropeInvFreq({ heads: 1, headDim: c.headDim, theta: c.theta, style: 'half', ...(c.llama3 ? { llama3: c.llama3 } : {}) });
  const half = c.headDim / 2;
  const table = new Float32Array(maxPos * half * 2);
  for (let p = 0; p < maxPos; p++) {
    for (let i = 0; i < half; i++) {
      const ang = p * inv[i]!;
      table[(p * half + i) * 2] = Math.cos(ang);
      table[(p * half + i) * 2 + 1] = Math.sin(ang);
    }
  }
  return new Uint8Array(table.buffer);
}
