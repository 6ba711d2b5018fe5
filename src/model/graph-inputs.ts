// The inputs of a model graph (src/import/llama-graph.ts): a batch of sequences as rows. Each row is
// one token; `pos` is its position in its sequence and `seq` its sequence's id (a sequence's rows
// contiguous and in order). Per-token ops see rows; rope reads pos, attention reads seq.
// A decode graph (passes/kv-cache.ts) drops seq: it decodes one sequence, at positions pos.
export const MODEL_INPUTS = { tokens: 'tokens', pos: 'pos', seq: 'seq' } as const;

/**
 * The extra inputs of a training graph (passes/loss.ts): each row's next token (-1: the row predicts
 * nothing, e.g. a sequence's last row) and, for distillation, the teacher's logits [T, V].
 */
export const TRAIN_INPUTS = { targets: 'targets', teacher: 'teacher_logits' } as const;
