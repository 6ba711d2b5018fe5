"""cuBLAS beside bench/gpu/gemm.ts: torch.matmul of X[M,K] by W[N,K]^T, bf16 in and out (what
torch offers; mocc's kernels write f32 by default, bf16 as an option). Random inputs; median of 7
samples of 10 launches, CUDA events.
  python3 bench/gpu/torch_gemm.py [--out FILE]"""
import json
import sys

import torch

SHAPES = [(4096, 4096, 4096), (16384, 5461, 2048), (16384, 2048, 2048), (16384, 32000, 2048)]


def time_ms(f, reps=7, iters=10):
    for _ in range(3):
        f()
    torch.cuda.synchronize()
    a, b = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
    ts = []
    for _ in range(reps):
        a.record()
        for _ in range(iters):
            f()
        b.record()
        b.synchronize()
        ts.append(a.elapsed_time(b) / iters)
    return sorted(ts)[len(ts) // 2]


rows = []
print("device:", torch.cuda.get_device_name())
for m, n, k in SHAPES:
    x = torch.randn(m, k, device="cuda", dtype=torch.bfloat16)
    w = torch.randn(n, k, device="cuda", dtype=torch.bfloat16)
    ms = time_ms(lambda: torch.matmul(x, w.t()))
    tflops = 2 * m * n * k / ms / 1e9
    rows.append({"m": m, "n": n, "k": k, "ms": ms, "tflops": tflops})
    print(f"{m}x{n}x{k}  torch.matmul bf16->bf16: {ms:.3f} ms, {tflops:.1f} TFLOP/s")
    del x, w
if "--out" in sys.argv:
    with open(sys.argv[sys.argv.index("--out") + 1], "w") as f:
        json.dump({"device": torch.cuda.get_device_name(), "torch": torch.__version__, "rows": rows}, f, indent=2)
