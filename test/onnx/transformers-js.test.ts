// The --kv-cache export is a folder transformers.js (@huggingface/transformers, in Node, offline)
// loads as it is, and its greedy decoding of stories260K MoC K=32 gives the same tokens as mocc's.
// Token ids, not text: the fixture's tokenizer is llama2.c's, which the export does not turn into a
// tokenizer.json yet.
import test from 'ava';
import { basename, dirname, join } from 'node:path';
import { AutoModelForCausalLM, env, Tensor } from '@huggingface/transformers';
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
    const prompt = REF.prompt_ids;
    const r = mocc('run', pkg, '--tokens', prompt.join(','), '--max-tokens', String(NEW_TOKENS));
    t.is(r.code, 0, r.stderr);
    const want = r.stdout.trim().split(/\s+/).map(Number);

    env.allowRemoteModels = false;
    env.localModelPath = dirname(out) + '/';
    const model = await AutoModelForCausalLM.from_pretrained(basename(out), { local_files_only: true, dtype: 'fp32', device: 'cpu' });
    try {
      const ids = new Tensor('int64', BigInt64Array.from(prompt.map(BigInt)), [1, prompt.length]);
      const gen = (await model.generate({ input_ids: ids, max_new_tokens: NEW_TOKENS, do_sample: false })) as Tensor;
      const got = Array.from(gen.data as BigInt64Array, Number);
      t.deepEqual(got, want.slice(0, got.length));
      t.true(got.length >= prompt.length + NEW_TOKENS || got.at(-1) === 2, `generated ${got.length - prompt.length} tokens`);
    } finally {
      await model.dispose();
    }
  });
}
