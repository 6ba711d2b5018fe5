// bench decode-context: decode tokens/s of the 1B-preset LLaMA (make_llama_1b.py) at batch 1 after
// 16, 512, 1024 and 2048 tokens of context, mocc dense and MoC (K=1024), the KV cache as lowered by
// default (bf16 for these bf16 weights) and, for comparison, dense with an f32 cache; beside each,
// the byte floor: (weight bytes + the KV-cache bytes read at that context) / the copy bandwidth that
// torch_ffn.py measured (--torch). The context is filled by one prefill call, then NEW tokens are
// decoded greedily on the device (one CUDA graph a step, one host sync at the end); the median of
// RUNS such decodes, each after a fresh prefill. At the model's capacity (2048) the last NEW positions
// are needed for decoding, so "2048" prefills 2048 − NEW tokens: the floor uses the mean context of
// the decoded tokens.
// Usage: node dist/bench/gpu/decode-context.js --model DIR --torch OUT/torch_ffn.json --out OUT/decode-context.json
//        [--contexts 16,512,1024,2048] [--new 32] [--runs 5] [--configs 0,1,2,3 (indices into the list below)]
// MOCC_CUDA_SPLIT_BLOCKS=N lowers the split attention for N blocks per query row (its sweep).
// 'mocc dense, combine kernel' (index 4) and 'mocc MoC K=1024, combine kernel' (5): the split
// attention's partials merged by a second launch (LowerOptions.decodeMerge 'combine-kernel'; sessions
// merge in the split kernel's last block unless MOCC_CUDA_ATTN_MERGE=0). (Session 12's 'merged reduce'
// configs, the MoC reduce in up·down's last block, measured 13–19% slower and went with that
// lowering: NOTES.md, session 13.) MOCC_CUDA_ATTN_EARLY=1 gives every config the split attention's
// early reads (', early'); configs 6 and 7 are dense and MoC with early reads, to compare with 0 and 1
// in one process. 'mocc MoC K=1024, reduce in up·down's tail' (8): no moc_reduce launch, the up·down
// kernel's last 32 blocks of a row reduce (LowerOptions.mocMerge 'tail'; MOCC_CUDA_MOC_TAIL=1 sets it for
// every config), to compare with 1 in one process (e.g. --configs 1,8,1,8); 9: the same with early reads.
// 'mocc MoC K=1024, Top-K in the gate GEMV' (10): no moc_topk launch, the gate GEMV's last block of a row
// selects (LowerOptions.mocTopk 'gate'; MOCC_CUDA_MOC_TOPK=1 sets it for every config), to compare with
// 1; 11: Top-K in the gate and the reduce in up·down's tail (both launches gone, to compare with 8 and
// 10); 12: 11 with early reads (compare with 9). E.g. --configs 1,10,8,11,1,10,8,11.
// The JSON's launchesPerStep counts a decode step's launches; mocTopkInGate says whether moc_topk went.
import { readFileSync, writeFileSync } from 'node:fs';
import { loadModel } from '../../driver/load.js';
import { createCudaSession } from '../../targets/cuda/index.js';
import type { KvCacheOption } from '../../targets/cuda/kv-cache.js';
import type { LowerOptions } from '../../targets/cuda/lower.js';
import { cuda } from '../../test/helpers/cuda.js';
import { kvBytesPerToken, weightBytesPerToken } from './floor.js';

const arg = (name: string) => { const i = process.argv.indexOf(name); return i > 0 ? process.argv[i + 1] : undefined; };
const dir = arg('--model');
const outPath = arg('--out');
if (!dir || !outPath) {
  console.error('decode-context: --model DIR and --out FILE are required');
  process.exit(1);
}
const torch = arg('--torch') ? JSON.parse(readFileSync(arg('--torch')!, 'utf8')) : null;
const CONTEXTS = (arg('--contexts') ?? '16,512,1024,2048').split(',').map(Number);
const NEW = Number(arg('--new') ?? 32), RUNS = Number(arg('--runs') ?? 5), K = 1024;
// [label, selection, cache, baseline: the lowering of before issue 16 (the single-block attention), decode merge (default: the session's)]
// [..., decode early reads, MoC merge, MoC Top-K (default: the session's)]
const configs: [string, 'dense' | { k: number }, KvCacheOption, boolean, LowerOptions['decodeMerge']?, boolean?, LowerOptions['mocMerge']?, LowerOptions['mocTopk']?][] = [
  ['mocc dense', 'dense', 'auto', false], [`mocc MoC K=${K}`, { k: K }, 'auto', false], ['mocc dense, f32 KV cache', 'dense', 'f32', false],
  ['mocc dense, before issue 16 (f32 cache, one block per head)', 'dense', 'f32', true],
  ['mocc dense, combine kernel', 'dense', 'auto', false, 'combine-kernel'],
  [`mocc MoC K=${K}, combine kernel`, { k: K }, 'auto', false, 'combine-kernel'],
  ['mocc dense, early reads', 'dense', 'auto', false, undefined, true], [`mocc MoC K=${K}, early reads`, { k: K }, 'auto', false, undefined, true],
  [`mocc MoC K=${K}, reduce in up·down's tail`, { k: K }, 'auto', false, undefined, undefined, 'tail'],
  [`mocc MoC K=${K}, reduce in up·down's tail, early reads`, { k: K }, 'auto', false, undefined, true, 'tail'],
  [`mocc MoC K=${K}, Top-K in the gate GEMV`, { k: K }, 'auto', false, undefined, undefined, undefined, 'gate'],
  [`mocc MoC K=${K}, Top-K in the gate GEMV, reduce in up·down's tail`, { k: K }, 'auto', false, undefined, undefined, 'tail', 'gate'],
  [`mocc MoC K=${K}, Top-K in the gate GEMV, reduce in up·down's tail, early reads`, { k: K }, 'auto', false, undefined, true, 'tail', 'gate'],
];

