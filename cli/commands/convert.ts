import { Command, Option } from 'commander';
import { convert } from '../../driver/convert.js';
import { action, addSelectionOptions, noteKRatio, progressBar, selectionFromFlags, type SelectionFlags } from '../common.js';
import { VERSION } from '../version.js';

export function convertCommand(): Command {
  const cmd = new Command('convert')
    .description('convert a dense LLaMA checkpoint (HF directory, GGUF, llama2.c .bin) into a MoC model package')
    .argument('<checkpoint>', 'Hugging Face directory (config.json + safetensors), .gguf file, or llama2.c .bin')
    .requiredOption('-o, --output <dir>', 'package directory to write (written to a temporary name, renamed when complete)')
    .addOption(new Option('--dtype <type>', 'stored weight type (default: the checkpoint\'s own; GGUF quantized types (Q4_0, Q4_K, Q8_0, ...) become f16)').choices(['f32', 'f16', 'bf16']))
    .option('--tokenizer <file>', 'tokenizer.json or llama2.c tokenizer.bin to store with the model')
    .option('--force', 'replace the output directory if it exists (never the checkpoint, nor a folder holding it)');
  addSelectionOptions(cmd, 'default: the checkpoint\'s own MoC selection (an ONNX export of a MoC model), else --k-ratio 0.19');
  cmd.addHelpText('after', `
Examples:
  mocc convert fixtures/stories260K/hf -o out/s260k-k32 --k 32
  mocc convert model.gguf -o out/moc --k-ratio 0.19 --dtype bf16
  mocc convert model.bin -o out/grouped --pattern 2:8 --tokenizer tokenizer.bin

Converting without recovery training costs accuracy (see README); K = d_ffn reproduces the dense model.`);
  return cmd.action(action(async (input: string, o: SelectionFlags & { output: string; dtype?: 'f32' | 'f16' | 'bf16'; tokenizer?: string; force?: boolean }) => {
    const selection = selectionFromFlags(o);
    const bar = progressBar('writing weights');
    const t0 = performance.now();
    try {
      const m = await convert({
        input, output: o.output, selection, version: VERSION,
        ...(o.dtype ? { dtype: o.dtype } : {}), ...(o.tokenizer ? { tokenizer: o.tokenizer } : {}), force: o.force ?? false,
        onProgress: (done, total) => bar.update(done, total),
      });
      bar.stop();
      noteKRatio(o, m.moc.dFfn);
      const ks = [...new Set(m.moc.perLayerK)];
      process.stderr.write(
        `wrote ${o.output}: ${m.config.nLayers} layers, ${m.moc.mode === 'dense' ? 'dense FFNs' : `MoC ${m.moc.pattern ? `pattern ${m.moc.pattern}, ` : ''}K ${ks.length === 1 ? ks[0] : m.moc.perLayerK.join(',')} of d_ffn ${m.moc.dFfn}`}` +
        `, tokenizer ${m.tokenizer ? m.tokenizer.kind : 'none (use --tokens, or --tokenizer at run time)'} (${((performance.now() - t0) / 1000).toFixed(1)} s)\n`,
      );
    } finally {
      bar.stop();
    }
  }));
}
