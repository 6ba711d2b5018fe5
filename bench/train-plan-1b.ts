// The 1B preset's training memory plan on the host, no GPU and no checkpoint: what bench/gpu/train.ts
// reports as "planned" before anything is allocated (executorPlan: the CUDA executor's arena in
// device bytes, padded rows; + params and AdamW m, v by --optimizer-state), per configuration, with the categories
// live at the peak. The scratch buffer (the largest node's, known at the executor's build) is left out.
// Usage: npx tsx bench/train-plan-1b.ts [--batch 64] [--seq 256] [--k 1024] [--configs moc:moc-gcp,moc:moc-gcp-attn,...]
//        [--matmul f32|bf16] [--cast-once 0|1] [--bf16-producers 0|1] [--matmul-acc 0|1]
//        [--optimizer-state f32|bf16|bf16-params] [--fuse-lm-head]
// (--optimizer-state bf16: m and v at 2 bytes an element, as bench/gpu/train.ts counts them; bf16-params:
// also the weight matrices bf16StoredParams picks at 2 bytes (executor.ts trainingStateBytes);
// --fuse-lm-head: trainingGraph's fuseLmHead, the head + loss in blocks, as bench/gpu/train.ts's flag.)
import { checkpointGraph } from '../driver/load.js';
import { trainingGraph } from '../driver/training-graph.js';
import type { CheckpointPolicy } from '../passes/checkpoint.js';
import { PRESET_1B } from '../src/model/presets.js';
import { executorGraph, executorPlan, trainingStateBytes } from '../targets/cuda/train/executor.js';
import { ADAMW_STATE_DTYPES, type AdamWStateDType } from '../src/train/adamw.js';

const arg = (name: string) => { const i = process.argv.indexOf(name); return i > 0 ? process.argv[i + 1] : undefined; };
const BATCH = Number(arg('--batch') ?? 64), SEQ = Number(arg('--seq') ?? 256), K = Number(arg('--k') ?? 1024), rows = BATCH * SEQ;
const configs = (arg('--configs') ?? 'moc:moc-gcp,moc:moc-gcp-attn,dense:gcp,dense:gcp-attn').split(',').map((c) => c.split(':') as ['dense' | 'moc', CheckpointPolicy]);
const OPT_STATE = (arg('--optimizer-state') ?? 'f32') as AdamWStateDType;
if (!ADAMW_STATE_DTYPES.includes(OPT_STATE)) throw new Error(`train-plan-1b: --optimizer-state ${OPT_STATE} is not ${ADAMW_STATE_DTYPES.join(' or ')}`);
const FUSE_LM_HEAD = process.argv.includes('--fuse-lm-head');
// --matmul (default bf16, as every GPU run since session 12) and --cast-once 0|1 (default 1): the
// executor's graph (executor.ts executorGraph) has the bf16 GEMM operands' shared casts in the plan
// and --bf16-producers 0|1 (default 1): with it, the casts of values only casts read folded into their producers (passes/bf16-producers.ts)
const MATMUL = (arg('--matmul') ?? 'bf16') as 'f32' | 'bf16', CAST_ONCE = arg('--cast-once') !== '0', BF16_PRODUCERS = arg('--bf16-producers') !== '0';
// --matmul-acc 0|1 (default: the executor's, on with bf16): adds of matmul products and of rmsnorm_grad's dx folded in place (passes/matmul-accumulate.ts)
const ACC = arg('--matmul-acc') === undefined ? undefined : arg('--matmul-acc') === '1';
const GiB = (n: number) => (n / 2 ** 30).toFixed(2);
console.log(`1B preset (d ${PRESET_1B.dim}, ${PRESET_1B.nLayers} layers, d_ffn ${PRESET_1B.dFfn}), ${BATCH} × ${SEQ} rows, ${MATMUL} GEMMs${MATMUL === 'bf16' ? (CAST_ONCE ? ` (shared operand casts${BF16_PRODUCERS ? ', bf16 producers' : ''})` : ' (a cast per GEMM)') : ''}${(ACC ?? MATMUL === 'bf16') ? ', adds folded into matmuls and norm gradients' : ''}, ${OPT_STATE} AdamW state${FUSE_LM_HEAD ? ', fused LM head' : ''}, GiB:`);
console.log('| config | arena | + params, m, v | at the peak: FFN / attention / norms / logits / backward |');
console.log('|---|---|---|---|');
for (const [ffn, policy] of configs) {
  const g = trainingGraph(checkpointGraph(PRESET_1B, (n) => (n.includes('norm') ? 'f32' : 'bf16'), ffn === 'dense' ? 'dense' : { k: K }), { loss: { kind: 'cross_entropy' }, policy, ...(FUSE_LM_HEAD ? { fuseLmHead: true } : {}) });
  const opts = { matmul: MATMUL, castOnce: CAST_ONCE, bf16Producers: BF16_PRODUCERS, ...(ACC === undefined ? {} : { matmulAccumulate: ACC }) };
  const plan = executorPlan(g, rows, opts), run = executorGraph(g, opts); // the peak step is a node of the graph the executor runs
  const { params: paramBytes, moments: momentBytes } = trainingStateBytes(g, { T: rows }, OPT_STATE);
  const a = plan.atPeak;
  console.log(`| ${ffn === 'dense' ? 'dense' : `MoC K=${K}`}, ${policy} | ${GiB(plan.arenaBytes)} | ${GiB(plan.arenaBytes + paramBytes + momentBytes)} | ${[a.ffn, a.attention, a.norms, a['logits/loss'], a.backward].map(GiB).join(' / ')} (peak at %${run.nodes[plan.peakStep]?.outputs[0]?.name}) |`);
}