const results: Record<string, unknown>[] = [];
const chosen = arg('--configs')?.split(',').map(Number) ?? configs.map((_, i) => i);
for (const [label, selection, kvCache, baseline, decodeMerge, decodeEarly, mocMerge, mocTopk] of chosen.map((i) => configs[i]!)) {
  const m = loadModel(dir, { selection });
  const s = createCudaSession(m, { kvCache, baseline, ...(decodeMerge ? { decodeMerge } : {}), ...(decodeEarly ? { decodeEarly } : {}), ...(mocMerge ? { mocMerge } : {}), ...(mocTopk ? { mocTopk } : {}) });
  const launched = (test: (kernel: string) => boolean) => s.m.program.steps.some((st) => st.kind === 'launch' && test(st.kernel));
  const merged = launched((k) => k.startsWith('attention_split_merge_')); // the session default (MOCC_CUDA_ATTN_MERGE=0: not)
  const early = launched((k) => k.startsWith('attention_split') && k.includes('_early_')); // MOCC_CUDA_ATTN_EARLY=1
  const mocTail = launched((k) => k.startsWith('moc_updown') && k.endsWith('_tail')); // MOCC_CUDA_MOC_TAIL=1
  const mocTopkInGate = launched((k) => /^gemv_.*_topk_k\d+/.test(k)); // MOCC_CUDA_MOC_TOPK=1
  const launchesPerStep = s.m.program.steps.filter((st) => st.kind === 'launch').length;
  const spec = m.spec, cap = s.m.program.kvCache.capacity, dtype = s.m.program.kvCache.dtype;
  const tokens = Array.from({ length: cap }, (_, i) => (i * 7919 + 13) % spec.vocabSize);
  const weightBytes = weightBytesPerToken(spec, selection === 'dense' ? spec.dFfn : K);
  // warm-up: captures the decode graphs
  s.reset();
  s.greedy(argmaxLast(s.forward(tokens.slice(0, 16)), spec.vocabSize), 8);
  for (const context of CONTEXTS) {
    const prefill = Math.min(context, cap - NEW);
    const runs: number[] = [], prefillSeconds: number[] = [];
    for (let r = 0; r < RUNS; r++) {
      s.reset();
      const t0 = performance.now();
      const first = argmaxLast(s.forward(tokens.slice(0, prefill)), spec.vocabSize);
      prefillSeconds.push((performance.now() - t0) / 1000);
      const t = performance.now();
      s.greedy(first, NEW);
      runs.push(NEW / ((performance.now() - t) / 1000));
    }
    runs.sort((a, b) => a - b);
    prefillSeconds.sort((a, b) => a - b);
    // decoded token i (0-based) attends to prefill + i + 1 positions
    const meanPositions = prefill + (NEW + 1) / 2;
    const kvBytes = kvBytesPerToken(spec, meanPositions, dtype);
    const floor = torch ? (torch.copyBandwidthTBs * 1e12) / (weightBytes + kvBytes) : null;
    const tps = runs[Math.floor(runs.length / 2)]!;
    results.push({ label, kvCache: dtype, splitBlocks: Number(process.env.MOCC_CUDA_SPLIT_BLOCKS) || null, mergedAttention: merged, earlyAttention: early, mocTailReduce: mocTail, mocTopkInGate, launchesPerStep, context, prefillTokens: prefill, meanPositions, tokensPerSecond: tps, runs, prefillSecondsMedian: prefillSeconds[Math.floor(RUNS / 2)], weightBytesPerToken: weightBytes, kvBytesPerToken: kvBytes, floorTokensPerSecond: floor, fractionOfFloor: floor ? tps / floor : null });
    console.log(`  ${(label + (early ? ', early' : '')).padEnd(26)} ${dtype.padEnd(4)} context ${String(prefill).padStart(4)}: ${tps.toFixed(1)} tok/s  (floor ${floor?.toFixed(0) ?? 'n/a'}, ${floor ? (100 * tps / floor).toFixed(0) : '?'}%; KV ${(kvBytes / 2 ** 20).toFixed(0)} MiB a token)`);
  }
  s.close(); // the session's device memory (weights, cache, buffers) before the next config's
  m.close();
}
function argmaxLast(l: Float32Array, v: number): number {
  let best = l.length - v;
  for (let i = l.length - v; i < l.length; i++) if (l[i]! > l[best]!) best = i;
  return best - (l.length - v);
}
const out = { device: cuda().device.name, newTokens: NEW, runs: RUNS, copyBandwidthTBs: torch?.copyBandwidthTBs ?? null, results };
writeFileSync(outPath, JSON.stringify(out, null, 2) + '\n');
console.log(`decode-context on ${out.device}: 1B preset, batch 1, ${NEW} new tokens after each context -> ${outPath}`);
