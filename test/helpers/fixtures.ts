// Paths to the bundled fixtures and the Hugging Face reference outputs (fixtures/stories260K/reference).
import type { ExecutionContext } from 'ava';
import { readFileSync } from 'node:fs';
import type { TensorSource } from '../../src/import/tensor.js';
import { fileURLToPath } from 'node:url';

export const ROOT = fileURLToPath(new URL('../../', import.meta.url));
export const FIX = `${ROOT}fixtures/stories260K/`;
export const CHECKPOINTS = {
  hf: `${FIX}hf`,
  llama2c: `${FIX}llama2c/stories260K.bin`,
  gguf: `${FIX}gguf/stories260K.gguf`,
  onnx: `${FIX}onnx/model.onnx`,
} as const;
export const LLAMA2C_TOKENIZER = `${FIX}llama2c/tok512.bin`;

export interface Reference {
  prompt: string;
  prompt_ids: number[];
  greedy_text: string;
  sequences: Record<string, { tokens: number[]; logits_files: Record<string, string> }>;
}
export const REF = JSON.parse(readFileSync(`${FIX}reference/reference.json`, 'utf8')) as Reference;

export function referenceLogits(seq: string, which: 'dense' | 'moc_k32' | 'moc_k128'): Float32Array {
  const b = readFileSync(`${FIX}reference/${REF.sequences[seq]!.logits_files[which]!}`);
  return new Float32Array(b.buffer.slice(b.byteOffset, b.byteOffset + b.byteLength));
}

export function maxAbsDiff(a: Float32Array, b: Float32Array): number {
  if (a.length !== b.length) throw new Error(`length ${a.length} vs ${b.length}`);
  let m = 0;
  for (let i = 0; i < a.length; i++) m = Math.max(m, Math.abs(a[i]! - b[i]!));
  return m;
}

/** mean |a − b| (a max over many logits is set by the one most sensitive position; the mean is not). */
export function meanAbsDiff(a: Float32Array, b: Float32Array): number {
  if (a.length !== b.length) throw new Error(`length ${a.length} vs ${b.length}`);
  let sum = 0;
  for (let i = 0; i < a.length; i++) sum += Math.abs(a[i]! - b[i]!);
  return sum / a.length;
}

/** fn of a checkpoint that `open` opens, closed afterwards whatever fn does. */
export function withCheckpoint<C extends { close(): void }, T>(open: () => C, fn: (c: C) => T): T {
  const c = open();
  try {
    return fn(c);
  } finally {
    c.close();
  }
}

/**
 * Every weight of `got` equals the one of the same name in `want` (e.g. an imported ONNX model against
 * the Hugging Face safetensors): the same names, shapes and values, and the same rows read on their own
 * (a transposed view must read them right too).
 */
export function sameWeights(t: ExecutionContext, got: ReadonlyMap<string, TensorSource>, want: ReadonlyMap<string, TensorSource>): void {
  t.deepEqual([...got.keys()].sort(), [...want.keys()].sort());
  for (const [name, w] of want) {
    const o = got.get(name)!;
    t.deepEqual([...o.shape], [...w.shape], name);
    t.deepEqual(o.toFloat32(), w.toFloat32(), name);
    if (w.shape.length === 2) t.deepEqual(o.readRowsF32(3, 5), w.readRowsF32(3, 5), `${name} rows`);
  }
}
