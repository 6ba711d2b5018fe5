// `mocc compile --target wgsl`: a self-contained folder a web app imports.
//   mocc-model.js / .d.ts        the ES module, from the templates in module-files.ts: MODEL, loadModel() → generate()
//   program-cpu.json, program-gpu.json  the dispatch programs (kernel variants for CPU and GPU adapters)
//   kernels/<key>.wgsl           every kernel's source, once
//   weights/<n>.bin, weights.json  device images of the weights and constants, one file each
//   tokenizer.bin                 the SPM vocabulary (llama2.c format)
//   lib/                          the runtime, tokenizer and sampler, as compiled by tsc (no Node APIs),
//                                 with the declarations of the bundle's API (bundle-api.ts) as .d.ts
//   index.html                    a demo page: type a prompt, watch tokens stream, see tokens/s
// Programs are lowered for WebGPU's guaranteed storage-binding size (128 MiB), so every adapter can
// bind them; bigger weights are bound in row ranges.
import { copyFileSync, mkdirSync, writeFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { UserError } from '../../src/util/errors.js';
import type { Tokenizer } from '../../src/tokenizer/tokenizer.js';
import { projectRoot } from '../../src/util/project-root.js';
import type { CompileOptions, RunnableModel } from '../target.js';
import type { ModelInfo } from './bundle-api.js';
import { mocSummary } from '../../src/package/moc-summary.js';
import { apiDts, ENTRY_DTS, moduleDts, moduleJs } from './module-files.js';
import { modelImages } from './images.js';
import { DEFAULT_MAX_BINDING, lowerToWgsl } from './lower.js';
import { demoPage } from './demo-page.js';

/** Compiled files the module imports, relative to dist/ (each free of Node APIs). */
const LIB_FILES = [
  'targets/wgsl/runtime/session.js', 'targets/wgsl/runtime/device.js', 'targets/wgsl/kernel.js',
  'src/tokenizer/spm.js', 'src/tokenizer/tokenizer.js', 'src/util/errors.js',
  'src/run/generate.js', 'src/run/sample.js', 'targets/wgsl/runtime/bundle-entry.js',
];

export function writeWgslBundle(model: RunnableModel & { tokenizer?: Tokenizer }, outDir: string, options: CompileOptions = {}): { kernels: number; launches: number } {
  const tok = model.tokenizer;
  if (!tok) throw new UserError('wgsl bundle: the model has no tokenizer (give one with the package)');
  if (tok.kind !== 'spm') throw new UserError('wgsl bundle: only SPM tokenizers (llama2.c, GGUF) run in the browser bundle so far; this model has a tokenizer.json');
  mkdirSync(join(outDir, 'kernels'), { recursive: true });
  mkdirSync(join(outDir, 'weights'), { recursive: true });

  const programs = (['cpu', 'gpu'] as const).map((variant) => lowerToWgsl(model.graph, model.spec, { variant, maxBindingBytes: DEFAULT_MAX_BINDING }));
  const kernelFiles = new Map<string, string>(); // key → file
  const fileKeys = new Map<string, string>();
  for (const p of programs) {
    for (const [key, k] of Object.entries(p.kernels)) {
      if (kernelFiles.has(key)) continue;
      const file = `kernels/${key.replace(/[^A-Za-z0-9_.-]+/g, '_')}.wgsl`;
      if (fileKeys.has(file)) throw new Error(`kernel keys ${fileKeys.get(file)} and ${key} map to one file name`);
      fileKeys.set(file, key);
      kernelFiles.set(key, file);
      writeFileSync(join(outDir, file), k.code);
    }
    // kernels by file: the module fetches each source once
    const slim = { ...p, kernels: Object.fromEntries(Object.entries(p.kernels).map(([key, k]) => [key, { file: kernelFiles.get(key)!, bindings: k.bindings }])) };
    writeFileSync(join(outDir, `program-${p.variant}.json`), JSON.stringify(slim) + '\n');
  }

  const index: Record<string, string> = {};
  for (const p of programs) {
    const source = modelImages(model, p);
    for (const name of [...p.weights.map((w) => w.name), ...p.consts.map((c) => c.name)]) {
      if (name in index) continue; // both variants upload the same images: write each once, hold none
      index[name] = `weights/${Object.keys(index).length}.bin`;
      writeFileSync(join(outDir, index[name]!), source(name) as Uint8Array);
    }
  }
  writeFileSync(join(outDir, 'weights.json'), JSON.stringify(index, null, 1) + '\n');
  writeFileSync(join(outDir, 'tokenizer.bin'), tok.serialize().bytes);

  const dist = join(projectRoot(), 'dist');
  for (const f of LIB_FILES) {
    mkdirSync(dirname(join(outDir, 'lib', f)), { recursive: true });
    copyFileSync(join(dist, f), join(outDir, 'lib', f));
  }
  const s = model.spec;
  const moc = options.moc ?? mocSummary(model.graph, s);
  const info: ModelInfo = {
    name: options.name ?? model.graph.name, dim: s.dim, dFfn: s.dFfn, layers: s.nLayers, heads: s.nHeads, kvHeads: s.nKvHeads,
    vocab: s.vocabSize, context: s.maxSeqLen, bosId: tok.bosId, eosId: tok.eosId,
    moc: { mode: moc.mode, perLayerK: moc.perLayerK, ...(moc.pattern ? { pattern: moc.pattern } : {}) },
  };
  writeFileSync(join(outDir, 'mocc-model.js'), moduleJs(info));
  writeFileSync(join(outDir, 'mocc-model.d.ts'), moduleDts(info));
  writeFileSync(join(outDir, 'lib/targets/wgsl/bundle-api.d.ts'), apiDts());
  writeFileSync(join(outDir, 'lib/targets/wgsl/runtime/bundle-entry.d.ts'), ENTRY_DTS);
  writeFileSync(join(outDir, 'index.html'), demoPage(info));
  return { kernels: kernelFiles.size, launches: programs[1]!.steps.length };
}
