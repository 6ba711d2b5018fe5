// Writes a model package directory: manifest.json, model.mir, weights.safetensors, the tokenizer.
// writeOutput (src/util/atomic-output.ts) puts everything in a temporary sibling directory that is
// renamed into place only when complete, so a failed or interrupted convert never leaves a package
// (or half of one) at the output path, and never deletes the checkpoint it reads.
import { createHash } from 'node:crypto';
import { createReadStream, statSync, writeFileSync } from 'node:fs';
import { basename, join, resolve } from 'node:path';
import { checkpointInputs, type Checkpoint } from '../import/spec.js';
import { writeSafetensors, type SafetensorsEntry } from '../import/safetensors.js';
import type { TensorSource } from '../import/tensor.js';
import { elementCount } from '../import/tensor.js';
import { printGraph } from '../ir/print.js';
import type { Graph } from '../ir/types.js';
import { verifyGraph } from '../ir/verify.js';
import { checkOutput, writeOutput } from '../util/atomic-output.js';
import { bytesFor, encodeFromF32, type StorageDType } from '../util/dtype.js';
import { PACKAGE_FORMAT, PACKAGE_FORMAT_VERSION, type Manifest, type TrainingRecord } from './manifest.js';
import { materializeWeightLayouts, type StoredWeight } from './materialize.js';
import { mocSummary } from './moc-summary.js';

export type PackageDType = 'f32' | 'f16' | 'bf16';

export interface WritePackageOptions {
  /** Stored weight type; default: each tensor's own (a GGUF block-quantized one is already dequantized, see importGguf). */
  dtype?: PackageDType;
  force?: boolean;
  /** Called as weight bytes are written: (done, total). */
  onProgress?: (doneBytes: number, totalBytes: number, tensor: string) => void;
  version?: string;
  /** Training runs to record in the manifest (a trained package). */
  training?: TrainingRecord[];
}

/** What a package is written from: a checkpoint, or (for trained weights) a package's model in memory. */
export type PackageSource = Omit<Checkpoint, 'format' | 'close'> & { format: Checkpoint['format'] | 'mocc-package' };

/** Values per chunk when streaming a tensor (4 MiB of float32). */
const CHUNK_VALUES = 1 << 20;

export async function sha256File(path: string): Promise<string> {
  const h = createHash('sha256');
  for await (const chunk of createReadStream(path, { highWaterMark: 1 << 22 })) h.update(chunk as Buffer);
  return h.digest('hex');
}

export function storedDType(src: TensorSource, requested: PackageDType | undefined): PackageDType {
  return requested ?? src.dtype;
}

/** Streams one stored weight: rows of the source (or, transposed, column strips), converted to `dtype`. */
function emitterFor(src: TensorSource, s: StoredWeight, dtype: PackageDType): SafetensorsEntry['write'] {
  return (emit) => {
    const rows = src.shape[0]!;
    const cols = elementCount(src.shape.slice(1));
    if (!s.transpose) {
      // Same dtype and a plain layout: copy the stored bytes untouched (exact, and no decode work).
      if (src.dtype === dtype) {
        const step = CHUNK_VALUES * 4;
        for (let b = 0; b < src.byteLength; b += step) emit(src.readBytes(b, Math.min(src.byteLength, b + step)));
        return;
      }
      const rowsPerChunk = Math.max(1, Math.floor(CHUNK_VALUES / cols));
      for (let r = 0; r < rows; r += rowsPerChunk) emit(encodeFromF32(dtype, src.readRowsF32(r, Math.min(rows, r + rowsPerChunk))));
      return;
    }
    // Transposed: output row j is source column j. Read strips of source rows, keep a block of output
    // rows [c0, c1) in memory, so memory stays bounded for any matrix size.
    const colsPerBlock = Math.max(1, Math.floor(CHUNK_VALUES / rows));
    const rowsPerStrip = Math.max(1, Math.floor(CHUNK_VALUES / cols));
    for (let c0 = 0; c0 < cols; c0 += colsPerBlock) {
      const c1 = Math.min(cols, c0 + colsPerBlock);
      const block = new Float32Array((c1 - c0) * rows);
      for (let r0 = 0; r0 < rows; r0 += rowsPerStrip) {
        const r1 = Math.min(rows, r0 + rowsPerStrip);
        const strip = src.readRowsF32(r0, r1);
        for (let r = r0; r < r1; r++) for (let c = c0; c < c1; c++) block[(c - c0) * rows + r] = strip[(r - r0) * cols + c]!;
      }
      emit(encodeFromF32(dtype, block));
    }
  };
}

export async function writePackage(ck: PackageSource, graph: Graph, outDir: string, opts: WritePackageOptions = {}): Promise<Manifest> {
  const source = resolve(ck.path);
  const output = { kind: 'directory' as const, inputs: checkpointInputs(ck), force: opts.force ?? false };
  checkOutput(outDir, output); // before the work below, so a refused output costs nothing
  const { graph: stored, stored: plan } = materializeWeightLayouts(graph);
  const dtypes: Record<string, PackageDType> = {};
  const entries: SafetensorsEntry[] = plan.map((s) => {
    const src = ck.weights.get(s.from);
    if (!src) throw new Error(`weight @${s.from} is not in the checkpoint`);
    const dtype = storedDType(src, opts.dtype);
    dtypes[s.name] = dtype;
    const shape = s.transpose ? [src.shape[1]!, src.shape[0]!] : [...src.shape];
    return { name: s.name, dtype, shape, write: emitterFor(src, s, dtype) };
  });
  const finalGraph: Graph = { ...stored, params: stored.params.map((w) => ({ ...w, type: { ...w.type, dtype: dtypes[w.name] as StorageDType } })) };
  verifyGraph(finalGraph);

  const total = entries.reduce((s, e) => s + bytesFor(e.dtype, elementCount(e.shape)), 0);
  let done = 0;
  const tracked = entries.map((e) => ({
    ...e,
    write: (emit: (c: Uint8Array) => void) => e.write((chunk) => {
      emit(chunk);
      done += chunk.length;
      opts.onProgress?.(done, total, e.name);
    }),
  }));

  return writeOutput(outDir, output, async (tmp) => {
    const files = await Promise.all(ck.files.map(async (f) => ({ name: basename(f), bytes: statSync(f).size, sha256: await sha256File(f) })));
    await writeSafetensors(join(tmp, 'weights.safetensors'), tracked, { format: 'pt', producer: 'mocc' });
    writeFileSync(join(tmp, 'model.mir'), printGraph(finalGraph));
    let tokenizer: Manifest['tokenizer'] = null;
    if (ck.tokenizer) {
      const t = ck.tokenizer.serialize();
      writeFileSync(join(tmp, t.file), t.bytes);
      tokenizer = { kind: ck.tokenizer.kind, file: t.file };
    }
    const manifest: Manifest = {
      format: PACKAGE_FORMAT,
      formatVersion: PACKAGE_FORMAT_VERSION,
      createdBy: `mocc ${opts.version ?? ''}`.trim(),
      source: { format: ck.format, path: source, files },
      config: ck.spec,
      moc: mocSummary(finalGraph, ck.spec),
      ir: 'model.mir',
      weights: { file: 'weights.safetensors', dtypes },
      tokenizer,
      ...(opts.training?.length ? { training: opts.training } : {}),
    };
    // The manifest goes last: a directory without one is never a package.
    writeFileSync(join(tmp, 'manifest.json'), JSON.stringify(manifest, null, 2) + '\n');
    return manifest;
  });
}
