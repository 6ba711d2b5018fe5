// Batches for the model graph (src/model/graph-inputs.ts) from documents of token ids: random training
// windows with a resumable generator, and the deterministic evaluation batches.
import { Mulberry32 } from '../run/sample.js';
import { UserError } from '../util/errors.js';
import { tokenCount, type TokenData } from './data-read.js';

/**
 * One batch as the model graph takes it: rows = tokens, with position in sequence and sequence id;
 * targets[r] = the next token of row r's sequence, or -1 where there is none (sequence end, padding):
 * such rows are left out of the loss.
 */
export interface TokenBatch {
  tokens: Int32Array;
  pos: Int32Array;
  seq: Int32Array;
  targets: Int32Array;
}

export interface WindowOptions {
  batch: number;
  seq: number;
  seed: number;
}

/** Where a WindowSampler is: JSON-serializable, checked against the data and options on restore. */
export interface SamplerState {
  kind: 'windows';
  /** The generator's whole state (mulberry32, one uint32). */
  rng: number;
  /** Batches drawn so far (for messages and progress; the stream is fixed by rng alone). */
  batches: number;
  /** sha256 of the data it was drawing from. */
  checksum: string;
  batch: number;
  seq: number;
}

/**
 * Deterministic random training windows: each batch has `batch` sequences of `seq` rows (seq+1 tokens
 * taken from the concatenated document stream, so windows cross document boundaries, as nanoGPT and
 * llama2.c train); positions 0..seq-1, seq ids 0..batch-1, targets = the following token. A window's
 * start is uniform over every place one fits, drawn with replacement (nanoGPT's get_batch).
 */
export class WindowSampler {
  private readonly stream: Int32Array;
  /** Number of window starts: 0 .. stream.length - seq - 1. */
  private readonly starts: number;
  private readonly rng: Mulberry32;
  private batches = 0;

  constructor(private readonly data: TokenData, private readonly opts: WindowOptions) {
    checkCount('batch', opts.batch);
    checkCount('seq', opts.seq);
    if (!Number.isInteger(opts.seed)) throw new UserError(`seed must be an integer (got ${opts.seed})`);
    const total = tokenCount(data);
    if (total < opts.seq + 1) {
      throw new UserError(`${data.source ?? 'training data'}: ${total} tokens in ${data.documents.length} document(s), fewer than one training window needs (seq ${opts.seq} + 1 = ${opts.seq + 1})`);
    }
    this.stream = new Int32Array(total);
    let o = 0;
    for (const d of data.documents) { this.stream.set(d, o); o += d.length; }
    this.starts = total - opts.seq;
    this.rng = new Mulberry32(opts.seed);
  }

  next(): TokenBatch {
    const { batch, seq } = this.opts;
    const rows = batch * seq;
    const out: TokenBatch = { tokens: new Int32Array(rows), pos: new Int32Array(rows), seq: new Int32Array(rows), targets: new Int32Array(rows) };
    for (let b = 0; b < batch; b++) {
      const start = this.drawStart();
      const r0 = b * seq;
      out.tokens.set(this.stream.subarray(start, start + seq), r0);
      out.targets.set(this.stream.subarray(start + 1, start + seq + 1), r0);
      out.seq.fill(b, r0, r0 + seq);
      for (let i = 0; i < seq; i++) out.pos[r0 + i] = i;
    }
    this.batches++;
    return out;
  }

  state(): SamplerState {
    return { kind: 'windows', rng: this.rng.state, batches: this.batches, checksum: this.data.checksum, batch: this.opts.batch, seq: this.opts.seq };
  }

