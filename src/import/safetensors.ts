// safetensors: a little-endian u64 header length, a JSON header, then the raw tensor bytes.
// Reading touches only the header; tensors are read lazily by offset (FileTensor).
// Writing streams: the header is computed from the entries up front, then each entry emits its bytes.
import { closeSync, openSync, statSync, unlinkSync, writeSync } from 'node:fs';
import { bytesFor } from '../util/dtype.js';
import { describe, nameText, oneLine, UserError } from '../util/errors.js';
import { firstDuplicateKey } from '../util/json-duplicates.js';
import { elementCount, FileHandle, FileTensor } from './tensor.js';

export type SafetensorsDType = 'f32' | 'f16' | 'bf16';

// A Map, not an object literal: a dtype string from the file such as "constructor" must not find Object.prototype's.
const FROM_ST = new Map<string, SafetensorsDType>([['F32', 'f32'], ['F16', 'f16'], ['BF16', 'bf16']]);
const TO_ST: Record<SafetensorsDType, string> = { f32: 'F32', f16: 'F16', bf16: 'BF16' };

/** More dimensions than any model tensor has; a longer shape is corrupt (and would make messages long). */
const MAX_DIMS = 8;

/** Headers larger than this are refused (real ones are well under 1 MB even for 100B-parameter shards). */
const MAX_HEADER_BYTES = 100_000_000;

export interface SafetensorsFile {
  file: FileHandle;
  /** Tensor name → lazily-read tensor, in header order. */
  tensors: Map<string, FileTensor>;
  /** The header's __metadata__ (string → string), empty when absent. */
  metadata: Record<string, string>;
}

function isNonNegInt(v: unknown): v is number {
  return typeof v === 'number' && Number.isSafeInteger(v) && v >= 0;
}

/** Reads and validates the header of a .safetensors file; never reads tensor data. */
export function readSafetensorsHeader(path: string): SafetensorsFile {
  let size: number;
  try {
    const st = statSync(path);
    if (!st.isFile()) throw new UserError(`${path}: not a regular file`);
    size = st.size;
  } catch (e) {
    if (e instanceof UserError) throw e;
    throw new UserError(`${path}: cannot open safetensors file (${(e as NodeJS.ErrnoException).code ?? (e as Error).message})`);
  }
  const fail = (msg: string): never => {
    throw new UserError(`${path}: ${msg}`);
  };
  if (size < 8) fail(`truncated safetensors file (${size} bytes, shorter than the 8-byte header length)`);

  const file = new FileHandle(path, size);
  try {
    const lenBytes = file.read(0, 8);
    const headerLen64 = new DataView(lenBytes.buffer, lenBytes.byteOffset, 8).getBigUint64(0, true);
    if (headerLen64 > BigInt(MAX_HEADER_BYTES)) {
      fail(`safetensors header length ${headerLen64} is absurdly large (limit ${MAX_HEADER_BYTES} bytes); not a safetensors file?`);
    }
    const headerLen = Number(headerLen64);
    if (8 + headerLen > size) {
      fail(`safetensors header length ${headerLen} goes beyond the end of the file (${size} bytes); file truncated or not safetensors`);
    }
    const headerText = new TextDecoder('utf-8', { fatal: false }).decode(file.read(8, headerLen));
    let header: unknown;
    try {
      header = JSON.parse(headerText);
    } catch (e) {
      fail(`safetensors header is not valid JSON (${oneLine((e as Error).message)})`);
    }
    if (typeof header !== 'object' || header === null || Array.isArray(header)) {
      fail(`safetensors header is not a JSON object`);
    }
    const dup = firstDuplicateKey(headerText);
    if (dup !== undefined) fail(`safetensors header has the key ${describe(dup)} twice in one object (which one applies is ambiguous)`);
    const dataStart = 8 + headerLen;
    const dataSize = size - dataStart;
    const tensors = new Map<string, FileTensor>();
    const metadata: Record<string, string> = {};
    const ranges: Array<{ name: string; begin: number; end: number }> = [];

    for (const [name, info] of Object.entries(header as Record<string, unknown>)) {
      if (name === '__metadata__') {
        if (typeof info !== 'object' || info === null || Array.isArray(info)) fail(`__metadata__ is not an object`);
        for (const [k, v] of Object.entries(info as Record<string, unknown>)) {
          if (typeof v !== 'string') fail(`__metadata__ entry ${describe(k)} is not a string`);
          metadata[k] = v as string;
        }
        continue;
      }
      const tn = nameText(name);
      if (typeof info !== 'object' || info === null || Array.isArray(info)) fail(`tensor ${tn}: header entry is not an object`);
      const { dtype, shape, data_offsets: offs } = info as { dtype?: unknown; shape?: unknown; data_offsets?: unknown };
      if (typeof dtype !== 'string') fail(`tensor ${tn} has no dtype`);
      const dt = FROM_ST.get(dtype as string);
      if (!dt) fail(`tensor ${tn} has dtype ${nameText(dtype as string)}, supported: F32, F16, BF16`);
      if (!Array.isArray(shape) || shape.length > MAX_DIMS || !shape.every(isNonNegInt)) {
        fail(`tensor ${tn} has shape ${describe(shape)}, expected a list of at most ${MAX_DIMS} non-negative integers`);
      }
      if (!Array.isArray(offs) || offs.length !== 2 || !isNonNegInt(offs[0]) || !isNonNegInt(offs[1]) || offs[0] > offs[1]) {
        fail(`tensor ${tn} has data_offsets ${describe(offs)}, expected [begin, end] with 0 <= begin <= end`);
      }
      const [begin, end] = offs as [number, number];
      if (end > dataSize) {
        fail(`tensor ${tn} has data_offsets [${begin}, ${end}] outside the data section (${dataSize} bytes); file truncated?`);
      }
      const shp = shape as number[];
      const expected = bytesFor(dt!, elementCount(shp));
      if (end - begin !== expected) {
        fail(`tensor ${tn} has ${end - begin} bytes but shape [${shp}] of ${dtype} needs ${expected}`);
      }
      ranges.push({ name, begin, end });
      tensors.set(name, new FileTensor(file, name, dt!, shp, dataStart + begin));
    }

    // Empty tensors occupy no bytes and are left out: one sorted between two others must not hide their overlap.
    // Each range is compared with the one reaching furthest so far, not only its neighbour.
    const occupied = ranges.filter((r) => r.end > r.begin).sort((a, b) => a.begin - b.begin || a.end - b.end);
    let furthest = occupied[0];
    for (const cur of occupied.slice(1)) {
      if (cur.begin < furthest!.end) {
        fail(`tensors ${nameText(furthest!.name)} [${furthest!.begin}, ${furthest!.end}) and ${nameText(cur.name)} [${cur.begin}, ${cur.end}) overlap`);
      }
      if (cur.end > furthest!.end) furthest = cur;
    }
    return { file, tensors, metadata };
  } catch (e) {
    file.close();
    throw e;
  }
}

