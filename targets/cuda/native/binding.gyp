{
  "targets": [
    {
      "target_name": "mocc_cuda",
      "sources": ["mocc_cuda.c"],
      "defines": ["NAPI_VERSION=8"],
      "cflags": ["-std=gnu11", "-O2", "-Wall", "-Wextra", "-Wno-unused-parameter"],
      "ldflags": ["-Wl,--as-needed"],
      "libraries": ["-ldl"]
    }
  ]
}
