/*
 * mocc_cuda: a thin Node-API addon over the CUDA driver API.
 *
 * libcuda is opened at run time with dlopen (default "libcuda.so.1"; the JS side passes
 * $MOCC_LIBCUDA when set), so this addon builds and loads on machines without CUDA and
 * depends on nothing but libc/libdl. No CUDA headers: the few types, constants and
 * function signatures we use are declared below.
 *
 * Conventions of the exported functions (see targets/cuda/driver.ts for the typed wrapper):
 *  - every driver handle (context, module, function, stream, event, graph, graph exec) and
 *    every device pointer crosses into JS as a BigInt (the pointer value as uint64);
 *  - every context-bound function takes the context as its first argument and makes it
 *    current (cuCtxSetCurrent) before doing anything, so calls are correct on any thread;
 *  - a stream argument of null/undefined means the legacy NULL stream (0);
 *  - every failing driver call throws an Error "<call>(<details>) failed: <CUDA_ERROR_X> (<n>)"
 *    with `code` = "CUDA_ERROR_X" and `cudaError` = n; bad arguments throw TypeError/RangeError.
 */
#include <node_api.h>

#include <dlfcn.h>
#include <math.h>
#include <stddef.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ---- CUDA driver API declarations (subset) ---- */
typedef int CUresult;
typedef int CUdevice;
typedef struct CUctx_st *CUcontext;
typedef struct CUmod_st *CUmodule;
typedef struct CUfunc_st *CUfunction;
typedef struct CUstream_st *CUstream;
typedef struct CUevent_st *CUevent;
typedef struct CUgraph_st *CUgraph;
typedef struct CUgraphExec_st *CUgraphExec;
typedef unsigned long long CUdeviceptr;
typedef int CUjit_option;

#define CUDA_SUCCESS 0
#define CU_JIT_INFO_LOG_BUFFER 3
#define CU_JIT_INFO_LOG_BUFFER_SIZE_BYTES 4
#define CU_JIT_ERROR_LOG_BUFFER 5
#define CU_JIT_ERROR_LOG_BUFFER_SIZE_BYTES 6
#define CU_DEVICE_ATTRIBUTE_MULTIPROCESSOR_COUNT 16
#define CU_DEVICE_ATTRIBUTE_L2_CACHE_SIZE 38
#define CU_DEVICE_ATTRIBUTE_COMPUTE_CAPABILITY_MAJOR 75
#define CU_DEVICE_ATTRIBUTE_COMPUTE_CAPABILITY_MINOR 76
#define CU_DEVICE_ATTRIBUTE_MAX_SHARED_MEMORY_PER_BLOCK_OPTIN 97
#define CU_STREAM_NON_BLOCKING 1
#define CU_EVENT_DEFAULT 0
#define CU_LAUNCH_ATTRIBUTE_PROGRAMMATIC_STREAM_SERIALIZATION 6

/* cuLaunchKernelEx's argument types, laid out exactly as in cuda.h (CUDA 11.8 on; checked
   against CUDA 13's header). The driver reads these structs by layout, so the asserts below pin
   the sizes and offsets of the 64-bit ABI, the only one current drivers ship. */
typedef int CUlaunchAttributeID; /* an enum in cuda.h, so int-sized */
typedef union {
  char pad[64]; /* cuda.h pads the union to 64 bytes */
  int programmaticStreamSerializationAllowed;
  void *align_; /* cuda.h's union holds pointers (CUevent, ...), which make it 8-byte aligned */
} CUlaunchAttributeValue;
typedef struct {
  CUlaunchAttributeID id;
  char pad[8 - sizeof(CUlaunchAttributeID)];
  CUlaunchAttributeValue value;
} CUlaunchAttribute;
typedef struct {
  unsigned int gridDimX, gridDimY, gridDimZ;
  unsigned int blockDimX, blockDimY, blockDimZ;
  unsigned int sharedMemBytes;
  CUstream hStream;
  CUlaunchAttribute *attrs;
  unsigned int numAttrs;
} CUlaunchConfig;
_Static_assert(sizeof(CUlaunchAttributeValue) == 64, "CUlaunchAttributeValue must be 64 bytes as in cuda.h");
#if UINTPTR_MAX == 0xffffffffffffffffu
_Static_assert(sizeof(CUlaunchAttribute) == 72 && offsetof(CUlaunchAttribute, value) == 8 &&
                   _Alignof(CUlaunchAttribute) == 8,
               "CUlaunchAttribute must match cuda.h: id at 0, value at 8, 72 bytes, 8-byte aligned");
_Static_assert(offsetof(CUlaunchConfig, sharedMemBytes) == 24 && offsetof(CUlaunchConfig, hStream) == 32 &&
                   offsetof(CUlaunchConfig, attrs) == 40 && offsetof(CUlaunchConfig, numAttrs) == 48 &&
                   sizeof(CUlaunchConfig) == 56,
               "CUlaunchConfig must match cuda.h");
#endif

/* X(symbol, parameter list). The symbol names are the exact exported names. js_load resolves
   them all but requires only cuInit: a symbol an older driver lacks stays NULL, and a call that
   needs it throws MOCC_CUDA_MISSING_SYMBOL (NEED) or falls back (cuLaunchKernelEx, see js_launch). */
#define CU_FUNCS(X)                                                                          \
  X(cuInit, (unsigned int))                                                                  \
  X(cuGetErrorName, (CUresult, const char **))                                               \
  X(cuDriverGetVersion, (int *))                                                             \
  X(cuDeviceGetCount, (int *))                                                               \
  X(cuDeviceGet, (CUdevice *, int))                                                          \
  X(cuDeviceGetName, (char *, int, CUdevice))                                                \
  X(cuDeviceGetAttribute, (int *, int, CUdevice))                                            \
  X(cuDeviceTotalMem_v2, (size_t *, CUdevice))                                               \
  X(cuDevicePrimaryCtxRetain, (CUcontext *, CUdevice))                                       \
  X(cuDevicePrimaryCtxRelease_v2, (CUdevice))                                                \
  X(cuCtxSetCurrent, (CUcontext))                                                            \
  X(cuCtxSynchronize, (void))                                                                \
  X(cuMemAlloc_v2, (CUdeviceptr *, size_t))                                                  \
  X(cuMemFree_v2, (CUdeviceptr))                                                             \
  X(cuMemGetInfo_v2, (size_t *, size_t *))                                                   \
  X(cuMemcpyHtoD_v2, (CUdeviceptr, const void *, size_t))                                    \
  X(cuMemcpyDtoH_v2, (void *, CUdeviceptr, size_t))                                          \
  X(cuMemcpyHtoDAsync_v2, (CUdeviceptr, const void *, size_t, CUstream))                     \
  X(cuMemcpyDtoHAsync_v2, (void *, CUdeviceptr, size_t, CUstream))                           \
  X(cuMemsetD32_v2, (CUdeviceptr, unsigned int, size_t))                                     \
  X(cuMemsetD32Async, (CUdeviceptr, unsigned int, size_t, CUstream))                         \
  X(cuStreamCreate, (CUstream *, unsigned int))                                              \
  X(cuStreamDestroy_v2, (CUstream))                                                          \
  X(cuStreamSynchronize, (CUstream))                                                         \
  X(cuModuleLoadDataEx, (CUmodule *, const void *, unsigned int, CUjit_option *, void **))   \
  X(cuModuleUnload, (CUmodule))                                                              \
  X(cuModuleGetFunction, (CUfunction *, CUmodule, const char *))                             \
  X(cuFuncSetAttribute, (CUfunction, int, int))                                              \
  X(cuLaunchKernel, (CUfunction, unsigned int, unsigned int, unsigned int, unsigned int,     \
                     unsigned int, unsigned int, unsigned int, CUstream, void **, void **))  \
  X(cuLaunchKernelEx, (const CUlaunchConfig *, CUfunction, void **, void **))               \
  X(cuEventCreate, (CUevent *, unsigned int))                                                \
  X(cuEventRecord, (CUevent, CUstream))                                                      \
  X(cuEventSynchronize, (CUevent))                                                           \
  X(cuEventElapsedTime, (float *, CUevent, CUevent))                                         \
  X(cuEventDestroy_v2, (CUevent))                                                            \
  X(cuStreamBeginCapture_v2, (CUstream, int))                                                \
  X(cuStreamEndCapture, (CUstream, CUgraph *))                                               \
  X(cuGraphInstantiateWithFlags, (CUgraphExec *, CUgraph, unsigned long long))               \
  X(cuGraphLaunch, (CUgraphExec, CUstream))                                                  \
  X(cuGraphExecDestroy, (CUgraphExec))                                                       \
  X(cuGraphDestroy, (CUgraph))                                                               \
  X(cuTensorMapEncodeTiled, (void *, int, uint32_t, void *, const uint64_t *, const uint64_t *, \
                             const uint32_t *, const uint32_t *, int, int, int, int))

