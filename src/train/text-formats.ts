// The two text data formats: plain text cut into documents, and JSONL (the Hugging Face datasets
// convention: one JSON object per line, the document in its `text` field).
import { describe, nameText, oneLine, UserError } from '../util/errors.js';

/** GPT-2's end-of-text marker, the separator OpenWebText-style dumps put between documents. */
export const END_OF_TEXT = '<|endoftext|>';

/**
 * Documents of a plain text: cut at every `<|endoftext|>` and every blank line (a line of only spaces
 * and tabs counts as blank), each trimmed, empty ones dropped. Line breaks inside a document stay.
 */
export function plainTextDocuments(text: string): string[] {
  return text
    .replace(/\r\n?/g, '\n')
    .split(END_OF_TEXT)
    .flatMap((part) => part.split(/\n[^\S\n]*\n/))
    .map((s) => s.trim())
    .filter((s) => s.length > 0);
}

/** Whether the first non-blank line is a JSON object: content detection for JSONL. */
export function looksLikeJsonl(text: string): boolean {
  const first = /^[^\S\n]*(\S.*)$/m.exec(text)?.[1];
  if (first === undefined || !first.startsWith('{')) return false;
  try {
    return isObject(JSON.parse(first));
  } catch {
    return false;
  }
}

/**
 * The `text` of every non-blank line, trimmed (as llama2.c's TinyStories pretokenizer strips each
 * story); a blank `text` is skipped, as a blank block of plain text is. A line that is not a JSON
 * object with a string `text` is a UserError naming its line number.
 */
export function jsonlTexts(path: string, text: string): string[] {
  const out: string[] = [];
  const lines = text.split('\n');
  for (let i = 0; i < lines.length; i++) {
    const line = lines[i]!;
    if (line.trim() === '') continue;
    const where = `${path}: line ${i + 1}`;
    let v: unknown;
    try {
      v = JSON.parse(line);
    } catch (e) {
      throw new UserError(`${where}: not valid JSON (${oneLine((e as Error).message, 120)}); JSONL data needs one JSON object per line`);
    }
    if (!isObject(v)) throw new UserError(`${where}: expected a JSON object with a "text" field, got ${describe(v)}`);
    if (!Object.hasOwn(v, 'text')) {
      const keys = Object.keys(v);
      const has = keys.length === 0 ? 'an empty object' : `keys ${keys.slice(0, 6).map(nameText).join(', ')}${keys.length > 6 ? ', …' : ''}`;
      throw new UserError(`${where}: no "text" field (${has}); JSONL data needs a string "text" on every line`);
    }
    const t = v['text'];
    if (typeof t !== 'string') throw new UserError(`${where}: "text" is ${describe(t)}, not a string`);
    const trimmed = t.trim();
    if (trimmed.length > 0) out.push(trimmed);
  }
  return out;
}

function isObject(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}
