// ONNX import: read the .onnx protobuf (model.ts), check every op against the resolve table (ops.ts),
// locate initializers and fold constants (tensors.ts, graph.ts), find the LLaMA by dataflow (match.ts),
// and hand out the weights lazily in mocc's layout ([out, in]: MatMul weights are transposed on read).
import { checkWeights, type Checkpoint } from '../spec.js';
import { UserError } from '../../util/errors.js';
import type { TensorSource } from '../tensor.js';
import { OnnxGraph } from './graph.js';
import { matchLlama } from './match.js';
import { readOnnxModel } from './model.js';
import { checkOpsSupported } from './ops.js';
import { ExternalFiles, initializerTensor } from './tensors.js';
import { TransposeCache, TransposedTensor } from './transposed.js';

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
    for (const [name, ref] of refs) {
      const t = initializerTensor(ref.init, path);
      weights.set(name, ref.transpose ? new TransposedTensor(t, cache) : t);
    }
    checkWeights(spec, weights, path);
    return { format: 'onnx', path, files: [path, ...files.paths], spec, weights, ...(moc ? { moc } : {}), close: () => files.close() };
  } catch (e) {
    files.close();
    throw e;
  }
}
