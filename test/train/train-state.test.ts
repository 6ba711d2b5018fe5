// Training checkpoints: bit-exact round trip, the step-N/latest layout, refusal of damaged or
// incomplete checkpoints, and that an interrupted save leaves the previous checkpoint loadable.
import test from 'ava';
import { existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, truncateSync, writeFileSync, statSync } from 'node:fs';
import { spawn } from 'node:child_process';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { UserError } from '../../src/util/errors.js';
import { loadTrainState, saveTrainState, stepDirName, type TrainState } from '../../src/train/train-state.js';
import { randomFrom, rng } from '../helpers/random.js';
import { stateForStep } from './train-state-sample.js';

const randomF32 = (n: number, seed: number, scale: number): Float32Array => randomFrom(n, rng(seed), scale);

const tmp = mkdtempSync(join(tmpdir(), 'mocc-train-state-'));
test.after.always(() => rmSync(tmp, { recursive: true, force: true }));
let counter = 0;
const freshDir = (): string => join(tmp, `ck-${counter++}`);

/** f32 values whose bits a lossy path would change: NaN payloads, −0, ±∞, subnormals. */
function awkward(): Float32Array {
  const bits = new Uint32Array([0x7fc00001, 0xffbadbad, 0x7f800001, 0x80000000, 0x7f800000, 0xff800000, 0x00000001, 0x807fffff, 0x3f800000]);
  return new Float32Array(bits.buffer);
}

function state(step: number, seed = step): TrainState {
  const w = new Map([
    ['tok_embeddings.weight', randomF32(37, seed + 1, 1)],
    ['layers.0.attention_norm.weight', awkward()],
    ['frozen.weight', randomF32(5, seed + 2, 1)],
  ]);
  const trained = ['tok_embeddings.weight', 'layers.0.attention_norm.weight'];
  return {
    step,
    weights: w,
    optimizer: {
      step,
      m: new Map(trained.map((n, i) => [n, randomF32(w.get(n)!.length, seed + 10 + i, 0.1)])),
      v: new Map(trained.map((n, i) => [n, i === 1 ? awkward() : randomF32(w.get(n)!.length, seed + 20 + i, 0.01)])),
    },
    sampler: { epoch: 1, position: step * 64, order: [3, 1, 2] },
    rng: { s: [1, 2, 3, 0xffffffff] },
    options: { lr: 5e-4, steps: 1000, ckpt: 'moc-gcp', data: 'x.txt' },
  };
}

/** Same names, and each array's bytes identical (a byte comparison: NaN payloads count, −0 ≠ 0). */
function sameBits(t: import('ava').ExecutionContext, a: Map<string, Float32Array>, b: Map<string, Float32Array>): void {
  t.deepEqual([...a.keys()].sort(), [...b.keys()].sort());
  const bytes = (x: Float32Array): Buffer => Buffer.from(x.buffer, x.byteOffset, x.byteLength);
  for (const [n, x] of a) t.true(b.get(n)!.length === x.length && bytes(b.get(n)!).equals(bytes(x)), `${n}: bits differ`);
}

async function throwsUserAsync(t: import('ava').ExecutionContext, p: Promise<unknown>, fragment: RegExp): Promise<void> {
  const e = await t.throwsAsync(p, { instanceOf: UserError });
  if (!e) return;
  t.regex(e.message, fragment);
  t.false(e.message.includes('\n'), 'one line');
}

test('round trip is bit-exact (NaN payloads, −0, subnormals) and keeps the JSON parts and step counts', async (t) => {
  const dir = freshDir();
  const st = state(100);
  const saved = await saveTrainState(dir, st);
  t.is(saved, join(dir, 'step-000100'));
  t.is(readFileSync(join(dir, 'latest'), 'utf8'), 'step-000100\n');
  for (const path of [dir, saved]) {
    const back = await loadTrainState(path);
    t.is(back.step, 100);
    t.is(back.optimizer.step, 100);
    sameBits(t, st.weights, back.weights);
    sameBits(t, st.optimizer.m, back.optimizer.m);
    sameBits(t, st.optimizer.v, back.optimizer.v);
    t.false(back.optimizer.m.has('frozen.weight'), 'a frozen weight has no optimizer state');
    t.deepEqual(back.sampler, st.sampler);
    t.deepEqual(back.rng, st.rng);
    t.deepEqual(back.options, st.options);
  }
});

test('later saves move latest; only the newest `keep` step folders stay; step names sort past 6 digits', async (t) => {
  const dir = freshDir();
  for (const s of [100, 200, 300]) await saveTrainState(dir, state(s), { keep: 2 });
  t.deepEqual(readdirSync(dir).sort(), ['latest', 'step-000200', 'step-000300']);
  t.is((await loadTrainState(dir)).step, 300);
  t.is((await loadTrainState(join(dir, 'step-000200'))).step, 200);
  t.is(stepDirName(1234567), 'step-1234567');
  await saveTrainState(dir, state(1234567), { keep: 2 });
  t.deepEqual(readdirSync(dir).sort(), ['latest', 'step-000300', 'step-1234567']);
});

test('resuming from an older step and saving replaces the abandoned later folders', async (t) => {
  const dir = freshDir();
  for (const s of [100, 200]) await saveTrainState(dir, state(s), { keep: 3 });
  const old = await loadTrainState(join(dir, 'step-000100'));
  await saveTrainState(dir, { ...old, step: 150, optimizer: { ...old.optimizer, step: 150 } }, { keep: 3 });
  t.deepEqual(readdirSync(dir).sort(), ['latest', 'step-000100', 'step-000150']);
  t.is((await loadTrainState(dir)).step, 150);
});

