// One entry point for commands that run a model: a mocc package, or a checkpoint converted in memory.
// driver/ is the layer above src/, passes/ and targets/ that commands, benchmarks and tests call: it
// runs the conversion pipeline, which src/ (the IR, importers, package format) does not know about.
import { buildLlamaGraph } from '../src/import/llama-graph.js';
import { detectFormat } from '../src/import/detect.js';
import { openCheckpoint } from '../src/import/open.js';
import type { DequantDType } from '../src/import/quant-tensor.js';
import { checkpointInputs, type Checkpoint, type ModelSpec } from '../src/import/spec.js';
import { UserError } from '../src/util/errors.js';
import type { Graph } from '../src/ir/types.js';
import { openPackage } from '../src/package/read.js';
import type { Manifest, TrainingRecord } from '../src/package/manifest.js';
import type { PackageSource } from '../src/package/write.js';
import { join } from 'node:path';
import { mocSummary } from '../src/package/moc-summary.js';
import type { Tokenizer } from '../src/tokenizer/tokenizer.js';
import { loadTokenizerFile } from '../src/tokenizer/load.js';
import type { RunnableModel } from '../src/model/runnable.js';
import type { MocSelection } from '../src/model/selection.js';
import { convertPipeline, runPipeline } from '../passes/index.js';
import { kFromRatio } from '../passes/swiglu-to-moc.js';

export interface LoadedModel extends RunnableModel {
  tokenizer?: Tokenizer;
  /** Where it came from, in words (for messages). */
  source: string;
  moc: Manifest['moc'];
  /** Every file or directory it was read from (outputs must stay clear of them: src/util/atomic-output.ts). */
  inputs: string[];
  /** The path given, its format, and the files its weights and config came from. */
  path: string;
  format: PackageSource['format'];
  files: string[];
  /** The training runs recorded in a package's manifest. */
  training?: TrainingRecord[];
  /** Why there is no tokenizer, when there is none: where one was looked for. */
  tokenizerSearch?: string;
  close(): void;
}

export interface LoadOptions {
  tokenizer?: string;
  /**
   * For a checkpoint: convert in memory (default: the checkpoint's own MoC selection, else dense; see
   * checkpointSelection). Not allowed for packages (already converted).
   */
  selection?: MocSelection | 'dense' | undefined;
  /** For a GGUF checkpoint: what block-quantized tensors are dequantized to (default: importGguf's). */
  dequantTo?: DequantDType;
}

export function loadModel(path: string, opts: LoadOptions = {}): LoadedModel {
  const format = detectFormat(path);
  if (format.kind === 'package') {
    if (opts.selection && opts.selection !== 'dense') throw new UserError(`${path} is a converted package; --k/--k-ratio/--pattern apply to checkpoints (convert again to change K)`);
    const pkg = openPackage(path);
    let tokenizer = pkg.tokenizer;
    if (opts.tokenizer) tokenizer = loadTokenizerFile(opts.tokenizer, pkg.manifest.config.vocabSize, { bosId: pkg.manifest.config.bosId, eosId: pkg.manifest.config.eosId });
    return {
      graph: pkg.graph, weights: pkg.weights, spec: pkg.manifest.config, moc: pkg.manifest.moc,
      ...(tokenizer ? { tokenizer } : { tokenizerSearch: `package ${path} holds no tokenizer` }), source: `package ${path}`,
      inputs: [path, ...(opts.tokenizer ? [opts.tokenizer] : [])], close: () => pkg.close(),
      path, format: 'mocc-package', files: [join(path, 'manifest.json'), join(path, pkg.manifest.ir), join(path, pkg.manifest.weights.file)],
      ...(pkg.manifest.training ? { training: pkg.manifest.training } : {}),
    };
  }
  const ck = openCheckpoint(path, { ...(opts.tokenizer ? { tokenizer: opts.tokenizer } : {}), ...(opts.dequantTo ? { dequantTo: opts.dequantTo } : {}) }, format);
  try {
    const graph = checkpointGraph(ck.spec, (n) => ck.weights.get(n)!.dtype, checkpointSelection(ck, opts.selection, 'dense'));
    return {
      graph, weights: ck.weights, spec: ck.spec, moc: mocSummary(graph, ck.spec),
      ...(ck.tokenizer ? { tokenizer: ck.tokenizer } : ck.tokenizerSearch ? { tokenizerSearch: ck.tokenizerSearch } : {}), source: `${ck.format} checkpoint ${path}`,
      inputs: checkpointInputs(ck), close: () => ck.close(),
      path, format: ck.format, files: ck.files,
    };
  } catch (e) {
    ck.close();
    throw e;
  }
}

/**
 * The selection a checkpoint is converted with: the user's (`given`), else the checkpoint's own (an
 * ONNX export of a MoC model computes its TopK in the graph: importing it recovers that K or pattern),
 * else `fallback`. A given selection that differs from the checkpoint's own is an error rather than a
 * silent re-selection: the file describes a MoC model, and its dense weights alone do not say what was
 * meant. Selections compare per FFN, so --k-ratio and --k agree when they give the same K.
 */
export function checkpointSelection(ck: Pick<Checkpoint, 'path' | 'spec' | 'moc'>, given: MocSelection | 'dense' | undefined, fallback: MocSelection | 'dense'): MocSelection | 'dense' {
  if (!ck.moc) return given ?? fallback;
  if (given === undefined) return ck.moc;
  const own = perFfn(ck.moc, ck.spec), asked = perFfn(given, ck.spec);
  if (own.join() === asked.join()) return ck.moc;
  throw new UserError(`${ck.path} computes MoC ${selectionText(own)} in its graph; the selection given (${selectionText(asked)}) contradicts it: leave out --k/--k-ratio/--pattern/--dense to keep the model's own`);
}

/** One word per FFN: 'dense', a K, or a:b (how two selections are compared). */
function perFfn(sel: MocSelection | 'dense', spec: ModelSpec): string[] {
  const each = (i: number): string => {
    if (sel === 'dense') return 'dense';
    if ('pattern' in sel) return `${sel.pattern.a}:${sel.pattern.b}`;
    if ('kRatio' in sel) return `K ${kFromRatio(sel.kRatio, spec.dFfn)}`;
    return `K ${Array.isArray(sel.k) ? sel.k[i] : sel.k}`;
  };
  return Array.from({ length: spec.nLayers }, (_, i) => each(i));
}

function selectionText(perLayer: string[]): string {
  return perLayer.every((s) => s === perLayer[0]) ? perLayer[0]! : perLayer.join(',');
}

export function checkpointGraph(spec: ModelSpec, dtypeOf: (name: string) => Graph['params'][number]['type']['dtype'], selection: MocSelection | 'dense'): Graph {
  return runPipeline(buildLlamaGraph(spec, dtypeOf), convertPipeline(selection));
}
