"""cuBLAS beside bench/gpu/gemm.ts, the same products on the same shapes: torch.matmul, bf16 in and
out (what torch offers; mocc's kernels write f32 by default, bf16 as an option), operands stored as
mocc stores them (rows padded to a multiple of 8 elements, layout.ts; the matrices are views of
those buffers, so cuBLAS gets the same 16-byte aligned leading dimensions):
  'xwt' Y = X @ W.t(), x = X [M, K], w = W [N, K]    (the forward linears)
  'xw'  Y = X @ W,     x = X [M, K], w = W [K, N]    (dX = dY @ W of a linear)
  'xtw' Y = X.t() @ W, x = X [K, M], w = W [K, N]    (dW = dY.t() @ X of a linear)
Random inputs; median of 7 samples of 10 launches, CUDA events.
  python3 bench/gpu/torch_gemm.py [--out FILE]"""
import json
import sys

import torch

# (M, N, K, layout): as bench/gpu/gemm.ts's default shapes
SHAPES = [
    (4096, 4096, 4096, "xwt"), (16384, 5461, 2048, "xwt"), (16384, 2048, 2048, "xwt"), (16384, 32000, 2048, "xwt"),
    (16384, 2048, 5461, "xw"),  # dX = dY[16384, 5461] @ W[5461, 2048]
    (5461, 2048, 16384, "xtw"),  # dW = dY[16384, 5461].t() @ X[16384, 2048]
]


def stored(rows, cols):
    """A bf16 rows x cols matrix whose rows are pad8(cols) elements apart, as mocc's device layout."""
    ld = (cols + 7) // 8 * 8
    return torch.randn(rows, ld, device="cuda", dtype=torch.bfloat16)[:, :cols]


def operands(m, n, k, layout):
    """The product's two operands as torch.matmul takes them, views of the stored matrices."""
    x = stored(k, m).t() if layout == "xtw" else stored(m, k)
    w = stored(n, k).t() if layout == "xwt" else stored(k, n)
    return x, w


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
for m, n, k, layout in SHAPES:
    x, w = operands(m, n, k, layout)
    assert x.shape == (m, k) and w.shape == (k, n)
    ms = time_ms(lambda: torch.matmul(x, w))
    tflops = 2 * m * n * k / ms / 1e9
    rows.append({"m": m, "n": n, "k": k, "layout": layout, "ms": ms, "tflops": tflops})
    print(f"{m}x{n}x{k} {layout}  torch.matmul bf16->bf16: {ms:.3f} ms, {tflops:.1f} TFLOP/s")
    del x, w
if "--out" in sys.argv:
    with open(sys.argv[sys.argv.index("--out") + 1], "w") as f:
        json.dump({"device": torch.cuda.get_device_name(), "torch": torch.__version__, "rows": rows}, f, indent=2)