#define DECLARE_PFN(name, params) \
  typedef CUresult(*pfn_##name) params; \
  static pfn_##name p_##name = NULL;
CU_FUNCS(DECLARE_PFN)
#undef DECLARE_PFN

static void *g_lib = NULL;
static char *g_lib_path = NULL;

/* ---- errors ---- */

/* Throws an Error with the given code property (may be NULL) and optional cudaError number. */
static void throw_error(napi_env env, const char *code, int cu_err, const char *msg) {
  napi_value err, m, c;
  if (napi_create_string_utf8(env, msg, NAPI_AUTO_LENGTH, &m) != napi_ok) return;
  c = NULL;
  if (code && napi_create_string_utf8(env, code, NAPI_AUTO_LENGTH, &c) != napi_ok) return;
  if (napi_create_error(env, c, m, &err) != napi_ok) return;
  if (cu_err >= 0) {
    napi_value n;
    if (napi_create_int32(env, cu_err, &n) == napi_ok) napi_set_named_property(env, err, "cudaError", n);
  }
  napi_throw(env, err);
}

static const char *cu_error_name(CUresult r) {
  const char *name = NULL;
  if (p_cuGetErrorName == NULL || p_cuGetErrorName(r, &name) != CUDA_SUCCESS || name == NULL)
    return "CUDA_ERROR_UNKNOWN_CODE";
  return name;
}

/* Throws "<call> failed: NAME (n)<suffix>"; `call` is printf-formatted. Returns NULL. */
static napi_value throw_cu(napi_env env, CUresult r, const char *suffix, const char *fmt, ...) {
  char call[512];
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(call, sizeof call, fmt, ap);
  va_end(ap);
  const char *name = cu_error_name(r);
  size_t need = strlen(call) + strlen(name) + (suffix ? strlen(suffix) : 0) + 64;
  char *msg = (char *)malloc(need);
  if (msg == NULL) {
    throw_error(env, name, r, call);
    return NULL;
  }
  snprintf(msg, need, "%s failed: %s (%d)%s", call, name, r, suffix ? suffix : "");
  throw_error(env, name, r, msg);
  free(msg);
  return NULL;
}

static napi_value throw_type(napi_env env, const char *fmt, ...) {
  char msg[512];
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(msg, sizeof msg, fmt, ap);
  va_end(ap);
  napi_throw_type_error(env, "ERR_INVALID_ARG_TYPE", msg);
  return NULL;
}

static napi_value throw_range(napi_env env, const char *fmt, ...) {
  char msg[512];
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(msg, sizeof msg, fmt, ap);
  va_end(ap);
  napi_throw_range_error(env, "ERR_OUT_OF_RANGE", msg);
  return NULL;
}

/* The driver must be loaded and the symbol present before a call. */
#define NEED(name)                                                                            \
  do {                                                                                        \
    if (g_lib == NULL) {                                                                      \
      throw_error(env, "MOCC_CUDA_NOT_LOADED", -1, "mocc_cuda: the CUDA driver is not loaded"); \
      return NULL;                                                                            \
    }                                                                                         \
    if (p_##name == NULL) {                                                                   \
      char m_[512];                                                                           \
      snprintf(m_, sizeof m_, "the CUDA driver %s does not export " #name " (driver too old?)", \
               g_lib_path ? g_lib_path : "");                                                 \
      throw_error(env, "MOCC_CUDA_MISSING_SYMBOL", -1, m_);                                   \
      return NULL;                                                                            \
    }                                                                                         \
  } while (0)

/* ---- argument helpers; each returns 0 and leaves a pending exception on failure ---- */

#define ARGS(n)                                                                 \
  size_t argc = (n);                                                            \
  napi_value argv[(n) > 0 ? (n) : 1];                                           \
  if (napi_get_cb_info(env, info, &argc, argv, NULL, NULL) != napi_ok) return NULL;

static int is_nullish(napi_env env, napi_value v) {
  napi_valuetype t;
  if (napi_typeof(env, v, &t) != napi_ok) return 0;
  return t == napi_null || t == napi_undefined;
}

/* A handle or device pointer: a BigInt that fits in uint64. */
static int get_handle(napi_env env, napi_value v, const char *what, uint64_t *out) {
  napi_valuetype t;
  bool lossless = false;
  if (napi_typeof(env, v, &t) != napi_ok || t != napi_bigint) {
    throw_type(env, "%s must be a bigint", what);
    return 0;
  }
  if (napi_get_value_bigint_uint64(env, v, out, &lossless) != napi_ok || !lossless) {
    throw_range(env, "%s does not fit in 64 bits unsigned", what);
    return 0;
  }
  return 1;
}

/* Like get_handle, but null/undefined give 0 (e.g. the legacy NULL stream). */
static int get_opt_handle(napi_env env, napi_value v, const char *what, uint64_t *out) {
  if (is_nullish(env, v)) {
    *out = 0;
    return 1;
  }
  return get_handle(env, v, what, out);
}

/* A boolean; null/undefined (e.g. an argument left out) give false. */
static int get_opt_bool(napi_env env, napi_value v, const char *what, bool *out) {
  napi_valuetype t;
  if (napi_typeof(env, v, &t) != napi_ok) return 0;
  if (t == napi_null || t == napi_undefined) {
    *out = false;
    return 1;
  }
  if (t != napi_boolean) {
    throw_type(env, "%s must be a boolean", what);
    return 0;
  }
  return napi_get_value_bool(env, v, out) == napi_ok;
}

/* A non-negative integer size (number up to 2^53, or BigInt). */
static int get_size(napi_env env, napi_value v, const char *what, size_t *out) {
  napi_valuetype t;
  if (napi_typeof(env, v, &t) != napi_ok) return 0;
  if (t == napi_bigint) {
    uint64_t u;
    bool lossless = false;
    if (napi_get_value_bigint_uint64(env, v, &u, &lossless) != napi_ok || !lossless || (uint64_t)(size_t)u != u) {
      throw_range(env, "%s must be a non-negative size", what);
      return 0;
    }
    *out = (size_t)u;
    return 1;
  }
  if (t != napi_number) {
    throw_type(env, "%s must be a number", what);
    return 0;
  }
  double d;
  if (napi_get_value_double(env, v, &d) != napi_ok) return 0;
  if (!(d >= 0) || d > 9007199254740992.0 || floor(d) != d) {
    throw_range(env, "%s must be a non-negative integer (got %g)", what, d);
    return 0;
  }
  *out = (size_t)d;
  return 1;
}

/* A JS number that is an integer in [lo, hi]; `range` words the error ("an integer in [0, 2^32)"). */
static int get_integer(napi_env env, napi_value v, const char *what, double lo, double hi, const char *range, double *out) {
  napi_valuetype t;
  if (napi_typeof(env, v, &t) != napi_ok) return 0;
  if (t != napi_number) {
    throw_type(env, "%s must be a number", what);
    return 0;
  }
  double d;
  if (napi_get_value_double(env, v, &d) != napi_ok) return 0;
  if (!(d >= lo) || d > hi || floor(d) != d) {
    throw_range(env, "%s must be %s (got %g)", what, range, d);
    return 0;
  }
  *out = d;
  return 1;
}

static int get_u32(napi_env env, napi_value v, const char *what, uint32_t *out) {
  double d;
  if (!get_integer(env, v, what, 0.0, 4294967295.0, "an integer in [0, 2^32)", &d)) return 0;
  *out = (uint32_t)d;
  return 1;
}

static int get_i32(napi_env env, napi_value v, const char *what, int32_t *out) {
  double d;
  if (!get_integer(env, v, what, -2147483648.0, 2147483647.0, "a 32-bit integer", &d)) return 0;
  *out = (int32_t)d;
  return 1;
}

/* A string, returned malloc'd and NUL-terminated (caller frees). */
static int get_string(napi_env env, napi_value v, const char *what, char **out, size_t *len_out) {
  napi_valuetype t;
  size_t len = 0;
  if (napi_typeof(env, v, &t) != napi_ok) return 0;
  if (t != napi_string) {
    throw_type(env, "%s must be a string", what);
    return 0;
  }
  if (napi_get_value_string_utf8(env, v, NULL, 0, &len) != napi_ok) return 0;
  char *s = (char *)malloc(len + 1);
  if (s == NULL) {
    throw_error(env, "ENOMEM", -1, "mocc_cuda: out of host memory");
    return 0;
  }
  if (napi_get_value_string_utf8(env, v, s, len + 1, &len) != napi_ok) {
    free(s);
    return 0;
  }
  *out = s;
  if (len_out) *len_out = len;
  return 1;
}

static size_t typedarray_elem_size(napi_typedarray_type t) {
  switch (t) {
    case napi_int8_array:
    case napi_uint8_array:
    case napi_uint8_clamped_array: return 1;
    case napi_int16_array:
    case napi_uint16_array: return 2;
    case napi_int32_array:
    case napi_uint32_array:
    case napi_float32_array: return 4;
    case napi_float64_array:
    case napi_bigint64_array:
    case napi_biguint64_array: return 8;
    default: return 0;
  }
}

/* Any ArrayBufferView (typed array, Buffer, DataView): its first byte and byte length. */
static int get_view(napi_env env, napi_value v, const char *what, uint8_t **data, size_t *bytes,
                    napi_typedarray_type *type_out) {
  bool is = false;
  napi_value ab;
  size_t off = 0, n = 0;
  void *base = NULL;
  size_t ab_len = 0;
  if (napi_is_typedarray(env, v, &is) != napi_ok) return 0;
  if (is) {
    napi_typedarray_type tt;
    void *d = NULL;
    if (napi_get_typedarray_info(env, v, &tt, &n, &d, &ab, &off) != napi_ok) return 0;
    size_t es = typedarray_elem_size(tt);
    if (es == 0) {
      throw_type(env, "%s: unsupported typed array type", what);
      return 0;
    }
    if (type_out) *type_out = tt;
    n *= es;
  } else {
    if (napi_is_dataview(env, v, &is) != napi_ok) return 0;
    if (!is) {
      throw_type(env, "%s must be an ArrayBufferView (typed array, Buffer or DataView)", what);
      return 0;
    }
    if (napi_get_dataview_info(env, v, &n, NULL, &ab, &off) != napi_ok) return 0;
    if (type_out) *type_out = (napi_typedarray_type)-1;
  }
  if (napi_get_arraybuffer_info(env, ab, &base, &ab_len) != napi_ok) return 0;
  if (n > 0 && (base == NULL || off > ab_len || n > ab_len - off)) {
    throw_range(env, "%s: its buffer is detached or smaller than the view", what);
    return 0;
  }
  *data = n > 0 ? (uint8_t *)base + off : NULL;
  *bytes = n;
  return 1;
}

static napi_value make_handle(napi_env env, uint64_t h) {
  napi_value r;
  if (napi_create_bigint_uint64(env, h, &r) != napi_ok) return NULL;
  return r;
}

static napi_value make_undefined(napi_env env) {
  napi_value r;
  napi_get_undefined(env, &r);
  return r;
}

#define H(T, x) ((T)(uintptr_t)(x))

/* Parses argv[0] as the context and makes it current. */
#define SET_CTX()                                                                \
  uint64_t ctx_ = 0;                                                             \
  if (!get_handle(env, argv[0], "context", &ctx_)) return NULL;                  \
  NEED(cuCtxSetCurrent);                                                         \
  {                                                                              \
    CUresult r_ = p_cuCtxSetCurrent(H(CUcontext, ctx_));                         \
    if (r_ != CUDA_SUCCESS) return throw_cu(env, r_, NULL, "cuCtxSetCurrent");   \
  }

/* ---- loading ---- */

/* load(path: string): dlopens the driver and resolves the symbols. Idempotent for the same path. */
static napi_value js_load(napi_env env, napi_callback_info info) {
  ARGS(1);
  char *path = NULL;
  if (!get_string(env, argv[0], "path", &path, NULL)) return NULL;
  if (g_lib != NULL) {
    int same = strcmp(path, g_lib_path) == 0;
    if (!same) {
      char m[1024];
      snprintf(m, sizeof m, "mocc_cuda: a CUDA driver is already loaded from %s (asked for %s)", g_lib_path, path);
      free(path);
      throw_error(env, "MOCC_CUDA_ALREADY_LOADED", -1, m);
      return NULL;
    }
    free(path);
    return make_undefined(env);
  }
  dlerror();
  void *lib = dlopen(path, RTLD_NOW | RTLD_LOCAL);
  if (lib == NULL) {
    const char *e = dlerror();
    throw_error(env, "MOCC_NO_CUDA_DRIVER", -1, e ? e : path);
    free(path);
    return NULL;
  }
#define RESOLVE(name, params) p_##name = (pfn_##name)dlsym(lib, #name);
  CU_FUNCS(RESOLVE)
#undef RESOLVE
  /* Drivers from CUDA 12.8 on may also export cuEventElapsedTime_v2; the v1 name stays. */
  if (p_cuEventElapsedTime == NULL) p_cuEventElapsedTime = (pfn_cuEventElapsedTime)dlsym(lib, "cuEventElapsedTime_v2");
  if (p_cuInit == NULL) {
    char m[1024];
    snprintf(m, sizeof m, "%s does not export cuInit (not a CUDA driver?)", path);
#define CLEAR(name, params) p_##name = NULL;
    CU_FUNCS(CLEAR)
#undef CLEAR
    dlclose(lib);
    free(path);
    throw_error(env, "MOCC_NO_CUDA_DRIVER", -1, m);
    return NULL;
  }
  g_lib = lib;
  g_lib_path = path;
  return make_undefined(env);
}

static napi_value js_init(napi_env env, napi_callback_info info) {
  (void)info;
  NEED(cuInit);
  CUresult r = p_cuInit(0);
  if (r != CUDA_SUCCESS) return throw_cu(env, r, NULL, "cuInit(0)");
  return make_undefined(env);
}

static napi_value js_driver_version(napi_env env, napi_callback_info info) {
  (void)info;
  NEED(cuDriverGetVersion);
  int v = 0;
  CUresult r = p_cuDriverGetVersion(&v);
  if (r != CUDA_SUCCESS) return throw_cu(env, r, NULL, "cuDriverGetVersion");
  napi_value out;
  napi_create_int32(env, v, &out);
  return out;
}

static napi_value js_device_count(napi_env env, napi_callback_info info) {
  (void)info;
  NEED(cuDeviceGetCount);
  int n = 0;
  CUresult r = p_cuDeviceGetCount(&n);
  if (r != CUDA_SUCCESS) return throw_cu(env, r, NULL, "cuDeviceGetCount");
  napi_value out;
  napi_create_int32(env, n, &out);
  return out;
}

static int set_int(napi_env env, napi_value obj, const char *key, double v) {
  napi_value n;
  if (napi_create_double(env, v, &n) != napi_ok) return 0;
  return napi_set_named_property(env, obj, key, n) == napi_ok;
}

/* deviceInfo(ordinal) -> { name, ccMajor, ccMinor, multiprocessors, totalMemoryBytes, l2Bytes, maxSharedPerBlockOptin } */
static napi_value js_device_info(napi_env env, napi_callback_info info) {
  ARGS(1);
  int32_t ordinal;
  if (!get_i32(env, argv[0], "ordinal", &ordinal)) return NULL;
  NEED(cuDeviceGet);
  NEED(cuDeviceGetName);
  NEED(cuDeviceGetAttribute);
  NEED(cuDeviceTotalMem_v2);
  CUdevice dev;
  CUresult r = p_cuDeviceGet(&dev, ordinal);
  if (r != CUDA_SUCCESS) return throw_cu(env, r, NULL, "cuDeviceGet(%d)", ordinal);
  char name[256];
  memset(name, 0, sizeof name);
  r = p_cuDeviceGetName(name, (int)sizeof name - 1, dev);
  if (r != CUDA_SUCCESS) return throw_cu(env, r, NULL, "cuDeviceGetName(%d)", ordinal);
  static const struct { int attr; const char *key; } attrs[] = {
    {CU_DEVICE_ATTRIBUTE_COMPUTE_CAPABILITY_MAJOR, "ccMajor"},
    {CU_DEVICE_ATTRIBUTE_COMPUTE_CAPABILITY_MINOR, "ccMinor"},
    {CU_DEVICE_ATTRIBUTE_MULTIPROCESSOR_COUNT, "multiprocessors"},
    {CU_DEVICE_ATTRIBUTE_L2_CACHE_SIZE, "l2Bytes"},
    {CU_DEVICE_ATTRIBUTE_MAX_SHARED_MEMORY_PER_BLOCK_OPTIN, "maxSharedPerBlockOptin"},
  };
  napi_value obj, s;
  if (napi_create_object(env, &obj) != napi_ok) return NULL;
  if (napi_create_string_utf8(env, name, NAPI_AUTO_LENGTH, &s) != napi_ok) return NULL;
  if (napi_set_named_property(env, obj, "name", s) != napi_ok) return NULL;
  for (size_t i = 0; i < sizeof attrs / sizeof attrs[0]; i++) {
    int v = 0;
    r = p_cuDeviceGetAttribute(&v, attrs[i].attr, dev);
    if (r != CUDA_SUCCESS) return throw_cu(env, r, NULL, "cuDeviceGetAttribute(%d, device %d)", attrs[i].attr, ordinal);
    if (!set_int(env, obj, attrs[i].key, v)) return NULL;
  }
  size_t total = 0;
  r = p_cuDeviceTotalMem_v2(&total, dev);
  if (r != CUDA_SUCCESS) return throw_cu(env, r, NULL, "cuDeviceTotalMem_v2(%d)", ordinal);
  if (!set_int(env, obj, "totalMemoryBytes", (double)total)) return NULL;
  return obj;
}

/* ctxRetain(ordinal) -> context: retains the device's primary context and makes it current. */
static napi_value js_ctx_retain(napi_env env, napi_callback_info info) {
  ARGS(1);
  int32_t ordinal;
  if (!get_i32(env, argv[0], "ordinal", &ordinal)) return NULL;
  NEED(cuDeviceGet);
  NEED(cuDevicePrimaryCtxRetain);
  NEED(cuDevicePrimaryCtxRelease_v2);
  NEED(cuCtxSetCurrent);
  CUdevice dev;
  CUresult r = p_cuDeviceGet(&dev, ordinal);
  if (r != CUDA_SUCCESS) return throw_cu(env, r, NULL, "cuDeviceGet(%d)", ordinal);
  CUcontext ctx = NULL;
  r = p_cuDevicePrimaryCtxRetain(&ctx, dev);
  if (r != CUDA_SUCCESS) return throw_cu(env, r, NULL, "cuDevicePrimaryCtxRetain(device %d)", ordinal);
  r = p_cuCtxSetCurrent(ctx);
  if (r != CUDA_SUCCESS) {
    p_cuDevicePrimaryCtxRelease_v2(dev);
    return throw_cu(env, r, NULL, "cuCtxSetCurrent");
  }
  return make_handle(env, (uint64_t)(uintptr_t)ctx);
}

/* ctxRelease(ordinal): unbinds the context from this thread and releases the primary context. */
static napi_value js_ctx_release(napi_env env, napi_callback_info info) {
  ARGS(1);
  int32_t ordinal;
  if (!get_i32(env, argv[0], "ordinal", &ordinal)) return NULL;
  NEED(cuDeviceGet);
  NEED(cuDevicePrimaryCtxRelease_v2);
  NEED(cuCtxSetCurrent);
  CUdevice dev;
  CUresult r = p_cuDeviceGet(&dev, ordinal);
  if (r != CUDA_SUCCESS) return throw_cu(env, r, NULL, "cuDeviceGet(%d)", ordinal);
  p_cuCtxSetCurrent(NULL);
  r = p_cuDevicePrimaryCtxRelease_v2(dev);
  if (r != CUDA_SUCCESS) return throw_cu(env, r, NULL, "cuDevicePrimaryCtxRelease_v2(device %d)", ordinal);
  return make_undefined(env);
}

static napi_value js_ctx_synchronize(napi_env env, napi_callback_info info) {
  ARGS(1);
  SET_CTX();
  NEED(cuCtxSynchronize);
  CUresult r = p_cuCtxSynchronize();
  if (r != CUDA_SUCCESS) return throw_cu(env, r, NULL, "cuCtxSynchronize");
  return make_undefined(env);
}

/* ---- memory ---- */

static napi_value js_mem_alloc(napi_env env, napi_callback_info info) {
  ARGS(2);
  SET_CTX();
  size_t bytes;
  if (!get_size(env, argv[1], "bytes", &bytes)) return NULL;
  NEED(cuMemAlloc_v2);
  CUdeviceptr p = 0;
  CUresult r = p_cuMemAlloc_v2(&p, bytes);
  if (r != CUDA_SUCCESS) return throw_cu(env, r, NULL, "cuMemAlloc_v2(%zu bytes)", bytes);
  return make_handle(env, p);
}

static napi_value js_mem_free(napi_env env, napi_callback_info info) {
  ARGS(2);
  SET_CTX();
  uint64_t p;
  if (!get_handle(env, argv[1], "device pointer", &p)) return NULL;
  NEED(cuMemFree_v2);
  CUresult r = p_cuMemFree_v2((CUdeviceptr)p);
  if (r != CUDA_SUCCESS) return throw_cu(env, r, NULL, "cuMemFree_v2(0x%llx)", (unsigned long long)p);
  return make_undefined(env);
}

/* memGetInfo(ctx) -> [free, total] */
static napi_value js_mem_get_info(napi_env env, napi_callback_info info) {
  ARGS(1);
  SET_CTX();
  NEED(cuMemGetInfo_v2);
  size_t fr = 0, total = 0;
  CUresult r = p_cuMemGetInfo_v2(&fr, &total);
  if (r != CUDA_SUCCESS) return throw_cu(env, r, NULL, "cuMemGetInfo_v2");
  napi_value arr, a, b;
  if (napi_create_array_with_length(env, 2, &arr) != napi_ok) return NULL;
  napi_create_double(env, (double)fr, &a);
  napi_create_double(env, (double)total, &b);
  napi_set_element(env, arr, 0, a);
  napi_set_element(env, arr, 1, b);
  return arr;
}

/* memcpyHtoD(ctx, dst, src: ArrayBufferView, bytes, stream|null) */
static napi_value js_memcpy_htod(napi_env env, napi_callback_info info) {
  ARGS(5);
  SET_CTX();
  uint64_t dst, stream;
  uint8_t *src;
  size_t have, bytes;
  if (!get_handle(env, argv[1], "dst", &dst)) return NULL;
  if (!get_view(env, argv[2], "src", &src, &have, NULL)) return NULL;
  if (!get_size(env, argv[3], "bytes", &bytes)) return NULL;
  if (!get_opt_handle(env, argv[4], "stream", &stream)) return NULL;
  if (bytes > have) return throw_range(env, "copyToDevice: %zu bytes requested but the source holds only %zu", bytes, have);
  if (bytes == 0) return make_undefined(env);
  CUresult r;
  if (stream) {
    NEED(cuMemcpyHtoDAsync_v2);
    r = p_cuMemcpyHtoDAsync_v2((CUdeviceptr)dst, src, bytes, H(CUstream, stream));
    if (r != CUDA_SUCCESS) return throw_cu(env, r, NULL, "cuMemcpyHtoDAsync_v2(0x%llx, %zu bytes)", (unsigned long long)dst, bytes);
  } else {
    NEED(cuMemcpyHtoD_v2);
    r = p_cuMemcpyHtoD_v2((CUdeviceptr)dst, src, bytes);
    if (r != CUDA_SUCCESS) return throw_cu(env, r, NULL, "cuMemcpyHtoD_v2(0x%llx, %zu bytes)", (unsigned long long)dst, bytes);
  }
  return make_undefined(env);
}

/* memcpyDtoH(ctx, dst: ArrayBufferView, src, bytes, stream|null) */
static napi_value js_memcpy_dtoh(napi_env env, napi_callback_info info) {
  ARGS(5);
  SET_CTX();
  uint64_t src, stream;
  uint8_t *dst;
  size_t have, bytes;
  if (!get_view(env, argv[1], "dst", &dst, &have, NULL)) return NULL;
  if (!get_handle(env, argv[2], "src", &src)) return NULL;
  if (!get_size(env, argv[3], "bytes", &bytes)) return NULL;
  if (!get_opt_handle(env, argv[4], "stream", &stream)) return NULL;
  if (bytes > have) return throw_range(env, "copyFromDevice: %zu bytes requested but the destination holds only %zu", bytes, have);
  if (bytes == 0) return make_undefined(env);
  CUresult r;
  if (stream) {
    NEED(cuMemcpyDtoHAsync_v2);
    r = p_cuMemcpyDtoHAsync_v2(dst, (CUdeviceptr)src, bytes, H(CUstream, stream));
    if (r != CUDA_SUCCESS) return throw_cu(env, r, NULL, "cuMemcpyDtoHAsync_v2(0x%llx, %zu bytes)", (unsigned long long)src, bytes);
  } else {
    NEED(cuMemcpyDtoH_v2);
    r = p_cuMemcpyDtoH_v2(dst, (CUdeviceptr)src, bytes);
    if (r != CUDA_SUCCESS) return throw_cu(env, r, NULL, "cuMemcpyDtoH_v2(0x%llx, %zu bytes)", (unsigned long long)src, bytes);
  }
  return make_undefined(env);
}

/* memsetD32(ctx, dst, value: uint32, count, stream|null) */
static napi_value js_memset_d32(napi_env env, napi_callback_info info) {
  ARGS(5);
  SET_CTX();
  uint64_t dst, stream;
  uint32_t value;
  size_t count;
  if (!get_handle(env, argv[1], "dst", &dst)) return NULL;
  if (!get_u32(env, argv[2], "value", &value)) return NULL;
  if (!get_size(env, argv[3], "count", &count)) return NULL;
  if (!get_opt_handle(env, argv[4], "stream", &stream)) return NULL;
  CUresult r;
  if (stream) {
    NEED(cuMemsetD32Async);
    r = p_cuMemsetD32Async((CUdeviceptr)dst, value, count, H(CUstream, stream));
    if (r != CUDA_SUCCESS) return throw_cu(env, r, NULL, "cuMemsetD32Async(0x%llx, 0x%x, %zu)", (unsigned long long)dst, value, count);
  } else {
    NEED(cuMemsetD32_v2);
    r = p_cuMemsetD32_v2((CUdeviceptr)dst, value, count);
    if (r != CUDA_SUCCESS) return throw_cu(env, r, NULL, "cuMemsetD32_v2(0x%llx, 0x%x, %zu)", (unsigned long long)dst, value, count);
  }
  return make_undefined(env);
}

/* ---- streams ---- */

static napi_value js_stream_create(napi_env env, napi_callback_info info) {
  ARGS(1);
  SET_CTX();
  NEED(cuStreamCreate);
  CUstream s = NULL;
  CUresult r = p_cuStreamCreate(&s, CU_STREAM_NON_BLOCKING);
  if (r != CUDA_SUCCESS) return throw_cu(env, r, NULL, "cuStreamCreate(CU_STREAM_NON_BLOCKING)");
  return make_handle(env, (uint64_t)(uintptr_t)s);
}

static napi_value js_stream_destroy(napi_env env, napi_callback_info info) {
  ARGS(2);
  SET_CTX();
  uint64_t s;
  if (!get_handle(env, argv[1], "stream", &s)) return NULL;
  NEED(cuStreamDestroy_v2);
  CUresult r = p_cuStreamDestroy_v2(H(CUstream, s));
  if (r != CUDA_SUCCESS) return throw_cu(env, r, NULL, "cuStreamDestroy_v2");
  return make_undefined(env);
}

static napi_value js_stream_synchronize(napi_env env, napi_callback_info info) {
  ARGS(2);
  SET_CTX();
  uint64_t s;
  if (!get_opt_handle(env, argv[1], "stream", &s)) return NULL;
  NEED(cuStreamSynchronize);
  CUresult r = p_cuStreamSynchronize(H(CUstream, s));
  if (r != CUDA_SUCCESS) return throw_cu(env, r, NULL, "cuStreamSynchronize");
  return make_undefined(env);
}

/* streamBeginCapture(ctx, stream, mode: 0 global | 1 thread-local | 2 relaxed) */
static napi_value js_stream_begin_capture(napi_env env, napi_callback_info info) {
  ARGS(3);
  SET_CTX();
  uint64_t s;
  uint32_t mode;
  if (!get_handle(env, argv[1], "stream", &s)) return NULL;
  if (!get_u32(env, argv[2], "mode", &mode)) return NULL;
  if (mode > 2) return throw_range(env, "capture mode must be 0, 1 or 2");
  NEED(cuStreamBeginCapture_v2);
  CUresult r = p_cuStreamBeginCapture_v2(H(CUstream, s), (int)mode);
  if (r != CUDA_SUCCESS) return throw_cu(env, r, NULL, "cuStreamBeginCapture_v2(mode %u)", mode);
  return make_undefined(env);
}

static napi_value js_stream_end_capture(napi_env env, napi_callback_info info) {
  ARGS(2);
  SET_CTX();
  uint64_t s;
  if (!get_handle(env, argv[1], "stream", &s)) return NULL;
  NEED(cuStreamEndCapture);
  NEED(cuGraphDestroy);
  CUgraph g = NULL;
  CUresult r = p_cuStreamEndCapture(H(CUstream, s), &g);
  if (r != CUDA_SUCCESS) {
    if (g != NULL) p_cuGraphDestroy(g);
    return throw_cu(env, r, NULL, "cuStreamEndCapture");
  }
  napi_value out = make_handle(env, (uint64_t)(uintptr_t)g);
  if (out == NULL) p_cuGraphDestroy(g);
  return out;
}

/* ---- graphs ---- */

static napi_value js_graph_instantiate(napi_env env, napi_callback_info info) {
  ARGS(2);
  SET_CTX();
  uint64_t g;
  if (!get_handle(env, argv[1], "graph", &g)) return NULL;
  NEED(cuGraphInstantiateWithFlags);
  NEED(cuGraphExecDestroy);
  CUgraphExec e = NULL;
  CUresult r = p_cuGraphInstantiateWithFlags(&e, H(CUgraph, g), 0);
  if (r != CUDA_SUCCESS) return throw_cu(env, r, NULL, "cuGraphInstantiateWithFlags");
  napi_value out = make_handle(env, (uint64_t)(uintptr_t)e);
  if (out == NULL) p_cuGraphExecDestroy(e);
  return out;
}

static napi_value js_graph_launch(napi_env env, napi_callback_info info) {
  ARGS(3);
  SET_CTX();
  uint64_t e, s;
  if (!get_handle(env, argv[1], "graph exec", &e)) return NULL;
  if (!get_opt_handle(env, argv[2], "stream", &s)) return NULL;
  NEED(cuGraphLaunch);
  CUresult r = p_cuGraphLaunch(H(CUgraphExec, e), H(CUstream, s));
  if (r != CUDA_SUCCESS) return throw_cu(env, r, NULL, "cuGraphLaunch");
  return make_undefined(env);
}

static napi_value js_graph_exec_destroy(napi_env env, napi_callback_info info) {
  ARGS(2);
  SET_CTX();
  uint64_t e;
  if (!get_handle(env, argv[1], "graph exec", &e)) return NULL;
  NEED(cuGraphExecDestroy);
  CUresult r = p_cuGraphExecDestroy(H(CUgraphExec, e));
  if (r != CUDA_SUCCESS) return throw_cu(env, r, NULL, "cuGraphExecDestroy");
  return make_undefined(env);
}

static napi_value js_graph_destroy(napi_env env, napi_callback_info info) {
  ARGS(2);
  SET_CTX();
  uint64_t g;
  if (!get_handle(env, argv[1], "graph", &g)) return NULL;
  NEED(cuGraphDestroy);
  CUresult r = p_cuGraphDestroy(H(CUgraph, g));
  if (r != CUDA_SUCCESS) return throw_cu(env, r, NULL, "cuGraphDestroy");
  return make_undefined(env);
}

/* ---- modules and kernels ---- */

#define JIT_LOG_BYTES (64 * 1024)

/* moduleLoad(ctx, ptx, name) -> [module, infoLog] */
static napi_value js_module_load(napi_env env, napi_callback_info info) {
  ARGS(3);
  SET_CTX();
  char *ptx = NULL, *name = NULL;
  if (!get_string(env, argv[1], "ptx", &ptx, NULL)) return NULL;
  if (!get_string(env, argv[2], "name", &name, NULL)) {
    free(ptx);
    return NULL;
  }
  char *info_log = (char *)calloc(JIT_LOG_BYTES, 1);
  char *error_log = (char *)calloc(JIT_LOG_BYTES, 1);
  napi_value result = NULL;
  if (info_log == NULL || error_log == NULL) {
    throw_error(env, "ENOMEM", -1, "mocc_cuda: out of host memory");
    goto done;
  }
  if (p_cuModuleLoadDataEx == NULL || p_cuModuleUnload == NULL) {
    throw_error(env, "MOCC_CUDA_MISSING_SYMBOL", -1, "the CUDA driver does not export cuModuleLoadDataEx/cuModuleUnload");
    goto done;
  }
  {
    CUjit_option opts[4] = {CU_JIT_INFO_LOG_BUFFER, CU_JIT_INFO_LOG_BUFFER_SIZE_BYTES, CU_JIT_ERROR_LOG_BUFFER,
                            CU_JIT_ERROR_LOG_BUFFER_SIZE_BYTES};
    void *vals[4] = {info_log, (void *)(uintptr_t)(JIT_LOG_BYTES - 1), error_log, (void *)(uintptr_t)(JIT_LOG_BYTES - 1)};
    CUmodule mod = NULL;
    CUresult r = p_cuModuleLoadDataEx(&mod, ptx, 4, opts, vals);
    info_log[JIT_LOG_BYTES - 1] = 0;
    error_log[JIT_LOG_BYTES - 1] = 0;
    if (r != CUDA_SUCCESS) {
      /* Error log first; the info log can hold the ptxas diagnostics too. */
      size_t el = strlen(error_log), il = strlen(info_log);
      char *suffix = (char *)malloc(el + il + 4);
      if (suffix != NULL) {
        suffix[0] = 0;
        if (el) {
          strcat(suffix, "\n");
          strcat(suffix, error_log);
        }
        if (il) {
          strcat(suffix, "\n");
          strcat(suffix, info_log);
        }
      }
      /* Trim trailing newlines. */
      if (suffix != NULL) {
        size_t n = strlen(suffix);
        while (n > 0 && (suffix[n - 1] == '\n' || suffix[n - 1] == '\r')) suffix[--n] = 0;
      }
      throw_cu(env, r, suffix, "cuModuleLoadDataEx(%s)", name);
      free(suffix);
      goto done;
    }
    napi_value arr, h, log;
    if (napi_create_array_with_length(env, 2, &arr) != napi_ok ||
        napi_create_bigint_uint64(env, (uint64_t)(uintptr_t)mod, &h) != napi_ok ||
        napi_create_string_utf8(env, info_log, NAPI_AUTO_LENGTH, &log) != napi_ok ||
        napi_set_element(env, arr, 0, h) != napi_ok || napi_set_element(env, arr, 1, log) != napi_ok) {
      p_cuModuleUnload(mod);
      goto done;
    }
    result = arr;
  }
done:
  free(ptx);
  free(name);
  free(info_log);
  free(error_log);
  return result;
}

static napi_value js_module_unload(napi_env env, napi_callback_info info) {
  ARGS(2);
  SET_CTX();
  uint64_t m;
  if (!get_handle(env, argv[1], "module", &m)) return NULL;
  NEED(cuModuleUnload);
  CUresult r = p_cuModuleUnload(H(CUmodule, m));
  if (r != CUDA_SUCCESS) return throw_cu(env, r, NULL, "cuModuleUnload");
  return make_undefined(env);
}

static napi_value js_module_get_function(napi_env env, napi_callback_info info) {
  ARGS(3);
  SET_CTX();
  uint64_t m;
  char *name = NULL;
  if (!get_handle(env, argv[1], "module", &m)) return NULL;
  NEED(cuModuleGetFunction);
  if (!get_string(env, argv[2], "name", &name, NULL)) return NULL;
  CUfunction f = NULL;
  CUresult r = p_cuModuleGetFunction(&f, H(CUmodule, m), name);
  if (r != CUDA_SUCCESS) {
    throw_cu(env, r, NULL, "cuModuleGetFunction(%s)", name);
    free(name);
    return NULL;
  }
  free(name);
  return make_handle(env, (uint64_t)(uintptr_t)f);
}

/* funcSetAttribute(ctx, fn, attribute, value) */
static napi_value js_func_set_attribute(napi_env env, napi_callback_info info) {
  ARGS(4);
  SET_CTX();
  uint64_t f;
  int32_t attr, value;
  if (!get_handle(env, argv[1], "function", &f)) return NULL;
  if (!get_i32(env, argv[2], "attribute", &attr)) return NULL;
  if (!get_i32(env, argv[3], "value", &value)) return NULL;
  NEED(cuFuncSetAttribute);
  CUresult r = p_cuFuncSetAttribute(H(CUfunction, f), attr, value);
  if (r != CUDA_SUCCESS) return throw_cu(env, r, NULL, "cuFuncSetAttribute(attribute %d, %d)", attr, value);
  return make_undefined(env);
}

/* launch(ctx, fn, gx, gy, gz, bx, by, bz, sharedBytes, stream|null, params: Uint8Array, offsets: Uint32Array,
          overlap?: boolean)
   overlap: launch through cuLaunchKernelEx with CU_LAUNCH_ATTRIBUTE_PROGRAMMATIC_STREAM_SERIALIZATION = 1
   (programmatic dependent launch), so the kernel may start before the previous kernel on the stream
   has finished; it must wait for it with griddepcontrol.wait. A driver without cuLaunchKernelEx
   (before CUDA 11.8) gets a plain cuLaunchKernel instead: that is only slower, never wrong, since
   griddepcontrol.wait returns at once when the launch did not allow an overlap. */
static napi_value js_launch(napi_env env, napi_callback_info info) {
  ARGS(13);
  SET_CTX();
  uint64_t f, stream;
  uint32_t dims[6], shared;
  bool overlap;
  static const char *dim_names[6] = {"grid.x", "grid.y", "grid.z", "block.x", "block.y", "block.z"};
  if (!get_handle(env, argv[1], "function", &f)) return NULL;
  for (int i = 0; i < 6; i++)
    if (!get_u32(env, argv[2 + i], dim_names[i], &dims[i])) return NULL;
  if (!get_u32(env, argv[8], "sharedBytes", &shared)) return NULL;
  if (!get_opt_handle(env, argv[9], "stream", &stream)) return NULL;
  uint8_t *pbytes, *obytes;
  size_t plen, olen;
  napi_typedarray_type pt, ot;
  if (!get_view(env, argv[10], "params", &pbytes, &plen, &pt)) return NULL;
  if (!get_view(env, argv[11], "offsets", &obytes, &olen, &ot)) return NULL;
  if (!get_opt_bool(env, argv[12], "overlap", &overlap)) return NULL;
  if (pt != napi_uint8_array) return throw_type(env, "params must be a Uint8Array");
  if (ot != napi_uint32_array) return throw_type(env, "offsets must be a Uint32Array");
  NEED(cuLaunchKernel);
  /* Without cuLaunchKernelEx the overlap request is dropped (see above). */
  int use_ex = overlap && p_cuLaunchKernelEx != NULL;
  size_t n = olen / 4;
  /* Copy the parameter bytes into aligned host memory and point the driver at it;
     the driver copies the values during the launch call, so both are freed right after. */
  /* 128-byte aligned: a tensor-map parameter (CUtensorMap, alignas(128) in cuda.h) is read from here. */
  uint8_t *staged = NULL;
  if (posix_memalign((void **)&staged, 128, plen > 0 ? plen : 1) != 0) staged = NULL;
  void **ptrs = (void **)malloc((n > 0 ? n : 1) * sizeof(void *));
  if (staged == NULL || ptrs == NULL) {
    free(staged);
    free(ptrs);
    throw_error(env, "ENOMEM", -1, "mocc_cuda: out of host memory");
    return NULL;
  }
  if (plen) memcpy(staged, pbytes, plen);
  for (size_t i = 0; i < n; i++) {
    uint32_t off;
    memcpy(&off, obytes + 4 * i, 4);
    if (off >= plen) {
      free(staged);
      free(ptrs);
      return throw_range(env, "parameter %zu: offset %u is outside the %zu parameter bytes", i, off, plen);
    }
    ptrs[i] = staged + off;
  }
  CUresult r;
  if (use_ex) {
    /* Zeroed first: the driver reads the whole 64-byte value union of each attribute. */
    CUlaunchAttribute attr;
    memset(&attr, 0, sizeof attr);
    attr.id = CU_LAUNCH_ATTRIBUTE_PROGRAMMATIC_STREAM_SERIALIZATION;
    attr.value.programmaticStreamSerializationAllowed = 1;
    CUlaunchConfig cfg;
    memset(&cfg, 0, sizeof cfg);
    cfg.gridDimX = dims[0];
    cfg.gridDimY = dims[1];
    cfg.gridDimZ = dims[2];
    cfg.blockDimX = dims[3];
    cfg.blockDimY = dims[4];
    cfg.blockDimZ = dims[5];
    cfg.sharedMemBytes = shared;
    cfg.hStream = H(CUstream, stream);
    cfg.attrs = &attr;
    cfg.numAttrs = 1;
    r = p_cuLaunchKernelEx(&cfg, H(CUfunction, f), n > 0 ? ptrs : NULL, NULL);
  } else {
    r = p_cuLaunchKernel(H(CUfunction, f), dims[0], dims[1], dims[2], dims[3], dims[4], dims[5], shared,
                         H(CUstream, stream), n > 0 ? ptrs : NULL, NULL);
  }
  free(staged);
  free(ptrs);
  if (r != CUDA_SUCCESS) {
    if (use_ex)
      return throw_cu(env, r, NULL,
                      "cuLaunchKernelEx(grid [%u, %u, %u], block [%u, %u, %u], %u shared bytes, programmatic overlap)",
                      dims[0], dims[1], dims[2], dims[3], dims[4], dims[5], shared);
    return throw_cu(env, r, NULL, "cuLaunchKernel(grid [%u, %u, %u], block [%u, %u, %u], %u shared bytes)", dims[0],
                    dims[1], dims[2], dims[3], dims[4], dims[5], shared);
  }
  return make_undefined(env);
}

/* ---- tensor maps (Hopper's bulk tensor copies) ---- */

/* tensorMapEncodeTiled(dataType, address: bigint, dims: BigUint64Array, strides: BigUint64Array,
                        box: Uint32Array, elementStrides: Uint32Array, interleave, swizzle, l2Promotion, oobFill)
   -> Uint8Array(128): the CUtensorMap that cuTensorMapEncodeTiled writes, to pass by value as a kernel
   parameter. The enums are cuda.h's numbers (the JS side names them). strides has rank - 1 entries,
   in bytes. Needs no context. */
static napi_value js_tensor_map_encode_tiled(napi_env env, napi_callback_info info) {
  ARGS(10);
  int32_t dtype, interleave, swizzle, l2, oob;
  uint64_t addr;
  uint8_t *dims, *strides, *box, *estr;
  size_t ndims, nstrides, nbox, nestr;
  napi_typedarray_type t1, t2, t3, t4;
  if (!get_i32(env, argv[0], "dataType", &dtype)) return NULL;
  if (!get_handle(env, argv[1], "address", &addr)) return NULL;
  if (!get_view(env, argv[2], "dims", &dims, &ndims, &t1)) return NULL;
  if (!get_view(env, argv[3], "strides", &strides, &nstrides, &t2)) return NULL;
  if (!get_view(env, argv[4], "box", &box, &nbox, &t3)) return NULL;
  if (!get_view(env, argv[5], "elementStrides", &estr, &nestr, &t4)) return NULL;
  if (!get_i32(env, argv[6], "interleave", &interleave)) return NULL;
  if (!get_i32(env, argv[7], "swizzle", &swizzle)) return NULL;
  if (!get_i32(env, argv[8], "l2Promotion", &l2)) return NULL;
  if (!get_i32(env, argv[9], "oobFill", &oob)) return NULL;
  if (t1 != napi_biguint64_array || t2 != napi_biguint64_array) return throw_type(env, "dims and strides must be BigUint64Arrays");
  if (t3 != napi_uint32_array || t4 != napi_uint32_array) return throw_type(env, "box and elementStrides must be Uint32Arrays");
  size_t rank = ndims / 8;
  if (rank < 1 || rank > 5 || nstrides / 8 != rank - 1 || nbox / 4 != rank || nestr / 4 != rank)
    return throw_range(env, "tensor map of rank %zu: strides need rank - 1 entries, box and elementStrides rank", rank);
  NEED(cuTensorMapEncodeTiled);
  /* Copies into aligned locals: the typed arrays' bytes may sit at any offset of their buffers. */
  uint64_t d[5], s[5] = {0};
  uint32_t b[5], e[5];
  memcpy(d, dims, 8 * rank);
  if (rank > 1) memcpy(s, strides, 8 * (rank - 1));
  memcpy(b, box, 4 * rank);
  memcpy(e, estr, 4 * rank);
  _Alignas(128) uint64_t map[16];
  memset(map, 0, sizeof map);
  CUresult r = p_cuTensorMapEncodeTiled(map, dtype, (uint32_t)rank, (void *)(uintptr_t)addr, d, s, b, e, interleave,
                                        swizzle, l2, oob);
  if (r != CUDA_SUCCESS)
    return throw_cu(env, r, NULL, "cuTensorMapEncodeTiled(type %d, rank %zu, dims [%llu, %llu], box [%u, %u], swizzle %d)",
                    dtype, rank, (unsigned long long)d[0], (unsigned long long)(rank > 1 ? d[1] : 0), b[0],
                    rank > 1 ? b[1] : 0, swizzle);
  napi_value ab, out;
  void *data = NULL;
  if (napi_create_arraybuffer(env, sizeof map, &data, &ab) != napi_ok) return NULL;
  memcpy(data, map, sizeof map);
  if (napi_create_typedarray(env, napi_uint8_array, sizeof map, ab, 0, &out) != napi_ok) return NULL;
  return out;
}

/* ---- events ---- */

static napi_value js_event_create(napi_env env, napi_callback_info info) {
  ARGS(1);
  SET_CTX();
  NEED(cuEventCreate);
  CUevent e = NULL;
  CUresult r = p_cuEventCreate(&e, CU_EVENT_DEFAULT);
  if (r != CUDA_SUCCESS) return throw_cu(env, r, NULL, "cuEventCreate");
  return make_handle(env, (uint64_t)(uintptr_t)e);
}

static napi_value js_event_record(napi_env env, napi_callback_info info) {
  ARGS(3);
  SET_CTX();
  uint64_t e, s;
  if (!get_handle(env, argv[1], "event", &e)) return NULL;
  if (!get_opt_handle(env, argv[2], "stream", &s)) return NULL;
  NEED(cuEventRecord);
  CUresult r = p_cuEventRecord(H(CUevent, e), H(CUstream, s));
  if (r != CUDA_SUCCESS) return throw_cu(env, r, NULL, "cuEventRecord");
  return make_undefined(env);
}

static napi_value js_event_synchronize(napi_env env, napi_callback_info info) {
  ARGS(2);
  SET_CTX();
  uint64_t e;
  if (!get_handle(env, argv[1], "event", &e)) return NULL;
  NEED(cuEventSynchronize);
  CUresult r = p_cuEventSynchronize(H(CUevent, e));
  if (r != CUDA_SUCCESS) return throw_cu(env, r, NULL, "cuEventSynchronize");
  return make_undefined(env);
}

/* eventElapsed(ctx, start, end) -> milliseconds */
static napi_value js_event_elapsed(napi_env env, napi_callback_info info) {
  ARGS(3);
  SET_CTX();
  uint64_t a, b;
  if (!get_handle(env, argv[1], "start event", &a)) return NULL;
  if (!get_handle(env, argv[2], "end event", &b)) return NULL;
  NEED(cuEventElapsedTime);
  float ms = 0;
  CUresult r = p_cuEventElapsedTime(&ms, H(CUevent, a), H(CUevent, b));
  if (r != CUDA_SUCCESS) return throw_cu(env, r, NULL, "cuEventElapsedTime");
  napi_value out;
  napi_create_double(env, (double)ms, &out);
  return out;
}

static napi_value js_event_destroy(napi_env env, napi_callback_info info) {
  ARGS(2);
  SET_CTX();
  uint64_t e;
  if (!get_handle(env, argv[1], "event", &e)) return NULL;
  NEED(cuEventDestroy_v2);
  CUresult r = p_cuEventDestroy_v2(H(CUevent, e));
  if (r != CUDA_SUCCESS) return throw_cu(env, r, NULL, "cuEventDestroy_v2");
  return make_undefined(env);
}

/* errorName(code) -> "CUDA_ERROR_..." (needs a loaded driver) */
static napi_value js_error_name(napi_env env, napi_callback_info info) {
  ARGS(1);
  int32_t code;
  if (!get_i32(env, argv[0], "code", &code)) return NULL;
  NEED(cuGetErrorName);
  napi_value out;
  napi_create_string_utf8(env, cu_error_name(code), NAPI_AUTO_LENGTH, &out);
  return out;
}

NAPI_MODULE_INIT(/* napi_env env, napi_value exports */) {
  static const struct { const char *name; napi_callback cb; } fns[] = {
    {"load", js_load},
    {"init", js_init},
    {"driverVersion", js_driver_version},
    {"deviceCount", js_device_count},
    {"deviceInfo", js_device_info},
    {"ctxRetain", js_ctx_retain},
    {"ctxRelease", js_ctx_release},
    {"ctxSynchronize", js_ctx_synchronize},
    {"memAlloc", js_mem_alloc},
    {"memFree", js_mem_free},
    {"memGetInfo", js_mem_get_info},
    {"memcpyHtoD", js_memcpy_htod},
    {"memcpyDtoH", js_memcpy_dtoh},
    {"memsetD32", js_memset_d32},
    {"streamCreate", js_stream_create},
    {"streamDestroy", js_stream_destroy},
    {"streamSynchronize", js_stream_synchronize},
    {"streamBeginCapture", js_stream_begin_capture},
    {"streamEndCapture", js_stream_end_capture},
    {"graphInstantiate", js_graph_instantiate},
    {"graphLaunch", js_graph_launch},
    {"graphExecDestroy", js_graph_exec_destroy},
    {"graphDestroy", js_graph_destroy},
    {"moduleLoad", js_module_load},
    {"moduleUnload", js_module_unload},
    {"moduleGetFunction", js_module_get_function},
    {"funcSetAttribute", js_func_set_attribute},
    {"launch", js_launch},
    {"eventCreate", js_event_create},
    {"eventRecord", js_event_record},
    {"eventSynchronize", js_event_synchronize},
    {"eventElapsed", js_event_elapsed},
    {"eventDestroy", js_event_destroy},
    {"errorName", js_error_name},
    {"tensorMapEncodeTiled", js_tensor_map_encode_tiled},
  };
  for (size_t i = 0; i < sizeof fns / sizeof fns[0]; i++) {
    napi_value fn;
    if (napi_create_function(env, fns[i].name, NAPI_AUTO_LENGTH, fns[i].cb, NULL, &fn) != napi_ok) return NULL;
    if (napi_set_named_property(env, exports, fns[i].name, fn) != napi_ok) return NULL;
  }
  return exports;
}
