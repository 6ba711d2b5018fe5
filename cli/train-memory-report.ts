// The text `mocc inspect --train` prints: per checkpoint policy, the planned peak activation bytes by
// category, the arena, weight gradients and AdamW state, with the paper's FFN accounting beside.
import type { PolicyMemory } from '../driver/train-memory.js';
import type { Category } from '../passes/memory-plan.js';

const UNITS = ['KiB', 'MiB', 'GiB', 'TiB'] as const;

/** 1536 → "1.50 KiB" (binary units); below 1 KiB, plain bytes. */
export function humanBytes(n: number): string {
  if (n < 1024) return `${n} B`;
  let v = n / 1024, u = 0;
  while (v >= 1024 && u < UNITS.length - 1) [v, u] = [v / 1024, u + 1];
  return `${v.toFixed(2)} ${UNITS[u]}`;
}

const exact = (n: number) => `${n.toLocaleString('en-US')} B`;

export const CATEGORY_LABELS: [Category, string][] = [
  ['ffn', 'FFN'], ['attention', 'attention'], ['norms', 'norms, residual'], ['logits/loss', 'logits, loss'],
  ['embedding', 'embedding'], ['inputs', 'inputs'], ['backward', 'backward in flight'],
];

const PAPER_NAMES = { dense: 'Dense 4·d_ffn+d', denseGcp: 'Dense+GCP 2·d_ffn+d', moc: 'MoC 4·K+d', mocGcp: 'MoC+GCP 2·K+d' } as const;

export const CATEGORY_HELP = `Categories (an activation counts where the forward node that first reads it belongs):
  FFN                 the FFN's input x (after its norm), gate/up values, SiLU, product, MoC indices
  attention           the attention block's normed input, q, k (after RoPE), v, the attention output
  norms, residual     the residual stream (each RMSNorm's input; the embedding output starts it)
  logits, loss        the final norm's output, the logits, the loss
  embedding           values only the embedding reads (its output counts as the residual stream)
  inputs              tokens, positions, sequence ids, targets
  backward in flight  gradients and recomputed values the backward holds at that moment
Policies (--ckpt): none saves every value the backward reads; gcp recomputes SiLU and the product
  (Dense+GCP); moc and moc-gcp (MoC models only) are none and gcp with the MoC indices saved in
  16 bits (the paper's MoC and MoC+GCP); gcp-attn and moc-gcp-attn are gcp and moc-gcp that also
  recompute each layer's attention block and its norms' outputs in the backward, keeping only the
  residual stream of them (no attention bytes; the FFN without its input x). Without --ckpt every
  policy that applies is shown.
The peak is the most bytes live at once over the training step (forward, loss, backward); the arena
is one buffer laid out greedily by size that holds every activation and weight gradient. The paper
column is its FFN accounting per token per layer × rows, in f32 like the plan (bf16 in brackets).`;

export function trainMemoryReport(rows: { batch: number; seq: number; trainable: string }, results: PolicyMemory[]): string {
  const first = results[0]!;
  const out = [`training memory plan: batch ${rows.batch} × seq ${rows.seq} = ${first.rows} rows, f32 values and weights (ref target); trainable ${rows.trainable}: ${first.trainableValues.toLocaleString('en-US')} values`];
  const line = (label: string, n: number, extra = '') => out.push(`    ${label.padEnd(22)} ${humanBytes(n).padStart(11)} ${exact(n).padStart(20)}${extra}`);
  for (const r of results) {
    out.push(`  --ckpt ${r.policy}`);
    for (const [c, label] of CATEGORY_LABELS) {
      const paper = c === 'ffn' ? `   paper ${PAPER_NAMES[r.paper.column]}${r.paper.ffnInput ? '' : ' − d (x recomputed)'}${r.paper.column.startsWith('moc') ? ` + K×${r.paper.indexBytes} B indices` : ''}: ${exact(r.paper.f32)} (bf16: ${exact(r.paper.bf16)})` : '';
      line(label, r.plan.atPeak[c], paper);
    }
    line('peak activations', r.plan.peakBytes);
    line('arena', r.plan.arenaBytes);
    line('weight gradients', r.plan.gradientBytes);
    line('AdamW state (m, v)', r.adamBytes, r.optimizerState !== 'f32' ? `   bf16 moments (--optimizer-state ${r.optimizerState})` : '');
  }
  return out.join('\n') + '\n';
}
