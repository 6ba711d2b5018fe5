// The CUDA training executor's device (targets/cuda/train/device.ts) over the CPU PTX interpreter
// (ptx-sim.ts): one flat memory, every global access checked aligned and inside an allocation, the
// kernels run one after another in launch order. Stricter than the GPU where a test would otherwise
// pass by luck: host copies and fills must lie inside one allocation too, and a kernel name launched
// again with other text throws (both devices load a kernel once per name). Counts launches and
// simulated time for the report. The training-kernel tests' Dev (train-dev.ts) runs over this too.
import type { DevPtr, TrainDevice } from '../../targets/cuda/train/device.js';
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
  const modules = new Map<string, { text: string; ptx: string }>();
  const msByKernel = new Map<string, number>();
  let launches = 0;
  const view = (v: ArrayBufferView) => new Uint8Array(v.buffer, v.byteOffset, v.byteLength);
  const mem = new Uint8Array(sim.mem.buffer);
  const sizes = new Map<number, number>();
  /** The host copy of `bytes` at p, checked inside one allocation (the bytes from its start). */
  const inside = (p: DevPtr, bytes: number, what: string): number => {
    const at = Number(p), start = [...sizes.keys()].filter((a) => a <= at).reduce((x, y) => Math.max(x, y), -1);
    if (start < 0 || at + bytes > start + sizes.get(start)!) throw new Error(`simTrainDevice: ${what} of ${bytes} bytes at ${at} outside every allocation`);
    return at;
  };
  return {
    sim,
    get launches() {
      return launches;
    },
    msByKernel,
    alloc(n) {
      const { addr } = sim.alloc(n);
      sizes.set(addr, n);
      return addr;
    },
    upload(dst, data) {
      mem.set(view(data), inside(dst, data.byteLength, 'upload'));
    },
    download(src, out) {
      const at = inside(src, out.byteLength, 'download');
      view(out).set(mem.subarray(at, at + out.byteLength));
      return out;
    },
    fill(dst, n, word) {
      const at = inside(dst, n, 'fill');
      for (let o = 0; o < n; o += 4) sim.mem.setUint32(at + o, word >>> 0, true);
    },
    launch(k, grid, block, args, opts) {
      if (grid[0] * grid[1] * grid[2] === 0) return;
      // the Hopper GEMM (wgmma, TMA, dynamic shared memory) is beyond the interpreter: this device offers no `wgmma`
      if (opts?.target || opts?.shared || args.some((a) => 'tmap' in a)) throw new Error(`simTrainDevice: ${k.name} is an sm_90a kernel (wgmma, tensor maps, dynamic shared memory), which the interpreter cannot run`);
      let m = modules.get(k.name);
      if (!m) modules.set(k.name, (m = { text: k.text, ptx: ptxModule([k.text], 'sm_80') }));
      else if (m.text !== k.text) throw new Error(`simTrainDevice: kernel ${k.name} launched again with other text (a name must say everything its text depends on)`);
      const t0 = performance.now();
      sim.launch(m.ptx, grid, block, args.map((a) => Number('ptr' in a ? a.ptr : 'u32' in a ? a.u32 : 'f32' in a ? a.f32 : NaN)));
      msByKernel.set(k.name, (msByKernel.get(k.name) ?? 0) + performance.now() - t0);
      launches++;
    },
    free(p) {
      sizes.delete(Number(p)); // (the interpreter's memory is not reused: a later access there still passes its check)
    },
  };
}
