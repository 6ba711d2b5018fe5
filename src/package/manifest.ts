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
  /** The training runs that made these weights, oldest first (absent: weights as converted). */
  training?: TrainingRecord[];
}

/** What a `mocc train` or `mocc recover` run was (src/package/write.ts stores it; cli/commands/train.ts makes it). */
export interface TrainingRecord {
  command: 'train' | 'recover';
  steps: number;
  tokens: number;
  /** Mean loss over the last steps of the run (cross-entropy, or KL to the teacher). */
  finalLoss: number;
  loss: 'cross_entropy' | 'kl_div';
  temperature?: number;
  policy: string;
  trainable: string;
  batch: number;
  seq: number;
  lr: number;
  seed: number;
  /** The training text (absent for purely teacher-generated data), with the sha256 of the file. */
  data?: { path: string; sha256: string; format: string };
  /** For recovery: where the teacher came from and how many sequences it generated. */
  teacher?: { source: string; sequences: number };
  /** Mean NLL on --eval text at the end, if given. */
  evalNll?: number;
  date: string;
}
