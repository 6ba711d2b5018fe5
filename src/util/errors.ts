// User-facing error text: the error class the CLI prints as one line, and helpers that put text taken
// from a file into a message safely (escaped, bounded), whatever the file holds.

/** Thrown for bad user input (bad files, bad flags): the CLI prints the message alone and exits 1. */
export class UserError extends Error {
  override name = 'UserError';
}

/** Longest quoted string or described value a message carries before it is cut with "…". */
const MAX_QUOTED = 80;

/**
 * A string from a file, quoted for a one-line message: JSON-style double quotes and escapes, every
 * control character (newlines included) and lone surrogate escaped, and at most `max` characters
 * of the original kept.
 */
export function quote(s: string, max = MAX_QUOTED): string {
  const cut = s.length > max;
  let out = '"';
  for (const ch of cut ? s.slice(0, max) : s) out += escapeChar(ch);
  return out + (cut ? '…"' : '"');
}

function escapeChar(ch: string): string {
  switch (ch) {
    case '"': return '\\"';
    case '\\': return '\\\\';
    case '\n': return '\\n';
    case '\r': return '\\r';
    case '\t': return '\\t';
  }
  const c = ch.codePointAt(0)!;
  // C0/C1 controls, line/paragraph separators, lone surrogates (a full pair arrives as one `ch`).
  if (c < 0x20 || (c >= 0x7f && c <= 0x9f) || c === 0x2028 || c === 0x2029 || (c >= 0xd800 && c <= 0xdfff)) {
    return `\\u${c.toString(16).padStart(4, '0')}`;
  }
  return ch;
}

/** A name as it can appear bare in a message: ASCII letters, digits and . _ - / : [ ] +, not too long. */
const PLAIN_NAME = /^[A-Za-z0-9._\-\/:\[\]+]{1,80}$/;

/**
 * A name from a file (tensor, metadata key, dtype) for a message: as is when it is plain, which real
 * names are, else quoted with `quote` (so an empty name, spaces, newlines or control bytes show).
 */
export function nameText(s: string): string {
  return PLAIN_NAME.test(s) ? s : quote(s);
}

/** Makes any text one line (control characters escaped), e.g. a library's error message that quotes the input. */
export function oneLine(s: string, max = 300): string {
  const q = quote(s, max);
  return q.slice(1, -1).replace(/\\"/g, '"');
}

/** How deep `describe` looks into arrays and objects before writing "…". */
const DESCRIBE_DEPTH = 3;

/**
 * A short JSON-like rendering of a value parsed from a file, for messages: at most DESCRIBE_DEPTH levels
 * and about `max` characters. Unlike JSON.stringify or String(), its recursion is bounded whatever the
 * value's depth, so a 10,000-level array cannot overflow the stack.
 */
export function describe(v: unknown, max = MAX_QUOTED): string {
  const s = render(v, DESCRIBE_DEPTH, max + 1);
  return s.length > max ? s.slice(0, max) + '…' : s;
}

/** Renders v, stopping once `budget` characters are written (the caller cuts the result). */
function render(v: unknown, depth: number, budget: number): string {
  if (v === null || v === undefined) return String(v);
  switch (typeof v) {
    case 'string': return quote(v, budget);
    case 'number': case 'boolean': return String(v);
    case 'bigint': return `${v}`;
    case 'object': break;
    default: return typeof v;
  }
  const isArray = Array.isArray(v);
  const [open, close] = isArray ? ['[', ']'] : ['{', '}'];
  const entries: Array<[string | null, unknown]> = isArray
    ? (v as unknown[]).slice(0, budget).map((x) => [null, x])
    : Object.keys(v as object).slice(0, budget).map((k) => [k, (v as Record<string, unknown>)[k]]);
  const total = isArray ? (v as unknown[]).length : entries.length;
  if (total === 0) return open + close;
  if (depth === 0) return `${open}…${close}`;
  let out = open;
  for (let i = 0; i < entries.length && out.length < budget; i++) {
    const [k, x] = entries[i]!;
    if (i > 0) out += ',';
    if (k !== null) out += quote(k, budget) + ':';
    out += render(x, depth - 1, budget - out.length);
  }
  if (out.length >= budget || entries.length < total) out += '…';
  return out + close;
}