test('saving the step latest already names is refused (it could not be replaced atomically)', async (t) => {
  const dir = freshDir();
  await saveTrainState(dir, state(5));
  await t.throwsAsync(saveTrainState(dir, state(5)), { message: /already the latest/ });
  t.is((await loadTrainState(dir)).step, 5);
});

test('an interrupted save (temporaries left behind, latest not yet moved) leaves the previous checkpoint loadable', async (t) => {
  const dir = freshDir();
  const st = state(100);
  await saveTrainState(dir, st);
  // A writer killed mid-save (pid 99999999 does not exist): a half-written step folder under its
  // temporary name, a half-written latest, and a step folder renamed into place but latest not moved.
  const half = join(dir, '.step-000200.mocc-tmp-99999999');
  mkdirSync(half);
  writeFileSync(join(half, 'weights.safetensors'), Buffer.alloc(10));
  writeFileSync(join(dir, '.latest.tmp-99999999'), 'step-0002');
  const back = await loadTrainState(dir);
  t.is(back.step, 100);
  sameBits(t, st.weights, back.weights);
  // The next save clears the dead writer's temporaries.
  await saveTrainState(dir, state(300));
  t.deepEqual(readdirSync(dir).sort(), ['latest', 'step-000100', 'step-000300']);
});

test('a crash between the first step folder and the first latest: the folder alone is found', async (t) => {
  const dir = freshDir();
  await saveTrainState(dir, state(7));
  rmSync(join(dir, 'latest'));
  t.is((await loadTrainState(dir)).step, 7);
});

test('a truncated tensor file is refused with a one-line message naming it', async (t) => {
  const dir = freshDir();
  const p = await saveTrainState(dir, state(100));
  const f = join(p, 'optimizer.safetensors');
  truncateSync(f, statSync(f).size - 4);
  await throwsUserAsync(t, loadTrainState(dir), /step-000100: damaged training checkpoint \(optimizer\.safetensors has \d+ bytes, state\.json records \d+: truncated\?\)/);
});

test('a changed byte, a missing file, a bad state.json or latest are refused with one-line messages', async (t) => {
  const dir = freshDir();
  const p = await saveTrainState(dir, state(100));
  const w = join(p, 'weights.safetensors');
  const bytes = readFileSync(w);
  bytes[bytes.length - 1] ^= 1;
  writeFileSync(w, bytes);
  await throwsUserAsync(t, loadTrainState(dir), /weights\.safetensors does not match the SHA-256/);
  rmSync(w);
  await throwsUserAsync(t, loadTrainState(dir), /incomplete training checkpoint \(weights\.safetensors is missing\)/);
  writeFileSync(join(p, 'state.json'), '{"format": "mocc-train-state", "vers');
  await throwsUserAsync(t, loadTrainState(dir), /damaged training checkpoint \(state\.json: /);
  rmSync(join(p, 'state.json'));
  await throwsUserAsync(t, loadTrainState(p), /incomplete training checkpoint \(no state\.json\)/);
  writeFileSync(join(dir, 'latest'), 'step-000999\n');
  await throwsUserAsync(t, loadTrainState(dir), /latest names step-000999, which is missing/);
  writeFileSync(join(dir, 'latest'), '../../etc\n');
  await throwsUserAsync(t, loadTrainState(dir), /latest: damaged/);
});

test('a path that is not a checkpoint is refused', async (t) => {
  const empty = freshDir();
  mkdirSync(empty);
  await throwsUserAsync(t, loadTrainState(empty), /not a training checkpoint/);
  await throwsUserAsync(t, loadTrainState(join(tmp, 'nope')), /cannot read training checkpoint \(ENOENT\)/);
  const file = join(tmp, 'a-file');
  writeFileSync(file, 'x');
  await throwsUserAsync(t, loadTrainState(file), /is a directory/);
});

test('a state that could not be loaded back is refused before anything is written', async (t) => {
  const dir = freshDir();
  const st = state(1);
  st.optimizer.m.set('ghost', new Float32Array(2));
  st.optimizer.v.set('ghost', new Float32Array(2));
  await t.throwsAsync(saveTrainState(dir, st), { message: /optimizer state of ghost/ });
  await t.throwsAsync(saveTrainState(dir, { ...state(1), rng: undefined }), { message: /RNG state is not a JSON value/ });
  t.false(existsSync(dir));
});

test('a writer killed (SIGKILL) at arbitrary points always leaves a complete, bit-exact latest checkpoint', async (t) => {
  for (const delayMs of [0, 15, 40, 70, 110]) {
    const dir = freshDir();
    const child = spawn(process.execPath, ['--import', 'tsx', join(import.meta.dirname, 'save-loop.child.ts'), dir], { stdio: ['ignore', 'pipe', 'inherit'] });
    let out = '';
    // Kill `delayMs` after the first checkpoint is reported, whatever the child is doing then.
    await new Promise<void>((res) => child.stdout!.on('data', (d: Buffer) => {
      out += d.toString();
      if (out.includes('saved 1\n')) res();
    }));
    await new Promise((res) => setTimeout(res, delayMs));
    child.kill('SIGKILL');
    await new Promise((res) => child.on('exit', res));
    const reported = Math.max(...[...out.matchAll(/saved (\d+)/g)].map((m) => Number(m[1])));
    const back = await loadTrainState(dir);
    t.true(back.step >= reported, `loaded step ${back.step}, the child had reported ${reported}`);
    const want = stateForStep(back.step);
    sameBits(t, want.weights, back.weights);
    sameBits(t, want.optimizer.m, back.optimizer.m);
    sameBits(t, want.optimizer.v, back.optimizer.v);
    t.log(`killed ${delayMs} ms after step 1: latest is step ${back.step}; left in the folder: ${readdirSync(dir).sort().join(' ')}`);
  }
});
