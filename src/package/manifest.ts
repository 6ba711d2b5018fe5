// The model package's manifest: what `mocc convert` wrote and from what.
import type { ModelSpec } from '../import/spec.js';

export const PACKAGE_FORMAT = 'mocc-package';
/**
 * 2: model.mir holds the model graph of issue 14 (params, rows with pos/seq, pure attention; the
 * decode graph is derived when the package runs). Version 1 (weights, a KV-cache attention) is not read.
 */
export const PACKAGE_FORMAT_VERSION = 2;

export interface SourceFile {
  name: string;
  bytes: number;
  sha256: string;
}

export interface Manifest {
  format: typeof PACKAGE_FORMAT;
  formatVersion: number;
  createdBy: string;
  source: { format: string; path: string; files: SourceFile[] };
  config: ModelSpec;
  /** Per-layer kept channels (d_ffn where a layer stayed dense). */
  moc: { mode: 'dense' | 'topk' | 'pattern'; dFfn: number; perLayerK: number[]; pattern?: string };
  ir: string;
  weights: { file: string; dtypes: Record<string, string> };
  tokenizer: { kind: 'spm' | 'hf'; file: string } | null;
}
