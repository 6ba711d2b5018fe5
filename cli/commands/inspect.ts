import { Command, Option } from 'commander';
import { OPS } from '../../src/ir/ops.js';
import { printGraph } from '../../src/ir/print.js';
import { elementCount } from '../../src/import/tensor.js';
import { loadModel } from '../../driver/load.js';
import { ffnActivationBytes } from '../../src/model/memory.js';
import { trainMemory, applicablePolicies } from '../../driver/train-memory.js';
import { CHECKPOINT_POLICIES, type CheckpointPolicy } from '../../passes/checkpoint.js';
import { UserError } from '../../src/util/errors.js';
import { action, parseIntArg } from '../common.js';
import { CATEGORY_HELP, trainMemoryReport } from '../train-memory-report.js';

interface InspectFlags { ir?: boolean; tokenizer?: string; train?: boolean; batch?: number; seq?: number; ckpt?: string; trainable?: string; optimizerState?: 'f32' | 'bf16' }

/** Checks the --train flags that need no model; the rest (--seq vs context, moc on dense) come with it. */
function checkTrainFlags(o: InspectFlags): void {
  const given = (['batch', 'seq', 'ckpt', 'trainable', 'optimizerState'] as const).filter((k) => o[k] !== undefined);
  if (!o.train && given.length) throw new UserError(`--${given[0]} applies with --train`);
  if (o.train && (o.batch === undefined || o.seq === undefined)) throw new UserError('--train needs --batch B and --seq T');
  if (o.ckpt !== undefined && !CHECKPOINT_POLICIES.includes(o.ckpt as CheckpointPolicy)) throw new UserError(`unknown checkpoint policy '${o.ckpt}': use ${CHECKPOINT_POLICIES.join(', ')}`);
}

