#!/usr/bin/env python3
"""PyTorch peer for mocc's FFN kernels: dense LLaMA SwiGLU FFN at batch 1, bf16, cuBLAS.

y = F.linear(F.silu(F.linear(x, Wg)) * F.linear(x, Wu), Wd), with Wg, Wu [F, d], Wd [d, F].
Weights are rotated over `copies` independent copies so that the whole rotated set is >= 4x
the L2 cache: every FFN then reads its weights from HBM, as in a real model where each layer
has its own weights. One CUDA graph runs the FFN once on each copy in turn; it is replayed
many times and timed with CUDA events. Reported time per FFN = elapsed / (replays * copies).
"""
import argparse, json, math, os, statistics
import torch
import torch.nn.functional as F


def parse_shapes(text):
    shapes = []
    for item in text.split(","):
        d, f = item.strip().lower().split("x")  # ValueError on a malformed item
        if int(d) < 1 or int(f) < 1:
            raise SystemExit(f"torch_ffn: bad shape {item!r}")
        shapes.append((int(d), int(f)))
    if not shapes:
        raise SystemExit("torch_ffn: --shapes is empty")
    return shapes


def ffn(x, wg, wu, wd):
    return F.linear(F.silu(F.linear(x, wg)) * F.linear(x, wu), wd)


def run_all(x, weights):
    return [ffn(x, *w) for w in weights]


def time_loop(fn, iters, reps):
    """Median over `reps` of the milliseconds taken by `iters` calls of fn (CUDA events)."""
    times = []
    for _ in range(reps):
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        start.record()
        for _ in range(iters):
            fn()
        end.record()
        torch.cuda.synchronize()
        times.append(start.elapsed_time(end))
    return statistics.median(times)


def copy_bandwidth_tbs(nbytes, reps):
    """Device-to-device copy rate in TB/s, counting bytes read + bytes written."""
    src = torch.empty(nbytes, dtype=torch.uint8, device="cuda").random_()
    dst = torch.empty_like(src)
    for _ in range(2):
        dst.copy_(src)
    torch.cuda.synchronize()
    ms = time_loop(lambda: dst.copy_(src), 1, reps)
    if not torch.equal(dst, src):
        raise SystemExit("torch_ffn: device copy check failed")
    del src, dst
    torch.cuda.empty_cache()
    return 2 * nbytes / (ms * 1e-3) / 1e12


