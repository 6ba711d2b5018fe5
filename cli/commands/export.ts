import { Command, Option } from 'commander';
import { exportOnnx } from '../../driver/export-onnx.js';
import { action, note } from '../common.js';
import { VERSION } from '../version.js';

export function exportCommand(): Command {
  const cmd = new Command('export')
    .description('write a package as a standard model another runtime runs without mocc (ONNX: onnxruntime, transformers.js)')
    .argument('<package>', 'mocc package directory (what mocc convert writes)')
    .addOption(new Option('--format <format>', 'output format').choices(['onnx']).makeOptionMandatory())
    .requiredOption('-o, --output <dir>', 'output directory (written to a temporary name, renamed when complete)')
    .option('--kv-cache', 'decoder interface with a KV cache, named as Hugging Face optimum does, plus config.json, generation_config.json and the tokenizer (a folder transformers.js loads)')
    .addOption(new Option('--form <form>', 'how a MoC FFN computes its kept channels').choices(['gather', 'masked']).default('gather'))
    .option('--force', 'replace the output directory if it exists');
  cmd.addHelpText('after', `
Writes onnx/model.onnx (ONNX opset 17, primitive ops only) with the weights in onnx/model.onnx_data
(external data, float32, 16-byte aligned). The graph is the package's IR lowered op by op: Gather for
the embedding, RMSNorm as ReduceMean/Sqrt/Div, RoPE with cos/sin tables, causal GQA attention with a
mask, SiLU as x·Sigmoid(x). A MoC FFN is TopK on G = x·W_gateᵀ, then
  --form gather   the kept rows of W_up and W_down gathered per token (work ∝ K; for decoding)
  --form masked   dense x·W_upᵀ read at the kept channels, and the kept values scattered into a
                  dense row for a dense product with W_down (dense GEMMs; for prefill)
Both compute the same values. A dense package gives plain ONNX (no TopK).

Inputs and outputs: input_ids int64 [batch, sequence] → logits float [batch, sequence, vocab].
With --kv-cache also attention_mask int64 [batch, past+sequence], position_ids int64 [batch,
sequence] and past_key_values.N.key|value float [batch, kv_heads, past, head_dim] → present.N.key|value
[batch, kv_heads, past+sequence, head_dim] (start with past = 0).

Examples:
  mocc convert fixtures/stories260K/hf -o out/k32 --k 32 --tokenizer fixtures/stories260K/llama2c/tok512.bin
  mocc export out/k32 --format onnx -o out/k32-onnx
  mocc export out/k32 --format onnx --kv-cache -o out/k32-web`);
  return cmd.action(action(async (path: string, o: { format: 'onnx'; output: string; kvCache?: boolean; form: 'gather' | 'masked'; force?: boolean }) => {
    const r = await exportOnnx(path, o.output, { form: o.form, kvCache: o.kvCache ?? false, force: o.force ?? false, version: VERSION });
    if (r.note) note(r.note);
    process.stderr.write(`wrote ${o.output}: ONNX opset 17, ${r.nodes} nodes, ${r.initializers} initializers\n`);
  }));
}
