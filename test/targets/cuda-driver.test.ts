// The native CUDA driver addon (targets/cuda/native) and its TypeScript wrapper (targets/cuda/driver.ts).
// These run anywhere: without a GPU they check the "no driver" path, and a tiny fake libcuda (built here
// with cc and loaded through $MOCC_LIBCUDA in a child process) drives the error and data paths of the addon.
import test, { type ExecutionContext } from 'ava';
import { spawnSync } from 'node:child_process';
import { existsSync, readFileSync, writeFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';
import { ROOT } from '../helpers/fixtures.js';
import { tempDir } from '../helpers/cli.js';
import { CudaUnavailableError, addonPath, cudaAvailability, openCuda, packParams } from '../../targets/cuda/driver.js';
import { cCompilerRequirement, cudaAddonRequirement, testsNeeding } from '../helpers/requires.js';

/** The addon's own tests need it built; the fake-driver ones also build a fake libcuda with cc. */
const addonTest = testsNeeding(cudaAddonRequirement());
const fakeDriverTest = testsNeeding(cudaAddonRequirement(), cCompilerRequirement());

const ADDON = join(ROOT, 'targets/cuda/native/build/Release/mocc_cuda.node');
addonTest('the addon is built where the wrapper looks and loads without a CUDA driver', (t) => {
  t.is(addonPath(), ADDON);
  const addon = createRequire(import.meta.url)(ADDON) as Record<string, unknown>;
  for (const f of ['load', 'init', 'memAlloc', 'memcpyHtoD', 'moduleLoad', 'launch', 'streamBeginCapture', 'eventElapsed']) {
    t.is(typeof addon[f], 'function', f);
  }
});

test('without a driver: cudaAvailability() says why, openCuda() throws CudaUnavailableError', (t) => {
  const a = cudaAvailability();
  if (a.ok || !a.reason.startsWith('no CUDA driver found')) {
    // A machine with a CUDA driver: availability must still be a clean answer, never a throw.
    if (a.ok) t.true(a.device.multiprocessors > 0);
    else t.throws(() => openCuda(), { instanceOf: CudaUnavailableError, message: a.reason });
    return;
  }
  t.regex(a.reason, /^no CUDA driver found: .*libcuda\.so\.1/);
  t.false(a.reason.includes('\n'));
  const e = t.throws(() => openCuda(), { instanceOf: CudaUnavailableError });
  t.is(e?.name, 'CudaUnavailableError');
  t.regex(e!.message, /^no CUDA driver found: libcuda\.so\.1: cannot open shared object file/);
  t.false(e!.message.includes('\n'));
});

test('packParams lays out [u64, u32, f32, u64] at offsets [0, 8, 12, 16], little-endian', (t) => {
  const { bytes, offsets } = packParams([
    { type: 'u64', value: 0x1122334455667788n },
    { type: 'u32', value: 0xdeadbeef },
    { type: 'f32', value: 1.5 },
    { type: 'u64', value: 0x7f0000001000n },
  ]);
  t.deepEqual([...offsets], [0, 8, 12, 16]);
  t.is(bytes.byteLength, 24);
  const dv = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  t.is(dv.getBigUint64(0, true), 0x1122334455667788n);
  t.is(bytes[0], 0x88);
  t.is(dv.getUint32(8, true), 0xdeadbeef);
  t.is(dv.getFloat32(12, true), 1.5);
  t.is(dv.getBigUint64(16, true), 0x7f0000001000n);
});

test('packParams puts a tensor map (128 bytes by value) at the next multiple of 64, as .param .align 64 .b8 [128]', (t) => {
  const map = Uint8Array.from({ length: 128 }, (_, i) => i + 1);
  const { bytes, offsets } = packParams([{ type: 'u64', value: 5n }, { type: 'tmap', value: map }, { type: 'u32', value: 7 }]);
  t.deepEqual([...offsets], [0, 64, 192]);
  t.is(bytes.byteLength, 196);
  t.deepEqual([...bytes.subarray(64, 192)], [...map]);
  t.throws(() => packParams([{ type: 'tmap', value: new Uint8Array(64) }]), { message: /128 bytes/ });
});

test('packParams aligns each parameter to its size and rejects out-of-range values', (t) => {
  const { bytes, offsets } = packParams([
    { type: 'i32', value: -2 },
    { type: 'u64', value: 5 },
    { type: 'f32', value: 0.25 },
  ]);
  t.deepEqual([...offsets], [0, 8, 16]);
  t.is(bytes.byteLength, 20);
  const dv = new DataView(bytes.buffer);
  t.is(dv.getInt32(0, true), -2);
  t.is(dv.getBigUint64(8, true), 5n);
  t.is(packParams([]).bytes.byteLength, 0);
  t.throws(() => packParams([{ type: 'u32', value: -1 }]), { instanceOf: RangeError });
  t.throws(() => packParams([{ type: 'i32', value: 2 ** 31 }]), { instanceOf: RangeError });
  t.throws(() => packParams([{ type: 'u64', value: -1n }]), { instanceOf: RangeError });
});

// ---- a fake libcuda ----

const FAKE_CUDA_C = String.raw`
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
typedef int CUresult;
static const char *mode(void) { const char *m = getenv("FAKE_CUDA_MODE"); return m ? m : "ok"; }
CUresult cuGetErrorName(CUresult r, const char **s) {
  switch (r) {
    case 0: *s = "CUDA_SUCCESS"; return 0;
    case 1: *s = "CUDA_ERROR_INVALID_VALUE"; return 0;
    case 2: *s = "CUDA_ERROR_OUT_OF_MEMORY"; return 0;
    case 100: *s = "CUDA_ERROR_NO_DEVICE"; return 0;
    case 218: *s = "CUDA_ERROR_INVALID_PTX"; return 0;
    case 500: *s = "CUDA_ERROR_NOT_FOUND"; return 0;
    case 801: *s = "CUDA_ERROR_NOT_SUPPORTED"; return 0;
    default: *s = 0; return 1;
  }
}
CUresult cuInit(unsigned f) { return strcmp(mode(), "nodevice") == 0 ? 100 : (f ? 1 : 0); }
CUresult cuDriverGetVersion(int *v) { *v = 12040; return 0; }
CUresult cuDeviceGetCount(int *n) { *n = 1; return 0; }
CUresult cuDeviceGet(int *d, int o) { if (o != 0) return 101; *d = 0; return 0; }
CUresult cuDeviceGetName(char *s, int len, int d) { strncpy(s, "Fake GPU", len); return 0; }
CUresult cuDeviceGetAttribute(int *v, int a, int d) {
  switch (a) { case 16: *v = 132; return 0; case 38: *v = 50331648; return 0; case 75: *v = 9; return 0;
               case 76: *v = 0; return 0; case 97: *v = 232448; return 0; default: return 1; }
}
CUresult cuDeviceTotalMem_v2(size_t *b, int d) { *b = (size_t)80 << 30; return 0; }
static int ctx_refs;
CUresult cuDevicePrimaryCtxRetain(void **c, int d) { ctx_refs++; *c = (void *)0x1000; return 0; }
CUresult cuDevicePrimaryCtxRelease_v2(int d) { return ctx_refs-- > 0 ? 0 : 1; }
CUresult cuCtxSetCurrent(void *c) { return 0; }
CUresult cuCtxSynchronize(void) { return 0; }
static long live_allocs;
CUresult cuMemAlloc_v2(unsigned long long *p, size_t n) {
  if (n > ((size_t)1 << 30)) return 2;
  void *m = malloc(n ? n : 1); if (!m) return 2; live_allocs++; *p = (uintptr_t)m; return 0;
}
CUresult cuMemFree_v2(unsigned long long p) { free((void *)(uintptr_t)p); live_allocs--; return 0; }
static int live_objects = 0; /* streams, events, graphs, graph execs not yet destroyed */
/* free = live allocations, total = live streams/events/graphs/execs: the test reads both */
CUresult cuMemGetInfo_v2(size_t *f, size_t *t) { *f = (size_t)live_allocs; *t = (size_t)live_objects; return 0; }
CUresult cuMemcpyHtoD_v2(unsigned long long d, const void *s, size_t n) { memcpy((void *)(uintptr_t)d, s, n); return 0; }
CUresult cuMemcpyDtoH_v2(void *d, unsigned long long s, size_t n) { memcpy(d, (void *)(uintptr_t)s, n); return 0; }
CUresult cuMemcpyHtoDAsync_v2(unsigned long long d, const void *s, size_t n, void *st) { return cuMemcpyHtoD_v2(d, s, n); }
CUresult cuMemcpyDtoHAsync_v2(void *d, unsigned long long s, size_t n, void *st) { return cuMemcpyDtoH_v2(d, s, n); }
CUresult cuMemsetD32_v2(unsigned long long d, unsigned v, size_t n) { for (size_t i = 0; i < n; i++) ((unsigned *)(uintptr_t)d)[i] = v; return 0; }
CUresult cuMemsetD32Async(unsigned long long d, unsigned v, size_t n, void *s) { return cuMemsetD32_v2(d, v, n); }
/* Streams are numbered in creation order (launch lines name the stream by its number). */
static void *streams[64]; static int nstreams;
CUresult cuStreamCreate(void **s, unsigned f) { *s = malloc(1); live_objects++; if (nstreams < 64) streams[nstreams++] = *s; return f == 1 ? 0 : 1; }
static int stream_no(void *s) { for (int i = 0; i < nstreams; i++) if (streams[i] == s) return i; return -1; }
CUresult cuStreamDestroy_v2(void *s) { free(s); live_objects--; return 0; }
CUresult cuEventCreate(void **e, unsigned f) { *e = malloc(1); live_objects++; return 0; }
CUresult cuEventDestroy_v2(void *e) { free(e); live_objects--; return 0; }
CUresult cuEventRecord(void *e, void *s) { return 0; }
CUresult cuEventSynchronize(void *e) { return 0; }
CUresult cuEventElapsedTime(float *ms, void *a, void *b) { *ms = 1.25f; return 0; }
CUresult cuStreamBeginCapture_v2(void *s, int mode) { return 0; }
CUresult cuStreamEndCapture(void *s, void **g) { *g = malloc(1); live_objects++; return 0; }
CUresult cuGraphInstantiateWithFlags(void **e, void *g, unsigned long long f) { *e = malloc(1); live_objects++; return 0; }
CUresult cuGraphLaunch(void *e, void *s) { return 0; }
CUresult cuGraphExecDestroy(void *e) { free(e); live_objects--; return 0; }
CUresult cuGraphDestroy(void *g) { free(g); live_objects--; return 0; }

CUresult cuStreamSynchronize(void *s) { return 0; }
CUresult cuModuleLoadDataEx(void **m, const void *img, unsigned n, int *opts, void **vals) {
  if (strstr((const char *)img, "bad")) {
    for (unsigned i = 0; i < n; i++) if (opts[i] == 5) strcpy((char *)vals[i], "ptxas fatal   : fake parse error at line 1");
    return 218;
  }
  *m = (void *)0x2000; return 0;
}
CUresult cuModuleUnload(void *m) { return 0; }
CUresult cuModuleGetFunction(void **f, void *m, const char *name) { if (strcmp(name, "add") != 0) return 500; *f = (void *)0x3000; return 0; }
CUresult cuFuncSetAttribute(void *f, int a, int v) { return a == 8 && v >= 0 ? 0 : 1; }
/* Every launch call appends one line to $FAKE_CUDA_LOG (when set), for the test to read. */
static void log_launch(const char *fmt, ...) {
  const char *path = getenv("FAKE_CUDA_LOG"); if (!path) return;
  FILE *fp = fopen(path, "a"); if (!fp) return;
  va_list ap; va_start(ap, fmt); vfprintf(fp, fmt, ap); va_end(ap); fputc('\n', fp); fclose(fp);
}
/* "add"(float *p, unsigned n, float x): p[i] += x, run on the host. */
static CUresult run_add(unsigned gx, unsigned gy, unsigned gz, unsigned bx, unsigned by, unsigned bz, void **params) {
  if (!gx || !gy || !gz || !bx || !by || !bz) return 1;
  float *p = *(float **)params[0]; unsigned n = *(unsigned *)params[1]; float x = *(float *)params[2];
  for (unsigned i = 0; i < n; i++) p[i] += x;
  return 0;
}
CUresult cuLaunchKernel(void *f, unsigned gx, unsigned gy, unsigned gz, unsigned bx, unsigned by, unsigned bz,
                        unsigned sh, void *st, void **params, void **extra) {
  log_launch("cuLaunchKernel grid %u,%u,%u block %u,%u,%u shared %u stream %d", gx, gy, gz, bx, by, bz, sh, stream_no(st));
  return run_add(gx, gy, gz, bx, by, bz, params);
}
#ifndef FAKE_NO_LAUNCH_EX
/* cuLaunchKernelEx(const CUlaunchConfig *, CUfunction, void **params, void **extra). The config is read
   at cuda.h's byte offsets (x86-64/aarch64), not through a copy of the addon's struct declarations, so a
   layout mistake in the addon shows up here: CUlaunchConfig = 7 x u32 dims/shared at 0..27, hStream at 32,
   attrs at 40, numAttrs at 48; CUlaunchAttribute = id (int) at 0, 64-byte value union at 8, 72 bytes each. */
CUresult cuLaunchKernelEx(const void *config, void *f, void **params, void **extra) {
  const char *c = (const char *)config;
  unsigned d[7]; void *st; const char *attrs; unsigned nattrs;
  memcpy(d, c, sizeof d); memcpy(&st, c + 32, 8); memcpy(&attrs, c + 40, 8); memcpy(&nattrs, c + 48, 4);
  int id = -1, allowed = -1;
  if (nattrs >= 1 && attrs) { memcpy(&id, attrs, 4); memcpy(&allowed, attrs + 8, 4); }
  log_launch("cuLaunchKernelEx grid %u,%u,%u block %u,%u,%u shared %u stream %d attrs %u id %d allowed %d",
             d[0], d[1], d[2], d[3], d[4], d[5], d[6], stream_no(st), nattrs, id, allowed);
  /* Only exactly one attribute, PROGRAMMATIC_STREAM_SERIALIZATION (6) = 1, is what the addon should send. */
  if (nattrs != 1 || id != 6 || allowed != 1) return 801;
  return run_add(d[0], d[1], d[2], d[3], d[4], d[5], params);
}
#endif
`;

const CHILD = String.raw`
import { openCuda, packParams } from ${JSON.stringify(pathToFileURL(join(ROOT, 'targets/cuda/driver.ts')).href)};
const out = {};
const err = (f) => { try { f(); return null; } catch (e) { return { name: e.name, message: e.message, code: e.code }; } };
let cuda;
out.open = err(() => { cuda = openCuda(); });
if (cuda) {
  out.device = cuda.device;
  out.oom = err(() => cuda.malloc(1073741824000));
  out.badPtx = err(() => cuda.loadModule('.version 8.0 bad', 'broken'));
  const mod = cuda.loadModule('.version 8.0', 'good');
  out.missing = err(() => mod.getFunction('nope'));
  const fn = mod.getFunction('add');
  fn.setMaxDynamicShared(100000);
  const n = 5;
  const p = cuda.malloc(n * 4);
  cuda.copyToDevice(p, new Float32Array([1, 2, 3, 4, 5]));
  const { bytes, offsets } = packParams([{ type: 'u64', value: p }, { type: 'u32', value: 4 }, { type: 'f32', value: 0.5 }]);
  const s = cuda.createStream();
  fn.launch([1, 1, 1], [32, 1, 1], 0, s, bytes, offsets);
  out.zeroGrid = err(() => fn.launch([0, 1, 1], [32, 1, 1], 0, s, bytes, offsets));
  out.fractionalGrid = err(() => fn.launch([1.5, 1, 1], [32, 1, 1], 0, s, bytes, offsets));
  out.badOffset = err(() => fn.launch([1, 1, 1], [32, 1, 1], 0, s, bytes, new Uint32Array([0, 8, 99])));
  // programmatic dependent launch: p[0..3] += 0.25 with overlap, += 0.125 with overlap: false
  const quarter = packParams([{ type: 'u64', value: p }, { type: 'u32', value: 4 }, { type: 'f32', value: 0.25 }]);
  fn.launch([2, 3, 4], [64, 2, 1], 48, s, quarter.bytes, quarter.offsets, { overlap: true });
  const eighth = packParams([{ type: 'u64', value: p }, { type: 'u32', value: 4 }, { type: 'f32', value: 0.125 }]);
  fn.launch([1, 1, 1], [32, 1, 1], 16, null, eighth.bytes, eighth.offsets, { overlap: false });
  out.zeroGridOverlap = err(() => fn.launch([0, 1, 1], [32, 1, 1], 0, s, bytes, offsets, { overlap: true }));
  out.notBoolOverlap = err(() => fn.launch([1, 1, 1], [32, 1, 1], 0, s, bytes, offsets, { overlap: 1 }));
  const back = new Float32Array(n);
  cuda.copyFromDevice(back, p, s);
  s.synchronize();
  out.added = [...back];
  out.tooMany = err(() => cuda.copyToDevice(p, new Uint8Array(4), undefined, 5));
  out.tooManyBack = err(() => cuda.copyFromDevice(new Uint8Array(4), p, null, 8));
  out.notView = err(() => cuda.copyToDevice(p, [1, 2, 3]));
  out.notBigint = err(() => cuda.copyToDevice(123, new Uint8Array(4)));
  cuda.memsetD32(p, -1, 2);
  const words = new Uint32Array(n);
  cuda.copyFromDevice(words, p);
  out.memset = [...words];
  // lifecycle: destroyed objects refuse use; close() frees the rest exactly once
  const ev0 = cuda.createEvent(), ev1 = cuda.createEvent();
  ev0.record(s); ev1.record(s); ev1.synchronize();
  out.elapsed = ev1.elapsedMs(ev0);
  ev1.destroy();
  out.eventAfterDestroy = err(() => ev1.record(s));
  s.beginCapture();
  const graph = s.endCapture();
  const exec = graph.instantiate();
  exec.launch(s);
  exec.destroy();
  out.execAfterDestroy = err(() => exec.launch(s));
  const s2 = cuda.createStream();
  s2.destroy();
  out.streamAfterDestroy = err(() => s2.synchronize());
  out.doubleDestroy = err(() => s2.destroy());
  const mod2 = cuda.loadModule('.version 8.0', 'second');
  mod2.unload();
  out.moduleAfterUnload = err(() => mod2.getFunction('add'));
  cuda.malloc(64);
  out.liveBeforeClose = cuda.memGetInfo().free;
  out.objectsBeforeClose = cuda.memGetInfo().total; // stream s, event ev0, graph: the rest were destroyed
  cuda.close();
  out.afterClose = err(() => cuda.malloc(4));
}
console.log(JSON.stringify(out));
`;

/** Runs CHILD against the fake driver built with `cflags` (e.g. -DFAKE_NO_LAUNCH_EX: a driver from before
 *  CUDA 11.8, without cuLaunchKernelEx); returns its output and the fake's launch log, one line per call. */
// eslint-disable-next-line @typescript-eslint/no-explicit-any
function runChild(t: ExecutionContext, mode: string, cflags: string[] = []): Record<string, any> & { launches: string[] } {
  const dir = tempDir(t);
  const lib = join(dir, 'libfakecuda.so');
  const src = join(dir, 'fakecuda.c');
  const log = join(dir, 'launches.log');
  writeFileSync(src, FAKE_CUDA_C);
  const cc = spawnSync('cc', ['-shared', '-fPIC', '-O1', ...cflags, '-o', lib, src], { encoding: 'utf8' });
  t.is(cc.status, 0, cc.stderr);
  const script = join(dir, 'child.mts');
  writeFileSync(script, CHILD);
  const r = spawnSync(process.execPath, ['--import', 'tsx', script], {
    cwd: ROOT,
    encoding: 'utf8',
    env: { ...process.env, MOCC_LIBCUDA: lib, FAKE_CUDA_MODE: mode, FAKE_CUDA_LOG: log },
    timeout: 60_000,
  });
  t.is(r.status, 0, r.stderr);
  const launches = existsSync(log) ? readFileSync(log, 'utf8').split('\n').filter((l) => l !== '') : [];
  return { ...(JSON.parse(r.stdout.trim().split('\n').pop()!) as Record<string, unknown>), launches };
}

fakeDriverTest('a driver whose cuInit fails: openCuda() names cuInit and CUDA_ERROR_NO_DEVICE', (t) => {
  const out = runChild(t, 'nodevice');
  t.is(out.open?.name, 'CudaUnavailableError');
  t.is(out.open?.message, 'cuInit(0) failed: CUDA_ERROR_NO_DEVICE (100)');
});

fakeDriverTest('through a fake driver: device info, errors naming the call, copies, launch parameters, close', (t) => {
  const out = runChild(t, 'ok');
  t.is(out.open, null);
  t.deepEqual(out.device, {
    name: 'Fake GPU', computeCapability: [9, 0], multiprocessors: 132, totalMemoryBytes: 80 * 2 ** 30,
    l2Bytes: 50331648, maxSharedPerBlockOptin: 232448, driverVersion: 12040,
  });
  t.is(out.oom?.message, 'cuMemAlloc_v2(1073741824000 bytes) failed: CUDA_ERROR_OUT_OF_MEMORY (2)');
  t.is(out.oom?.code, 'CUDA_ERROR_OUT_OF_MEMORY');
  t.is(out.badPtx?.message, 'cuModuleLoadDataEx(broken) failed: CUDA_ERROR_INVALID_PTX (218)\nptxas fatal   : fake parse error at line 1');
  t.is(out.missing?.message, 'cuModuleGetFunction(nope) failed: CUDA_ERROR_NOT_FOUND (500)');
  // 0.5 from the plain launch, 0.25 from the overlapping one, 0.125 from the overlap: false one, on p[0..3]
  t.deepEqual(out.added, [1.875, 2.875, 3.875, 4.875, 5]);
  t.is(out.zeroGrid?.message, 'cuLaunchKernel(add, grid [0, 1, 1], block [32, 1, 1], 0 shared bytes) failed: CUDA_ERROR_INVALID_VALUE (1)');
  t.is(out.fractionalGrid?.name, 'RangeError');
  t.regex(out.fractionalGrid?.message, /must be an integer in \[0, 2\^32\) \(got 1\.5\)/);
  t.is(out.badOffset?.name, 'RangeError');
  t.is(out.tooMany?.name, 'RangeError');
  t.regex(out.tooMany?.message, /5 bytes requested but the source holds only 4/);
  t.is(out.tooManyBack?.name, 'RangeError');
  t.is(out.notView?.name, 'TypeError');
  t.is(out.notBigint?.name, 'TypeError');
  t.deepEqual(out.memset, [0xffffffff, 0xffffffff, ...new Uint32Array(new Float32Array([3.875, 4.875, 5]).buffer)]);
  t.is(out.liveBeforeClose, 2);
  t.is(out.objectsBeforeClose, 3);
  t.is(out.elapsed, 1.25);
  t.is(out.eventAfterDestroy?.message, 'event was destroyed');
  t.is(out.execAfterDestroy?.message, 'graph exec was destroyed');
  t.is(out.streamAfterDestroy?.message, 'stream was destroyed');
  t.is(out.doubleDestroy?.message, 'stream was destroyed');
  t.is(out.moduleAfterUnload?.message, 'module second was unloaded');
  t.is(out.afterClose?.message, 'CUDA context is closed');
});

// What every fake-driver run does with overlap, whichever driver: the kernel runs once per launch, bad arguments
// are caught before the driver.
// eslint-disable-next-line @typescript-eslint/no-explicit-any
function checkOverlapCommon(t: ExecutionContext, out: Record<string, any>): void {
  t.is(out.open, null);
  t.deepEqual(out.added, [1.875, 2.875, 3.875, 4.875, 5]);
  t.is(out.notBoolOverlap?.name, 'TypeError');
  t.is(out.notBoolOverlap?.message, 'overlap must be a boolean');
}

fakeDriverTest('overlap: true launches through cuLaunchKernelEx with PROGRAMMATIC_STREAM_SERIALIZATION = 1; without it, cuLaunchKernel', (t) => {
  const out = runChild(t, 'ok');
  checkOverlapCommon(t, out);
  // Stream 0 is `s`; -1 is the NULL stream. The fake reads the config at cuda.h's offsets, so these values
  // also pin the struct layout (dims, shared bytes, stream, attrs pointer, numAttrs, attribute id and value).
  t.deepEqual(out.launches, [
    'cuLaunchKernel grid 1,1,1 block 32,1,1 shared 0 stream 0',
    'cuLaunchKernel grid 0,1,1 block 32,1,1 shared 0 stream 0',
    'cuLaunchKernelEx grid 2,3,4 block 64,2,1 shared 48 stream 0 attrs 1 id 6 allowed 1',
    'cuLaunchKernel grid 1,1,1 block 32,1,1 shared 16 stream -1',
    'cuLaunchKernelEx grid 0,1,1 block 32,1,1 shared 0 stream 0 attrs 1 id 6 allowed 1',
  ]);
  t.is(out.zeroGridOverlap?.message,
    'cuLaunchKernelEx(add, grid [0, 1, 1], block [32, 1, 1], 0 shared bytes, programmatic overlap) failed: CUDA_ERROR_INVALID_VALUE (1)');
  t.is(out.zeroGridOverlap?.code, 'CUDA_ERROR_INVALID_VALUE');
});

fakeDriverTest('overlap on a driver without cuLaunchKernelEx: it still loads, and overlap launches fall back to cuLaunchKernel', (t) => {
  const out = runChild(t, 'ok', ['-DFAKE_NO_LAUNCH_EX']);
  checkOverlapCommon(t, out);
  t.deepEqual(out.launches, [
    'cuLaunchKernel grid 1,1,1 block 32,1,1 shared 0 stream 0',
    'cuLaunchKernel grid 0,1,1 block 32,1,1 shared 0 stream 0',
    'cuLaunchKernel grid 2,3,4 block 64,2,1 shared 48 stream 0',
    'cuLaunchKernel grid 1,1,1 block 32,1,1 shared 16 stream -1',
    'cuLaunchKernel grid 0,1,1 block 32,1,1 shared 0 stream 0',
  ]);
  t.is(out.zeroGridOverlap?.message,
    'cuLaunchKernel(add, grid [0, 1, 1], block [32, 1, 1], 0 shared bytes) failed: CUDA_ERROR_INVALID_VALUE (1)');
});
