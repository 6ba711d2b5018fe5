// Formats are told apart by content (src/import/detect.ts), and a path no format claims gets a message
// that says what it looks like and which formats mocc reads (issue 13 item 3). Each misleading message
// the issue quotes has a test here with the new one.
import test from 'ava';
import { copyFileSync, mkdirSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { llama2cImpliedSize, readLlama2cHeader } from '../../src/import/llama2c.js';
import { mocc, tempDir } from '../helpers/cli.js';
import { userError } from '../helpers/cli-assert.js';
import { CHECKPOINTS, FIX, ROOT } from '../helpers/fixtures.js';

const READS = /mocc reads mocc packages \(manifest\.json\), Hugging Face directories \(config\.json \+ safetensors\), GGUF files, ONNX LLaMA graphs and llama2\.c \.bin checkpoints$/;

test('a text file named .gguf: not GGUF, looks like text (was: "too short for a llama2.c checkpoint")', (t) => {
  const p = join(tempDir(t), 'model.gguf');
  writeFileSync(p, 'not really a model\n');
  for (const cmd of [['inspect', p], ['run', p, '--tokens', '1'], ['convert', p, '-o', join(tempDir(t), 'pkg')]]) {
    const r = mocc(...cmd);
    userError(t, r, /model\.gguf: not a GGUF file \(no GGUF magic\); it looks like UTF-8 text, 19 bytes, starting "not really a model"; mocc reads/);
    t.regex(r.stderr.trimEnd(), READS);
    t.notRegex(r.stderr, /llama2\.c checkpoint \(|too short/);
  }
});

test('inspect README.md: says it is text, prints no header numbers (was: garbage dim=… from the llama2.c reader)', (t) => {
  const r = mocc('inspect', join(ROOT, 'README.md'));
  userError(t, r, /README\.md: it looks like UTF-8 text, \d+ bytes, starting "# mocc — the Mixture-of-"; mocc reads/);
  t.is(r.stdout, '');
  t.notRegex(r.stderr, /dim=|hidden=/);
});

test('a package without manifest.json is called an incomplete package (was: "no config.json")', (t) => {
  const pkg = join(tempDir(t), 'pkg');
  t.is(mocc('convert', CHECKPOINTS.gguf, '-o', pkg, '--k', '32').code, 0);
  const m = join(pkg, 'manifest.json');
  t.is(mocc('inspect', pkg).code, 0, 'control: the whole package opens');
  rmSync(m);
  const r = mocc('inspect', pkg);
  userError(t, r, /pkg: looks like an incomplete mocc package \(it has no manifest\.json; convert it again\)/);
  t.notRegex(r.stderr, /config\.json\)?;? *$/m);
});

test('other content: empty, JSON, binary junk; an empty directory; a directory holding a model file', (t) => {
  const dir = tempDir(t);
  const cases: Array<[string, string | Uint8Array, RegExp]> = [
    ['empty.bin', '', /empty\.bin: not a llama2\.c checkpoint \(no sane header\); it looks like an empty file; mocc reads/],
    ['conf.json', '{"hidden_size": 64}', /conf\.json: it looks like JSON text, 19 bytes, starting "\{"hidden_size": 64\}"; mocc reads/],
    ['junk.dat', new Uint8Array([0xde, 0xad, 0xbe, 0xef, 0xff, 0x00, 0x01, 0x02, 0x03, 0x04]), /junk\.dat: it looks like binary data, 10 bytes, starting de ad be ef ff 00 01 02; mocc reads/],
  ];
  for (const [name, bytes, what] of cases) {
    writeFileSync(join(dir, name), bytes);
    userError(t, mocc('inspect', join(dir, name)), what);
  }
  const empty = join(dir, 'emptydir');
  mkdirSync(empty);
  userError(t, mocc('inspect', empty), /emptydir: a directory with no manifest\.json \(mocc package\) and no config\.json \(Hugging Face checkpoint\); mocc reads/);
  userError(t, mocc('inspect', join(FIX, 'gguf')), /no config\.json \(Hugging Face checkpoint\) \(it holds (?:[^)]*, )?stories260K\.gguf(?:, [^)]*)?: give a file itself\)/);
});

test('ONNX by content, not by name; a bare safetensors file; a package given to convert', (t) => {
  const dir = tempDir(t);
  const onnx = join(dir, 'renamed.bin');
  copyFileSync(join(FIX, 'onnx/model.onnx'), onnx);
  // Read as ONNX (its weights file is not beside the copy): the ONNX importer's message, not 'unknown format'.
  userError(t, mocc('inspect', onnx), /renamed\.bin: initializer .*external data file .*model\.onnx\.data does not exist/);
  userError(t, mocc('inspect', join(CHECKPOINTS.hf, 'model.safetensors')), /a bare safetensors file; give the Hugging Face directory that holds it with its config\.json/);
  const pkg = join(dir, 'pkg');
  t.is(mocc('convert', CHECKPOINTS.gguf, '-o', pkg, '--k', '32').code, 0);
  userError(t, mocc('convert', pkg, '-o', join(dir, 'again')), /pkg: a mocc package, not a checkpoint/);
});

test('checkpoints open by content whatever their names', (t) => {
  const dir = tempDir(t);
  const gguf = join(dir, 'weights.bin');
  const l2c = join(dir, 'model.dat');
  copyFileSync(CHECKPOINTS.gguf, gguf);
  copyFileSync(CHECKPOINTS.llama2c, l2c);
  t.regex(mocc('inspect', gguf).stdout, /^gguf checkpoint /);
  t.regex(mocc('inspect', l2c).stdout, /^llama2c checkpoint /);
});

test('llama2.c: the header must account for the file', (t) => {
  // The fixture's size is independent of our arithmetic: the header's implied size must equal it.
  const hdr = readFileSync(CHECKPOINTS.llama2c).subarray(0, 28);
  t.is(llama2cImpliedSize(readLlama2cHeader(hdr)!), statSync(CHECKPOINTS.llama2c).size);
  const p = join(tempDir(t), 'padded.bin');
  writeFileSync(p, Buffer.concat([readFileSync(CHECKPOINTS.llama2c), Buffer.alloc(4096)]));
  userError(t, mocc('inspect', p), /padded\.bin: not a llama2\.c v0 checkpoint: the header \(dim=64 .*\) implies 1056540 bytes, the file has 1060636$/);
});
