#!/usr/bin/env python3
"""PyTorch training peer for `mocc train` on the GPU: the 1B preset on random tokens, peak memory and tokens/s.

Per configuration, a fresh model (the checkpoint of make_llama_1b.py, or --tiny's in-memory one) in the
parameter dtype (bf16), AdamW (torch.optim.AdamW, fused where the device has it) whose state is in that
dtype too, as the paper's measurement setup and issue 18's table have it:
    dense            Hugging Face LlamaForCausalLM, sdpa attention, eager
    compile          the same under torch.compile
    moc              every FFN a MoC FFN (torch_moc.py) saving x, Gk, S, Uk, Z and int16 indices (mocc 'moc')
    moc-gcp          the same saving x, Gk, Uk and int16 indices, S and Z recomputed (mocc 'moc-gcp')
    moc-compile, moc-gcp-compile   (not in the default list) the MoC ones under torch.compile; there
                     AOTAutograd's partitioner, not the Function, decides what is saved
A step: zero_grad(set_to_none), loss = model(ids, labels=ids).loss (HF's shifted cross-entropy),
backward, optimizer.step(). Batches are uniform random tokens from a generator seeded per step, so every
configuration sees the same batches. --warmup steps run first (compilation, AdamW state creation), then
the peak-memory counters are reset and --steps steps are timed between two synchronizes; losses are read
only after the timing. Memory: torch.cuda.max_memory_allocated / max_memory_reserved over the timed steps.
--largest-batch: per configuration, the largest batch (multiple of --batch-step) for which a warm-up
step and one more step run without torch.cuda.OutOfMemoryError: doubling from --batch, then bisection.
  python3 bench/gpu/torch_train.py --model DIR --batch 64 --seq 256 --steps 5 --out OUT/torch_train.json
  python3 bench/gpu/torch_train.py --tiny --device cpu --configs dense,moc,moc-gcp --batch 4 --seq 32 --out /tmp/t.json
"""
import argparse, gc, json, math, os, time
import torch
import transformers
from transformers import AutoModelForCausalLM, LlamaConfig, LlamaForCausalLM
from torch_moc import convert_to_moc

CONFIGS = {  # name → (FFN kind, torch.compile)
    "dense": ("dense", False), "compile": ("dense", True), "moc": ("moc", False), "moc-gcp": ("moc-gcp", False),
    "moc-compile": ("moc", True), "moc-gcp-compile": ("moc-gcp", True),
}
TINY = dict(hidden_size=64, intermediate_size=176, num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=4,
            vocab_size=512, max_position_embeddings=512, rms_norm_eps=1e-5, tie_word_embeddings=False,
            hidden_act="silu", initializer_range=0.02)
TINY_K = 48


def build_model(a, dtype, kind):
    """A fresh model for one configuration, on a.device, in training mode."""
    if a.tiny:
        torch.manual_seed(0)
        model = LlamaForCausalLM(LlamaConfig(**TINY, attn_implementation="sdpa"))
    else:
        model = AutoModelForCausalLM.from_pretrained(a.model, dtype=dtype, attn_implementation="sdpa")
    model = model.to(device=a.device, dtype=dtype).train()
    model.config.use_cache = False
    if kind != "dense":
        convert_to_moc(model, a.k, recompute=(kind == "moc-gcp"))
    return model


def make_optimizer(model, lr):
    try:
        return torch.optim.AdamW(model.parameters(), lr=lr, fused=True), True
    except (RuntimeError, TypeError):  # fused not available for this device or dtype
        return torch.optim.AdamW(model.parameters(), lr=lr), False


def batch_ids(step, batch, seq, vocab, device):
    gen = torch.Generator().manual_seed(1000 + step)
    return torch.randint(0, vocab, (batch, seq), generator=gen).to(device)


def train_step(model, opt, ids):
    opt.zero_grad(set_to_none=True)
    loss = model(input_ids=ids, labels=ids, use_cache=False).loss
    loss.backward()
    opt.step()
    return loss.detach()


def sync(device):
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def release(device):
    gc.collect()
    if device.type == "cuda":
        torch.cuda.empty_cache()


