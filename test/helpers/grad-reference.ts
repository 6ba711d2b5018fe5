// PyTorch's whole-model gradients of stories260K (fixtures/stories260K/reference/grads, made by
// fixtures/gen/make_stories260k_grads.py): the mean next-token cross-entropy of a fixed batch of two
// sequences, dense and MoC K=32, differentiated in float64 and stored as float32.
//
// Layout: referenceGrads() gives each gradient under our canonical param name (src/import/hf.ts's
// hfToCanonical) in the checkpoint's layout, i.e. the weight store's (HF [out, in]; W_down [d, d_ffn]).
// A graph param flagged `transposed` (MoC's W_down, read as [d_ffn, d]) has the transpose of that
// layout: inParamLayout() gives the gradients in each param's own layout. The output head is tied, so
// `tok_embeddings` holds the embedding's and the head's contributions summed (there is no `output`).
import { readFileSync } from 'node:fs';
import { hfToCanonical } from '../../src/import/hf.js';
import { readSafetensorsHeader } from '../../src/import/safetensors.js';
import type { ParamDecl } from '../../src/ir/types.js';
import { FIX } from './fixtures.js';

export const GRADS_DIR = `${FIX}reference/grads/`;

export interface RefGrad {
  shape: number[];
  data: Float32Array;
}

export interface GradReference {
  /** The mean cross-entropy over the batch's predicted positions (float64 in PyTorch). */
  loss: number;
  /** Canonical param name → gradient, in the checkpoint's (weight store's) layout. */
  grads: Map<string, RefGrad>;
  /** The two sequences, each run alone from position 0; row r predicts token r+1, the last row nothing. */
  batch: number[][];
}

interface GradsJson {
  batch: Array<{ sequence: string; rows: number; tokens: number[] }>;
  loss_terms: number;
  models: Record<string, { file: string; loss: number; selected_channels?: Record<string, number[] | string> }>;
}

export const GRADS_JSON = JSON.parse(readFileSync(`${GRADS_DIR}grads.json`, 'utf8')) as GradsJson;

export function referenceGrads(which: 'dense' | 'moc_k32'): GradReference {
  const model = GRADS_JSON.models[which]!;
  const st = readSafetensorsHeader(`${GRADS_DIR}${model.file}`);
  try {
    const grads = new Map<string, RefGrad>();
    for (const [hfName, t] of st.tensors) {
      const name = hfToCanonical(hfName);
      if (name === undefined) throw new Error(`${model.file}: ${hfName} is no parameter we know`);
      grads.set(name, { shape: [...t.shape], data: t.toFloat32() });
    }
    return { loss: model.loss, grads, batch: GRADS_JSON.batch.map((b) => b.tokens) };
  } finally {
    st.file.close();
  }
}

/** The channels (of d_ffn) that MoC K=32 selected for some predicting row of the batch, per layer. */
export function mocSelectedChannels(layer: number): number[] {
  const c = GRADS_JSON.models['moc_k32']!.selected_channels![String(layer)];
  if (!Array.isArray(c)) throw new Error(`grads.json: no selected channels for layer ${layer}`);
  return c;
}

/** The gradients in each param's own layout: those of params flagged `transposed` are transposed. */
export function inParamLayout(grads: Map<string, RefGrad>, params: readonly ParamDecl[]): Map<string, RefGrad> {
  const out = new Map<string, RefGrad>();
  for (const p of params) {
    const g = grads.get(p.name);
    if (!g) continue;
    out.set(p.name, p.transposed ? transpose2d(g) : g);
  }
  return out;
}

function transpose2d(g: RefGrad): RefGrad {
  if (g.shape.length !== 2) throw new Error(`cannot transpose a gradient of shape [${g.shape}]`);
  const [r, c] = g.shape as [number, number];
  const data = new Float32Array(r * c);
  for (let i = 0; i < r; i++) for (let j = 0; j < c; j++) data[j * r + i] = g.data[i * c + j]!;
  return { shape: [c, r], data };
}
