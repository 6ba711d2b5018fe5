// `mocc compile --target wgsl` on stories260K: the bundle's files, its generated module's types,
// and the module itself, imported as a web app would (here in Node, with Dawn standing in for
// navigator.gpu and the file system for fetch), greedy-decoding the HF reference text exactly.
import test from 'ava';
import { spawnSync } from 'node:child_process';
import { existsSync, readFileSync, readdirSync, writeFileSync } from 'node:fs';
import { dirname, join, relative } from 'node:path';
import { pathToFileURL } from 'node:url';
import { nodeNavigatorGpu } from '../../targets/wgsl/node-gpu.js';
import { mocc, tempDir } from '../helpers/cli.js';
import { CHECKPOINTS, REF, ROOT } from '../helpers/fixtures.js';
import { testsNeeding, webgpuRequirement } from '../helpers/requires.js';

/** Tests that run kernels need a WebGPU adapter (skipped without one; a failure in CI). */
const gpuTest = testsNeeding(await webgpuRequirement());

interface BundleModule {
  MODEL: { vocab: number; layers: number };
  loadModel(o: { gpu: GPU; read: (p: string) => Promise<ArrayBuffer> }): Promise<{
    adapter: string;
    generate(prompt: string, o: { maxTokens: number; onText?: (s: string) => void }): Promise<{ text: string; tokens: number[]; tokensPerSecond: number }>;
    close(): void;
  }>;
}

test('the bundle holds the module, its types, the kernels, the weights, the tokenizer and a demo page', (t) => {
  const dir = join(tempDir(t), 'web');
  const r = mocc('compile', CHECKPOINTS.gguf, '--target', 'wgsl', '-o', dir);
  t.is(r.code, 0, r.stderr);
  t.regex(r.stderr, /wrote .*: \d+ kernels, \d+ launches per step/);
  for (const f of ['mocc-model.js', 'mocc-model.d.ts', 'index.html', 'tokenizer.bin', 'weights.json', 'program-cpu.json', 'program-gpu.json']) t.true(existsSync(join(dir, f)), f);
  const dts = readFileSync(join(dir, 'mocc-model.d.ts'), 'utf8');
  t.regex(dts, /export declare function loadModel\(options\?: LoadOptions\): Promise<MoccModel>;/);
  t.regex(readFileSync(join(dir, 'lib/targets/wgsl/bundle-api.d.ts'), 'utf8'), /generate\(prompt: string, options\?: GenerateOptions\): Promise<Generation>;/);
  const kernels = readdirSync(join(dir, 'kernels'));
  for (const variant of ['cpu', 'gpu']) {
    const p = JSON.parse(readFileSync(join(dir, `program-${variant}.json`), 'utf8')) as { kernels: Record<string, { file: string }> };
    for (const k of Object.values(p.kernels)) t.true(kernels.includes(k.file.replace('kernels/', '')), k.file);
  }
  const weights = JSON.parse(readFileSync(join(dir, 'weights.json'), 'utf8')) as Record<string, string>;
  for (const f of Object.values(weights)) t.true(existsSync(join(dir, f)), f);
  t.regex(readFileSync(join(dir, 'index.html'), 'utf8'), /import \{ loadModel \} from '\.\/mocc-model\.js'/);
  // The module and lib/ are closed under their relative imports (a file the copied list misses fails
  // only when a browser loads it; here it fails without a GPU).
  const js = ['mocc-model.js', ...listFiles(join(dir, 'lib')).filter((f) => f.endsWith('.js')).map((f) => relative(dir, f))];
  for (const f of js) {
    for (const m of readFileSync(join(dir, f), 'utf8').matchAll(/^(?:import|export)\b[^'"]*from '(\.[^']+)'/gm)) {
      t.true(existsSync(join(dir, dirname(f), m[1]!)), `${f} imports ${m[1]}, which the bundle lacks`);
    }
  }
});

function listFiles(d: string): string[] {
  return readdirSync(d, { withFileTypes: true }).flatMap((e) => (e.isDirectory() ? listFiles(join(d, e.name)) : [join(d, e.name)]));
}

test('the bundle type-checks: mocc-model.js (checkJs) and a consumer of mocc-model.d.ts, with tsc', (t) => {
  const dir = join(tempDir(t), 'web');
  const r = mocc('compile', CHECKPOINTS.gguf, '--target', 'wgsl', '--k', '32', '-o', dir);
  t.is(r.code, 0, r.stderr);
  const consumer = (body: string) => `/// <reference path=${JSON.stringify(join(ROOT, 'node_modules/@webgpu/types/dist/index.d.ts'))} />
import { loadModel, MODEL, type Generation, type ModelInfo } from './mocc-model.js';
const vocab: 512 = MODEL.vocab;
const ks: readonly number[] = MODEL.moc.perLayerK;
const info: ModelInfo = MODEL;
export async function run(gpu: GPU): Promise<number> {
  const m = await loadModel({ gpu, onProgress: (d: number, n: number) => void (d + n) });
  const g: Generation = await m.generate('Once', { maxTokens: 3, onText: (s: string) => void s, signal: new AbortController().signal });
  m.close();
  return g.text.length + g.tokens.length + vocab + ks.length + info.dim + m.adapter.length;
}
${body}`;
  const tsc = (file: string) => spawnSync(process.execPath, [join(ROOT, 'node_modules/typescript/bin/tsc'), '--noEmit', '--strict', '--allowJs', '--checkJs',
    '--target', 'es2022', '--module', 'es2022', '--moduleResolution', 'bundler', '--lib', 'es2022,dom', join(dir, file), join(dir, 'mocc-model.js')], { encoding: 'utf8' });
  writeFileSync(join(dir, 'consumer.ts'), consumer(''));
  const ok = tsc('consumer.ts');
  t.is(ok.status, 0, ok.stdout + ok.stderr);
  // and the check can fail: a wrong option type and a wrong MODEL literal are errors
  writeFileSync(join(dir, 'wrong.ts'), consumer(`export const bad = loadModel().then((m) => m.generate('x', { maxTokens: 'many' }));\nexport const layers: 7 = MODEL.layers;`));
  const bad = tsc('wrong.ts');
  t.not(bad.status, 0);
  t.regex(bad.stdout, /wrong\.ts\(\d+,\d+\): error TS2322: Type 'string' is not assignable to type 'number'/);
  t.regex(bad.stdout, /Type '5' is not assignable to type '7'/);
});

gpuTest('the bundle module generates the HF greedy text', async (t) => {
  const dir = join(tempDir(t), 'web');
  const r = mocc('compile', CHECKPOINTS.gguf, '--target', 'wgsl', '-o', dir);
  t.is(r.code, 0, r.stderr);
  const mod = (await import(pathToFileURL(join(dir, 'mocc-model.js')).href)) as BundleModule;
  t.is(mod.MODEL.vocab, 512);
  const read = async (p: string) => {
    const b = readFileSync(join(dir, p));
    return b.buffer.slice(b.byteOffset, b.byteOffset + b.byteLength) as ArrayBuffer;
  };
  const model = await mod.loadModel({ gpu: await nodeNavigatorGpu(), read });
  try {
    let streamed = '';
    const g = await model.generate(REF.prompt, { maxTokens: 120, onText: (s) => (streamed += s) });
    t.is(g.text, REF.greedy_text);
    t.is(REF.prompt + streamed, REF.greedy_text);
    t.true(g.tokensPerSecond > 0);
  } finally {
    model.close();
  }
});
