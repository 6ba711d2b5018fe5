// What a path holds, judged by content (magic bytes and structure), not by its name: every command that
// opens a model asks here first, so a wrong guess never reaches an importer and its messages.
import { closeSync, existsSync, openSync, readdirSync, readSync, statSync } from 'node:fs';
import { extname, join } from 'node:path';
import { readLlama2cHeader } from './llama2c.js';
import { UserError } from '../util/errors.js';

export type FormatKind = 'package' | 'hf' | 'gguf' | 'safetensors-file' | 'onnx' | 'llama2c' | 'unknown';

export interface DetectedFormat {
  kind: FormatKind;
  /** Why, in words: what was seen (for 'unknown', what the path looks like instead). */
  why: string;
}

/** The formats mocc reads, for messages that must say so. */
export const READABLE_FORMATS = 'mocc reads mocc packages (manifest.json), Hugging Face directories (config.json + safetensors), GGUF files, ONNX LLaMA graphs and llama2.c .bin checkpoints';

/** Bytes read from the start of a file to judge it. */
const HEAD_BYTES = 64;

function head(path: string, n: number): Buffer {
  const fd = openSync(path, 'r');
  try {
    const b = Buffer.alloc(n);
    return b.subarray(0, readSync(fd, b, 0, n, 0));
  } finally {
    closeSync(fd);
  }
}

/** An ONNX ModelProto starts with field 1 (ir_version, a small varint: tag 0x08) and then a length-delimited field. */
function looksLikeOnnx(b: Buffer): boolean {
  return b.length >= 3 && b[0] === 0x08 && b[1]! >= 1 && b[1]! < 0x40 && (b[2]! & 0x07) === 2 && b[2]! >> 3 >= 2 && b[2]! >> 3 <= 20;
}

/** What a file that no format claimed looks like: empty, JSON, text (with its start), or binary (first bytes in hex). */
export function describeContent(b: Buffer, size: number): string {
  if (size === 0) return 'an empty file';
  // Only what was read is judged; a multi-byte character cut at its end does not make text binary.
  const whole = b.toString('utf8');
  const text = b.length < size ? whole.slice(0, -1) : whole;
  const printable = !text.includes('\uFFFD') && /^[\t\n\r\x20-\x7e\u00a0-\uffff]*$/u.test(text);
  if (printable) {
    const start = text.replace(/\s+/g, ' ').trim().slice(0, 24);
    if (/^\s*[{[]/.test(text)) return `JSON text, ${size} bytes, starting "${start}"`;
    return `UTF-8 text, ${size} bytes, starting "${start}"`;
  }
  return `binary data, ${size} bytes, starting ${[...b.subarray(0, 8)].map((x) => x.toString(16).padStart(2, '0')).join(' ')}`;
}

function detectDirectory(path: string): DetectedFormat {
  if (existsSync(join(path, 'manifest.json'))) return { kind: 'package', why: 'a directory with manifest.json' };
  if (existsSync(join(path, 'config.json'))) return { kind: 'hf', why: 'a directory with config.json' };
  const names = readdirSync(path);
  if (names.includes('weights.safetensors') || names.includes('model.mir')) {
    return { kind: 'unknown', why: 'looks like an incomplete mocc package (it has no manifest.json; convert it again)' };
  }
  const models = names.filter((n) => ['.gguf', '.bin', '.safetensors'].includes(extname(n).toLowerCase()));
  const hint = models.length > 0 ? ` (it holds ${models.slice(0, 3).join(', ')}${models.length > 3 ? ', …' : ''}: give a file itself)` : '';
  return { kind: 'unknown', why: `a directory with no manifest.json (mocc package) and no config.json (Hugging Face checkpoint)${hint}` };
}

/** Judges a path by its content. Throws a UserError only when the path cannot be read at all. */
export function detectFormat(path: string): DetectedFormat {
  if (!existsSync(path)) throw new UserError(`${path}: no such file or directory`);
  const st = statSync(path);
  if (st.isDirectory()) return detectDirectory(path);
  if (!st.isFile()) return { kind: 'unknown', why: 'not a regular file or directory' };
  let b: Buffer;
  try {
    b = head(path, HEAD_BYTES);
  } catch (e) {
    throw new UserError(`${path}: cannot read: ${(e as Error).message}`);
  }
  const ext = extname(path).toLowerCase();
  if (b.subarray(0, 4).toString('latin1') === 'GGUF') return { kind: 'gguf', why: 'GGUF magic' };
  if (b.length >= 9) {
    const n = b.readBigUInt64LE(0);
    if (n >= 2n && 8n + n <= BigInt(st.size) && b[8] === 0x7b /* { */) return { kind: 'safetensors-file', why: 'a safetensors header' };
  }
  if (looksLikeOnnx(b)) return { kind: 'onnx', why: 'an ONNX protobuf (ir_version first)' };
  // A sane llama2.c header: the importer then checks that it accounts for the file exactly, and says so.
  if (readLlama2cHeader(b)) return { kind: 'llama2c', why: 'a sane llama2.c header' };
  const named = ext === '.gguf' ? 'not a GGUF file (no GGUF magic); '
    : ext === '.safetensors' ? 'not a safetensors file (no valid header); '
      : ext === '.onnx' ? 'not an ONNX model; '
        : ext === '.bin' ? 'not a llama2.c checkpoint (no sane header); ' : '';
  return { kind: 'unknown', why: `${named}it looks like ${describeContent(b, st.size)}` };
}

/** The message for a path no importer reads. */
export function unreadableMessage(path: string, f: DetectedFormat): string {
  switch (f.kind) {
    case 'safetensors-file': return `${path}: a bare safetensors file; give the Hugging Face directory that holds it with its config.json`;
    case 'package': return `${path}: a mocc package, not a checkpoint (it is already converted; run, inspect or compile it)`;
    default: return `${path}: ${f.why}; ${READABLE_FORMATS}`;
  }
}
