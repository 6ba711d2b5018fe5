// `mocc compile --target wgsl` on stories260K: the bundle's files, its generated module's types,
// and the module itself, imported as a web app would (here in Node, with Dawn standing in for
// navigator.gpu and the file system for fetch), greedy-decoding the HF reference text exactly.
import test from 'ava';
import { existsSync, readFileSync, readdirSync } from 'node:fs';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';
import { nodeNavigatorGpu } from '../../targets/wgsl/node-gpu.js';
import { mocc, tempDir } from '../helpers/cli.js';
import { CHECKPOINTS, REF } from '../helpers/fixtures.js';
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
  for (const f of ['mocc-model.js', 'mocc-model.d.ts', 'mocc-model.ts', 'index.html', 'tokenizer.bin', 'weights.json', 'program-cpu.json', 'program-gpu.json']) t.true(existsSync(join(dir, f)), f);
  const dts = readFileSync(join(dir, 'mocc-model.d.ts'), 'utf8');
  t.regex(dts, /export declare function loadModel\(options\?: LoadOptions\): Promise<MoccModel>;/);
  t.regex(dts, /generate\(prompt: string, options\?: GenerateOptions\): Promise<Generation>;/);
  const kernels = readdirSync(join(dir, 'kernels'));
  for (const variant of ['cpu', 'gpu']) {
    const p = JSON.parse(readFileSync(join(dir, `program-${variant}.json`), 'utf8')) as { kernels: Record<string, { file: string }> };
    for (const k of Object.values(p.kernels)) t.true(kernels.includes(k.file.replace('kernels/', '')), k.file);
  }
  const weights = JSON.parse(readFileSync(join(dir, 'weights.json'), 'utf8')) as Record<string, string>;
  for (const f of Object.values(weights)) t.true(existsSync(join(dir, f)), f);
  t.regex(readFileSync(join(dir, 'index.html'), 'utf8'), /import \{ loadModel \} from '\.\/mocc-model\.js'/);
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