def measure(a, name, dtype):
    """One configuration at --batch: warm-up, timed steps, peak memory, losses."""
    kind, compiled = CONFIGS[name]
    dev = torch.device(a.device)
    model = build_model(a, dtype, kind)
    vocab = model.config.vocab_size
    run = torch.compile(model) if compiled else model
    opt, fused = make_optimizer(model, a.lr)
    t0 = time.perf_counter()
    warm = [train_step(run, opt, batch_ids(s, a.batch, a.seq, vocab, dev)) for s in range(a.warmup)]
    sync(dev)
    warm_s = time.perf_counter() - t0
    row = {"config": name, "ffn": kind, "compiled": compiled, "fusedAdamW": fused, "batch": a.batch, "seq": a.seq,
           "params": sum(p.numel() for p in model.parameters()), "warmupS": warm_s}
    if dev.type == "cuda":
        row["warmupPeakAllocatedBytes"] = torch.cuda.max_memory_allocated(dev)
        row["warmupPeakReservedBytes"] = torch.cuda.max_memory_reserved(dev)
        torch.cuda.reset_peak_memory_stats(dev)
    ids = [batch_ids(a.warmup + s, a.batch, a.seq, vocab, dev) for s in range(a.steps)]
    sync(dev)
    t0 = time.perf_counter()
    losses = [train_step(run, opt, ids[s]) for s in range(a.steps)]
    sync(dev)
    elapsed = time.perf_counter() - t0
    row.update({"timedS": elapsed, "tokensPerS": a.batch * a.seq * a.steps / elapsed,
                "warmupLosses": [float(l) for l in warm], "losses": [float(l) for l in losses]})
    if dev.type == "cuda":
        row["peakAllocatedBytes"] = torch.cuda.max_memory_allocated(dev)
        row["peakReservedBytes"] = torch.cuda.max_memory_reserved(dev)
    if not all(math.isfinite(l) for l in row["losses"]):
        raise SystemExit(f"torch_train: {name}: non-finite loss {row['losses']}")
    del run, model, opt, warm, losses, ids
    if compiled:
        torch._dynamo.reset()
    release(dev)
    return row


def fits(model, run, batch, a, vocab, dev):
    """Whether a step (creating AdamW's state) and one more run at this batch without running out of memory."""
    opt, _ = make_optimizer(model, a.lr)
    oom = False
    try:
        for s in range(2):
            train_step(run, opt, batch_ids(s, batch, a.seq, vocab, dev))
        sync(dev)
    except torch.cuda.OutOfMemoryError:
        oom = True  # cleaned up below, outside the handler: its traceback holds the step's tensors
    for p in model.parameters():
        p.grad = None
    del opt
    release(dev)
    return not oom


