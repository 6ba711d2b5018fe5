// Every command that writes (convert, compile, logits) goes through src/util/atomic-output.ts: it never
// deletes or overwrites an input, leaves nothing behind when it fails, and --force replaces only an
// unrelated existing output. Issue 13 item 1: `compile --force -o <folder holding the package>` used
// to delete the folder, the package with it, and then fail.
import test, { type ExecutionContext } from 'ava';
import { copyFileSync, existsSync, mkdirSync, readdirSync, readFileSync, statSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { mocc, tempDir } from '../helpers/cli.js';
import { userError } from '../helpers/cli-assert.js';
import { CHECKPOINTS, LLAMA2C_TOKENIZER } from '../helpers/fixtures.js';

/** A folder holding a converted package `pkg` (and nothing else). */
function folderWithPackage(t: ExecutionContext): { dir: string; pkg: string } {
  const dir = join(tempDir(t), 'work');
  const pkg = join(dir, 'pkg');
  const r = mocc('convert', CHECKPOINTS.gguf, '-o', pkg, '--k', '32');
  if (r.code !== 0) throw new Error(r.stderr);
  return { dir, pkg };
}

function packageIntact(t: ExecutionContext, dir: string, pkg: string): void {
  t.deepEqual(readdirSync(dir), ['pkg'], 'the folder holds the package and nothing else (no temporary)');
  for (const f of ['manifest.json', 'model.mir', 'weights.safetensors', 'tokenizer.bin']) t.true(existsSync(join(pkg, f)), `${f} still there`);
  // and it still runs
  const r = mocc('run', pkg, '--tokens', '1,403', '--max-tokens', '2');
  t.true(r.code === 0, r.stderr);
}

for (const target of ['wgsl', 'cuda']) {
  test(`compile --target ${target} --force -o <folder holding the package>: refused, the package intact`, (t) => {
    const { dir, pkg } = folderWithPackage(t);
    userError(t, mocc('compile', pkg, '--target', target, '-o', dir, '--force'), /output .*work contains the input .*pkg; choose an output path outside the inputs/);
    packageIntact(t, dir, pkg);
    userError(t, mocc('compile', pkg, '--target', target, '-o', pkg, '--force'), /output .*pkg is the input/);
    packageIntact(t, dir, pkg);
    userError(t, mocc('compile', pkg, '--target', target, '-o', join(pkg, 'web')), /output .*web is inside the input .*pkg/);
    packageIntact(t, dir, pkg);
  });
}

test('compile of a checkpoint file into the folder that holds it: refused, the checkpoint intact', (t) => {
  const dir = join(tempDir(t), 'ck');
  mkdirSync(dir);
  const gguf = join(dir, 'model.gguf');
  copyFileSync(CHECKPOINTS.gguf, gguf);
  userError(t, mocc('compile', gguf, '--target', 'cuda', '-o', dir, '--force'), /contains the input .*model\.gguf/);
  t.is(statSync(gguf).size, statSync(CHECKPOINTS.gguf).size);
});

test('compile that fails while writing leaves no output and no temporary', (t) => {
  const parent = join(tempDir(t), 'out');
  mkdirSync(parent);
  // The HF fixture has no tokenizer, which the web bundle needs: it fails inside the writer.
  userError(t, mocc('compile', CHECKPOINTS.hf, '--target', 'wgsl', '-o', join(parent, 'web')), /no tokenizer/);
  t.deepEqual(readdirSync(parent), []);
});

test('compile --force replaces an unrelated existing output; without --force it is refused and untouched', (t) => {
  const out = join(tempDir(t), 'ptx-out');
  mkdirSync(out);
  writeFileSync(join(out, 'stale.txt'), 'old');
  userError(t, mocc('compile', CHECKPOINTS.gguf, '--target', 'cuda', '-o', out), /already exists \(use --force/);
  t.deepEqual(readdirSync(out), ['stale.txt']);
  const r = mocc('compile', CHECKPOINTS.gguf, '--target', 'cuda', '-o', out, '--force');
  t.is(r.code, 0, r.stderr);
  t.false(existsSync(join(out, 'stale.txt')));
  t.true(existsSync(join(out, 'launch.json')));
});

test('logits: refuses to overwrite its model or tokenizer even with --force; -o and --out both work', (t) => {
  const dir = join(tempDir(t), 'l');
  mkdirSync(dir);
  const bin = join(dir, 'model.bin');
  const tok = join(dir, 'tok.bin');
  copyFileSync(CHECKPOINTS.llama2c, bin);
  copyFileSync(LLAMA2C_TOKENIZER, tok);
  const before = readFileSync(bin);
  userError(t, mocc('logits', bin, '--tokens', '1,403', '-o', bin, '--force'), /output .*model\.bin is the input/);
  userError(t, mocc('logits', bin, '--prompt', 'Once', '--tokenizer', tok, '--out', tok, '--force'), /output .*tok\.bin is the input/);
  t.deepEqual(readFileSync(bin), before);
  t.is(statSync(tok).size, statSync(LLAMA2C_TOKENIZER).size);
  // the same output through either spelling; an existing unrelated file is replaced with --force
  const out = join(dir, 'logits.f32');
  writeFileSync(out, 'old');
  t.is(mocc('logits', bin, '--tokens', '1,403', '-o', out, '--force').code, 0);
  t.is(statSync(out).size, 2 * 512 * 4);
  t.is(mocc('logits', bin, '--tokens', '1,403,407', '--output', out, '--force').code, 0);
  t.is(statSync(out).size, 3 * 512 * 4);
  t.is(mocc('logits', bin, '--tokens', '1', '--out', out, '--force').code, 0);
  t.is(statSync(out).size, 1 * 512 * 4);
  userError(t, mocc('logits', bin, '--tokens', '1', '-o', out, '--out', join(dir, 'other.f32')), /give the output file once/);
  userError(t, mocc('logits', bin, '--tokens', '1'), /give the output file: -o FILE/);
  // a directory is not replaced by a file
  const d = join(dir, 'adir');
  mkdirSync(d);
  userError(t, mocc('logits', bin, '--tokens', '1', '-o', d, '--force'), /adir is a directory.*writes a file/);
  t.true(statSync(d).isDirectory());
  t.deepEqual(readdirSync(dir).sort(), ['adir', 'logits.f32', 'model.bin', 'tok.bin'], 'no temporary left');
});

test('logits that fails leaves no output file', (t) => {
  const dir = tempDir(t);
  userError(t, mocc('logits', CHECKPOINTS.gguf, '--tokens', '1,9999', '-o', join(dir, 'l.f32')), /outside the vocabulary/);
  t.deepEqual(readdirSync(dir), []);
});

test('convert refuses to replace the tokenizer file it reads (beside a llama2.c checkpoint)', (t) => {
  const dir = join(tempDir(t), 'l2c');
  mkdirSync(dir);
  copyFileSync(CHECKPOINTS.llama2c, join(dir, 'model.bin'));
  copyFileSync(LLAMA2C_TOKENIZER, join(dir, 'tokenizer.bin'));
  userError(t, mocc('convert', join(dir, 'model.bin'), '-o', join(dir, 'tokenizer.bin'), '--force'), /tokenizer\.bin is the input/);
  t.is(statSync(join(dir, 'tokenizer.bin')).size, statSync(LLAMA2C_TOKENIZER).size);
  // beside the checkpoint is fine: the folder is not an input
  t.is(mocc('convert', join(dir, 'model.bin'), '-o', join(dir, 'pkg')).code, 0);
  t.deepEqual(readdirSync(dir).sort(), ['model.bin', 'pkg', 'tokenizer.bin']);
  // inside an HF checkpoint directory is not
  const hf = join(tempDir(t), 'hf');
  mkdirSync(hf);
  for (const f of readdirSync(CHECKPOINTS.hf)) copyFileSync(join(CHECKPOINTS.hf, f), join(hf, f));
  userError(t, mocc('convert', hf, '-o', join(hf, 'moc')), /moc is inside the input/);
  t.false(existsSync(join(hf, 'moc')));
});