export interface SafetensorsEntry {
  name: string;
  dtype: SafetensorsDType;
  shape: number[];
  /** Emits the tensor's raw little-endian bytes, in order, in chunks of any size. */
  write: (emit: (chunk: Uint8Array) => void) => void;
}

/** Writes are coalesced into a buffer of this size, so tiny chunks do not each cost a syscall. */
const WRITE_BUFFER_BYTES = 1 << 20;

/**
 * Streams a .safetensors file: the header (offsets in entry order, padded with spaces to a multiple
 * of 8 bytes), then each entry's bytes as its write() emits them. Memory use does not depend on
 * tensor sizes. Throws (and removes the partial file) if an entry emits more or fewer bytes than
 * its shape and dtype imply.
 */
export async function writeSafetensors(path: string, entries: SafetensorsEntry[], metadata?: Record<string, string>): Promise<void> {
  const header: Record<string, unknown> = {};
  if (metadata && Object.keys(metadata).length > 0) {
    for (const [k, v] of Object.entries(metadata)) {
      if (typeof v !== 'string') throw new Error(`safetensors metadata ${k} is not a string`);
    }
    header['__metadata__'] = metadata;
  }
  const sizes: number[] = [];
  let offset = 0;
  for (const e of entries) {
    if (e.name === '__metadata__') throw new Error(`safetensors tensor name __metadata__ is reserved`);
    if (Object.prototype.hasOwnProperty.call(header, e.name)) throw new Error(`safetensors tensor ${e.name} given twice`);
    if (!Object.hasOwn(TO_ST, e.dtype)) throw new Error(`safetensors tensor ${e.name}: unsupported dtype ${e.dtype}`);
    if (!e.shape.every(isNonNegInt)) throw new Error(`safetensors tensor ${e.name}: bad shape [${e.shape}]`);
    const n = bytesFor(e.dtype, elementCount(e.shape));
    header[e.name] = { dtype: TO_ST[e.dtype], shape: [...e.shape], data_offsets: [offset, offset + n] };
    sizes.push(n);
    offset += n;
  }
  const jsonBytes = new TextEncoder().encode(JSON.stringify(header));
  const padded = Math.ceil(jsonBytes.length / 8) * 8;
  const headerBytes = new Uint8Array(8 + padded).fill(0x20);
  new DataView(headerBytes.buffer).setBigUint64(0, BigInt(padded), true);
  headerBytes.set(jsonBytes, 8);

  const fd = openSync(path, 'w');
  let ok = false;
  try {
    const buf = new Uint8Array(WRITE_BUFFER_BYTES);
    let used = 0;
    const writeAll = (bytes: Uint8Array): void => {
      let done = 0;
      while (done < bytes.length) done += writeSync(fd, bytes, done, bytes.length - done);
    };
    const flush = (): void => {
      if (used > 0) writeAll(buf.subarray(0, used));
      used = 0;
    };
    writeAll(headerBytes);
    for (const [i, e] of entries.entries()) {
      // Yield to the event loop between tensors so a signal handler (Ctrl-C) can run and clean up.
      await new Promise((resolve) => setImmediate(resolve));
      const expected = sizes[i]!;
      let got = 0;
      e.write((chunk) => {
        got += chunk.length;
        if (got > expected) throw new Error(`safetensors tensor ${e.name}: wrote more than the ${expected} bytes its shape [${e.shape}] of ${e.dtype} needs`);
        if (chunk.length >= WRITE_BUFFER_BYTES / 2) {
          flush();
          writeAll(chunk);
        } else {
          if (used + chunk.length > WRITE_BUFFER_BYTES) flush();
          buf.set(chunk, used);
          used += chunk.length;
        }
      });
      if (got !== expected) throw new Error(`safetensors tensor ${e.name}: wrote ${got} bytes but its shape [${e.shape}] of ${e.dtype} needs ${expected}`);
    }
    flush();
    ok = true;
  } finally {
    closeSync(fd);
    if (!ok) {
      try {
        unlinkSync(path);
      } catch {
        /* already gone */
      }
    }
  }
}
