// The training executor's device (device.ts) on a GPU through the CUDA driver (driver.ts): every
// kernel is loaded once, as a module of its own for the device's PTX flavour (builder.ts archFor) or
// the target its launch names ('sm_90a': the Hopper GEMM, as runtime.ts loadSm90a), and launched on
// the null stream, so launches and copies run in issue order.
import { packParams, type CudaFunction, type DevicePtr, type KernelParam, type TensorMapTiled } from '../driver.js';
import { cudaContext, wgmmaWanted } from '../index.js';
import { archFor, ptxModule } from '../ptx/builder.js';
import type { DevPtr, LaunchArg, TrainDevice } from './device.js';

export function cudaTrainDevice(): TrainDevice {
  const cuda = cudaContext();
  const arch = archFor(cuda.device.computeCapability);
  const functions = new Map<string, CudaFunction>();
  /** The dynamic shared memory limit set on each function (cuFuncSetAttribute once, raised if a launch asks more). */
  const sharedLimit = new Map<string, number>();
  /**
   * Encoded tensor maps by description: the executor prepares its launches once and passes the same
   * argument objects every step, so each map is encoded once (the address in it never changes).
   */
  const maps = new WeakMap<TensorMapTiled, Uint8Array>();
  const param = (a: LaunchArg): KernelParam => {
    if ('ptr' in a) return { type: 'u64', value: a.ptr as DevicePtr };
    if ('u32' in a) return { type: 'u32', value: a.u32 };
    if ('f32' in a) return { type: 'f32', value: a.f32 };
    let m = maps.get(a.tmap);
    if (!m) maps.set(a.tmap, (m = cuda.tensorMapEncodeTiled(a.tmap)));
    return { type: 'tmap', value: m };
  };
  const big = (p: DevPtr) => p as DevicePtr;
  return {
    ...(wgmmaWanted(cuda.device.computeCapability) ? { wgmma: { multiprocessors: cuda.device.multiprocessors } } : {}),
    alloc: (bytes) => cuda.malloc(Math.max(4, bytes)),
    upload(dst, data) {
      cuda.copyToDevice(big(dst), data);
    },
    download(src, out) {
      cuda.synchronize();
      cuda.copyFromDevice(out, big(src));
      return out;
    },
    fill(dst, bytes, word) {
      cuda.memsetD32(big(dst), word, bytes / 4);
    },
    launch(k, grid, block, args, opts = {}) {
      if (grid[0] * grid[1] * grid[2] === 0) return;
      let f = functions.get(k.name);
      if (!f) functions.set(k.name, (f = cuda.loadModule(ptxModule([k.text], opts.target ?? arch), k.name).getFunction(k.name)));
      const shared = opts.shared ?? 0;
      if (shared > (sharedLimit.get(k.name) ?? 0)) {
        f.setMaxDynamicShared(shared);
        sharedLimit.set(k.name, shared);
      }
      const { bytes, offsets } = packParams(args.map(param));
      f.launch(grid, [block, 1, 1], shared, null, bytes, offsets);
    },
    free: (p) => cuda.free(big(p)),
  };
}
