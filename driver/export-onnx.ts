// `mocc export --format onnx`: a mocc package → a standard-ONNX model folder that onnxruntime (and,
// with --kv-cache, transformers.js) runs with no mocc at run time. The layout is the one Hugging Face
// model repositories use for ONNX: onnx/model.onnx with its weights in onnx/model.onnx_data; with
// --kv-cache also config.json, generation_config.json and the tokenizer (tokenizer.json and
// tokenizer_config.json, which transformers.js needs to load it) at the top.
import { copyFileSync, mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { detectFormat } from '../src/import/detect.js';
import { onnxType } from '../src/onnx/proto.js';
import { openPackage } from '../src/package/read.js';
import { UserError } from '../src/util/errors.js';
import { writeOutput } from '../src/util/atomic-output.js';
import { ExternalDataWriter } from '../targets/onnx/external-data.js';
import { OnnxGraphBuilder } from '../targets/onnx/graph-builder.js';
import { hfConfig, hfGenerationConfig } from '../targets/onnx/hf-config.js';
import { spmToHfTokenizer } from '../targets/onnx/hf-tokenizer.js';
import { SpmTokenizer } from '../src/tokenizer/spm.js';
import { lowerToOnnx, type MocForm } from '../targets/onnx/lower.js';

/** ONNX opset 17 (ONNX 1.12, IR version 8): ≥ 13 has TopK/GatherElements/ScatterElements as used here, 15 Shape(start, end), 16 LessOrEqual. */
export const ONNX_OPSET = 17;
const ONNX_IR_VERSION = 8;

export interface OnnxExportOptions {
  form: MocForm;
  kvCache: boolean;
  force?: boolean;
  version: string;
}

export interface OnnxExportResult {
  nodes: number;
  initializers: number;
  /** A remark for the user (e.g. no tokenizer to write), or undefined. */
  note?: string;
}

/** The files an export writes, relative to its folder. */
export const ONNX_EXPORT_FILES = { model: 'onnx/model.onnx', data: 'onnx/model.onnx_data', dataName: 'model.onnx_data' } as const;

const writeJson = (path: string, json: object): void => writeFileSync(path, JSON.stringify(json, null, 2) + '\n');

export async function exportOnnx(pkgPath: string, output: string, opts: OnnxExportOptions): Promise<OnnxExportResult> {
  const format = detectFormat(pkgPath);
  if (format.kind !== 'package') throw new UserError(`${pkgPath} is not a mocc package (${format.why}); export reads packages: convert it first with mocc convert ${pkgPath} -o PKG`);
  const pkg = openPackage(pkgPath);
  try {
    return await writeOutput(output, { kind: 'directory', inputs: [pkgPath], force: opts.force ?? false }, (tmp) => {
      mkdirSync(join(tmp, 'onnx'));
      const external = new ExternalDataWriter(ONNX_EXPORT_FILES.dataName, join(tmp, ONNX_EXPORT_FILES.data));
      const b = new OnnxGraphBuilder(external);
      try {
        lowerToOnnx({ graph: pkg.graph, weights: pkg.weights, spec: pkg.manifest.config }, b, { form: opts.form, kvCache: opts.kvCache });
      } finally {
        external.close();
      }
      const graph = b.graph(pkg.graph.name) as { node: unknown[]; initializer: unknown[] };
      const M = onnxType('ModelProto');
      const model = M.fromObject({
        irVersion: ONNX_IR_VERSION, opsetImport: [{ domain: '', version: ONNX_OPSET }],
        producerName: 'mocc', producerVersion: opts.version, graph,
        docString: `exported by mocc from ${pkg.manifest.source.path} (${pkg.manifest.moc.mode === 'dense' ? 'dense' : `MoC, per-layer K ${pkg.manifest.moc.perLayerK.join(',')}`}; FFN form ${opts.form})`,
      });
      writeFileSync(join(tmp, ONNX_EXPORT_FILES.model), M.encode(model).finish());
      let note: string | undefined;
      if (opts.kvCache) {
        writeJson(join(tmp, 'config.json'), hfConfig(pkg.manifest.config, pkg.manifest.moc));
        writeJson(join(tmp, 'generation_config.json'), hfGenerationConfig(pkg.manifest.config));
        const tok = pkg.manifest.tokenizer;
        if (tok?.kind === 'hf') {
          copyFileSync(join(pkgPath, tok.file), join(tmp, 'tokenizer.json'));
          writeJson(join(tmp, 'tokenizer_config.json'), { tokenizer_class: 'PreTrainedTokenizerFast', clean_up_tokenization_spaces: false, model_max_length: pkg.manifest.config.maxSeqLen });
        } else if (pkg.tokenizer instanceof SpmTokenizer) {
          const files = spmToHfTokenizer(pkg.tokenizer, pkg.manifest.config);
          if ('why' in files) note = `the package's llama2.c/SentencePiece tokenizer has no tokenizer.json form (${files.why}); transformers.js can run the model on token ids`;
          else for (const [name, json] of Object.entries(files)) writeJson(join(tmp, name), json);
        } else note = 'the package holds no tokenizer; transformers.js can run the model on token ids';
      }
      return { nodes: graph.node.length, initializers: graph.initializer.length, ...(note ? { note } : {}) };
    });
  } finally {
    pkg.close();
  }
}