  /** Continues exactly where `state` was taken; a state from other data, batch or seq is a UserError (the run would not be the same). */
  static restore(data: TokenData, opts: WindowOptions, state: SamplerState): WindowSampler {
    const s = new WindowSampler(data, opts);
    if (state?.kind !== 'windows' || !Number.isInteger(state.rng) || state.rng < 0 || state.rng > 0xffffffff || !Number.isInteger(state.batches)) {
      throw new UserError('the saved data position is not a window sampler state');
    }
    if (state.checksum !== data.checksum) {
      throw new UserError(`the data differs from the run being resumed (sha256 ${data.checksum.slice(0, 12)}…, the run had ${String(state.checksum).slice(0, 12)}…)`);
    }
    if (state.batch !== opts.batch || state.seq !== opts.seq) {
      throw new UserError(`batch ${opts.batch} × seq ${opts.seq} differs from the run being resumed (batch ${state.batch} × seq ${state.seq})`);
    }
    s.rng.state = state.rng;
    s.batches = state.batches;
    return s;
  }

  /** Uniform in [0, starts): one draw (32 bits) while that resolves every start, two beyond 2^32 starts. */
  private drawStart(): number {
    const u = this.starts <= 2 ** 32 ? this.rng.next() : this.rng.next() + this.rng.next() / 2 ** 32;
    return Math.min(this.starts - 1, Math.floor(u * this.starts));
  }
}

/**
 * For evaluation: every document as its own sequence(s), cut into pieces of at most `seq` rows; a
 * piece's last row has target = the piece's next token if the document continues, so no prediction is
 * lost. A document's last token predicts nothing and gets no row. Pieces (no context across a cut,
 * positions from 0) are packed in order into batches of at most `rowsPerBatch` rows, seq ids from 0 in
 * each. Every next-token prediction of the data is counted exactly once: predictionCount(data) in all.
 */
export function evalBatches(data: TokenData, opts: { seq: number; rowsPerBatch: number }): TokenBatch[] {
  checkCount('seq', opts.seq);
  checkCount('rowsPerBatch', opts.rowsPerBatch);
  if (opts.rowsPerBatch < opts.seq) throw new Error(`evalBatches: rowsPerBatch ${opts.rowsPerBatch} < seq ${opts.seq}`);
  if (predictionCount(data) === 0) throw new UserError(`${data.source ?? 'evaluation data'}: no token follows another, nothing to predict`);
  const pieces: Array<{ doc: Int32Array; start: number; len: number }> = [];
  for (const doc of data.documents) {
    for (let s = 0; s < doc.length - 1; s += opts.seq) pieces.push({ doc, start: s, len: Math.min(opts.seq, doc.length - 1 - s) });
  }
  const batches: TokenBatch[] = [];
  for (let i = 0; i < pieces.length;) {
    let rows = 0, j = i;
    while (j < pieces.length && rows + pieces[j]!.len <= opts.rowsPerBatch) rows += pieces[j++]!.len;
    const out: TokenBatch = { tokens: new Int32Array(rows), pos: new Int32Array(rows), seq: new Int32Array(rows), targets: new Int32Array(rows) };
    let r = 0;
    for (let k = i; k < j; k++) {
      const { doc, start, len } = pieces[k]!;
      out.tokens.set(doc.subarray(start, start + len), r);
      out.targets.set(doc.subarray(start + 1, start + len + 1), r);
      out.seq.fill(k - i, r, r + len);
      for (let p = 0; p < len; p++) out.pos[r + p] = p;
      r += len;
    }
    batches.push(out);
    i = j;
  }
  return batches;
}

/** Next-token predictions in the data: Σ (document length − 1). */
export function predictionCount(data: Pick<TokenData, 'documents'>): number {
  return data.documents.reduce((n, d) => n + Math.max(0, d.length - 1), 0);
}

/** A --seq must fit the context (maxSeqLen) of the model, or of `whose` (e.g. "the teacher's"). */
export function checkSeqFitsContext(seq: number, maxSeqLen: number, whose = "the model's"): void {
  checkCount('seq', seq);
  if (seq > maxSeqLen) throw new UserError(`--seq ${seq} is above ${whose} context length ${maxSeqLen}`);
}

function checkCount(name: string, v: number): void {
  if (!Number.isSafeInteger(v) || v < 1) throw new UserError(`${name} must be a positive integer (got ${v})`);
}
