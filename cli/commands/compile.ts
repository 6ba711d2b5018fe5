import { Command } from 'commander';
import { basename, resolve } from 'node:path';
import { UserError } from '../../src/util/errors.js';
import { loadModel } from '../../driver/load.js';
import { writeOutput } from '../../src/util/atomic-output.js';
import { getTarget, checkSupported, TARGETS } from '../../targets/index.js';
import { action, noteKRatio, selectionFromFlags } from '../common.js';
import { addModelOptions, type ModelFlags } from '../model-input.js';

export function compileCommand(): Command {
  const cmd = new Command('compile')
    .description('write the kernels and launch manifest a target runs for a package (e.g. PTX modules for cuda)')
    .argument('<model>', 'mocc package directory, or a checkpoint (HF directory, .gguf, llama2.c .bin)')
    .requiredOption('--target <name>', `target: ${[...TARGETS.values()].filter((t) => t.compile).map((t) => t.name).join(', ')}`)
    .requiredOption('-o, --output <dir>', 'output directory (written to a temporary name, renamed when complete)')
    .option('--arch <arch>', 'cuda: sm_80 (Ampere and Hopper) or sm_90 (Hopper: kernels overlap through programmatic dependent launch and prefetch weights to L2)', 'sm_80')
    .option('--force', 'replace the output directory if it exists (never an input, nor a folder holding one)');
  addModelOptions(cmd);
  cmd.addHelpText('after', `
For cuda: ptx/<kernel>.ptx (one module per kernel) and launch.json (every launch in order with its
grid, block and arguments; buffers; weights; constants). sm_90 modules expect every launch to allow
programmatic overlap (cuLaunchKernelEx with PROGRAMMATIC_STREAM_SERIALIZATION); they are correct
either way. Check a module with: ptxas -arch=sm_90 out/ptx/<kernel>.ptx

For wgsl: a folder a web app imports: mocc-model.js (with .d.ts; loadModel() then generate()),
the WGSL kernels, the weights, the tokenizer, and index.html, a demo page. Serve the folder over
HTTP and open index.html in a browser with WebGPU.

Examples:
  mocc compile out/s260k-k32 --target cuda --arch sm_90 -o out/s260k-k32-ptx
  mocc compile fixtures/stories260K/gguf/stories260K.gguf --target wgsl --k 32 -o web`);
  return cmd.action(action(async (path: string, o: ModelFlags & { target: string; output: string; force?: boolean; arch: string }) => {
    const target = getTarget(o.target);
    if (!target.compile) throw new UserError(`target ${target.name} has nothing to compile (it interprets the IR)`);
    const m = loadModel(path, { selection: selectionFromFlags(o), ...(o.tokenizer ? { tokenizer: o.tokenizer } : {}) });
    try {
      noteKRatio(o, m.spec.dFfn);
      checkSupported(target, m);
      const name = basename(resolve(path));
      const r = await writeOutput(o.output, { kind: 'directory', inputs: m.inputs, force: o.force ?? false }, (tmp) => target.compile!(m, tmp, { arch: o.arch, name, moc: m.moc }));
      process.stderr.write(`wrote ${o.output}: ${r.kernels} kernels, ${r.launches} launches per step\n`);
    } finally {
      m.close();
    }
  }));
}
