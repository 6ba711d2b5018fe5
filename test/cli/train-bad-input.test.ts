// Bad input to `mocc train`, `mocc recover` and `mocc eval` (issue 15 acceptance): each must end in
// ONE stderr line `mocc: …`, exit 1, and write nothing — no output package, no checkpoint directory
// (<output>.ckpt by default), no temporary directory beside them.
import test, { type ExecutionContext } from 'ava';
import { copyFileSync, mkdirSync, readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { mocc, tempDir } from '../helpers/cli.js';
import { userError } from '../helpers/cli-assert.js';
import { CHECKPOINTS, LLAMA2C_TOKENIZER, ROOT } from '../helpers/fixtures.js';
import { safetensorsBytes, tinyHfConfig, tinySafetensors } from '../helpers/tiny-models.js';

const DATA = `${ROOT}fixtures/tinystories/validation-head.txt`;
/** stories260K as llama2.c, its tokenizer tok512.bin found beside it; converted in memory to MoC K=32. */
const MOC = [CHECKPOINTS.llama2c, '--k', '32'];
const DENSE = CHECKPOINTS.llama2c;
/** Small enough that a run that wrongly started would finish quickly. */
const SMALL = ['--steps', '2', '--batch', '1', '--seq', '16'];

/** Runs `mocc <command> ...args -o <empty folder>/out`: a user error matching `what`, and the folder still empty. */
function refused(t: ExecutionContext, command: 'train' | 'recover', args: string[], what: RegExp): void {
  const parent = join(tempDir(t), 'out');
  mkdirSync(parent);
  userError(t, mocc(command, ...args, '-o', join(parent, 'pkg')), what);
  t.deepEqual(readdirSync(parent), [], 'no output, no checkpoint directory, no temporary left');
}

function file(t: ExecutionContext, name: string, bytes: string | Uint8Array): string {
  const f = join(tempDir(t), name);
  writeFileSync(f, bytes);
  return f;
}

/** A tiny HF checkpoint (test/helpers/tiny-models.ts): vocabulary 16, where stories260K has 512. */
function tinyTeacher(t: ExecutionContext): string {
  const dir = join(tempDir(t), 'tiny-hf');
  mkdirSync(dir);
  const st = tinySafetensors();
  writeFileSync(join(dir, 'config.json'), JSON.stringify(tinyHfConfig()));
  writeFileSync(join(dir, 'model.safetensors'), safetensorsBytes(JSON.stringify(st.header), st.data));
  return dir;
}

/**
 * stories260K.bin beside a tok512.bin whose pieces 300 and 301 are swapped: the same 512 tokens in
 * number, a different tokenizer. llama2.c tokenizer file: int32 max length, then per token
 * float32 score, int32 length, the bytes.
 */
function otherTokenizerModel(t: ExecutionContext): string {
  const src = readFileSync(LLAMA2C_TOKENIZER);
  const tokens: { score: Buffer; piece: Buffer }[] = [];
  for (let o = 4; o < src.length; ) {
    const len = src.readInt32LE(o + 4);
    tokens.push({ score: src.subarray(o, o + 4), piece: src.subarray(o + 8, o + 8 + len) });
    o += 8 + len;
  }
  if (tokens.length !== 512) throw new Error(`tok512.bin: ${tokens.length} tokens`);
  const [a, b] = [tokens[300]!.piece, tokens[301]!.piece];
  if (a.equals(b)) throw new Error('pieces 300 and 301 are equal');
  [tokens[300]!.piece, tokens[301]!.piece] = [b, a];
  const parts: Uint8Array[] = [src.subarray(0, 4)];
  for (const { score, piece } of tokens) {
    const len = Buffer.alloc(4);
    len.writeInt32LE(piece.length);
    parts.push(score, len, piece);
  }
  const dir = join(tempDir(t), 'other-tok');
  mkdirSync(dir);
  copyFileSync(CHECKPOINTS.llama2c, join(dir, 'stories260K.bin'));
  writeFileSync(join(dir, 'tok512.bin'), Buffer.concat(parts));
  return join(dir, 'stories260K.bin');
}

// ---------- the data ----------

test('train: an empty data file', (t) => {
  refused(t, 'train', [...MOC, '--data', file(t, 'empty.txt', ''), ...SMALL], /empty\.txt: data file is empty/);
});

test('train: a data file of random bytes', (t) => {
  let x = 12345;
  const bytes = Uint8Array.from({ length: 4096 }, () => ((x = (Math.imul(x, 1103515245) + 12345) >>> 0), x >>> 24));
  refused(t, 'train', [...MOC, '--data', file(t, 'random.txt', bytes), ...SMALL], /random\.txt: not UTF-8 text/);
});

test('train: a PNG named .txt', (t) => {
  const png = Buffer.concat([Buffer.from('89504e470d0a1a0a0000000d49484452', 'hex'), Buffer.alloc(64)]);
  refused(t, 'train', [...MOC, '--data', file(t, 'picture.txt', png), ...SMALL], /picture\.txt: not UTF-8 text.*PNG/);
});

test('train: text too short for one training window', (t) => {
  refused(t, 'train', [...MOC, '--data', file(t, 'short.txt', 'Hi.\n'), ...SMALL], /short\.txt: .*fewer than one training window/);
});

test('recover: an empty --data file', (t) => {
  refused(t, 'recover', [...MOC, '--teacher', DENSE, '--data', file(t, 'empty.txt', ''), '--sequences', '2', ...SMALL], /empty\.txt: data file is empty/);
});

test('eval: an empty data file', (t) => {
  userError(t, mocc('eval', ...MOC, '--data', file(t, 'empty.txt', '')), /empty\.txt: data file is empty/);
});

// ---------- sizes ----------

test('train, recover, eval: --seq above the model\'s context (512)', (t) => {
  refused(t, 'train', [...MOC, '--data', DATA, '--steps', '1', '--batch', '1', '--seq', '513'], /--seq 513 is above the model's context length 512/);
  refused(t, 'recover', [...MOC, '--teacher', DENSE, '--steps', '1', '--batch', '1', '--seq', '513'], /--seq 513 is above the .*context length 512/);
  userError(t, mocc('eval', ...MOC, '--data', DATA, '--seq', '513'), /--seq 513 is above the model's context length 512/);
});

test('train, recover: a batch whose planned activations are above --max-memory', (t) => {
  refused(t, 'train', [...MOC, '--data', DATA, ...SMALL, '--max-memory', '1KiB'], /one step of --batch 1 --seq 16 plans .* of activations, above --max-memory 1\.0 KiB/);
  refused(t, 'recover', [...MOC, '--teacher', DENSE, '--sequences', '2', ...SMALL, '--max-memory', '1KiB'], /plans .* of activations, above --max-memory 1\.0 KiB/);
  refused(t, 'train', [...MOC, '--data', DATA, ...SMALL, '--max-memory', 'lots'], /--max-memory must be a size/);
});

// ---------- the teacher ----------

test('recover, eval --teacher: a teacher whose vocabulary differs (16 tokens, the student 512)', (t) => {
  const teacher = tinyTeacher(t);
  const what = /the teacher .*tiny-hf has a vocabulary of 16 tokens, the model 512/;
  refused(t, 'recover', [...MOC, '--teacher', teacher, '--sequences', '2', ...SMALL], what);
  userError(t, mocc('eval', ...MOC, '--data', DATA, '--teacher', teacher), what);
  // with --tokenizer given (it applies to both), the HF student: the same refusal
  refused(t, 'recover', [CHECKPOINTS.hf, '--k', '32', '--tokenizer', LLAMA2C_TOKENIZER, '--teacher', teacher, '--sequences', '2', ...SMALL], what);
});

test('recover, eval --teacher: a teacher with as many tokens but a different tokenizer', (t) => {
  const student = otherTokenizerModel(t);
  const what = /the teacher .*stories260K\.bin has a different tokenizer from the model's/;
  refused(t, 'recover', [student, '--k', '32', '--teacher', DENSE, '--sequences', '2', ...SMALL], what);
  userError(t, mocc('eval', student, '--k', '32', '--data', DATA, '--teacher', DENSE), what);
});

test('recover: a dense student', (t) => {
  refused(t, 'recover', [DENSE, '--teacher', DENSE, '--sequences', '2', ...SMALL], /stories260K\.bin is dense; recovery trains a MoC model/);
});

// ---------- options ----------

test('train: --trainable with a glob that matches no parameter', (t) => {
  refused(t, 'train', [...MOC, '--data', DATA, ...SMALL, '--trainable', 'layers.*.w_nothing'], /--trainable layers\.\*\.w_nothing selects no parameter/);
});

test('train: an unknown --ckpt policy', (t) => {
  refused(t, 'train', [...MOC, '--data', DATA, ...SMALL, '--ckpt', 'everything'], /'everything' is invalid.*none, gcp, moc, moc-gcp/);
});

test('train: --ckpt moc, moc-gcp and moc-gcp-attn on a dense model', (t) => {
  for (const policy of ['moc', 'moc-gcp', 'moc-gcp-attn']) {
    refused(t, 'train', [DENSE, '--data', DATA, ...SMALL, '--ckpt', policy], new RegExp(`checkpoint policy ${policy} needs a MoC model.*dense`));
  }
});

test('train, recover: an existing output without --force is refused and left as it was', (t) => {
  const parent = tempDir(t);
  const out = join(parent, 'existing');
  mkdirSync(out);
  writeFileSync(join(out, 'keep.txt'), 'precious');
  userError(t, mocc('train', ...MOC, '--data', DATA, ...SMALL, '-o', out), /existing already exists \(use --force to replace it\)/);
  userError(t, mocc('recover', ...MOC, '--teacher', DENSE, '--sequences', '2', ...SMALL, '-o', out), /existing already exists/);
  t.deepEqual(readdirSync(parent), ['existing'], 'no checkpoint directory, no temporary');
  t.deepEqual(readdirSync(out), ['keep.txt']);
  t.is(readFileSync(join(out, 'keep.txt'), 'utf8'), 'precious');
});

test('train, recover: the output is the data file, or inside the teacher', (t) => {
  const data = file(t, 'data.txt', readFileSync(DATA));
  userError(t, mocc('train', ...MOC, '--data', data, ...SMALL, '-o', data, '--force'), /output .*data\.txt is the input .*data\.txt/);
  t.deepEqual(readFileSync(data), readFileSync(DATA), 'the data file untouched');
  const teacher = tinyTeacher(t);
  userError(t, mocc('recover', ...MOC, '--teacher', teacher, ...SMALL, '-o', join(teacher, 'out')), /output .*tiny-hf.out is inside the input .*tiny-hf/);
  t.deepEqual(readdirSync(teacher).sort(), ['config.json', 'model.safetensors']);
});

test('train --resume: a checkpoint of another K, of other options, or none at all', (t) => {
  const dir = tempDir(t);
  const r = mocc('train', ...MOC, '--data', DATA, ...SMALL, '--save-every', '1', '-o', join(dir, 'k32'));
  t.is(r.code, 0, r.stderr);
  const ckpt = join(dir, 'k32.ckpt');
  refused(t, 'train', [CHECKPOINTS.llama2c, '--k', '16', '--data', DATA, ...SMALL, '--resume', ckpt], /the checkpoint was made for a model with other FFN channels kept \(K 32,32,32,32,32 there, K 16,16,16,16,16 now\)/);
  refused(t, 'train', [...MOC, '--data', DATA, '--steps', '2', '--batch', '2', '--seq', '16', '--resume', ckpt], /the checkpoint was made with different --batch \(1 there, 2 now\)/);
  refused(t, 'train', [...MOC, '--data', DATA, ...SMALL, '--resume', join(dir, 'nothing-here')], /nothing-here: cannot read training checkpoint/);
});

test('train: token-id --data without a tokenizer, but a text --eval: one line naming the missing tokenizer', (t) => {
  // The HF fixture has no tokenizer; token ids need none, the held-out text does (it crashed before).
  const ids = file(t, 'train.u16', new Uint8Array(new Uint16Array(Array.from({ length: 400 }, (_, i) => 1 + (i % 500))).buffer));
  refused(t, 'train', [CHECKPOINTS.hf, '--data', ids, '--eval', DATA, ...SMALL], /has no tokenizer.*give --tokenizer FILE/);
});
