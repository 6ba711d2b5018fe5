// What a web bundle's mocc-model.js calls: opens a WebGPU device, compiles the kernels for it, uploads
// the weights and returns a model that generates text. Runs in browsers and in Node with Dawn (no Node
// APIs here). Its types are targets/wgsl/bundle-api.ts, which the bundle ships as its .d.ts.
import type { GenerateOptions, Generation, LoadBundle } from '../bundle-api.js';
import { generate } from '../../../src/run/generate.js';
import { parseLlama2cTokenizer } from '../../../src/tokenizer/spm.js';
import { openDevice } from './device.js';
import { WgslModel, WgslSession } from './session.js';

export const loadBundle: LoadBundle = async (model, base, options = {}) => {
  const read = options.read ?? (async (path: string) => {
    const r = await fetch(new URL(path, base));
    if (!r.ok) throw new Error(`${path}: HTTP ${r.status}`);
    return r.arrayBuffer();
  });
  const text = async (path: string) => new TextDecoder().decode(await read(path));
  const gpu = options.gpu ?? (globalThis.navigator as Navigator | undefined)?.gpu;
  if (!gpu) throw new Error('WebGPU is not available here (no navigator.gpu)');
  const adapter = await gpu.requestAdapter({ powerPreference: 'high-performance' });
  if (!adapter) throw new Error('WebGPU: no adapter found');
  const dev = await openDevice(adapter);
  const program = JSON.parse(await text(`program-${dev.variant}.json`));
  for (const k of Object.values(program.kernels) as { file: string; code?: string }[]) k.code = await text(k.file);
  const files: Record<string, string> = JSON.parse(await text('weights.json'));
  const weights = await WgslModel.create(dev, program, async (name: string) => new Uint8Array(await read(files[name]!)), options.onProgress);
  const session = new WgslSession(weights);
  const tok = parseLlama2cTokenizer(new Uint8Array(await read('tokenizer.bin')), model.vocab, 'tokenizer.bin', { bosId: model.bosId, eosId: model.eosId });
  return {
    adapter: dev.description,
    async generate(prompt: string, o: GenerateOptions = {}): Promise<Generation> {
      const maxTokens = o.maxTokens ?? 64;
      if (!Number.isInteger(maxTokens) || maxTokens < 1) throw new Error(`maxTokens must be a whole number ≥ 1, got ${maxTokens}`);
      const ids = tok.encode(prompt);
      const decoder = new TextDecoder('utf-8');
      const t0 = performance.now();
      const tokens: number[] = await generate(session, ids, {
        maxTokens: Math.min(maxTokens, model.context - ids.length), eosId: model.eosId,
        onToken: (t: number, prev: number) => {
          if (o.signal?.aborted) return false; // greedy decoding then drops this token: it is neither shown nor kept
          o.onText?.(decoder.decode(tok.pieceBytes(prev, t), { stream: true }));
          return true;
        },
      });
      const seconds = (performance.now() - t0) / 1000;
      return { text: tok.decode([...ids, ...tokens]), tokens, tokensPerSecond: tokens.length / seconds };
    },
    close: () => session.close(),
  };
};
