// The --kv-cache export is a folder transformers.js (@huggingface/transformers, in Node, offline)
// loads as it is, model and tokenizer (the llama2.c tokenizer written as tokenizer.json), and its
// greedy text for the reference prompt, stories260K MoC K=32, is mocc's greedy text.
import test from 'ava';
import { basename, dirname, join } from 'node:path';
import { AutoModelForCausalLM, AutoTokenizer, env, type Tensor } from '@huggingface/transformers';
import { mocc, tempDir } from '../helpers/cli.js';
import { CHECKPOINTS, LLAMA2C_TOKENIZER, REF } from '../helpers/fixtures.js';

const NEW_TOKENS = 40;

for (const form of ['gather', 'masked'] as const) {
  test(`transformers.js loads the --kv-cache export (MoC K=32, ${form}) and decodes greedily as mocc does`, async (t) => {
    const dir = tempDir(t);
    const pkg = join(dir, 'pkg');
    t.is(mocc('convert', CHECKPOINTS.hf, '-o', pkg, '--k', '32', '--tokenizer', LLAMA2C_TOKENIZER).code, 0);
    const out = join(dir, 'k32-onnx');
    const e = mocc('export', pkg, '--format', 'onnx', '--kv-cache', '--form', form, '-o', out);
    t.is(e.code, 0, e.stderr);
    const r = mocc('run', pkg, '--prompt', REF.prompt, '--max-tokens', String(NEW_TOKENS));
    t.is(r.code, 0, r.stderr);
    t.true(r.stdout.endsWith('\n'));
    const want = r.stdout.slice(0, -1); // the prompt and its continuation; mocc run ends its output with a newline

    env.allowRemoteModels = false;
    env.localModelPath = dirname(out) + '/';
    const opts = { local_files_only: true } as const;
    const tokenizer = await AutoTokenizer.from_pretrained(basename(out), opts);
    const model = await AutoModelForCausalLM.from_pretrained(basename(out), { ...opts, dtype: 'fp32', device: 'cpu' });
    try {
      const inputs = tokenizer(REF.prompt);
      t.deepEqual(Array.from((inputs.input_ids as Tensor).data as BigInt64Array, Number), REF.prompt_ids);
      const gen = (await model.generate({ ...inputs, max_new_tokens: NEW_TOKENS, do_sample: false })) as Tensor;
      const ids = Array.from(gen.data as BigInt64Array, Number);
      t.true(ids.length >= REF.prompt_ids.length + NEW_TOKENS || ids.at(-1) === 2, `generated ${ids.length - REF.prompt_ids.length} tokens`);
      t.is(tokenizer.decode(ids, { skip_special_tokens: true }), want);
    } finally {
      await model.dispose();
    }
  });
}
