// The interpreter device under every training test (test/helpers/train-sim-device.ts, and
// train-dev.ts's Dev over it) refuses what the GPU would let pass by luck, and poisons as documented.
import test from 'ava';
import { padZero, padZeroGrid, PAD_ZERO_THREADS } from '../../targets/cuda/ptx/train-pad-zero.js';
import { simTrainDevice } from '../helpers/train-sim-device.js';
import { simDev } from '../helpers/train-dev.js';

test('host copies and fills outside one allocation throw', (t) => {
  const d = simTrainDevice(1 << 12);
  const a = d.alloc(12);
  d.alloc(12);
  t.throws(() => d.upload(Number(a) + 8, new Float32Array(2)), { message: /outside every allocation/ });
  t.throws(() => d.download(a, new Float32Array(4)), { message: /outside every allocation/ });
  t.throws(() => d.fill(Number(a) + 4, 12, 0), { message: /outside every allocation/ });
  t.throws(() => d.download(8, new Float32Array(1)), { message: /outside every allocation/ });
  t.deepEqual(Array.from(d.download(Number(a) + 4, new Float32Array(2))), [0, 0]);
});

test('a kernel name launched again with other text throws', (t) => {
  const d = simTrainDevice(1 << 12);
  const x = d.alloc(4 * 8), k3 = padZero(3), k5 = padZero(5);
  d.launch(k3, padZeroGrid(1), PAD_ZERO_THREADS, [{ ptr: x }, { u32: 1 }]);
  t.throws(() => d.launch({ name: k3.name, text: k5.text }, padZeroGrid(1), PAD_ZERO_THREADS, [{ ptr: x }, { u32: 1 }]), { message: /other text/ });
});

test('Dev.nan: f32 NaN words, bf16 NaN pairs, a last half word a bf16 NaN; odd sizes refused', (t) => {
  const dev = simDev(1 << 12);
  t.deepEqual(Array.from(dev.get(dev.nan(8), new Uint32Array(2))), [0x7fc00000, 0x7fc00000]);
  t.deepEqual(Array.from(dev.get(dev.nan(6, true), new Uint16Array(3))), [0x7fc0, 0x7fc0, 0x7fc0]);
  t.deepEqual(Array.from(dev.get(dev.nan(6), new Uint16Array(3))), [0, 0x7fc0, 0x7fc0]);
  t.throws(() => dev.nan(5));
});
