import { Command } from 'commander';
import { existsSync, rmSync } from 'node:fs';
import { UserError } from '../../src/import/spec.js';
import { loadModel } from '../../src/model/load.js';
import { getTarget, checkSupported, TARGETS } from '../../targets/index.js';
import { action } from '../common.js';

export function compileCommand(): Command {
  return new Command('compile')
    .description('write the kernels and launch manifest a target runs for a package (e.g. PTX modules for cuda)')
    .argument('<model>', 'mocc package directory, or a checkpoint')
    .requiredOption('--target <name>', `target: ${[...TARGETS.values()].filter((t) => t.compile).map((t) => t.name).join(', ')}`)
    .requiredOption('-o, --output <dir>', 'output directory')
    .option('--arch <arch>', 'cuda: sm_80 (Ampere and Hopper) or sm_90 (Hopper: kernels overlap through programmatic dependent launch and prefetch weights to L2)', 'sm_80')
    .option('--force', 'replace the output directory if it exists')
    .addHelpText('after', `
For cuda: ptx/<kernel>.ptx (one module per kernel) and launch.json (every launch in order with its
grid, block and arguments; buffers; weights; constants). sm_90 modules expect every launch to allow
programmatic overlap (cuLaunchKernelEx with PROGRAMMATIC_STREAM_SERIALIZATION); they are correct
either way. Check a module with: ptxas -arch=sm_90 out/ptx/<kernel>.ptx

For wgsl: a folder a web app imports: mocc-model.js (with .d.ts; loadModel() then generate()),
the WGSL kernels, the weights, the tokenizer, and index.html, a demo page. Serve the folder over
HTTP and open index.html in a browser with WebGPU.`)
    .action(action((path: string, o: { target: string; output: string; force?: boolean; arch: string }) => {
      const target = getTarget(o.target);
      if (!target.compile) throw new UserError(`target ${target.name} has nothing to compile (it interprets the IR)`);
      if (existsSync(o.output)) {
        if (!o.force) throw new UserError(`${o.output} already exists (use --force to replace it)`);
        rmSync(o.output, { recursive: true, force: true });
      }
      const m = loadModel(path);
      try {
        checkSupported(target, m);
        const r = target.compile(m, o.output, { arch: o.arch });
        process.stderr.write(`wrote ${o.output}: ${r.kernels} kernels, ${r.launches} launches per step\n`);
      } finally {
        m.close();
      }
    }));
}
