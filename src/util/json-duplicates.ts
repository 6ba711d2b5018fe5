// Duplicate object keys in JSON text. JSON.parse keeps the last of two equal keys without a word, so a
// file that says two different things about one tensor would be read as whichever came last; this
// scanner finds such keys. Hand-written (about 40 lines) rather than a streaming-parser dependency:
// it runs after JSON.parse has accepted the text, so it only tracks nesting and keys, iteratively
// (an explicit stack: no recursion, whatever the nesting depth).

/** The first key that appears twice in one object of `text` (decoded), or undefined. `text` must be valid JSON. */
export function firstDuplicateKey(text: string): string | undefined {
  // One frame per open container: the keys seen so far for an object, null for an array.
  const stack: Array<Set<string> | null> = [];
  let expectKey = false;
  for (let i = 0; i < text.length; i++) {
    const c = text.charCodeAt(i);
    if (c === 0x7b /* { */) {
      stack.push(new Set());
      expectKey = true;
    } else if (c === 0x5b /* [ */) {
      stack.push(null);
      expectKey = false;
    } else if (c === 0x7d /* } */ || c === 0x5d /* ] */) {
      stack.pop();
      expectKey = false;
    } else if (c === 0x2c /* , */) {
      expectKey = stack[stack.length - 1] instanceof Set;
    } else if (c === 0x22 /* " */) {
      const start = i;
      for (i++; text.charCodeAt(i) !== 0x22; i++) if (text.charCodeAt(i) === 0x5c /* \ */) i++;
      if (expectKey) {
        const raw = text.slice(start, i + 1);
        const key = raw.includes('\\') ? (JSON.parse(raw) as string) : raw.slice(1, -1);
        const keys = stack[stack.length - 1] as Set<string>;
        if (keys.has(key)) return key;
        keys.add(key);
        expectKey = false;
      }
    }
  }
  return undefined;
}
