// bench prefill: time to first token of the 1B preset (random bf16 weights, make_llama_1b.py) for
// prompts of 128, 512 and 2048 tokens, dense and MoC K=1024: mocc's prefill program (tensor-core
// GEMMs, Program.prefill) beside its decode steps run with T rows (GEMVs, what prefill was before),
// transformers' figure (hf_prefill.py, same run) and the byte+FLOP floor: weights read once at the
// copy bandwidth (torch_ffn.py) plus the linears' 2·params·T FLOPs at --peak-tflops (dense bf16;
// give the FP32 peak, 67 on an H100 SXM, for an f32 model: make_llama_1b.py --dtype float32, timed with
// the f32 prefill program's SIMT GEMMs beside the GEMVs).
// One forward(prompt, { lastOnly }) = launches + the last row's logits copied back + sync (time to
// first token: a generate loop needs that row alone), timed on the host; median of 5 after 1.
// Usage: node dist/bench/gpu/prefill.js --model DIR [--hf OUT/hf_prefill.json] [--torch OUT/torch_ffn.json] [--peak-tflops 989] --out OUT/prefill.json
import { readFileSync, writeFileSync } from 'node:fs';
import { loadModel } from '../../driver/load.js';
import { createCudaSession } from '../../targets/cuda/index.js';
import { cuda } from '../../test/helpers/cuda.js';
import { weightBytesPerToken } from './floor.js';

const arg = (name: string) => { const i = process.argv.indexOf(name); return i > 0 ? process.argv[i + 1] : undefined; };
const dir = arg('--model')!;
const hf = arg('--hf') ? JSON.parse(readFileSync(arg('--hf')!, 'utf8')) : null;
const torch = arg('--torch') ? JSON.parse(readFileSync(arg('--torch')!, 'utf8')) : null;
const peak = Number(arg('--peak-tflops') ?? 989);
const TOKENS = (arg('--tokens') ?? '128,512,2048').split(',').map(Number);
const K = 1024;
const rows: Record<string, unknown>[] = [];
for (const [label, selection] of [['dense', 'dense'], [`MoC K=${K}`, { k: K }]] as const) {
  const m = loadModel(dir, { selection });
  const s = createCudaSession(m);
  const spec = m.spec;
  const kept = selection === 'dense' ? spec.dFfn : K;
  // a token multiplies by the parameters it reads when decoding (floor.ts); a prefill reads every weight once.
  // Bytes a parameter: the stored type of the output projection's weights (bf16, or f32 for --dtype float32 models)
  const paramBytes = m.weights.get('layers.0.wo')?.dtype === 'f32' ? 4 : 2;
  const linearParams = weightBytesPerToken(spec, kept, 1);
  const weightBytes = weightBytesPerToken(spec, spec.dFfn, paramBytes);
  for (const T of TOKENS) {
    const prompt = Array.from({ length: T }, (_, i) => (i * 7919 + 13) % spec.vocabSize);
    const time = (gemm: boolean) => {
      s.usePrefill = gemm;
      s.prefillFrom = 2; // time the prefill program at every T (a session runs it from the program's minTokens)
      const ms: number[] = [];
      for (let r = 0; r < 6; r++) {
        s.reset();
        const t0 = performance.now();
        s.forward(prompt, { lastOnly: true });
        if (r > 0) ms.push(performance.now() - t0);
      }
      ms.sort((a, b) => a - b);
      return ms[Math.floor(ms.length / 2)]!;
    };
    const gemmMs = time(true);
    const gemvMs = T <= 512 ? time(false) : null;
    const floorMs = (torch ? (weightBytes / (torch.copyBandwidthTBs * 1e12)) * 1e3 : 0) + ((2 * linearParams * T) / (peak * 1e12)) * 1e3;
    const hfMs = hf?.rows.find((r: { tokens: number }) => r.tokens === T)?.ms ?? null;
    rows.push({ model: label, tokens: T, prefillMs: gemmMs, gemvPrefillMs: gemvMs, transformersMs: hfMs, speedupVsTransformers: hfMs ? hfMs / gemmMs : null, floorMs, fractionOfFloor: floorMs / gemmMs });
    console.log(`${label} T=${T}: GEMM prefill ${gemmMs.toFixed(2)} ms, GEMV ${gemvMs?.toFixed(1) ?? '-'} ms, transformers ${hfMs?.toFixed(2) ?? '-'} ms, floor ${floorMs.toFixed(2)} ms`);
  }
  s.close(); // the session's device memory (weights, cache, buffers) before the next config's
  m.close();
}
const out = arg('--out');
if (out) writeFileSync(out, JSON.stringify({ device: cuda().device.name, peakTflops: peak, rows, hfTransformers: hf }, null, 1));