export function inspectCommand(): Command {
  return new Command('inspect')
    .description('summarize a package or checkpoint: IR, parameter counts, per-layer K, FFN activation memory')
    .argument('<model>', 'mocc package directory, or a checkpoint (HF directory, .gguf, llama2.c .bin)')
    .option('--ir', 'print the whole IR text')
    .option('--tokenizer <file>', 'tokenizer to use instead of the one found with the model')
    .option('--train', 'also print the planned training memory per checkpoint policy (needs --batch, --seq)')
    .option('--batch <B>', 'sequences per training step (with --train)', parseIntArg('--batch', 1))
    .option('--seq <T>', "tokens per sequence (with --train), at most the model's context", parseIntArg('--seq', 1))
    .option('--ckpt <policy>', `only this checkpoint policy: ${CHECKPOINT_POLICIES.join(', ')} (with --train)`)
    .option('--trainable <spec>', 'params that train: all, ffn, or comma-separated globs over param names (with --train; default all)')
    .addOption(new Option('--optimizer-state <type>', "AdamW's moment storage, as mocc train's flag (with --train; default f32)").choices(['f32', 'bf16']))
    .addHelpText('after', `
Activation memory is per training token, per FFN layer, in bytes, with bf16 activations and int32 indices:
  Dense 4·d_ffn+d values · Dense+GCP 2·d_ffn+d · MoC 4·K+d values + K indices · MoC+GCP 2·K+d values + K indices

--train plans one training step (next-token cross-entropy, batch × seq rows) and prints the activation
bytes live at its peak by category, for each checkpoint policy that applies (dense: none, gcp; MoC: all four).
${CATEGORY_HELP}`)
    .action(action((path: string, o: InspectFlags) => {
      checkTrainFlags(o);
      const m = loadModel(path, o.tokenizer ? { tokenizer: o.tokenizer } : {});
      try {
        const s = m.spec;
        const out: string[] = [];
        out.push(`${m.source}`);
        out.push(`  llama: d ${s.dim}, d_ffn ${s.dFfn}, ${s.nLayers} layers, ${s.nHeads} heads (${s.nKvHeads} KV, head_dim ${s.headDim}), vocab ${s.vocabSize}, context ${s.maxSeqLen}`);
        out.push(`  RoPE ${s.rope.style}, theta ${s.rope.theta}${s.rope.scaling ? `, llama3 scaling ×${s.rope.scaling.factor}` : ''}; RMSNorm eps ${s.normEps}; embeddings ${s.tiedEmbeddings ? 'tied' : 'untied'}`);
        out.push(`  tokenizer: ${m.tokenizer ? `${m.tokenizer.kind}, ${m.tokenizer.vocabSize} tokens` : 'none'}`);
        const counts = new Map<string, number>();
        for (const n of m.graph.nodes) counts.set(n.op, (counts.get(n.op) ?? 0) + 1);
        out.push(`IR: graph ${m.graph.name}, ${m.graph.nodes.length} nodes, ${m.graph.params.length} params`);
        out.push('  ' + [...OPS.keys()].filter((k) => counts.has(k)).map((k) => `${k} ×${counts.get(k)}`).join(', '));
        const params = { total: 0, ffn: 0, attn: 0, embed: 0, norm: 0 };
        const seen = new Set<string>();
        for (const w of m.graph.params) {
          const base = w.name.replace(/\.t$/, '');
          if (seen.has(base)) continue;
          seen.add(base);
          const n = elementCount(w.type.shape as number[]);
          params.total += n;
          if (/w_(gate|up|down)/.test(w.name)) params.ffn += n;
          else if (/\.w[qkvo]$/.test(w.name)) params.attn += n;
          else if (/norm/.test(w.name)) params.norm += n;
          else params.embed += n;
        }
        const fmt = (n: number) => n.toLocaleString('en-US');
        out.push(`parameters: ${fmt(params.total)} (FFN ${fmt(params.ffn)}, attention ${fmt(params.attn)}, embeddings/head ${fmt(params.embed)}, norms ${fmt(params.norm)})`);
        out.push(`MoC: ${m.moc.mode}${m.moc.pattern ? ` (pattern ${m.moc.pattern})` : ''}`);
        out.push('FFN activation memory per training token (bytes; bf16 values, int32 indices):');
        out.push('  layer      K   Dense  Dense+GCP     MoC  MoC+GCP');
        const tot = { dense: 0, denseGcp: 0, moc: 0, mocGcp: 0 };
        m.moc.perLayerK.forEach((k, l) => {
          const b = ffnActivationBytes(s.dim, s.dFfn, k);
          for (const key of Object.keys(tot) as (keyof typeof tot)[]) tot[key] += b[key];
          out.push(`  ${String(l).padStart(5)} ${String(k).padStart(6)} ${String(b.dense).padStart(7)} ${String(b.denseGcp).padStart(10)} ${String(b.moc).padStart(7)} ${String(b.mocGcp).padStart(8)}`);
        });
        out.push(`  total        ${String(tot.dense).padStart(7)} ${String(tot.denseGcp).padStart(10)} ${String(tot.moc).padStart(7)} ${String(tot.mocGcp).padStart(8)}`);
        if (o.train) {
          if (o.seq! > s.maxSeqLen) throw new UserError(`--seq ${o.seq} is above the model's context of ${s.maxSeqLen} tokens`);
          const policies = o.ckpt ? [o.ckpt as CheckpointPolicy] : applicablePolicies(m.graph);
          const results = policies.map((policy) => trainMemory(m, { batch: o.batch!, seq: o.seq!, policy, ...(o.trainable ? { trainable: o.trainable } : {}), ...(o.optimizerState ? { optimizerState: o.optimizerState } : {}) }));
          out.push(trainMemoryReport({ batch: o.batch!, seq: o.seq!, trainable: o.trainable ?? 'all' }, results).trimEnd());
        }
        process.stdout.write(out.join('\n') + '\n');
        if (o.ir) process.stdout.write('\n' + printGraph(m.graph));
      } finally {
        m.close();
      }
    }));
}
