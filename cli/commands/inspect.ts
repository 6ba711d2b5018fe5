import { Command } from 'commander';
import { OPS } from '../../src/ir/ops.js';
import { printGraph } from '../../src/ir/print.js';
import { elementCount } from '../../src/import/tensor.js';
import { loadModel } from '../../driver/load.js';
import { ffnActivationBytes } from '../../src/model/memory.js';
import { action } from '../common.js';

export function inspectCommand(): Command {
  return new Command('inspect')
    .description('summarize a package or checkpoint: IR, parameter counts, per-layer K, FFN activation memory')
    .argument('<model>', 'mocc package directory, or a checkpoint (HF directory, .gguf, llama2.c .bin)')
    .option('--ir', 'print the whole IR text')
    .option('--tokenizer <file>', 'tokenizer to use instead of the one found with the model')
    .addHelpText('after', `
Activation memory is per training token, per FFN layer, in bytes, with bf16 activations and int32 indices:
  Dense 4·d_ffn+d values · Dense+GCP 2·d_ffn+d · MoC 4·K+d values + K indices · MoC+GCP 2·K+d values + K indices`)
    .action(action((path: string, o: { ir?: boolean; tokenizer?: string }) => {
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
        process.stdout.write(out.join('\n') + '\n');
        if (o.ir) process.stdout.write('\n' + printGraph(m.graph));
      } finally {
        m.close();
      }
    }));
}
