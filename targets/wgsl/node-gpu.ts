// WebGPU in Node through Dawn (npm `webgpu`). Node-only: the runtime under runtime/ never imports it,
// so it works unchanged in browsers, where navigator.gpu is the same API.
import { existsSync, mkdirSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { UserError } from '../../src/util/errors.js';
import { openDevice, type OpenedDevice } from './runtime/device.js';

/** Debian's chromium package ships SwiftShader's Vulkan driver here: Dawn runs on the CPU through it. */
export const SWIFTSHADER_ICD = '/usr/lib/chromium/vk_swiftshader_icd.json';

type DawnModule = { create(flags: string[]): GPU; globals: Record<string, unknown> };
let dawn: DawnModule | null = null;

async function loadDawn(): Promise<DawnModule> {
  if (dawn) return dawn;
  let mod: { create(flags: string[]): GPU; globals: Record<string, unknown> };
  try {
    mod = (await import('webgpu')) as unknown as typeof mod;
  } catch (e) {
    throw new UserError(`wgsl target: the npm package 'webgpu' (Dawn) could not be loaded: ${(e as Error).message}`);
  }
  Object.assign(globalThis, mod.globals); // GPUBufferUsage, GPUMapMode, … as in a browser
  dawn = mod;
  return mod;
}

/**
 * A Dawn instance that offers an adapter, and that adapter. Where Dawn finds none (no GPU, or only
 * drivers it rejects, such as Mesa's lavapipe) and the user did not choose a driver, it tries
 * SwiftShader's from Debian's chromium: the Vulkan loader reads VK_ICD_FILENAMES when Dawn creates
 * its next instance.
 */
async function findAdapter(): Promise<{ gpu: GPU; adapter: GPUAdapter | null }> {
  quietWindowSystem();
  const chosen = Boolean(process.env.VK_ICD_FILENAMES || process.env.VK_DRIVER_FILES);
  const swiftshader = !chosen && existsSync(SWIFTSHADER_ICD);
  // No GPU device node at all: go straight to SwiftShader (Dawn would only log its rejection of Mesa's lavapipe).
  if (swiftshader && !GPU_DEVICE_NODES.some((p) => existsSync(p))) process.env.VK_ICD_FILENAMES = SWIFTSHADER_ICD;
  const mod = await loadDawn();
  const gpu = instance(mod);
  const first = await gpu.requestAdapter({ powerPreference: 'high-performance' });
  if (first || !swiftshader || process.env.VK_ICD_FILENAMES) return { gpu, adapter: first };
  process.env.VK_ICD_FILENAMES = SWIFTSHADER_ICD;
  const again = instance(mod);
  return { gpu: again, adapter: await again.requestAdapter({ powerPreference: 'high-performance' }) };
}

/**
 * Dawn instances made here, held for the life of the process. Dawn's Node binding frees its
 * instance when the object create() returned is garbage-collected, even while a device of it is in
 * use: then the next submit, mapAsync or pipeline creation crashes the process at random (SIGSEGV,
 * "The futex facility returned an unexpected error code", std::system_error "Invalid argument").
 * bench/wgsl/dawn-instance-lifetime.mjs reproduces it.
 */
const instances: GPU[] = [];
function instance(mod: DawnModule): GPU {
  // MOCC_DAWN_FLAGS: Dawn options, space-separated (e.g. disable-dawn-features=timestamp_quantization)
  const gpu = mod.create(process.env.MOCC_DAWN_FLAGS?.split(' ').filter(Boolean) ?? []);
  instances.push(gpu);
  return gpu;
}

/** Device nodes of GPUs that a Vulkan driver could drive (DRM, and NVIDIA's own). */
const GPU_DEVICE_NODES = ['/dev/dri', '/dev/nvidiactl'];

/**
 * Vulkan's window-system code prints "XDG_RUNTIME_DIR is invalid or not set" to stderr when the
 * variable is missing, though mocc never opens a window: give it a private directory of its own.
 */
function quietWindowSystem(): void {
  if (process.env.XDG_RUNTIME_DIR) return;
  const dir = join(tmpdir(), `mocc-xdg-${process.getuid?.() ?? 0}`);
  mkdirSync(dir, { recursive: true, mode: 0o700 });
  process.env.XDG_RUNTIME_DIR = dir;
}

/** Opens the first WebGPU adapter Dawn offers, or says plainly that there is none. */
export async function openNodeDevice(): Promise<OpenedDevice> {
  const { adapter } = await findAdapter();
  if (!adapter) {
    throw new UserError('wgsl target: no WebGPU adapter found. Dawn needs a Vulkan driver: a GPU driver, or on a machine '
      + `without a GPU, SwiftShader from Debian's chromium package (apt install chromium libvulkan1; then ${SWIFTSHADER_ICD} is used, `
      + 'or set VK_ICD_FILENAMES to a driver\'s ICD file)');
  }
  return openDevice(adapter);
}


/** navigator.gpu for Node: a Dawn instance that offers an adapter (for code written for browsers, like the bundle). */
export async function nodeNavigatorGpu(): Promise<GPU> {
  return (await findAdapter()).gpu;
}
