#!/usr/bin/env node
// mocc: the Mixture-of-Channels compiler's command line. Commands live in cli/commands/, one per file.
import { Command } from 'commander';
import { compileCommand } from './commands/compile.js';
import { convertCommand } from './commands/convert.js';
import { evalCommand } from './commands/eval.js';
import { exportCommand } from './commands/export.js';
import { recoverCommand } from './commands/recover.js';
import { trainCommand } from './commands/train.js';
import { demoCommand } from './commands/demo.js';
import { inspectCommand } from './commands/inspect.js';
import { logitsCommand } from './commands/logits.js';
import { runCommand } from './commands/run.js';
import { VERSION } from './version.js';

const program = new Command('mocc')
  .description('Mixture-of-Channels compiler: converts dense LLaMA checkpoints into Top-K channel-sparse FFNs and runs them')
  .version(VERSION)
  .addCommand(demoCommand())
  .addCommand(convertCommand())
  .addCommand(inspectCommand())
  .addCommand(runCommand())
  .addCommand(logitsCommand())
  .addCommand(compileCommand())
  .addCommand(exportCommand())
  .addCommand(trainCommand())
  .addCommand(recoverCommand())
  .addCommand(evalCommand());

// Usage errors (bad option values, missing arguments) print like every other mocc error: one line.
for (const cmd of [program, ...program.commands]) {
  const usage = cmd === program ? 'mocc --help' : `mocc ${cmd.name()} --help`;
  cmd.configureOutput({
    outputError: (text, write) => write(`mocc: ${text.trim().replace(/^error: /, '').replace(/\n+/g, ' ')} (see ${usage})\n`),
  });
}

// `mocc run … | head` closes our stdout early: stop quietly instead of crashing on EPIPE.
process.stdout.on('error', (e: NodeJS.ErrnoException) => {
  if (e.code === 'EPIPE') process.exit(0);
  throw e;
});

await program.parseAsync(process.argv);
