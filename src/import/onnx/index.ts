// ONNX import: read the .onnx protobuf (model.ts), check every op against the resolve table (ops.ts),
// locate initializers and fold constants (tensors.ts, graph.ts), find the LLaMA by dataflow (match.ts;
// fused forms in match-fused.ts), and hand out the weights lazily in mocc's layout ([out, in]: MatMul
// weights are transposed on read; a packed q/k/v matrix is cut into its rows).
import { checkWeights, type Checkpoint } from '../spec.js';
import { UserError } from '../../util/errors.js';
import type { TensorSource } from '../tensor.js';
import { OnnxGraph } from './graph.js';
import { matchLlama } from './match.js';
import { readOnnxModel } from './model.js';
import { checkOpsSupported } from './ops.js';
import { ExternalFiles, initializerTensor, type OnnxInitializer } from './tensors.js';
import { RowsTensor, TransposeCache, TransposedTensor } from './transposed.js';

export function importOnnx(path: string): Checkpoint {
  const model = readOnnxModel(path);
  if (!model.opsets.has('')) throw new UserError(`${path}: the ONNX model imports no opset of the default domain (ai.onnx)`);
  checkOpsSupported(model);
  const files = new ExternalFiles(path);
  try {
    const g = new OnnxGraph(model, files);
    const { spec, weights: refs, moc } = matchLlama(g);
    const cache = new TransposeCache();
    const weights = new Map<string, TensorSource>();
    const transposed = new Map<OnnxInitializer, TransposedTensor>(); // one view per matrix: q, k, v of a packed one share it
    for (const [name, ref] of refs) {
      let t: TensorSource = initializerTensor(ref.init, path);
      if (ref.transpose) {
        const v = transposed.get(ref.init) ?? new TransposedTensor(t, cache);
        transposed.set(ref.init, v);
        t = v;
      }
      weights.set(name, ref.rows ? new RowsTensor(t, ...ref.rows) : t);
    }
    checkWeights(spec, weights, path);
    return { format: 'onnx', path, files: [path, ...files.paths], spec, weights, ...(moc ? { moc } : {}), close: () => files.close() };
  } catch (e) {
    files.close();
    throw e;
  }
}
