// The op resolve table: which (domain, op, since-version) the ONNX importer understands. A node's
// since-version is the newest version of its op's schema at or below the model's opset for its domain
// (ONNX's own rule); the lists of since-versions below were printed from ONNX 1.23's
// onnx.defs.get_schema (Python) for the ops the LLaMA forms use, and pasted here. `supported` holds those whose semantics the importer
// implements (the schemas in force for opsets 14–20, and 21–23 where a newer schema only adds data
// types; opset 23's RMSNormalization, RotaryEmbedding and Attention are matched as single nodes;
// Split, TopK, GatherElements and ScatterElements for the forms mocc's own ONNX export writes, opset 17:
// match-moc.ts).
import { nameText, UserError } from '../../util/errors.js';
import type { OnnxModel, OnnxNode } from './model.js';

/** [op, every since-version up to opset 23, the since-versions we implement]; domain ai.onnx (''). */
const TABLE: Array<[string, number[], number[]]> = [
  ['Add', [1, 6, 7, 13, 14], [14]],
  ['Attention', [23], [23]],
  ['And', [1, 7], [7]],
  ['Cast', [1, 6, 9, 13, 19, 21, 23], [13, 19, 21, 23]],
  ['Concat', [1, 4, 11, 13], [13]],
  ['Constant', [1, 9, 11, 12, 13, 19, 21, 23], [13, 19, 21, 23]],
  ['ConstantOfShape', [9, 20, 21, 23], [9, 20, 21, 23]],
  ['Cos', [7, 22], [7, 22]],
  ['CumSum', [11, 14], [14]],
  ['Div', [1, 6, 7, 13, 14], [14]],
  ['Equal', [1, 7, 11, 13, 19], [13, 19]],
  ['Expand', [8, 13], [13]],
  ['Flatten', [1, 9, 11, 13, 21, 23], [13, 21, 23]],
  ['Gather', [1, 11, 13], [13]],
  ['GatherElements', [11, 13], [13]],
  ['GatherND', [11, 12, 13], [13]],
  ['Greater', [1, 7, 9, 13], [13]],
  ['Identity', [1, 13, 14, 16, 19, 21, 23], [14, 16, 19, 21, 23]],
  ['IsNaN', [9, 13, 20], [13, 20]],
  ['Less', [1, 7, 9, 13], [13]],
  ['LessOrEqual', [12, 16], [12, 16]],
  ['MatMul', [1, 9, 13], [13]],
  ['Max', [1, 6, 8, 12, 13], [13]],
  ['Min', [1, 6, 8, 12, 13], [13]],
  ['Mul', [1, 6, 7, 13, 14], [14]],
  ['Neg', [1, 6, 13], [13]],
  ['Not', [1], [1]],
  ['Or', [1, 7], [7]],
  ['Pow', [1, 7, 12, 13, 15], [13, 15]],
  ['Range', [11], [11]],
  ['RMSNormalization', [23], [23]],
  ['Reciprocal', [1, 6, 13], [13]],
  ['ReduceMean', [1, 11, 13, 18], [13, 18]],
  ['ReduceSum', [1, 11, 13], [13]],
  ['Reshape', [1, 5, 13, 14, 19, 21, 23], [14, 19, 21, 23]],
  ['Shape', [1, 13, 15, 19, 21, 23], [13, 15, 19, 21, 23]],
  ['RotaryEmbedding', [23], [23]],
  ['ScatterElements', [11, 13, 16, 18], [16, 18]],
  ['Sigmoid', [1, 6, 13], [13]],
  ['Sin', [7, 22], [7, 22]],
  ['Slice', [1, 10, 11, 13], [13]],
  ['Softmax', [1, 11, 13], [13]],
  ['Split', [1, 2, 11, 13, 18], [13, 18]],
  ['Sqrt', [1, 6, 13], [13]],
  ['Squeeze', [1, 11, 13, 21, 23], [13, 21, 23]],
  ['Sub', [1, 6, 7, 13, 14], [14]],
  ['Transpose', [1, 13, 21, 23], [13, 21, 23]],
  ['TopK', [1, 10, 11], [11]],
  ['Trilu', [14], [14]],
  ['Unsqueeze', [1, 11, 13, 21, 23], [13, 21, 23]],
  ['Where', [9, 16], [9, 16]],
];

/**
 * onnxruntime's own ops as its model builder (onnxruntime-genai) writes them, each at version 1: per
 * domain, [op, since-versions, implemented]. SimplifiedLayerNormalization is registered in the default
 * domain by onnxruntime (not by ONNX); the rest are contrib ops of com.microsoft.
 */
const ORT_TABLE: Array<[string, string, number[], number[]]> = [
  ['', 'SimplifiedLayerNormalization', [1], [1]],
  ['com.microsoft', 'SkipSimplifiedLayerNormalization', [1], [1]],
  ['com.microsoft', 'GroupQueryAttention', [1], [1]],
];

const ALL = new Map([...TABLE.map(([op, all]) => [`|${op}`, all] as const), ...ORT_TABLE.map(([d, op, all]) => [`${d}|${op}`, all] as const)]);
/** Keys `${domain}|${op}|${since}` the importer implements. */
const SUPPORTED = new Set([...TABLE.flatMap(([op, , sup]) => sup.map((v) => `|${op}|${v}`)), ...ORT_TABLE.flatMap(([d, op, , sup]) => sup.map((v) => `${d}|${op}|${v}`))]);

/** The since-version of `op` in `domain` at `opset`, if ONNX (or onnxruntime, for its ops) defines it there. */
export function sinceVersion(op: string, opset: number, domain = ''): number | undefined {
  const all = ALL.get(`${domain}|${op}`);
  if (!all) return undefined;
  let found: number | undefined;
  for (const v of all) if (v <= opset) found = v;
  return found;
}

const domainText = (d: string): string => (d === '' ? 'ai.onnx' : d);

/** Throws a one-line UserError for the first node whose (domain, op, since-version) is not in the table. */
export function checkOpsSupported(m: OnnxModel): void {
  for (const n of m.nodes) {
    const opset = m.opsets.get(n.domain);
    const since = opset !== undefined ? sinceVersion(n.op, opset, n.domain) : undefined;
    if (since === undefined || !SUPPORTED.has(`${n.domain}|${n.op}|${since}`)) throw unsupported(m, n, opset, since);
  }
}

function unsupported(m: OnnxModel, n: OnnxNode, opset: number | undefined, since: number | undefined): UserError {
  const at = opset === undefined ? 'no opset imported for that domain' : `opset ${opset}${since !== undefined ? `, schema since ${since}` : ''}`;
  return new UserError(`${m.path}: unsupported ONNX op ${nameText(n.op)} (domain ${domainText(n.domain)}, ${at}) at node ${n.index}; mocc imports LLaMA graphs as torch.onnx.export writes them (opset 14–20), opset 23's fused ops and onnxruntime-genai's form`);
}
