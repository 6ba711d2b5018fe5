// The JSON files beside an exported --kv-cache model that make the folder a Hugging Face-style model
// repository transformers.js loads as it is: config.json (LlamaForCausalLM, with transformers.js's
// external-data flag) and generation_config.json.
import type { ModelSpec } from '../../src/import/spec.js';
import type { Manifest } from '../../src/package/manifest.js';

export function hfConfig(spec: ModelSpec, moc: Manifest['moc']): object {
  const scaling = spec.rope.scaling;
  return {
    architectures: ['LlamaForCausalLM'],
    model_type: 'llama',
    hidden_size: spec.dim,
    intermediate_size: spec.dFfn,
    num_hidden_layers: spec.nLayers,
    num_attention_heads: spec.nHeads,
    num_key_value_heads: spec.nKvHeads,
    head_dim: spec.headDim,
    vocab_size: spec.vocabSize,
    max_position_embeddings: spec.maxSeqLen,
    rms_norm_eps: spec.normEps,
    rope_theta: spec.rope.theta,
    ...(scaling ? {
      rope_scaling: {
        rope_type: 'llama3', factor: scaling.factor, low_freq_factor: scaling.lowFreqFactor,
        high_freq_factor: scaling.highFreqFactor, original_max_position_embeddings: scaling.originalMaxPositionEmbeddings,
      },
    } : {}),
    hidden_act: 'silu',
    tie_word_embeddings: spec.tiedEmbeddings,
    bos_token_id: spec.bosId,
    eos_token_id: spec.eosId,
    use_cache: true,
    torch_dtype: 'float32',
    'transformers.js_config': { use_external_data_format: true, dtype: 'fp32' },
    // Not read by transformers: what the ONNX graph computes (its FFNs are MoC when mode is not dense).
    mocc: { moc },
  };
}

export function hfGenerationConfig(spec: ModelSpec): object {
  return { bos_token_id: spec.bosId, eos_token_id: spec.eosId, use_cache: true };
}
