// add-loss: a model graph (output: logits [T,V]) → the same graph ending in a scalar loss f32[1],
// the start of a training graph (autodiff.ts differentiates it). Next-token cross-entropy reads the
// targets input; distillation (KL to a teacher, src/ir/ops-train.ts kl_div) also reads the teacher's
// logits as an input, so the teacher runs separately (it may be another model, on another target).
//
// Cross-entropy with `fusedChunkRows` set: the model's final logits node (x·Wᵀ) and the loss become one
// lm_head_loss node (src/ir/ops-train.ts) over chunks of that many rows, so the [T,V] logits are never
// a value of the training graph (issue 18: at T = 16384, V = 32000 they are 2.1 GB f32). Its gradient
// rule (grad-rules.ts) gives dx and dW directly, so dlogits is never a value either.
import { GraphBuilder } from '../src/ir/builder.js';
import type { Graph, Node } from '../src/ir/types.js';
import { nodeName } from '../src/ir/types.js';
import { TRAIN_INPUTS } from '../src/model/graph-inputs.js';
import type { Pass } from './pass.js';

export type LossSpec = { kind: 'cross_entropy'; fusedChunkRows?: number } | { kind: 'kl_div'; temperature: number };

/**
 * Bytes of one block of fused logits at most: 256 MiB of f32 (rows padded to 8 floats, the device
 * layout). Large enough that a block's GEMMs keep tensor cores busy (the CUDA bf16 entries,
 * targets/cuda/train/ops-lm-head-bf16.ts: 2048 rows at V = 32000, 16 row tiles of gemm90's 128), small
 * against the [T, V] logits it replaces (2.1 GB f32 at T = 16384).
 */
export const LM_HEAD_BLOCK_BYTES = 256 << 20;
/** Block rows are a multiple of this when at least this many fit (a tensor-core GEMM's row tile, gemm.ts / gemm-sm90.ts). */
export const LM_HEAD_ROW_MULTIPLE = 128;
/**
 * The default chunk of lm_head_loss for vocabulary V: as many rows as fit LM_HEAD_BLOCK_BYTES, rounded
 * down to a multiple of LM_HEAD_ROW_MULTIPLE where at least that many fit, at least 1. The one place
 * the block size is chosen: every target's entries take the node's chunk_rows.
 */
export const lmHeadChunkRows = (V: number): number => {
  const fit = Math.floor(LM_HEAD_BLOCK_BYTES / (4 * Math.ceil(V / 8) * 8));
  return fit >= LM_HEAD_ROW_MULTIPLE ? fit - (fit % LM_HEAD_ROW_MULTIPLE) : Math.max(1, fit);
};

export const addLoss: Pass<LossSpec> = {
  name: 'add-loss',
  run(g: Graph, loss: LossSpec): Graph {
    if (g.states.length) throw new Error(`graph ${g.name}: a training graph starts from the model graph, not a decode graph (it has state)`);
    const logitsName = g.outputs[0]!;
    const b = new GraphBuilder(g.name);
    for (const i of g.inputs) b.input(i.name, i.type);
    b.declareParams(g.params);
    const fused = loss.kind === 'cross_entropy' && loss.fusedChunkRows !== undefined ? fusedLogitsNode(g, logitsName) : undefined;
    for (const n of g.nodes) if (n !== fused) b.copy(n);
    const logits = { kind: 'value', name: logitsName } as const;
    const rows = fused ? b.typeOf(fused.inputs[0]!).shape[0]! : b.typeOf(logits).shape[0]!;
    const targets = b.input(TRAIN_INPUTS.targets, { dtype: 'i32', shape: [rows] });
    if (fused && loss.kind === 'cross_entropy') {
      return b.finish([b.op('lm_head_loss', [fused.inputs[0]!, fused.inputs[1]!, targets], { chunk_rows: loss.fusedChunkRows! }, 'loss')]);
    }
    const out = loss.kind === 'cross_entropy'
      ? b.op('cross_entropy', [logits, targets], {}, 'loss')
      : b.op('kl_div', [logits, b.input(TRAIN_INPUTS.teacher, b.typeOf(logits)), targets], { temperature: loss.temperature }, 'loss');
    return b.finish([out]);
  },
};

/** The node computing the logits output, which lm_head_loss replaces: a logits node read by no other node. */
function fusedLogitsNode(g: Graph, logitsName: string): Node {
  const n = g.nodes.find((m) => m.outputs.some((o) => o.name === logitsName));
  if (!n || n.op !== 'logits') throw new Error(`add-loss: the fused cross-entropy needs the output %${logitsName} to be a logits node, got ${n ? n.op : 'a graph input'}`);
  const reader = g.nodes.find((m) => m.inputs.some((o) => o.kind === 'value' && o.name === logitsName));
  if (reader) throw new Error(`add-loss: the fused cross-entropy cannot drop %${logitsName}: node %${nodeName(reader)} (${reader.op}) reads it`);
  return n;
}
