"""cuBLAS beside bench/gpu/gemm-sm80.ts: torch.matmul of X[M,K] by W[N,K]^T in bf16 with f32 out
(as F.linear then .float() would cost an extra pass, this times the bf16 product alone, then the
same with out_dtype f32 where torch offers it). Median of 7 samples of 10 launches, CUDA events.
  python3 bench/gpu/torch_gemm.py"""
import torch

SHAPES = [(4096, 4096, 4096), (16384, 2048, 2048), (16384, 5461, 2048)]


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


print("device:", torch.cuda.get_device_name())
for m, n, k in SHAPES:
    x = torch.randn(m, k, device="cuda", dtype=torch.bfloat16)
    w = torch.randn(n, k, device="cuda", dtype=torch.bfloat16)
    ms = time_ms(lambda: torch.matmul(x, w.t()))
    print(f"{m}x{n}x{k}  torch.matmul bf16->bf16: {ms:.3f} ms, {2 * m * n * k / ms / 1e9:.1f} TFLOP/s")
