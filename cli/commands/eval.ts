import { Command, Option } from 'commander';
import { evaluate, sessionLogits, type BatchLogits } from '../../driver/evaluate.js';
import { loadModel, type LoadedModel } from '../../driver/load.js';
import type { ModelSession } from '../../src/model/runnable.js';
import { UserError } from '../../src/util/errors.js';
import { checkSupported, getTarget } from '../../targets/index.js';
import { checkSeqFitsContext, DATA_FORMATS, type DataFormat } from '../../src/train/data.js';
import { dataReader, noTokenizerMessage } from '../data-files.js';
import { action, addSelectionOptions, noteKRatio, parseIntArg, progressBar, selectionFromFlags, type SelectionFlags } from '../common.js';
import { checkSameVocabulary } from '../teacher.js';

/** The targets eval runs on: ref, and those whose sessions answer synchronously (sessionLogits). */
const EVAL_TARGETS = ['ref', 'cuda'];

export function evalCommand(): Command {
  const cmd = new Command('eval')
    .description('mean next-token NLL and perplexity of a model on a text; with --teacher, also KL to the teacher and top-1 agreement')
    .argument('<model>', 'mocc package directory, or a checkpoint (HF directory, .gguf, llama2.c .bin)')
    .requiredOption('--data <file>', 'text to evaluate: plain text, JSONL with a "text" field, or token ids (.u16/.u32)')
    .addOption(new Option('--data-format <format>', 'read --data as this instead of detecting it').choices(DATA_FORMATS as string[]))
    .option('--teacher <model>', 'a (dense) model to compare with: mean KL(teacher ‖ model) and how often their top token agrees')
    .option('--seq <n>', 'longest piece a document is cut into (default: the context, at most 256)', parseIntArg('--seq', 1))
    .option('--json', 'print the result as JSON')
    .option('--tokenizer <file>', 'tokenizer to use instead of the one found with the model')
    .option('--target <name>', `where the logits are computed: ${EVAL_TARGETS.join(', ')} (cuda: the CUDA inference session, model and teacher)`, 'ref');
  addSelectionOptions(cmd, 'checkpoints only, converted in memory; default: the checkpoint\'s own MoC selection (an exported MoC ONNX), else dense');
  cmd.addHelpText('after', `
Every next-token prediction of every document is counted once: a document is cut into pieces of at
most --seq tokens, each starting at position 0. NLL is in nats; perplexity = e^NLL.
--target ref runs the model graph in float32; --target cuda runs each piece through the CUDA inference
session from an empty KV cache (needs an NVIDIA GPU and its driver, libcuda.so.1), in the weights'
stored type, so its numbers can differ from ref's in the last digits.`);
  return cmd.action(action(async (path: string, o: SelectionFlags & { data: string; dataFormat?: DataFormat; teacher?: string; seq?: number; json?: boolean; tokenizer?: string; target: string }) => {
    if (!EVAL_TARGETS.includes(o.target)) throw new UserError(`unknown target '${o.target}' for eval; available: ${EVAL_TARGETS.join(', ')}`);
    const model = loadModel(path, { selection: selectionFromFlags(o), ...(o.tokenizer ? { tokenizer: o.tokenizer } : {}) });
    const teacher = o.teacher ? loadModel(o.teacher, o.tokenizer ? { tokenizer: o.tokenizer } : {}) : undefined;
    const sessions: ModelSession[] = [];
    try {
      noteKRatio(o, model.spec.dFfn);
      if (teacher) checkSameVocabulary(model, teacher);
      if (o.seq !== undefined) checkSeqFitsContext(o.seq, model.spec.maxSeqLen);
      const onTarget = async (m: LoadedModel): Promise<BatchLogits | undefined> => {
        if (o.target === 'ref') return undefined; // evaluate's own: the model graph on the ref target
        const target = getTarget(o.target);
        checkSupported(target, m);
        const session = await target.createSession(m);
        sessions.push(session);
        return sessionLogits(session, m.spec.vocabSize);
      };
      const logits = await onTarget(model);
      const teacherLogits = teacher ? await onTarget(teacher) : undefined;
      const data = dataReader({ tokenizer: model.tokenizer, vocabSize: model.spec.vocabSize, bosId: model.spec.bosId, ...(o.dataFormat ? { format: o.dataFormat } : {}), noTokenizer: noTokenizerMessage(model) })(o.data);
      const bar = progressBar('evaluating');
      const r = evaluate(model, data, { ...(o.seq ? { seq: o.seq } : {}), ...(teacher ? { teacher } : {}), ...(logits ? { logits } : {}), ...(teacherLogits ? { teacherLogits } : {}), onProgress: (d, t) => bar.update(d * 4, t * 4) });
      bar.stop();
      if (o.json) {
        process.stdout.write(JSON.stringify({ model: path, data: o.data, sha256: data.checksum, ...r }) + '\n');
        return;
      }
      process.stdout.write(`${model.source} on ${o.data}: ${r.tokens} predictions\n  NLL ${r.nll.toFixed(4)} nats, perplexity ${r.perplexity.toFixed(3)}\n`);
      if (r.kl !== undefined) process.stdout.write(`  vs teacher ${o.teacher}: KL ${r.kl.toFixed(4)} nats, top-1 agreement ${(100 * r.top1!).toFixed(1)}%\n`);
    } finally {
      for (const s of sessions) s.close?.();
      model.close();
      teacher?.close();
    }
  }));
}
