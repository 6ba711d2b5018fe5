// Turns a model spec (any importer's) into the dense LLaMA model graph over canonical param names:
// pure ops over a batch of sequences given as rows (src/model/graph-inputs.ts), so one graph serves
// training and prefill; passes/kv-cache.ts derives the decode graph (explicit KV-cache state) from it.
// The tied embedding is one param read by both the embedding and the logits.
import { GraphBuilder } from '../ir/builder.js';
import type { Graph, Operand } from '../ir/types.js';
import type { DType } from '../util/dtype.js';
import { MODEL_INPUTS } from '../model/graph-inputs.js';
import type { ModelSpec } from './spec.js';
import { expectedWeightShapes } from './spec.js';

/** `dtypes` gives each weight's stored element type (default f32). */
export function buildLlamaGraph(spec: ModelSpec, dtypes: (name: string) => DType = () => 'f32', name = 'llama'): Graph {
  const b = new GraphBuilder(name);
  const shapes = expectedWeightShapes(spec);
  const w = (n: string): Operand => b.param(n, { dtype: dtypes(n), shape: shapes.get(n)! });
  const ropeAttrs = (heads: number) => ({
    heads, head_dim: spec.headDim, theta: spec.rope.theta, style: spec.rope.style,
    ...(spec.rope.scaling ? {
      scaling: 'llama3', factor: spec.rope.scaling.factor, low_freq_factor: spec.rope.scaling.lowFreqFactor,
      high_freq_factor: spec.rope.scaling.highFreqFactor, original_max_pos: spec.rope.scaling.originalMaxPositionEmbeddings,
    } : {}),
  });

  const rows = { dtype: 'i32', shape: ['T'] } as const;
  const tokens = b.input(MODEL_INPUTS.tokens, rows);
  const pos = b.input(MODEL_INPUTS.pos, rows);
  const seq = b.input(MODEL_INPUTS.seq, rows);
  let x = b.op('embedding', [w('tok_embeddings'), tokens], {}, 'x');
  for (let l = 0; l < spec.nLayers; l++) {
    const p = `layers.${l}.`;
    const n = (s: string) => `l${l}.${s}`;
    const h = b.op('rmsnorm', [x, w(p + 'attn_norm')], { eps: spec.normEps }, n('attn_in'));
    const q = b.op('rope', [b.op('linear', [h, w(p + 'wq')], {}, n('q_proj')), pos], ropeAttrs(spec.nHeads), n('q'));
    const k = b.op('rope', [b.op('linear', [h, w(p + 'wk')], {}, n('k_proj')), pos], ropeAttrs(spec.nKvHeads), n('k'));
    const v = b.op('linear', [h, w(p + 'wv')], {}, n('v'));
    const att = b.op('attention', [q, k, v, seq], { heads: spec.nHeads, kv_heads: spec.nKvHeads, head_dim: spec.headDim }, n('attn'));
    x = b.op('add', [x, b.op('linear', [att, w(p + 'wo')], {}, n('attn_out'))], {}, n('x_attn'));
    // The SwiGLU FFN, written as the plain pattern down(silu(gate(x)) ⊙ up(x)) that swiglu-to-moc matches.
    const f = b.op('rmsnorm', [x, w(p + 'ffn_norm')], { eps: spec.normEps }, n('ffn_in'));
    const gate = b.op('linear', [f, w(p + 'w_gate')], {}, n('gate'));
    const up = b.op('linear', [f, w(p + 'w_up')], {}, n('up'));
    const z = b.op('mul', [b.op('silu', [gate], {}, n('act')), up], {}, n('z'));
    x = b.op('add', [x, b.op('linear', [z, w(p + 'w_down')], {}, n('ffn_out'))], {}, n('x_ffn'));
  }
  const out = b.op('rmsnorm', [x, w('norm')], { eps: spec.normEps }, 'final');
  const logits = b.op('logits', [out, w(spec.tiedEmbeddings ? 'tok_embeddings' : 'output')], {}, 'logits');
  return b.finish([logits]);
}
