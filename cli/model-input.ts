// The model options that `run`, `logits` and `compile` share, and the prompt options of `run` and `logits`.
import type { Command } from 'commander';
import { UserError } from '../src/util/errors.js';
import { loadModel, type LoadedModel } from '../driver/load.js';
import { getTarget, checkSupported, TARGETS } from '../targets/index.js';
import type { ModelSession } from '../targets/target.js';
import { addSelectionOptions, noteKRatio, parseTokenList, selectionFromFlags, type SelectionFlags } from './common.js';

export interface ModelFlags extends SelectionFlags {
  tokenizer?: string;
}

export interface ModelInputFlags extends ModelFlags {
  prompt?: string;
  tokens?: number[];
  target: string;
}

/** --tokenizer and the selection flags (which convert a checkpoint in memory). */
export function addModelOptions(cmd: Command): Command {
  cmd.option('--tokenizer <file>', 'tokenizer.json or llama2.c tokenizer.bin (overrides the one found with the model)');
  return addSelectionOptions(cmd, 'checkpoints only, converted in memory; default: the checkpoint\'s own MoC selection (an exported MoC ONNX), else dense');
}

export function addModelInputOptions(cmd: Command): Command {
  cmd
    .option('--prompt <text>', 'prompt text (needs a tokenizer)')
    .option('--tokens <ids>', 'prompt as comma-separated token ids (no tokenizer needed)', parseTokenList)
    .option('--target <name>', `where to run: ${[...TARGETS.keys()].join(', ')}`, 'ref');
  return addModelOptions(cmd);
}

export async function openForRun(path: string, f: ModelInputFlags): Promise<{ model: LoadedModel; session: ModelSession; prompt: number[] }> {
  if ((f.prompt === undefined) === (f.tokens === undefined)) throw new UserError('give exactly one of --prompt TEXT or --tokens IDS');
  const target = getTarget(f.target);
  const model = loadModel(path, { selection: selectionFromFlags(f), ...(f.tokenizer ? { tokenizer: f.tokenizer } : {}) });
  try {
    noteKRatio(f, model.spec.dFfn);
    checkSupported(target, model);
    let prompt: number[];
    if (f.tokens) {
      prompt = f.tokens;
      const bad = prompt.find((t) => t >= model.spec.vocabSize);
      if (bad !== undefined) throw new UserError(`token id ${bad} is outside the vocabulary (0..${model.spec.vocabSize - 1})`);
    } else {
      if (!model.tokenizer) throw new UserError(`${model.source} has no tokenizer${model.tokenizerSearch ? ` (${model.tokenizerSearch})` : ''}: give --tokenizer FILE, or the prompt as --tokens`);
      prompt = model.tokenizer.encode(f.prompt!);
    }
    if (prompt.length > model.spec.maxSeqLen) throw new UserError(`the prompt has ${prompt.length} tokens; the model's context is ${model.spec.maxSeqLen}`);
    return { model, session: await target.createSession(model), prompt };
  } catch (e) {
    model.close();
    throw e;
  }
}
