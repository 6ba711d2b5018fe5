import { Command } from 'commander';
import { existsSync, renameSync, writeFileSync } from 'node:fs';
import { UserError } from '../../src/import/spec.js';
import { action } from '../common.js';
import { addModelInputOptions, openForRun, type ModelInputFlags } from '../model-input.js';

export function logitsCommand(): Command {
  const cmd = new Command('logits')
    .description('write the logits of every position as float32 little-endian [T, vocab], row-major')
    .argument('<model>', 'mocc package directory, or a checkpoint (HF directory, .gguf, llama2.c .bin)')
    .requiredOption('--out <file>', 'output file')
    .option('--force', 'replace the output file if it exists');
  addModelInputOptions(cmd);
  return cmd.action(action(async (path: string, o: ModelInputFlags & { out: string; force?: boolean }) => {
    if (existsSync(o.out) && !o.force) throw new UserError(`${o.out} already exists (use --force to replace it)`);
    const { model, session, prompt } = await openForRun(path, o);
    try {
      const logits = await session.forward(prompt);
      const tmp = `${o.out}.mocc-tmp-${process.pid}`;
      writeFileSync(tmp, new Uint8Array(logits.buffer, logits.byteOffset, logits.byteLength));
      renameSync(tmp, o.out);
      process.stderr.write(`wrote ${o.out}: [${prompt.length}, ${model.spec.vocabSize}] float32\n`);
    } finally {
      session.close?.();
      model.close();
    }
  }));
}
