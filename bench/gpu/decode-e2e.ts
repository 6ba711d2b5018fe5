// bench decode-e2e: tokens/s at batch 1 for the 1B-preset LLaMA (random bf16 weights written by
// transformers, make_llama_1b.py), mocc dense vs mocc MoC (K=1024), greedy decoding with the whole
// step in one CUDA graph and the next token chosen on the device; on Hopper each also without
// programmatic dependent launch (MOCC_CUDA_PDL=0), to show what the overlap gives, and MoC once
// without the up·down kernel's L2 warming (MOCC_CUDA_WARM=0). HF transformers' figure comes from
// hf_decode.py in the same run (run.sh).
// Usage: node dist/bench/gpu/decode-e2e.js --model DIR --hf OUT/hf_decode.json --torch OUT/torch_ffn.json --out OUT/decode-e2e.json
import { readFileSync, writeFileSync } from 'node:fs';
import { loadModel } from '../../driver/load.js';
import { createCudaSession } from '../../targets/cuda/index.js';
import { cuda } from '../../test/helpers/cuda.js';
import { weightBytesPerToken } from './floor.js';

const arg = (name: string) => { const i = process.argv.indexOf(name); return i > 0 ? process.argv[i + 1] : undefined; };
const dir = arg('--model')!;
const hf = arg('--hf') ? JSON.parse(readFileSync(arg('--hf')!, 'utf8')) : null;
const torch = arg('--torch') ? JSON.parse(readFileSync(arg('--torch')!, 'utf8')) : null;
const NEW = 128, PROMPT = 16, K = 1024;
const results: Record<string, unknown>[] = [];
const hopper = cuda().device.computeCapability[0] >= 9;
// [label, selection, programmatic launch, L2 warming by the MoC up·down kernel (UpDownSpec.warm)]
const configs = [['mocc dense', 'dense', true, false], [`mocc MoC K=${K}`, { k: K }, true, true], [`mocc MoC K=${K}, no L2 warming`, { k: K }, true, false]] as [string, 'dense' | { k: number }, boolean, boolean][];
// (without programmatic launch the warming is off: it would no longer overlap Top-K)
if (hopper) configs.push(['mocc dense, no PDL', 'dense', false, false], [`mocc MoC K=${K}, no PDL`, { k: K }, false, false]);
for (const [label, selection, pdl, warm] of configs) {
  process.env.MOCC_CUDA_PDL = pdl ? '1' : '0';
  process.env.MOCC_CUDA_WARM = warm ? '1' : '0';
  const t0 = performance.now();
  const m = loadModel(dir, { selection });
  const s = createCudaSession(m);
  const loadS = (performance.now() - t0) / 1000;
  const spec = m.spec;
  const prompt = Array.from({ length: PROMPT }, (_, i) => (i * 7919 + 13) % spec.vocabSize);
  // warm-up: captures the graphs
  s.reset();
  const l0 = s.forward(prompt);
  s.greedy(argmaxLast(l0, spec.vocabSize), 8);
  const runs: number[] = [];
  for (let r = 0; r < 5; r++) {
    s.reset();
    const lg = s.forward(prompt);
    const first = argmaxLast(lg, spec.vocabSize);
    const t = performance.now();
    s.greedy(first, NEW); // one host sync at the end
    runs.push(NEW / ((performance.now() - t) / 1000));
  }
  runs.sort((a, b) => a - b);
  const kept = selection === 'dense' ? spec.dFfn : K;
  const bytesPerToken = weightBytesPerToken(spec, kept);
  const floor = torch ? (torch.copyBandwidthTBs * 1e12) / bytesPerToken : null;
  const tps = runs[Math.floor(runs.length / 2)]!;
  results.push({ label, programmaticLaunch: hopper && pdl, l2Warming: selection === 'dense' ? null : warm, tokensPerSecond: tps, runs, loadSeconds: loadS, weightBytesPerToken: bytesPerToken, floorTokensPerSecond: floor, fractionOfFloor: floor ? tps / floor : null });
  m.close();
}
function argmaxLast(l: Float32Array, v: number): number {
  let best = l.length - v;
  for (let i = l.length - v; i < l.length; i++) if (l[i]! > l[best]!) best = i;
  return best - (l.length - v);
}
const dense = results[0]!.tokensPerSecond as number, moc = results[1]!.tokensPerSecond as number;
const out = { device: cuda().device.name, promptTokens: PROMPT, newTokens: NEW, results, mocOverDense: moc / dense, hfTransformers: hf };
writeFileSync(arg('--out')!, JSON.stringify(out, null, 2) + '\n');
console.log(`decode-e2e on ${out.device}: 1B preset, batch 1, ${NEW} new tokens after ${PROMPT}`);
for (const r of results as any[]) console.log(`  ${r.label.padEnd(34)} ${r.tokensPerSecond.toFixed(1)} tok/s  (floor ${r.floorTokensPerSecond?.toFixed(0)} tok/s, ${(100 * (r.fractionOfFloor ?? 0)).toFixed(0)}%)`);
console.log(`  MoC / dense: ${(moc / dense).toFixed(2)}×;  HF transformers: ${hf ? hf.tokensPerSecond.toFixed(1) + ' tok/s' : 'n/a'}`);
