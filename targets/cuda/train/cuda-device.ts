// The training executor's device (device.ts) on a GPU through the CUDA driver (driver.ts): every
// kernel is loaded once, as a module of its own for the device's PTX flavour (builder.ts archFor),
// and launched on the null stream, so launches and copies run in issue order.
import { packParams, type CudaFunction, type DevicePtr } from '../driver.js';
import { cudaContext } from '../index.js';
import { archFor, ptxModule } from '../ptx/builder.js';
import type { DevPtr, LaunchArg, TrainDevice } from './device.js';

export function cudaTrainDevice(): TrainDevice {
  const cuda = cudaContext();
  const arch = archFor(cuda.device.computeCapability);
  const functions = new Map<string, CudaFunction>();
  const big = (p: DevPtr) => p as DevicePtr;
  return {
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
    launch(k, grid, block, args) {
      if (grid[0] * grid[1] * grid[2] === 0) return;
      let f = functions.get(k.name);
      if (!f) functions.set(k.name, (f = cuda.loadModule(ptxModule([k.text], arch), k.name).getFunction(k.name)));
      const { bytes, offsets } = packParams(args.map(param));
      f.launch(grid, [block, 1, 1], 0, null, bytes, offsets);
    },
    free: (p) => cuda.free(big(p)),
  };
}

function param(a: LaunchArg) {
  if ('ptr' in a) return { type: 'u64' as const, value: a.ptr as DevicePtr };
  if ('u32' in a) return { type: 'u32' as const, value: a.u32 };
  return { type: 'f32' as const, value: a.f32 };
}
