#!/usr/bin/env python3
"""CPU checks of torch_moc.py's MoC FFN (the PyTorch side of issue 18's training benchmark); no GPU needed.

1. 16-bit index narrowing round-trips every channel 0..65535 (int32 above 65536 channels).
2. The autograd Function's output and gradients (x, W_gate, W_up, W_down) equal plain autograd through the
   masked-dense reference (the dense FFN with the non-kept channels' activations zeroed), float32, for awkward
   sizes and K = 1, a middle K, and K = F; and in bf16 within bf16 rounding.
3. 'moc-gcp' (S, Z recomputed) gives the same gradients as 'moc' bit for bit.
4. What the backward keeps per token, counted with saved_tensors_hooks (parameters excluded): HF's dense
   LlamaMLP 4F + d values; MoC 4K + d values + K int16; MoC+GCP 2K + d values + K int16
   (passes/checkpoint.ts's table).
5. On a 2-layer tiny LlamaForCausalLM: MoC with K = F gives dense's loss and parameter gradients; two AdamW
   steps of torch_train.py under moc and moc-gcp give the same losses bit for bit.
Prints one line per check; exits 1 on the first failure. Called by test/bench/torch-moc.test.ts.
  python3 bench/gpu/check_torch_moc.py
"""
import os, sys, types
import torch
import torch.nn.functional as F

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from torch_moc import MocFFNFunction, convert_to_moc, masked_dense_ffn, narrow_index, widen_index  # noqa: E402
import torch_train  # noqa: E402


def fail(msg):
    print(f"check_torch_moc: FAIL: {msg}")
    sys.exit(1)


def ok(msg):
    print(f"ok: {msg}", flush=True)


def close(what, got, want, rtol, atol):
    try:
        torch.testing.assert_close(got, want, rtol=rtol, atol=atol)
    except AssertionError as e:
        fail(f"{what}: {e}")


def ffn_grads(fn, x, ws, dy):
    x = x.clone().requires_grad_()
    ws = [w.clone().requires_grad_() for w in ws]
    y = fn(x, *ws)
    y.backward(dy)
    return [y.detach(), x.grad] + [w.grad for w in ws]


def check_indices():
    for channels in (70, 65536):
        i = torch.arange(channels).reshape(1, -1)
        n = narrow_index(i, channels)
        if n.dtype != torch.int16 or not torch.equal(widen_index(n), i):
            fail(f"16-bit indices do not round-trip for {channels} channels")
    i = torch.tensor([[0, 65535, 65536, 99999]])
    n = narrow_index(i, 100000)
    if n.dtype != torch.int32 or not torch.equal(widen_index(n), i):
        fail("indices above 65536 channels are not kept in int32")
    ok("indices: int16 round-trip for 0..65535, int32 above 65536 channels")


