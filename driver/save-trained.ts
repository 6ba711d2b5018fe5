// Writes trained weights as a model package: the model's graph and config, the f32 master weights
// (already in each param's own layout, so no param stays flagged `transposed`), its tokenizer, and
// the manifest's record of the runs that made them (the model's earlier ones, then this one).
import { MemoryTensor } from '../src/import/tensor.js';
import { checkOutput } from '../src/util/atomic-output.js';
import type { Manifest, TrainingRecord } from '../src/package/manifest.js';
import { writePackage, type PackageDType } from '../src/package/write.js';
import type { LoadedModel } from './load.js';

export interface SaveTrainedOptions {
  record: TrainingRecord;
  dtype?: PackageDType;
  force?: boolean;
  version?: string;
  /** Other files the run read (data, teacher): the output may not be or contain any of them. */
  otherInputs?: string[];
}

/** Refuses an output that is, contains or lies inside anything the run reads (call before training). */
export function checkTrainedOutput(model: LoadedModel, out: string, opts: Pick<SaveTrainedOptions, 'force' | 'otherInputs'>): void {
  checkOutput(out, { kind: 'directory', inputs: [...model.inputs, ...(opts.otherInputs ?? [])], force: opts.force ?? false });
}

export async function writeTrainedPackage(model: LoadedModel, weights: ReadonlyMap<string, Float32Array>, out: string, opts: SaveTrainedOptions): Promise<Manifest> {
  checkTrainedOutput(model, out, opts);
  const graph = { ...model.graph, params: model.graph.params.map(({ transposed: _, ...p }) => p) };
  const tensors = new Map(graph.params.map((p) => [p.name, new MemoryTensor(p.name, p.type.shape as number[], weights.get(p.name)!)] as const));
  return writePackage(
    {
      format: model.format, path: model.path, files: model.files, spec: model.spec, weights: tensors,
      ...(model.tokenizer ? { tokenizer: model.tokenizer } : {}),
    },
    graph, out,
    { dtype: opts.dtype ?? 'f32', force: opts.force ?? false, ...(opts.version ? { version: opts.version } : {}), training: [...(model.training ?? []), opts.record] },
  );
}
