// Opens a model package written by writePackage: the manifest, the IR, lazily-read weights, the tokenizer.
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, nameText, oneLine, UserError } from '../util/errors.js';
import { readSafetensorsHeader } from '../import/safetensors.js';
import type { TensorSource } from '../import/tensor.js';
import { parseGraph } from '../ir/parse.js';
import type { Graph } from '../ir/types.js';
import { verifyGraph } from '../ir/verify.js';
import { tokenizerFromSerialized } from '../tokenizer/load.js';
import type { Tokenizer } from '../tokenizer/tokenizer.js';
import { PACKAGE_FORMAT, PACKAGE_FORMAT_VERSION, type Manifest } from './manifest.js';

export interface OpenedPackage {
  dir: string;
  manifest: Manifest;
  graph: Graph;
  weights: Map<string, TensorSource>;
  tokenizer?: Tokenizer;
  close(): void;
}

export function openPackage(dir: string): OpenedPackage {
  let manifest: Manifest;
  try {
    manifest = JSON.parse(readFileSync(join(dir, 'manifest.json'), 'utf8')) as Manifest;
  } catch (e) {
    throw new UserError(`${dir}: unreadable manifest.json: ${oneLine((e as Error).message)}`);
  }
  if (manifest.format !== PACKAGE_FORMAT) throw new UserError(`${dir}: manifest.json is not a mocc package manifest`);
  if (manifest.formatVersion === 1) {
    throw new UserError(`${dir}: package format version 1 (an older mocc's IR); convert the checkpoint again with this mocc`);
  }
  if (manifest.formatVersion !== PACKAGE_FORMAT_VERSION) {
    throw new UserError(`${dir}: package format version ${describe(manifest.formatVersion)}; this mocc reads version ${PACKAGE_FORMAT_VERSION}`);
  }
  let graph: Graph;
  try {
    graph = parseGraph(readFileSync(join(dir, manifest.ir), 'utf8'));
    verifyGraph(graph);
  } catch (e) {
    throw new UserError(`${dir}/${typeof manifest.ir === 'string' ? nameText(manifest.ir) : describe(manifest.ir)}: ${oneLine((e as Error).message)}`);
  }
  const st = readSafetensorsHeader(join(dir, manifest.weights.file));
  for (const w of graph.params) {
    const t = st.tensors.get(w.name);
    if (!t) {
      st.file.close();
      throw new UserError(`${dir}: weight ${w.name} named in the IR is missing from ${manifest.weights.file}`);
    }
    if (t.dtype !== w.type.dtype || t.shape.join(',') !== w.type.shape.join(',')) {
      st.file.close();
      throw new UserError(`${dir}: weight ${w.name} is ${t.dtype}[${t.shape}] in ${manifest.weights.file} but ${w.type.dtype}[${w.type.shape}] in the IR`);
    }
  }
  let tokenizer: Tokenizer | undefined;
  if (manifest.tokenizer) {
    const file = join(dir, manifest.tokenizer.file);
    tokenizer = tokenizerFromSerialized(manifest.tokenizer.file, readFileSync(file), {
      vocabSize: manifest.config.vocabSize, bosId: manifest.config.bosId, eosId: manifest.config.eosId,
    });
  }
  return { dir, manifest, graph, weights: st.tensors, ...(tokenizer ? { tokenizer } : {}), close: () => st.file.close() };
}