def bench_shape(d, f, copies, iters, warmup, reps, bw_tbs, l2):
    weight_bytes = 3 * d * f * 2  # bf16 W_gate + W_up + W_down
    if copies is None:
        copies = max(3, math.ceil(4 * l2 / weight_bytes))
    if copies < 1:
        raise SystemExit("torch_ffn: --copies must be >= 1")
    dev, dt = "cuda", torch.bfloat16
    weights = [(torch.randn(f, d, device=dev, dtype=dt) * 0.02,
                torch.randn(f, d, device=dev, dtype=dt) * 0.02,
                torch.randn(d, f, device=dev, dtype=dt) * 0.02) for _ in range(copies)]
    x = torch.randn(1, d, device=dev, dtype=dt)

    # Warm up on a side stream (cuBLAS handles/workspaces), then capture one graph over all copies.
    side = torch.cuda.Stream()
    side.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(side):
        for _ in range(3):
            run_all(x, weights)
    torch.cuda.current_stream().wait_stream(side)
    torch.cuda.synchronize()
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph):
        graph_outs = run_all(x, weights)

    # Correctness: one replay against the eager FFN, copy by copy (exact, or within one bf16 ulp of the max).
    graph.replay()
    torch.cuda.synchronize()
    eager_outs = run_all(x, weights)
    torch.cuda.synchronize()
    exact = True
    for i, (g, e) in enumerate(zip(graph_outs, eager_outs)):
        if g.shape != (1, d) or not torch.isfinite(e.float()).all():
            raise SystemExit(f"torch_ffn: bad output for {d}x{f} copy {i}: shape {tuple(g.shape)}")
        diff = (g.float() - e.float()).abs().max().item()
        tol = e.float().abs().max().item() * 2.0 ** -7
        if diff > tol:
            raise SystemExit(f"torch_ffn: graph != eager for {d}x{f} copy {i}: max diff {diff} > {tol}")
        exact = exact and diff == 0.0

    for _ in range(warmup):
        graph.replay()
    torch.cuda.synchronize()
    graph_us = time_loop(graph.replay, iters, reps) * 1e3 / (iters * copies)
    for _ in range(warmup):
        run_all(x, weights)
    torch.cuda.synchronize()
    eager_us = time_loop(lambda: run_all(x, weights), iters, reps) * 1e3 / (iters * copies)

    del graph, graph_outs, eager_outs, weights
    torch.cuda.empty_cache()
    # Floor: the FFN must read all its weight bytes once; at the measured device copy rate
    # (bytes read + written per second) that takes at least weight_bytes / rate.
    floor_us = weight_bytes / (bw_tbs * 1e12) * 1e6
    return {"d": d, "dFfn": f, "copies": copies, "graphMatchesEagerExactly": exact,
            "cublasGraphUs": graph_us, "cublasEagerUs": eager_us,
            "denseWeightBytes": weight_bytes, "denseFloorUs": floor_us}


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--shapes", default="2048x5464,4096x14336", help="d x d_ffn, comma-separated")
    ap.add_argument("--copies", type=int, default=None,
                    help="weight copies rotated in the graph (default: max(3, ceil(4*L2/weight bytes)))")
    ap.add_argument("--iters", type=int, default=50, help="graph replays (or eager loops) per timed repetition")
    ap.add_argument("--reps", type=int, default=20, help="timed repetitions; the median is reported")
    ap.add_argument("--warmup", type=int, default=10, help="untimed replays before timing")
    ap.add_argument("--copy-mib", type=int, default=2048, help="size of the bandwidth copy buffer, MiB")
    ap.add_argument("--out", required=True, help="JSON file to write")
    a = ap.parse_args()
    if a.iters < 1 or a.reps < 1 or a.warmup < 0:
        raise SystemExit("torch_ffn: --iters and --reps must be >= 1, --warmup >= 0")
    if not torch.cuda.is_available():
        raise SystemExit("torch_ffn: CUDA is not available")
    shapes = parse_shapes(a.shapes)
    torch.manual_seed(0)
    props = torch.cuda.get_device_properties(0)
    l2 = int(props.L2_cache_size)
    if l2 <= 0:
        raise SystemExit(f"torch_ffn: bad L2 size {l2}")

    with torch.no_grad():
        bw = copy_bandwidth_tbs(a.copy_mib * 2 ** 20, 10)
        results = [bench_shape(d, f, a.copies, a.iters, a.warmup, a.reps, bw, l2) for d, f in shapes]

    out = {"device": props.name, "torch": torch.__version__, "cuda": torch.version.cuda,
           "copyBandwidthTBs": bw, "l2Bytes": l2, "iters": a.iters, "reps": a.reps, "shapes": results}
    os.makedirs(os.path.dirname(os.path.abspath(a.out)), exist_ok=True)
    with open(a.out, "w") as fh:
        json.dump(out, fh, indent=2)
        fh.write("\n")

    print(f"{props.name}  torch {torch.__version__}  CUDA {torch.version.cuda}  "
          f"L2 {l2 / 2**20:.0f} MiB  copy {bw:.2f} TB/s")
    print(f"{'d x F':>12} {'copies':>6} {'graph us':>9} {'eager us':>9} {'floor us':>9} {'MB':>7}")
    for r in results:
        print(f"{r['d']:>5} x {r['dFfn']:<5} {r['copies']:>6} {r['cublasGraphUs']:>9.2f} "
              f"{r['cublasEagerUs']:>9.2f} {r['denseFloorUs']:>9.2f} {r['denseWeightBytes'] / 1e6:>7.1f}")
    print(f"wrote {a.out}")


if __name__ == "__main__":
    main()
