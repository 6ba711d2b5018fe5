// Tests that need a tool a machine may lack: ptxas (CUDA toolkit), a WebGPU adapter (on a machine
// without a GPU: SwiftShader from Debian's chromium, and libvulkan1), chromium itself, a C compiler.
// On a developer's machine such a test is skipped, with one line naming what is missing; in CI
// (CI set, as .ci/run runs) it fails with that line instead, so a CI machine that lost a tool
// cannot go green by skipping. README.md's "Prerequisites" lists the same tools. A GPU is the one
// requirement CI never has: tests that need one skip everywhere without it.
import anyTest, { type TestFn } from 'ava';
import { spawnSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import { delimiter, join } from 'node:path';
import { cudaAvailability } from '../../targets/cuda/driver.js';
import { ROOT } from './fixtures.js';

export interface Requirement {
  /** Why it is missing, in one line; null when present. */
  missing: string | null;
  /** Missing in CI is normal (a GPU): skip there too instead of failing. */
  optionalInCi?: boolean;
}

const IN_CI = Boolean(process.env.CI);

/** The first executable `name` that answers `--version`, looked up on PATH then in `dirs`. */
function findTool(name: string, dirs: string[]): string | undefined {
  const path = (process.env.PATH ?? '').split(delimiter).filter(Boolean);
  return [...path, ...dirs].map((d) => join(d, name)).find((p) => existsSync(p) && spawnSync(p, ['--version']).status === 0);
}

/** ptxas: on PATH, in $CUDA_HOME/bin, or in the toolkit's usual places. */
export function findPtxas(): string | undefined {
  const dirs = [process.env.CUDA_HOME, process.env.CUDA_PATH].filter((d): d is string => Boolean(d)).map((d) => join(d, 'bin'));
  return findTool('ptxas', [...dirs, '/usr/local/cuda/bin', '/usr/local/bin']);
}

// Each probe is a function, run only by the test files that need it (a file that needs a WebGPU
// adapter does not spawn ptxas or load the CUDA driver).

export function ptxasRequirement(path = findPtxas()): Requirement {
  return { missing: path ? null : 'ptxas not found on PATH, in $CUDA_HOME/bin or /usr/local/cuda/bin (install the CUDA toolkit)' };
}

export const CHROMIUM_PATH = '/usr/bin/chromium';
export function chromiumRequirement(): Requirement {
  return { missing: existsSync(CHROMIUM_PATH) ? null : `${CHROMIUM_PATH} not found (apt install chromium)` };
}

export function cCompilerRequirement(): Requirement {
  return { missing: findTool('cc', []) ? null : 'no C compiler (cc) on PATH (apt install build-essential)' };
}

/** A CUDA device through mocc's addon and the driver (the GPU machine; never CI). */
export function cudaDeviceRequirement(): Requirement {
  const a = cudaAvailability();
  return { missing: a.ok ? null : `no CUDA device (${a.reason})`, optionalInCi: true };
}

/** A Hopper device (compute capability 9.x), for sm_90a kernels (wgmma); skips everywhere else. */
export function hopperDeviceRequirement(): Requirement {
  const a = cudaAvailability();
  if (!a.ok) return { missing: `no CUDA device (${a.reason})`, optionalInCi: true };
  const [major, minor] = a.device.computeCapability;
  return { missing: major === 9 ? null : `not a Hopper GPU (${a.device.name}, compute capability ${major}.${minor})`, optionalInCi: true };
}

const ADDON = join(ROOT, 'targets/cuda/native/build/Release/mocc_cuda.node');
export function cudaAddonRequirement(): Requirement {
  return { missing: existsSync(ADDON) ? null : `the CUDA addon is not built (${ADDON}; npm run build:native needs a C compiler, make and python3)` };
}

/**
 * A WebGPU adapter through Dawn, probed once in this test process (each ava test file runs in its
 * own process). The probe opens the same device the tests then use (test/helpers/webgpu.ts).
 */
export async function webgpuRequirement(): Promise<Requirement> {
  const { testDevice } = await import('./webgpu.js');
  try {
    await testDevice();
    return { missing: null };
  } catch {
    // openNodeDevice's own message says the same at length; a skipped test's title wants it short
    return { missing: 'no WebGPU adapter (Dawn needs a Vulkan driver; without a GPU: apt install chromium libvulkan1)' };
  }
}

/**
 * `test` as it is when every requirement is met; otherwise a `test` (and `test.serial`) whose tests
 * are skipped with the reason in the title, or fail with it in CI.
 */
export function testsNeeding(...reqs: Requirement[]): TestFn {
  const absent = reqs.filter((r) => r.missing !== null);
  if (absent.length === 0) return anyTest;
  const reason = absent.map((r) => r.missing).join('; ');
  const mustFail = IN_CI && absent.some((r) => !r.optionalInCi);
  const register = (serial: boolean) => (title: string, ..._impl: unknown[]) => {
    if (mustFail) (serial ? anyTest.serial : anyTest)(title, (t) => t.fail(`${reason} (CI must provide it)`));
    else (serial ? anyTest.serial.skip : anyTest.skip)(`${title} [skipped: ${reason}]`, () => {});
  };
  return Object.assign(register(false), { serial: register(true) }) as unknown as TestFn;
}
