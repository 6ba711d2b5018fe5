#!/usr/bin/env node
// mocc: the Mixture-of-Channels compiler's command line. Commands live in cli/commands/, one per file.
import { Command } from 'commander';
import { convertCommand } from './commands/convert.js';
import { demoCommand } from './commands/demo.js';
import { inspectCommand } from './commands/inspect.js';
import { logitsCommand } from './commands/logits.js';
import { runCommand } from './commands/run.js';
import { VERSION } from './version.js';

const program = new Command('mocc')
  .description('Mixture-of-Channels compiler: converts dense LLaMA checkpoints into Top-K channel-sparse FFNs and runs them')
  .version(VERSION)
  .showHelpAfterError('(run with --help for usage)')
  .addCommand(demoCommand())
  .addCommand(convertCommand())
  .addCommand(inspectCommand())
  .addCommand(runCommand())
  .addCommand(logitsCommand());

await program.parseAsync(process.argv);
