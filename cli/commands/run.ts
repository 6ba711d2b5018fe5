import { Command } from 'commander';
import { generate } from '../../src/run/generate.js';
import { action, parseFloatArg, parseIntArg } from '../common.js';
import { addModelInputOptions, openForRun, type ModelInputFlags } from '../model-input.js';

export function runCommand(): Command {
  const cmd = new Command('run')
    .description('generate text from a package or checkpoint, streaming tokens as they are decoded')
    .argument('<model>', 'mocc package directory, or a checkpoint (HF directory, .gguf, llama2.c .bin)')
    .option('--max-tokens <n>', 'tokens to generate (stops early at end-of-sequence or a full context)', parseIntArg('--max-tokens', 1), 256)
    .option('--temperature <t>', 'sampling temperature; 0 = greedy', parseFloatArg('--temperature', 0, 100), 0)
    .option('--top-p <p>', 'nucleus sampling: sample from the smallest set of tokens with this much probability', parseFloatArg('--top-p', 0, 1), 1)
    .option('--seed <s>', 'random seed for sampling', parseIntArg('--seed', 0, 2 ** 32 - 1), 0);
  addModelInputOptions(cmd);
  cmd.addHelpText('after', `
Examples:
  mocc run out/s260k-k32 --prompt "Once upon a time" --max-tokens 100
  mocc run fixtures/stories260K/gguf/stories260K.gguf --prompt "Once upon a time" --k 128 --temperature 0.8 --seed 7
  mocc run fixtures/stories260K/hf --tokens 1,403,407,261,378      (no tokenizer: prints token ids)`);
  return cmd.action(action(async (path: string, o: ModelInputFlags & { maxTokens: number; temperature: number; topP: number; seed: number }) => {
    const { model, session, prompt } = await openForRun(path, o);
    try {
      const tok = model.tokenizer;
      const maxTokens = Math.min(o.maxTokens, model.spec.maxSeqLen - prompt.length);
      const decoder = new TextDecoder('utf-8');
      const write = (s: string) => process.stdout.write(s);
      if (tok && o.prompt !== undefined) write(tok.decode(prompt));
      else write(prompt.join(' '));
      const t0 = performance.now();
      const out = await generate(session, prompt, {
        maxTokens, temperature: o.temperature, topP: o.topP, seed: o.seed, eosId: model.spec.eosId,
        onToken: (t, prev) => {
          write(tok && o.prompt !== undefined ? decoder.decode(tok.pieceBytes(prev, t), { stream: true }) : ` ${t}`);
          // Let the event loop run before the next token: a closed pipe (\`| head\`) reports EPIPE there,
          // and cli/mocc.ts then stops the process. Decoding on the ref target never yields otherwise.
          return new Promise<void>((r) => setImmediate(r));
        },
      });
      write(decoder.decode() + '\n');
      const s = (performance.now() - t0) / 1000;
      process.stderr.write(`[${out.length} tokens in ${s.toFixed(2)} s, ${(out.length / s).toFixed(1)} tok/s, target ${o.target}]\n`);
    } finally {
      session.close?.();
      model.close();
    }
  }));
}
