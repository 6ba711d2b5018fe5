// The CUDA training executor's device (targets/cuda/train/device.ts) over the CPU PTX interpreter
// (ptx-sim.ts): one flat memory, every global access checked aligned and inside an allocation, the
// kernels run one after another in launch order. Counts launches and simulated time for the report.
import type { TrainDevice } from '../../targets/cuda/train/device.js';
import { ptxModule } from '../../targets/cuda/ptx/builder.js';
import { PtxSim } from './ptx-sim.js';

export interface SimTrainDevice extends TrainDevice {
  readonly sim: PtxSim;
  /** Launches so far, and wall milliseconds per kernel name. */
  readonly launches: number;
  readonly msByKernel: Map<string, number>;
}

export function simTrainDevice(bytes: number): SimTrainDevice {
  const sim = new PtxSim(bytes);
  const modules = new Map<string, string>();
  const msByKernel = new Map<string, number>();
  let launches = 0;
  const view = (v: ArrayBufferView) => new Uint8Array(v.buffer, v.byteOffset, v.byteLength);
  const mem = new Uint8Array(sim.mem.buffer);
  return {
    sim,
    get launches() {
      return launches;
    },
    msByKernel,
    alloc: (n) => sim.alloc(n).addr,
    upload(dst, data) {
      mem.set(view(data), Number(dst));
    },
    download(src, out) {
      view(out).set(mem.subarray(Number(src), Number(src) + out.byteLength));
      return out;
    },
    fill(dst, n, word) {
      for (let o = 0; o < n; o += 4) sim.mem.setUint32(Number(dst) + o, word >>> 0, true);
    },
    launch(k, grid, block, args) {
      if (grid[0] * grid[1] * grid[2] === 0) return;
      let text = modules.get(k.name);
      if (!text) modules.set(k.name, (text = ptxModule([k.text], 'sm_80')));
      const t0 = performance.now();
      sim.launch(text, grid, block, args.map((a) => Number('ptr' in a ? a.ptr : 'u32' in a ? a.u32 : a.f32)));
      msByKernel.set(k.name, (msByKernel.get(k.name) ?? 0) + performance.now() - t0);
      launches++;
    },
    free() {},
  };
}
