// A training checkpoint (what `mocc train --save-every N` writes and `--resume DIR` reads): everything
// needed to continue a run bit-exactly.
//
// Layout of a checkpoint directory DIR:
//   DIR/step-000100/weights.safetensors     f32 weights by parameter name (1-D: the run knows the shapes)
//   DIR/step-000100/optimizer.safetensors   AdamW moments, "m.NAME" and "v.NAME", f32
//   DIR/step-000100/state.json              step, AdamW step, sampler, RNG, run options (caller's JSON),
//                                           and the size and SHA-256 of both tensor files
//   DIR/latest                              "step-000100": the newest complete checkpoint
// Crash safety: a step folder is written under a temporary name beside it (src/util/atomic-output.ts),
// every file fsynced, then renamed into place; only then is `latest` replaced (a temporary file,
// fsynced, renamed over it: POSIX rename replaces a file atomically). A crash at any point leaves
// `latest` naming a complete checkpoint, the previous one until the new one is whole. Older step
// folders beyond `keep` are removed after `latest` moves; temporaries of dead writers on the next save.
import { closeSync, existsSync, fsyncSync, openSync, readdirSync, readFileSync, renameSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { basename, join, resolve } from 'node:path';
import { readSafetensorsHeader, writeSafetensors, type SafetensorsEntry } from '../import/safetensors.js';
import { sha256File } from '../package/write.js';
import { writeOutput } from '../util/atomic-output.js';
import { nameText, oneLine, UserError } from '../util/errors.js';
import type { AdamWState } from './adamw.js';

export interface TrainState {
  /** Optimizer steps the run has taken. */
  step: number;
  /** f32 master weights by parameter name (all of them, frozen ones too). */
  weights: Map<string, Float32Array>;
  /** AdamW state: moments for the trained parameters only. */
  optimizer: AdamWState;
  /** The data sampler's position (any JSON value; this module does not look inside). */
  sampler: unknown;
  /** The random generator's state (any JSON value). */
  rng: unknown;
  /** The run's options (any JSON value). */
  options: unknown;
}

const FORMAT = 'mocc-train-state';
const VERSION = 1;
const WEIGHTS_FILE = 'weights.safetensors';
const OPTIMIZER_FILE = 'optimizer.safetensors';
const STATE_FILE = 'state.json';
const LATEST_FILE = 'latest';
const STEP_DIR = /^step-(\d+)$/;
/** Temporaries this module and writeOutput leave when killed: `.step-N.mocc-tmp-PID[-old]`, `.latest.tmp-PID`. */
const TEMPORARY = /^\.(?:step-\d+\.mocc-tmp-(\d+)(?:-old)?|latest\.tmp-(\d+))$/;

interface StateJson {
  format: string;
  version: number;
  step: number;
  optimizer_step: number;
  files: Record<string, { bytes: number; sha256: string }>;
  sampler: unknown;
  rng: unknown;
  options: unknown;
}

/** The step folder's name: zero-padded to 6 digits so a listing sorts, longer when the step needs it. */
export function stepDirName(step: number): string {
  return `step-${String(step).padStart(6, '0')}`;
}

export interface SaveOptions {
  /** Step folders to keep, the newest included (default 2). */
  keep?: number;
}

/**
 * Writes `st` as DIR/step-N (N = st.step) and points DIR/latest at it; returns the step folder's path.
 * Throws an Error for a state that cannot be saved (a bug in the caller), a UserError when the disk
 * refuses. Saving the step that `latest` already names is refused: replacing it in place could not be
 * atomic.
 */
export async function saveTrainState(dir: string, st: TrainState, opts: SaveOptions = {}): Promise<string> {
  const keep = opts.keep ?? 2;
  if (!Number.isSafeInteger(keep) || keep < 1) throw new Error(`saveTrainState: keep ${keep} must be an integer ≥ 1`);
  checkState(st);
  const name = stepDirName(st.step);
  const target = join(dir, name);
  if (readLatest(dir) === name) throw new Error(`saveTrainState: ${target} is already the latest checkpoint`);
  removeDeadTemporaries(dir);
  const jsonOf = (what: string, v: unknown): string => {
    const s = JSON.stringify(v);
    if (s === undefined) throw new Error(`saveTrainState: the ${what} is not a JSON value`);
    return s;
  };
  const opaque = { sampler: JSON.parse(jsonOf('sampler state', st.sampler)), rng: JSON.parse(jsonOf('RNG state', st.rng)), options: JSON.parse(jsonOf('run options', st.options)) };

  // force: a step folder of this name that `latest` does not name is left from an abandoned run (the
  // user resumed from an earlier step); it is replaced.
  await writeOutput(target, { inputs: [], kind: 'directory', force: true }, async (tmp) => {
    const weights = [...st.weights].map(([n, a]) => f32Entry(n, a));
    const moments = [...st.optimizer.m.keys()].flatMap((n) => [f32Entry(`m.${n}`, st.optimizer.m.get(n)!), f32Entry(`v.${n}`, st.optimizer.v.get(n)!)]);
    const files: StateJson['files'] = {};
    for (const [file, entries] of [[WEIGHTS_FILE, weights], [OPTIMIZER_FILE, moments]] as const) {
      const p = join(tmp, file);
      await writeSafetensors(p, entries, { format: 'pt', producer: 'mocc', content: FORMAT });
      fsyncPath(p);
      files[file] = { bytes: statSync(p).size, sha256: await sha256File(p) };
    }
    const json: StateJson = { format: FORMAT, version: VERSION, step: st.step, optimizer_step: st.optimizer.step, files, ...opaque };
    const statePath = join(tmp, STATE_FILE);
    writeFileSync(statePath, JSON.stringify(json, null, 1) + '\n');
    fsyncPath(statePath);
    fsyncPath(tmp);
  });
  fsyncPath(dir);

  const tmpLatest = join(dir, `.${LATEST_FILE}.tmp-${process.pid}`);
  writeFileSync(tmpLatest, name + '\n');
  fsyncPath(tmpLatest);
  renameSync(tmpLatest, join(dir, LATEST_FILE));
  fsyncPath(dir);

  // Keep the newest `keep` folders up to this step; later ones belong to an abandoned run.
  const steps = listStepDirs(dir);
  const kept = new Set(steps.filter((s) => s.step <= st.step).slice(-keep).map((s) => s.name));
  for (const s of steps) if (!kept.has(s.name)) rmSync(join(dir, s.name), { recursive: true, force: true });
  return target;
}

/**
 * Reads a training checkpoint: DIR as saveTrainState wrote it (the step `latest` names; without
 * `latest`, the highest step folder), or one step folder. Weights and moments come back bit-identical
 * to those saved. A missing, damaged or incomplete checkpoint is a one-line UserError.
 */
export async function loadTrainState(path: string): Promise<TrainState> {
  const stepDir = resolveStepDir(path);
  const fail = (msg: string): never => {
    throw new UserError(`${stepDir}: ${msg}`);
  };
  const statePath = join(stepDir, STATE_FILE);
  if (!existsSync(statePath)) fail(`incomplete training checkpoint (no ${STATE_FILE})`);
  let json: StateJson;
  try {
    json = JSON.parse(readFileSync(statePath, 'utf8')) as StateJson;
  } catch (e) {
    return fail(`damaged training checkpoint (${STATE_FILE}: ${oneLine((e as Error).message, 120)})`);
  }
  if (typeof json !== 'object' || json === null || json.format !== FORMAT) fail(`${STATE_FILE} is not a mocc training checkpoint`);
  if (json.version !== VERSION) fail(`training checkpoint version ${String(json.version)} is not supported (this mocc reads version ${VERSION})`);
  for (const k of ['step', 'optimizer_step'] as const) {
    if (!Number.isSafeInteger(json[k]) || json[k] < 0) fail(`damaged training checkpoint (${STATE_FILE} ${k} is not an integer ≥ 0)`);
  }
  const dirStep = STEP_DIR.exec(basename(resolve(stepDir)));
  if (dirStep && Number(dirStep[1]) !== json.step) fail(`damaged training checkpoint (${STATE_FILE} says step ${json.step})`);

  const tensors = new Map<string, Map<string, Float32Array>>();
  for (const file of [WEIGHTS_FILE, OPTIMIZER_FILE]) {
    const p = join(stepDir, file);
    const rec = json.files?.[file];
    if (typeof rec?.bytes !== 'number' || typeof rec.sha256 !== 'string') fail(`damaged training checkpoint (${STATE_FILE} does not record ${file})`);
    if (!existsSync(p)) fail(`incomplete training checkpoint (${file} is missing)`);
    const size = statSync(p).size;
    if (size !== rec!.bytes) fail(`damaged training checkpoint (${file} has ${size} bytes, ${STATE_FILE} records ${rec!.bytes}: truncated?)`);
    if ((await sha256File(p)) !== rec!.sha256) fail(`damaged training checkpoint (${file} does not match the SHA-256 in ${STATE_FILE})`);
    tensors.set(file, readF32Tensors(p));
  }
  const weights = tensors.get(WEIGHTS_FILE)!;
  const m = new Map<string, Float32Array>();
  const v = new Map<string, Float32Array>();
  for (const [key, a] of tensors.get(OPTIMIZER_FILE)!) {
    const which = key.startsWith('m.') ? m : key.startsWith('v.') ? v : fail(`damaged training checkpoint (${OPTIMIZER_FILE} holds ${nameText(key)}, neither m.NAME nor v.NAME)`);
    const name = key.slice(2);
    if (weights.get(name)?.length !== a.length) fail(`damaged training checkpoint (optimizer state ${nameText(key)} has no weight of its size)`);
    which.set(name, a);
  }
  for (const n of m.keys()) if (!v.has(n)) fail(`damaged training checkpoint (${OPTIMIZER_FILE} has m.${nameText(n)} without v.${nameText(n)})`);
  if (v.size !== m.size) fail(`damaged training checkpoint (${OPTIMIZER_FILE} has a v without its m)`);
  return { step: json.step, weights, optimizer: { step: json.optimizer_step, m, v }, sampler: json.sampler, rng: json.rng, options: json.options };
}

/** The step folder `path` means: itself when it holds state.json, else the one DIR/latest names. */
function resolveStepDir(path: string): string {
  let isDir: boolean;
  try {
    isDir = statSync(path).isDirectory();
  } catch (e) {
    throw new UserError(`${path}: cannot read training checkpoint (${(e as NodeJS.ErrnoException).code ?? oneLine((e as Error).message)})`);
  }
  if (!isDir) throw new UserError(`${path}: a training checkpoint is a directory`);
  // A step folder itself (one without state.json is reported as incomplete by the caller).
  if (existsSync(join(path, STATE_FILE)) || STEP_DIR.test(basename(resolve(path)))) return path;
  const latest = readLatest(path);
  if (latest !== undefined) {
    if (!STEP_DIR.test(latest)) throw new UserError(`${join(path, LATEST_FILE)}: damaged (it names ${nameText(latest)}, not a step-N folder)`);
    const p = join(path, latest);
    if (!existsSync(p)) throw new UserError(`${join(path, LATEST_FILE)} names ${latest}, which is missing`);
    return p;
  }
  // No `latest`: a crash after the first step folder was renamed into place and before `latest` was written.
  const newest = listStepDirs(path).pop();
  if (!newest) throw new UserError(`${path}: not a training checkpoint (no ${STATE_FILE}, no ${LATEST_FILE}, no step-N folder)`);
  return join(path, newest.name);
}

/** What DIR/latest names (trimmed), or undefined when there is none. */
function readLatest(dir: string): string | undefined {
  try {
    return readFileSync(join(dir, LATEST_FILE), 'utf8').trim();
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
    throw new UserError(`${join(dir, LATEST_FILE)}: cannot read (${(e as NodeJS.ErrnoException).code ?? oneLine((e as Error).message)})`);
  }
}

/** The step-N folders in dir, by ascending step. */
function listStepDirs(dir: string): Array<{ name: string; step: number }> {
  if (!existsSync(dir)) return [];
  return readdirSync(dir, { withFileTypes: true })
    .flatMap((e) => {
      const m = e.isDirectory() ? STEP_DIR.exec(e.name) : null;
      return m ? [{ name: e.name, step: Number(m[1]) }] : [];
    })
    .sort((a, b) => a.step - b.step);
}

/** Removes temporaries left by writers that were killed (their process no longer exists). */
function removeDeadTemporaries(dir: string): void {
  if (!existsSync(dir)) return;
  for (const name of readdirSync(dir)) {
    const m = TEMPORARY.exec(name);
    const pid = m ? Number(m[1] ?? m[2]) : undefined;
    if (pid !== undefined && pid !== process.pid && !processExists(pid)) rmSync(join(dir, name), { recursive: true, force: true });
  }
}

function processExists(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (e) {
    return (e as NodeJS.ErrnoException).code === 'EPERM';
  }
}

/** Flushes a file's or directory's contents and entries to the disk. Directories cannot be fsynced on every platform; there it is skipped. */
function fsyncPath(p: string): void {
  const fd = openSync(p, 'r');
  try {
    fsyncSync(fd);
  } catch (e) {
    const code = (e as NodeJS.ErrnoException).code;
    if (!(statSync(p).isDirectory() && (code === 'EISDIR' || code === 'EINVAL' || code === 'EPERM'))) throw e;
  } finally {
    closeSync(fd);
  }
}

function f32Entry(name: string, a: Float32Array): SafetensorsEntry {
  return { name, dtype: 'f32', shape: [a.length], write: (emit) => emit(new Uint8Array(a.buffer, a.byteOffset, a.byteLength)) };
}

/** Every tensor of a safetensors file written by f32Entry, as a fresh Float32Array of its stored bits. */
function readF32Tensors(path: string): Map<string, Float32Array> {
  const st = readSafetensorsHeader(path);
  try {
    const out = new Map<string, Float32Array>();
    for (const [name, t] of st.tensors) {
      if (t.dtype !== 'f32' || t.shape.length !== 1) throw new UserError(`${path}: damaged training checkpoint (tensor ${nameText(name)} is not a 1-D F32 tensor)`);
      const bytes = t.readBytes(0, t.byteLength); // a fresh buffer of exactly these bytes
      out.set(name, new Float32Array(bytes.buffer, bytes.byteOffset, t.shape[0]!));
    }
    return out;
  } finally {
    st.file.close();
  }
}

/** Refuses a state that could not be loaded back (names, sizes, step counts). */
function checkState(st: TrainState): void {
  if (!Number.isSafeInteger(st.step) || st.step < 0) throw new Error(`saveTrainState: step ${st.step} is not an integer ≥ 0`);
  if (!Number.isSafeInteger(st.optimizer.step) || st.optimizer.step < 0) throw new Error(`saveTrainState: optimizer step ${st.optimizer.step} is not an integer ≥ 0`);
  const { m, v } = st.optimizer;
  if (m.size !== v.size) throw new Error(`saveTrainState: ${m.size} first moments but ${v.size} second moments`);
  for (const [n, a] of m) {
    const w = st.weights.get(n);
    if (!w || w.length !== a.length || v.get(n)?.length !== a.length) throw new Error(`saveTrainState: optimizer state of ${n} does not match a weight of its size`);
  }
}
