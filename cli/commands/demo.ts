import { Command } from 'commander';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { loadModel } from '../../driver/load.js';
import { ffnActivationBytes } from '../../src/model/memory.js';
import { convert } from '../../driver/convert.js';
import { generate } from '../../src/run/generate.js';
import { getTarget } from '../../targets/index.js';
import { action, parseIntArg } from '../common.js';
import { projectRoot } from '../../src/util/project-root.js';
import { VERSION } from '../version.js';

/**
 * What the memory figure means: the paper's accounting (src/model/memory.ts), with and without gradient
 * checkpointing, and the K below which MoC stores less than dense (its int32 indices cost 4 B a channel).
 */
function memoryExplained(d: number, dFfn: number, k: number): string {
  const b = ffnActivationBytes(d, dFfn, k);
  const pct = (x: number, of: number) => `${Math.round((100 * x) / of)}%`;
  let breakEven = 0;
  while (breakEven < dFfn && ffnActivationBytes(d, dFfn, breakEven + 1).moc < b.dense) breakEven++;
  return `   (training stores per token and layer, bf16 values + int32 indices: dense 4·d_ffn+d values = ${b.dense} B,`
    + ` MoC 4·K+d values + K indices = ${b.moc} B, ${pct(b.moc, b.dense)} of dense; with gradient checkpointing`
    + ` ${b.denseGcp} B vs ${b.mocGcp} B. MoC stores less than dense while K ≤ ${breakEven}.)`;
}

export function demoCommand(): Command {
  return new Command('demo')
    .description('convert the bundled stories260K model to MoC and compare dense and MoC continuations of a prompt')
    .option('--prompt <text>', 'prompt', 'Once upon a time')
    .option('--max-tokens <n>', 'tokens to generate', parseIntArg('--max-tokens', 1, 400), 60)
    .option('--k <N>', 'channels kept per layer (d_ffn is 172; 32 is the paper\'s ~19%)', parseIntArg('--k', 1, 172), 32)
    .action(action(async (o: { prompt: string; maxTokens: number; k: number }) => {
      const src = join(projectRoot(), 'fixtures/stories260K/gguf/stories260K.gguf');
      const work = mkdtempSync(join(tmpdir(), 'mocc-demo-'));
      try {
        const say = (s: string) => process.stdout.write(s + '\n');
        say(`mocc demo: stories260K (a real TinyStories LLaMA: d 64, d_ffn 172, 5 layers) from ${src}`);
        for (const [label, selection] of [['dense', 'dense'], [`MoC K=${o.k}`, { k: o.k }]] as const) {
          const pkg = join(work, label.replace(/\W+/g, '-'));
          await convert({ input: src, output: pkg, selection, version: VERSION });
          const m = loadModel(pkg);
          try {
            const tok = m.tokenizer!;
            const prompt = tok.encode(o.prompt);
            const out = await generate(await getTarget('ref').createSession(m), prompt, { maxTokens: o.maxTokens, eosId: m.spec.eosId });
            const mem = ffnActivationBytes(m.spec.dim, m.spec.dFfn, m.moc.perLayerK[0]!);
            say(`\n== ${label} (greedy, ${out.length} tokens; FFN activations per training token per layer: ${label === 'dense' ? `${mem.dense} B` : `${mem.moc} B vs ${mem.dense} B dense`})`);
            if (label !== 'dense') say(memoryExplained(m.spec.dim, m.spec.dFfn, o.k));
            say(tok.decode([...prompt, ...out]));
          } finally {
            m.close();
          }
        }
        say(`\nMoC here is a direct conversion with no recovery training, so its text drifts from the dense model's;`);
        say(`try --k 172 (all channels: identical to dense) or --k 100 (58%: closer text, less memory saved).`);
      } finally {
        rmSync(work, { recursive: true, force: true });
      }
    }));
}
