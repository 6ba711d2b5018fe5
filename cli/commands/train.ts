import { Command, Option } from 'commander';
import { resolve } from 'node:path';
import { evaluate } from '../../driver/evaluate.js';
import { loadModel } from '../../driver/load.js';
import { checkTrainedOutput } from '../../driver/save-trained.js';
import { Trainer } from '../../driver/trainer.js';
import { trainTarget } from '../../driver/gradient-backend.js';
import { DATA_FORMATS, type DataFormat } from '../../src/train/data.js';
import { dataReader, noTokenizerMessage } from '../data-files.js';
import { action, addSelectionOptions, noteKRatio, selectionFromFlags, type SelectionFlags } from '../common.js';
import { addTrainOptions, checkTrainingPlan, trainAndSave, trainConfig, type TrainFlags } from '../train-options.js';

export function trainCommand(): Command {
  const cmd = new Command('train')
    .description('fine-tune a model on text with next-token cross-entropy (float32 master weights; --target ref: plain TypeScript, cuda: the GPU)')
    .argument('<model>', 'mocc package directory, or a checkpoint (HF directory, .gguf, llama2.c .bin; converted in memory by --k etc.)')
    .requiredOption('--data <file>', 'training text: plain text (documents separated by blank lines or <|endoftext|>), JSONL with a "text" field, or token ids (.u16/.u32)')
    .addOption(new Option('--data-format <format>', 'read --data (and --eval) as this instead of detecting it').choices(DATA_FORMATS as string[]))
    .option('--eval <file>', 'held-out text: its mean next-token NLL is measured before and after training and recorded in the package');
  addTrainOptions(cmd, { steps: 200, lr: 5e-4, seq: 128 });
  cmd.option('--fuse-lm-head', 'compute the output projection and the loss together in blocks of rows, so the [batch·seq, vocab] logits never exist whole (less memory; on ref the same weights bit for bit)');
  addSelectionOptions(cmd, 'checkpoints only, converted in memory; default: the checkpoint\'s own MoC selection (an exported MoC ONNX), else dense');
  cmd.addHelpText('after', `
Checkpoint policies (--ckpt), per token per layer of FFN activations kept for the backward pass:
  none     every activation            dense 4·d_ffn+d  MoC 4·K+d values + K int32 indices
  gcp      SiLU and product recomputed dense 2·d_ffn+d  MoC 2·K+d values + K int32 indices
  moc      as none, MoC indices in 16 bits; moc-gcp as gcp, indices in 16 bits (the paper's MoC+GCP)
  gcp-attn, moc-gcp-attn   as gcp and moc-gcp, without x (dense 2·d_ffn, MoC 2·K + indices), and
           each layer's attention block recomputed too: of it only the residual stream is kept
All policies give bit-identical gradients; see the planned bytes with mocc inspect MODEL --train.

Targets (--target): ref computes each step's loss and gradients in plain TypeScript; cuda with the
CUDA training executor, f32 GEMMs or bf16 ones with --gemm bf16 (needs an NVIDIA GPU and
its driver, libcuda.so.1). Clipping, AdamW and
checkpoints are the same on both: a checkpoint made on one resumes on the other. --eval is measured
on the ref target.

Examples:
  mocc train fixtures/stories260K/hf --k 32 --tokenizer fixtures/stories260K/llama2c/tok512.bin \\
      --data fixtures/tinystories/validation-head.txt --steps 100 -o out/s260k-k32-ft
  mocc train out/moc --data corpus.jsonl --steps 2000 --save-every 200 -o out/moc-ft
  mocc train out/moc --data corpus.jsonl --steps 2000 --save-every 200 -o out/moc-ft --resume out/moc-ft.ckpt
  mocc train out/moc --data corpus.jsonl --steps 2000 -o out/moc-ft --target cuda --gemm bf16`);
  return cmd.action(action(async (path: string, o: TrainFlags & SelectionFlags & { data: string; dataFormat?: DataFormat; eval?: string }) => {
    const target = trainTarget(o.target, o.gemm); // an unknown --target (or a --gemm it cannot) before any work
    const model = loadModel(path, { selection: selectionFromFlags(o), ...(o.tokenizer ? { tokenizer: o.tokenizer } : {}) });
    try {
      noteKRatio(o, model.spec.dFfn);
      checkTrainedOutput(model, o.output, { force: o.force ?? false, otherInputs: [o.data, ...(o.eval ? [o.eval] : [])] }); // before any work
      const cfg = trainConfig(o, model, { kind: 'cross_entropy' });
      checkTrainingPlan(model, cfg, o.maxMemory, target);
      const read = dataReader({ tokenizer: model.tokenizer, vocabSize: model.spec.vocabSize, bosId: model.spec.bosId, ...(o.dataFormat ? { format: o.dataFormat } : {}), noTokenizer: noTokenizerMessage(model) });
      const data = read(o.data);
      const heldOut = o.eval ? read(o.eval) : undefined;
      const trainer = new Trainer(model, data, cfg, undefined, target);
      let before: number | undefined;
      if (heldOut && !o.resume) {
        before = evaluate(model, heldOut, { seq: o.seq }).nll;
        process.stderr.write(`eval NLL before: ${before.toFixed(4)} (${o.eval})\n`);
      }
      try {
        await trainAndSave(trainer, model, o, {
          command: 'train', data: { path: resolve(o.data), sha256: data.checksum, format: data.format },
        }, [o.data, ...(o.eval ? [o.eval] : [])], {
          finalEval: heldOut ? (w) => evaluate(model, heldOut, { seq: o.seq }, w).nll : undefined,
        });
      } finally {
        trainer.dispose();
      }
    } finally {
      model.close();
    }
  }));
}
