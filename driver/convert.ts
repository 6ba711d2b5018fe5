// `mocc convert`: checkpoint → IR → passes → package.
import { openCheckpoint } from '../src/import/open.js';
import type { MocSelection } from '../src/model/selection.js';
import type { Manifest } from '../src/package/manifest.js';
import { writePackage, type PackageDType } from '../src/package/write.js';
import { checkpointGraph, checkpointSelection } from './load.js';

/** What `mocc convert` keeps when neither the user nor the checkpoint says: the paper's setting. */
export const DEFAULT_CONVERT_SELECTION: MocSelection = { kRatio: 0.19 };

export interface ConvertOptions {
  input: string;
  output: string;
  /** Absent: the checkpoint's own MoC selection, else DEFAULT_CONVERT_SELECTION (checkpointSelection). */
  selection?: MocSelection | 'dense' | undefined;
  dtype?: PackageDType;
  tokenizer?: string;
  force?: boolean;
  version?: string;
  onProgress?: (doneBytes: number, totalBytes: number, tensor: string) => void;
}

export async function convert(opts: ConvertOptions): Promise<Manifest> {
  // Quantized GGUF tensors are dequantized straight to the requested type (one rounding, not two).
  const ck = openCheckpoint(opts.input, { ...(opts.tokenizer ? { tokenizer: opts.tokenizer } : {}), ...(opts.dtype ? { dequantTo: opts.dtype } : {}) });
  try {
    const graph = checkpointGraph(ck.spec, (n) => ck.weights.get(n)!.dtype, checkpointSelection(ck, opts.selection, DEFAULT_CONVERT_SELECTION));
    return await writePackage(ck, graph, opts.output, {
      ...(opts.dtype ? { dtype: opts.dtype } : {}),
      force: opts.force ?? false,
      ...(opts.onProgress ? { onProgress: opts.onProgress } : {}),
      ...(opts.version ? { version: opts.version } : {}),
    });
  } finally {
    ck.close();
  }
}
