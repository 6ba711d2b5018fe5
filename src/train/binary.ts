// Telling text from binary data, and saying what a binary data file looks like (for one-line errors).
import { isUtf8 } from 'node:buffer';

/** Offset of the first byte that breaks UTF-8 (bad lead/continuation byte, overlong, surrogate, > U+10FFFF, cut short), or -1. */
export function firstInvalidUtf8(b: Uint8Array): number {
  if (isUtf8(b)) return -1; // native and fast; the walk below only finds where
  for (let i = 0; i < b.length;) {
    const c = b[i]!;
    if (c < 0x80) { i++; continue; }
    let n: number, min: number;
    if (c >= 0xc2 && c <= 0xdf) { n = 1; min = 0x80; }
    else if (c >= 0xe0 && c <= 0xef) { n = 2; min = 0x800; }
    else if (c >= 0xf0 && c <= 0xf4) { n = 3; min = 0x10000; }
    else return i;
    let cp = c & (0x3f >> n);
    for (let k = 1; k <= n; k++) {
      const x = b[i + k];
      if (x === undefined || (x & 0xc0) !== 0x80) return i;
      cp = (cp << 6) | (x & 0x3f);
    }
    if (cp < min || cp > 0x10ffff || (cp >= 0xd800 && cp <= 0xdfff)) return i;
    i += n + 1;
  }
  return -1; // not reached when isUtf8 said no
}

/** How many bytes looksBinary examines: enough to judge, bounded for huge files. */
const SNIFF = 1 << 20;

/**
 * Valid UTF-8 can still be binary: token ids below 128 stored as uint16 are ASCII bytes and NULs.
 * Binary = a NUL byte, or more than 1% control bytes (other than tab, newline, CR, form feed,
 * vertical tab, escape) in the first MiB.
 */
export function looksBinary(b: Uint8Array): boolean {
  const n = Math.min(b.length, SNIFF);
  let control = 0;
  for (let i = 0; i < n; i++) {
    const c = b[i]!;
    if (c === 0) return true;
    if ((c < 0x20 && c !== 0x09 && c !== 0x0a && c !== 0x0b && c !== 0x0c && c !== 0x0d && c !== 0x1b) || c === 0x7f) control++;
  }
  return control > n / 100;
}

const MAGIC: Array<[number[], string]> = [
  [[0xff, 0xfe], 'a UTF-16 byte-order mark (convert the file to UTF-8)'],
  [[0xfe, 0xff], 'a UTF-16 byte-order mark (convert the file to UTF-8)'],
  [[0x1f, 0x8b], 'gzip-compressed data'],
  [[0x28, 0xb5, 0x2f, 0xfd], 'zstd-compressed data'],
  [[0x42, 0x5a, 0x68], 'bzip2-compressed data'],
  [[0xfd, 0x37, 0x7a, 0x58, 0x5a, 0x00], 'xz-compressed data'],
  [[0x50, 0x4b, 0x03, 0x04], 'a zip archive'],
  [[0x47, 0x47, 0x55, 0x46], 'a GGUF model file'],
  [[0x50, 0x41, 0x52, 0x31], 'a Parquet file (convert it to JSONL or text first)'],
  [[0x25, 0x50, 0x44, 0x46], 'a PDF'],
  [[0x89, 0x50, 0x4e, 0x47], 'a PNG image'],
  [[0x7f, 0x45, 0x4c, 0x46], 'an ELF executable'],
];

/** "binary data (gzip-compressed data; starts 1f 8b 08 00 …); …hint" — what the file looks like and what would work. */
export function describeBinary(b: Uint8Array): string {
  const known = MAGIC.find(([m]) => m.every((x, i) => b[i] === x))?.[1];
  const head = Array.from(b.subarray(0, 8), (x) => x.toString(16).padStart(2, '0')).join(' ') + (b.length > 8 ? ' …' : '');
  const n = Math.min(b.length, SNIFF);
  let nul = 0;
  for (let i = 0; i < n; i++) if (b[i] === 0) nul++;
  const what = [known, `starts ${head}`, nul > 0 ? `${nul} of the first ${n} bytes are NUL` : undefined].filter(Boolean).join('; ');
  return `binary data (${what}); data must be UTF-8 text, JSONL, or token ids in a file named *.u16 or *.u32`;
}
