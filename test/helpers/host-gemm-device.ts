// The interpreter's training device (train-sim-device.ts) with the bf16 tensor-core GEMMs of
// targets/cuda/ptx/gemm.ts (mma.sync, which the PTX interpreter does not run) computed on the host
// from the same device bytes, so the CUDA training executor's bf16 mode (ops-bf16.ts, ops-moc-bf16.ts)
// runs end to end on the CPU: every other kernel is interpreted as generated.
//
// Not the kernel: a model of what gemm.ts reads and writes (its header), enough to compare two runs
// of the executor bit for bit (same operand bytes → same result) and to let a wrong operand byte
// show: Y[m, n] (rows of pad8(N) f32; 'store' or 'accumulate' by the kernel name's suffix) = the sum
// over k of x·w in f32, k in order, each product of two bf16 numbers exact in f32, reading
//   'xwt' x [M, K] and w [N, K], rows of pad8(K), k up to pad8(K): both operands' padding columns
//         are multiplied, as gemm.ts loads a K-contiguous chunk whole;
//   'xw'  x [M, K] rows of pad8(K), k up to pad8(K) (x's padding read); w [K, N] rows of pad8(N),
//         rows k ≥ K zero (gemm.ts zero-fills them);
//   'xtw' x [K, M], w [K, N], k < K.
// So a NaN or Inf in a K-contiguous operand's padding makes NaN results here, as it may on the GPU
// (x·0 with x NaN), where the executor relies on finite padding. The f32 sum's order is not the
// tensor cores' (results differ from the GPU's in the last bits): compare runs of this device only.
import type { TrainDevice } from '../../targets/cuda/train/device.js';
import { pad8 } from '../../targets/cuda/ptx/layout.js';
import { bf16ToF32 } from '../../src/util/dtype.js';
import { simTrainDevice, type SimTrainDevice } from './train-sim-device.js';

const GEMM = /^gemm_(xwt|xw|xtw)_bf16_m\d+n\d+k32_w\d+x\d+(|_acc)$/;

/** simTrainDevice(bytes) with gemm.ts's bf16 'store' / 'accumulate' launches computed on the host (header); `gemms` counts them. */
export function hostGemmDevice(bytes: number): TrainDevice & { readonly sim: SimTrainDevice['sim']; readonly gemms: number } {
  const dev = simTrainDevice(bytes);
  const mem = dev.sim.mem;
  let gemms = 0;
  return {
    ...dev,
    sim: dev.sim,
    get gemms() {
      return gemms;
    },
    launch(k, grid, block, args, opts) {
      const m = GEMM.exec(k.name);
      if (!m) return dev.launch(k, grid, block, args, opts);
      const [y, x, w, M, N, K] = args.map((a) => Number('ptr' in a ? a.ptr : 'u32' in a ? a.u32 : NaN)) as [number, number, number, number, number, number];
      const layout = m[1] as 'xwt' | 'xw' | 'xtw', acc = m[2] === '_acc';
      const bf = (base: number, row: number, col: number, ld: number) => bf16ToF32(mem.getUint16(base + (row * pad8(ld) + col) * 2, true));
      const kEnd = layout === 'xtw' ? K : pad8(K);
      const xAt = (i: number, kk: number) => (layout === 'xtw' ? bf(x, kk, i, M) : bf(x, i, kk, K));
      const wAt = (j: number, kk: number) => (layout === 'xwt' ? bf(w, j, kk, K) : kk < K ? bf(w, kk, j, N) : 0);
      for (let i = 0; i < M; i++) {
        for (let j = 0; j < N; j++) {
          let s = 0;
          for (let kk = 0; kk < kEnd; kk++) s = Math.fround(s + xAt(i, kk) * wAt(j, kk));
          const at = y + (i * pad8(N) + j) * 4;
          mem.setFloat32(at, acc ? Math.fround(mem.getFloat32(at, true) + s) : s, true);
        }
      }
      gemms++;
    },
  };
}
