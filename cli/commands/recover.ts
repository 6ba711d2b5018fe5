import { Command, Option } from 'commander';
import { resolve } from 'node:path';
import { evaluate, modelWeights } from '../../driver/evaluate.js';
import { loadModel } from '../../driver/load.js';
import { teacherText } from '../../driver/teacher-text.js';
import { checkTrainedOutput } from '../../driver/save-trained.js';
import { Trainer } from '../../driver/trainer.js';
import { trainTarget } from '../../driver/gradient-backend.js';
import { checkSeqFitsContext, DATA_FORMATS, tokenDataFromDocuments, type DataFormat } from '../../src/train/data.js';
import { UserError } from '../../src/util/errors.js';
import { dataReader } from '../data-files.js';
import { action, addSelectionOptions, noteKRatio, parseFloatArg, parseIntArg, progressBar, selectionFromFlags, type SelectionFlags } from '../common.js';
import { checkSameVocabulary } from '../teacher.js';
import { addTrainOptions, checkTrainingPlan, trainAndSave, trainConfig, type TrainFlags } from '../train-options.js';

interface RecoverFlags extends TrainFlags, SelectionFlags {
  teacher: string;
  sequences: number;
  temperature: number;
  data?: string;
  dataFormat?: DataFormat;
  eval?: string;
}

export function recoverCommand(): Command {
  const cmd = new Command('recover')
    .description('data-free recovery of a MoC model: the dense teacher writes training text, the MoC student learns to match its logits (KL)')
    .argument('<model>', 'the MoC student: a mocc package, or a checkpoint converted in memory with --k/--k-ratio/--pattern')
    .requiredOption('--teacher <model>', 'the dense teacher (package or checkpoint), with the same tokenizer')
    .option('--sequences <n>', 'sequences the teacher generates (each --seq + 1 tokens, seeded by --seed)', parseIntArg('--sequences', 1), 256)
    .option('--temperature <τ>', 'distillation temperature: KL between softmax(logits/τ), scaled by τ²', parseFloatArg('--temperature', 0.01, 100), 1)
    .option('--data <file>', 'user text mixed with the generated text (plain text, JSONL "text", .u16/.u32 token ids)')
    .addOption(new Option('--data-format <format>', 'read --data/--eval as this instead of detecting it').choices(DATA_FORMATS as string[]))
    .option('--eval <file>', 'held-out text: mean NLL before and after, recorded in the package');
  addTrainOptions(cmd, { steps: 300, lr: 1e-3, seq: 128 });
  addSelectionOptions(cmd, 'a checkpoint student is converted in memory; give one');
  cmd.addHelpText('after', `
The teacher's text: each sequence is BOS, one token drawn uniformly from the vocabulary, then tokens
sampled from the teacher itself (temperature 1) up to --seq + 1 tokens or EOS (as LLM-QAT does). The
student trains on windows of that text (mixed with --data if given) to match the teacher's next-token
distribution at every position: loss = τ²·KL(softmax(teacher/τ) ‖ softmax(student/τ)).
--target cuda computes the student's loss and gradients on the GPU, the KL loss included, and the
teacher's logits there too (the teacher's text and --eval stay on the ref target).

Example:
  mocc convert fixtures/stories260K/hf -o out/k32 --k 32 --tokenizer fixtures/stories260K/llama2c/tok512.bin
  mocc recover out/k32 --teacher fixtures/stories260K/hf --steps 300 -o out/k32-recovered \\
      --eval fixtures/tinystories/validation-head.txt`);
  return cmd.action(action(async (path: string, o: RecoverFlags) => {
    const target = trainTarget(o.target, o.gemm); // an unknown --target (or a --gemm it cannot) before any work
    const student = loadModel(path, { selection: selectionFromFlags(o), ...(o.tokenizer ? { tokenizer: o.tokenizer } : {}) });
    let teacher: ReturnType<typeof loadModel> | undefined;
    try {
      noteKRatio(o, student.spec.dFfn);
      checkTrainedOutput(student, o.output, { force: o.force ?? false, otherInputs: [o.teacher, ...(o.data ? [o.data] : []), ...(o.eval ? [o.eval] : [])] }); // before any work
      if (!student.graph.nodes.some((n) => n.op === 'moc_select')) throw new UserError(`${student.source} is dense; recovery trains a MoC model (convert with --k, --k-ratio or --pattern)`);
      teacher = loadModel(o.teacher, o.tokenizer ? { tokenizer: o.tokenizer } : {});
      checkSameVocabulary(student, teacher);
      checkSeqFitsContext(o.seq, teacher.spec.maxSeqLen, "the teacher's");
      const cfg = trainConfig(o, student, { kind: 'kl_div', temperature: o.temperature });
      checkTrainingPlan(student, cfg, o.maxMemory, target); // before the teacher writes its text
      const read = dataReader({
        tokenizer: student.tokenizer ?? teacher.tokenizer, vocabSize: student.spec.vocabSize, bosId: student.spec.bosId, ...(o.dataFormat ? { format: o.dataFormat } : {}),
        noTokenizer: `neither ${student.source} nor the teacher has a tokenizer: give --tokenizer FILE, or token ids (.u16/.u32)`,
      });
      const user = o.data ? read(o.data) : undefined;
      const heldOut = o.eval ? read(o.eval) : undefined;

      const bar = progressBar('teacher writing');
      const t0 = performance.now();
      const generated = teacherText(teacher, { sequences: o.sequences, length: o.seq + 1, seed: o.seed, onProgress: (d, t) => bar.update(d * (1 << 20), t * (1 << 20)) });
      bar.stop();
      const genTokens = generated.reduce((s, d) => s + d.length, 0);
      process.stderr.write(`the teacher wrote ${o.sequences} sequences, ${genTokens} tokens (${((performance.now() - t0) / 1000).toFixed(1)} s)\n`);
      const data = tokenDataFromDocuments([...generated, ...(user?.documents ?? [])], user ? `teacher text + ${o.data}` : 'teacher text');

      const tw = modelWeights(teacher);
      const t = teacher;
      const teacherLogits = target.batchLogits(t); // on the student's target
      const trainer = new Trainer(student, data, cfg, teacherLogits.logits, target);
      if (heldOut && !o.resume) process.stderr.write(`eval NLL before: ${evaluate(student, heldOut, { seq: o.seq }).nll.toFixed(4)} (teacher ${evaluate(teacher, heldOut, { seq: o.seq }, tw).nll.toFixed(4)})\n`);
      try {
        await trainAndSave(trainer, student, o, {
          command: 'recover', teacher: { source: teacher.source, sequences: o.sequences },
          ...(user ? { data: { path: resolve(o.data!), sha256: user.checksum, format: user.format } } : {}),
        }, [o.teacher, ...teacher.inputs, ...(o.data ? [o.data] : []), ...(o.eval ? [o.eval] : [])], {
          finalEval: heldOut ? (w) => evaluate(student, heldOut, { seq: o.seq }, w).nll : undefined,
        });
      } finally {
        trainer.dispose();
        teacherLogits.dispose();
      }
    } finally {
      student.close();
      teacher?.close();
    }
  }));
}