def largest_batch(a, name, dtype):
    kind, compiled = CONFIGS[name]
    dev = torch.device(a.device)
    if dev.type != "cuda":
        raise SystemExit("torch_train: --largest-batch needs --device cuda")
    model = build_model(a, dtype, kind)
    vocab = model.config.vocab_size
    run = torch.compile(model) if compiled else model
    step = a.batch_step
    tried = {}
    ok = lambda b: tried.setdefault(b, fits(model, run, b, a, vocab, dev))
    lo, hi = 0, max(step, a.batch // step * step)
    while ok(hi):  # doubling until one fails (lo fits, hi does not) or --max-batch fits
        lo = hi
        if hi >= a.max_batch:
            break
        hi = min(hi * 2, a.max_batch)
    while hi - lo > step:
        mid = (lo + hi) // 2 // step * step
        if mid in (lo, hi):
            break
        lo, hi = (mid, hi) if ok(mid) else (lo, mid)
    del run, model
    if compiled:
        torch._dynamo.reset()
    release(dev)
    return {"largestBatch": lo, "firstFailingBatch": hi if hi in tried and not tried[hi] else None,
            "batchStep": step, "triedBatches": {str(b): f for b, f in sorted(tried.items())}}


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", help="Hugging Face checkpoint directory (make_llama_1b.py)")
    ap.add_argument("--tiny", action="store_true", help="a 2-layer small model built in memory (checks on a CPU)")
    ap.add_argument("--device", default="cuda")
    ap.add_argument("--dtype", choices=["bfloat16", "float32"], default="bfloat16", help="parameters and AdamW state")
    ap.add_argument("--batch", type=int, default=64)
    ap.add_argument("--seq", type=int, default=256)
    ap.add_argument("--steps", type=int, default=5, help="timed steps")
    ap.add_argument("--warmup", type=int, default=1)
    ap.add_argument("--k", type=int, default=None, help=f"MoC channels kept per token (default 1024; --tiny: {TINY_K})")
    ap.add_argument("--lr", type=float, default=1e-4)
    ap.add_argument("--configs", default="dense,compile,moc,moc-gcp", help=", ".join(CONFIGS))
    ap.add_argument("--largest-batch", action="store_true", help="also find each configuration's largest batch")
    ap.add_argument("--batch-step", type=int, default=8, help="--largest-batch's granularity")
    ap.add_argument("--max-batch", type=int, default=4096)
    ap.add_argument("--out", required=True, help="JSON file to write")
    a = ap.parse_args()
    if a.tiny == bool(a.model):
        raise SystemExit("torch_train: give --model DIR or --tiny (one of them)")
    if a.k is None:
        a.k = TINY_K if a.tiny else 1024
    names = [c.strip() for c in a.configs.split(",") if c.strip()]
    bad = [c for c in names if c not in CONFIGS]
    if bad or not names:
        raise SystemExit(f"torch_train: unknown configs {bad}: use {', '.join(CONFIGS)}")
    if a.batch < 1 or a.seq < 2 or a.steps < 1 or a.warmup < 1 or a.batch_step < 1:
        raise SystemExit("torch_train: --batch, --steps, --warmup, --batch-step must be >= 1 and --seq >= 2")
    dev = torch.device(a.device)
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise SystemExit("torch_train: CUDA is not available")
    dtype = getattr(torch, a.dtype)

    rows = []
    for name in names:
        oom = False
        try:
            row = measure(a, name, dtype)
        except torch.cuda.OutOfMemoryError:
            oom = True  # recorded, and the next configuration still runs (cleanup outside the handler)
        if oom:
            release(dev)
            row = {"config": name, "batch": a.batch, "seq": a.seq, "error": "out of memory"}
            print(f"torch_train: {name}: out of memory at batch {a.batch} x {a.seq}", flush=True)
        else:
            print(f"torch_train: {name}: {row['tokensPerS']:.0f} tok/s, peak {row.get('peakAllocatedBytes', 0) / 1e9:.2f} GB, losses {[round(l, 4) for l in row['losses']]}", flush=True)
        if a.largest_batch:
            row.update(largest_batch(a, name, dtype))
        rows.append(row)

    out = {"device": torch.cuda.get_device_name(dev) if dev.type == "cuda" else "cpu", "torch": torch.__version__,
           "cuda": torch.version.cuda, "transformers": transformers.__version__,
           "model": "tiny" if a.tiny else os.path.abspath(a.model), "dtype": a.dtype, "batch": a.batch, "seq": a.seq,
           "steps": a.steps, "warmup": a.warmup, "k": a.k, "lr": a.lr, "configs": rows}
    os.makedirs(os.path.dirname(os.path.abspath(a.out)), exist_ok=True)
    with open(a.out, "w") as fh:
        json.dump(out, fh, indent=2)
        fh.write("\n")

    gb = lambda r, key: f"{r[key] / 1e9:.2f}" if key in r else "-"
    print(f"{out['device']}  torch {torch.__version__}  transformers {transformers.__version__}  "
          f"{a.dtype}  batch {a.batch} x {a.seq}  K {a.k}")
    print(f"{'config':>16} {'peak GB':>8} {'resv GB':>8} {'tok/s':>9} {'loss first':>10} {'loss last':>10} {'max batch':>9}")
    for r in rows:
        if "error" in r:
            print(f"{r['config']:>16} {r['error']} {r.get('largestBatch', '')}")
            continue
        print(f"{r['config']:>16} {gb(r, 'peakAllocatedBytes'):>8} {gb(r, 'peakReservedBytes'):>8} {r['tokensPerS']:>9.0f} "
              f"{r['losses'][0]:>10.4f} {r['losses'][-1]:>10.4f} {r.get('largestBatch', '-'):>9}")
    print(f"wrote {a.out}")


if __name__ == "__main__":
    main()
