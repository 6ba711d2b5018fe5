// bench/gpu/kernel-times.ts: events around every launch while on, summed by kernel family. A fake
// driver whose events read a clock that each launch advances by a known amount stands in for the GPU.
import test from 'ava';
import type { Cuda, CudaEvent } from '../../targets/cuda/driver.js';
import type { TrainDevice } from '../../targets/cuda/train/device.js';
import type { Kernel } from '../../targets/cuda/ptx/dense.js';
import { formatKernelTimes, kernelFamily, kernelTimer } from '../../bench/gpu/kernel-times.js';

test('kernelFamily: the name up to its second underscore', (t) => {
  t.is(kernelFamily('gemm_xwt_bf16_m128n128'), 'gemm_xwt');
  t.is(kernelFamily('adamw'), 'adamw');
  t.is(kernelFamily('train_moc_gather_172'), 'train_moc');
});

test('kernelTimer: launches timed only while on, summed by family and by kernel, longest first', (t) => {
  let clock = 0, created = 0;
  const cost: Record<string, number> = { gemm_xwt_a: 5, gemm_xwt_b: 3, cast_rows_bf16: 1 };
  const launched: string[] = [];
  const shared: (number | undefined)[] = [];
  const dev = { wgmma: { multiprocessors: 132 }, launch: (k: Kernel, _g: unknown, _b: unknown, _a: unknown, o?: { shared?: number }) => { launched.push(k.name); shared.push(o?.shared); clock += cost[k.name]!; } } as unknown as TrainDevice;
  const cuda = {
    createEvent(): CudaEvent {
      created++;
      let at = NaN;
      const e: CudaEvent = { record: () => { at = clock; }, synchronize() {}, elapsedMs: (since) => at - (since as unknown as { at: () => number }).at(), destroy() {} };
      return Object.assign(e, { at: () => at });
    },
  } as unknown as Cuda;
  const timer = kernelTimer(dev, cuda);
  const k = (name: string) => ({ name, text: '' }) as Kernel;
  timer.dev.launch(k('gemm_xwt_a'), [1, 1, 1], 32, [], { shared: 1024 });
  t.is(created, 0, 'no events while off');
  t.deepEqual(timer.dev.wgmma, { multiprocessors: 132 }, 'the device\'s wgmma passes through');
  timer.start();
  for (const n of ['gemm_xwt_a', 'cast_rows_bf16', 'gemm_xwt_b', 'cast_rows_bf16']) timer.dev.launch(k(n), [1, 1, 1], 32, [], n.startsWith('gemm') ? { shared: 2048 } : undefined);
  const times = timer.stop();
  t.deepEqual(shared, [1024, 2048, undefined, 2048, undefined], 'launch options pass through, on or off');
  t.deepEqual(times, [
    { family: 'gemm_xwt', launches: 2, ms: 8, kernels: [{ name: 'gemm_xwt_a', launches: 1, ms: 5 }, { name: 'gemm_xwt_b', launches: 1, ms: 3 }] },
    { family: 'cast_rows', launches: 2, ms: 2, kernels: [{ name: 'cast_rows_bf16', launches: 2, ms: 2 }] },
  ]);
  t.is(launched.length, 5);
  timer.start(); // a second profile reuses the events
  timer.dev.launch(k('cast_rows_bf16'), [1, 1, 1], 32, []);
  t.deepEqual(timer.stop(), [{ family: 'cast_rows', launches: 1, ms: 1, kernels: [{ name: 'cast_rows_bf16', launches: 1, ms: 1 }] }]);
  t.is(created, 8);
  const lines = formatKernelTimes(times, 1);
  t.regex(lines[0]!, /gemm_xwt +x +2 +8\.00 ms +80\.0%/);
  t.regex(lines[1]!, /^ {8}gemm_xwt_a +x +1 +5\.00 ms +50\.0%/, 'a family of two kernels lists them');
  t.regex(lines[2]!, /^ {8}gemm_xwt_b +x +1 +3\.00 ms +30\.0%/);
  t.regex(lines.at(-1)!, /sum of 4 launches: 10\.0 ms/);
});