def check_gradients():
    torch.manual_seed(1)
    names = ["y", "dx", "dW_gate", "dW_up", "dW_down"]
    for n_tok, d, ch in ((37, 24, 70), (1, 8, 9), (130, 40, 200)):
        for k in sorted({1, ch // 3, ch}):
            x = torch.randn(n_tok, d)
            ws = [torch.randn(ch, d) / d ** 0.5, torch.randn(ch, d) / d ** 0.5, torch.randn(d, ch) / ch ** 0.5]
            dy = torch.randn(n_tok, d)
            want = ffn_grads(lambda x, wg, wu, wd: masked_dense_ffn(x, wg, wu, wd, k), x, ws, dy)
            got = {}
            for policy, recompute in (("moc", False), ("moc-gcp", True)):
                got[policy] = ffn_grads(lambda x, wg, wu, wd: MocFFNFunction.apply(x, wg, wu, wd, k, recompute), x, ws, dy)
                for name, g, w in zip(names, got[policy], want):
                    # float32: the same GEMMs on the same values up to summation order (zeros added or not)
                    close(f"{policy} {name} N={n_tok} d={d} F={ch} K={k}", g, w, rtol=1e-5, atol=1e-5)
            for name, a, b in zip(names, got["moc"], got["moc-gcp"]):
                if not torch.equal(a, b):
                    fail(f"moc-gcp's {name} differs from moc's (N={n_tok} F={ch} K={k}): recompute is not exact")
    ok("MoC Function = masked-dense reference (y, dx, dW_gate, dW_up, dW_down; float32, rtol 1e-5) for "
       "N,d,F in (37,24,70) (1,8,9) (130,40,200) and K = 1, F/3, F; moc-gcp = moc bit for bit")

    # bf16: the Function keeps the dtype and agrees with the reference within a few bf16 ulps
    # (both round every product to bf16, in different places: 2^-6 relative of the largest value).
    x = torch.randn(33, 32, dtype=torch.bfloat16)
    ws = [(torch.randn(90, 32) / 32 ** 0.5).bfloat16(), (torch.randn(90, 32) / 32 ** 0.5).bfloat16(),
          (torch.randn(32, 90) / 90 ** 0.5).bfloat16()]
    dy = torch.randn(33, 32, dtype=torch.bfloat16)
    want = ffn_grads(lambda x, wg, wu, wd: masked_dense_ffn(x, wg, wu, wd, 30), x, ws, dy)
    got = ffn_grads(lambda x, wg, wu, wd: MocFFNFunction.apply(x, wg, wu, wd, 30, True), x, ws, dy)
    for name, g, w in zip(names, got, want):
        if g.dtype != torch.bfloat16:
            fail(f"bf16 {name} came back as {g.dtype}")
        scale = w.float().abs().max().item()
        close(f"bf16 {name}", g.float(), w.float(), rtol=0, atol=scale * 2 ** -6)
    ok("bf16: dtype kept; output and gradients within 2^-6 of the largest value of the masked-dense reference")


def saved_bytes(module_fn, x, params):
    """Bytes of the distinct non-parameter storages autograd saves for backward while module_fn(x) runs."""
    param_ptrs = {p.untyped_storage().data_ptr() for p in params}
    seen = {}

    def pack(t):
        st = t.untyped_storage()
        if st.data_ptr() not in param_ptrs:
            seen[st.data_ptr()] = st.nbytes()
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        module_fn(x)
    return sum(seen.values())


def check_saved():
    from transformers import LlamaConfig
    from transformers.models.llama.modeling_llama import LlamaMLP
    n_tok, d, ch, k = 50, 64, 176, 48
    mlp = LlamaMLP(LlamaConfig(**torch_train.TINY))
    x = torch.randn(n_tok, d, requires_grad=True)
    params = list(mlp.parameters())
    want = {"dense": (4 * ch + d) * 4, "moc": (4 * k + d) * 4 + 2 * k, "moc-gcp": (2 * k + d) * 4 + 2 * k}
    got = {"dense": saved_bytes(mlp, x, params) / n_tok}
    for policy, recompute in (("moc", False), ("moc-gcp", True)):
        layer = types.SimpleNamespace(mlp=mlp)
        convert_to_moc(types.SimpleNamespace(model=types.SimpleNamespace(layers=[layer])), k, recompute)
        got[policy] = saved_bytes(layer.mlp, x, params) / n_tok
    for policy, w in want.items():
        if got[policy] != w:
            fail(f"{policy} saves {got[policy]} bytes per token, wanted {w}")
    ok(f"saved for backward per token (float32, d {d}, F {ch}, K {k}): dense {got['dense']:.0f} B = (4F + d)·4, "
       f"moc {got['moc']:.0f} B = (4K + d)·4 + 2K, moc-gcp {got['moc-gcp']:.0f} B = (2K + d)·4 + 2K")


def check_model():
    args = types.SimpleNamespace(tiny=True, model=None, device="cpu", k=torch_train.TINY["intermediate_size"])
    ids = torch_train.batch_ids(0, 3, 20, torch_train.TINY["vocab_size"], torch.device("cpu"))
    grads = {}
    for kind in ("dense", "moc"):
        model = torch_train.build_model(args, torch.float32, kind)
        loss = model(input_ids=ids, labels=ids).loss
        loss.backward()
        grads[kind] = (loss.detach(), {n: p.grad for n, p in model.named_parameters()})
    (ld, gd), (lm, gm) = grads["dense"], grads["moc"]
    if gd.keys() != gm.keys():
        fail(f"MoC model's parameters differ from dense's: {sorted(set(gd) ^ set(gm))}")
    close("tiny model loss, MoC K = F vs dense", lm, ld, rtol=1e-5, atol=1e-6)
    for n in gd:
        close(f"tiny model grad {n}, MoC K = F vs dense", gm[n], gd[n], rtol=1e-4, atol=1e-6)
    ok(f"tiny LlamaForCausalLM: MoC with K = F has dense's loss ({float(ld):.5f}) and all {len(gd)} parameter gradients")

    args = types.SimpleNamespace(tiny=True, model=None, device="cpu", k=torch_train.TINY_K, lr=1e-3,
                                 batch=2, seq=24, warmup=1, steps=2)
    rows = {c: torch_train.measure(args, c, torch.float32) for c in ("moc", "moc-gcp")}
    a, b = (rows[c]["warmupLosses"] + rows[c]["losses"] for c in ("moc", "moc-gcp"))
    if a != b:
        fail(f"moc and moc-gcp train differently: {a} vs {b}")
    ok(f"tiny model, 3 AdamW steps (K {args.k}): moc and moc-gcp losses equal bit for bit {[round(l, 5) for l in a]}")


def main():
    torch.set_num_threads(1)
    check_indices()
    check_gradients()
    check_saved()
    check_model()
    print("check_torch_moc: all checks passed")


if __name__ == "__main__":
    main()
