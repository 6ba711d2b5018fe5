import { Command } from 'commander';
import { writeFileSync } from 'node:fs';
import { UserError } from '../../src/util/errors.js';
import { checkOutput, writeOutput } from '../../src/util/atomic-output.js';
import { action } from '../common.js';
import { addModelInputOptions, openForRun, type ModelInputFlags } from '../model-input.js';

export function logitsCommand(): Command {
  const cmd = new Command('logits')
    .description('write the logits of every position as float32 little-endian [T, vocab], row-major')
    .argument('<model>', 'mocc package directory, or a checkpoint (HF directory, .gguf, llama2.c .bin)')
    .option('-o, --output <file>', 'output file (written to a temporary name, renamed when complete)')
    .option('--out <file>', 'the same as -o/--output')
    .option('--force', 'replace the output file if it exists (never an input)');
  addModelInputOptions(cmd);
  return cmd.action(action(async (path: string, o: ModelInputFlags & { output?: string; out?: string; force?: boolean }) => {
    if (o.output !== undefined && o.out !== undefined && o.output !== o.out) throw new UserError(`give the output file once: -o ${o.output} and --out ${o.out} differ`);
    const out = o.output ?? o.out;
    if (out === undefined) throw new UserError('give the output file: -o FILE (or --out FILE)');
    const force = o.force ?? false;
    checkOutput(out, { kind: 'file', inputs: [path, ...(o.tokenizer ? [o.tokenizer] : [])], force }); // before running the model
    const { model, session, prompt } = await openForRun(path, o);
    try {
      const logits = await session.forward(prompt);
      await writeOutput(out, { kind: 'file', inputs: model.inputs, force }, (tmp) => {
        writeFileSync(tmp, new Uint8Array(logits.buffer, logits.byteOffset, logits.byteLength));
      });
      process.stderr.write(`wrote ${out}: [${prompt.length}, ${model.spec.vocabSize}] float32\n`);
    } finally {
      session.close?.();
      model.close();
    }
  }));
}
