"""Mixture-of-Channels FFN for PyTorch training, saving what mocc's checkpoint policies save.

The MoC FFN (arXiv 2511.09323; mocc's passes/swiglu-to-moc.ts) per token x [d]:
    G = x·W_gateᵀ [F];  idx = the K largest entries of G;  Gk = G[idx];  Uk = (x·W_upᵀ)[idx]
    S = silu(Gk);  Z = S ⊙ Uk;  y = Σ_k Z[k] · W_down[:, idx[k]]
What the backward reads, per token (values in the parameter dtype; passes/checkpoint.ts's table and the
gradient rules of src/ir/grad-rules.ts):
    moc      x, Gk, S, Uk, Z and idx in 16 bits:  d + 4K values + K int16   (mocc policy 'moc')
    moc-gcp  x, Gk, Uk and idx in 16 bits; S and Z recomputed in backward:
                                                  d + 2K values + K int16   (mocc policy 'moc-gcp',
                                                  the paper's MoC+GCP: G⊙M, U⊙M and M saved)
Neither saves G, U, S or Z at full width F: the [N, F] tensors live only inside forward() and
backward(). The recomputation of S and Z is inside this Function's backward, as mocc's 'moc-gcp'
recomputes exactly those two nodes: torch.utils.checkpoint around the FFN would instead recompute the
gate and up GEMMs too (and save nothing of G), which is not what mocc does, so it is not used.

Compute: the projections run as dense GEMMs ([N, F] with zeros where channels are not kept) and the
kept values are gathered / scattered around them. A per-token gathered GEMM in plain PyTorch would
materialise W_up[idx] as [N, K, d] (for the 1B preset at 64 × 256 tokens, 34 G elements): not
possible, and the paper's own PyTorch training runs at 0.97× dense, i.e. with dense GEMMs as here.
The memory saving, which is what the paper measures in training, is the same either way.

Indices: torch.topk's int64 indices are stored as int16 when F ≤ 65536 (channels ≥ 32768 wrap to
negative int16 and are masked back with & 0xFFFF), else int32; gather/scatter read them widened to int64.
"""
import torch
import torch.nn as nn
import torch.nn.functional as F


def narrow_index(idx, channels):
    """int64 channel indices → the 16-bit form saved for backward (int32 when channels > 65536)."""
    if channels > 65536:
        return idx.to(torch.int32)
    return torch.where(idx >= 32768, idx - 65536, idx).to(torch.int16)


def widen_index(saved):
    """The inverse of narrow_index: int64 indices for gather / scatter."""
    wide = saved.to(torch.int64)
    return wide & 0xFFFF if saved.dtype == torch.int16 else wide


def scatter_channels(values, idx, channels):
    """values [N, K] placed at idx in zeros [N, channels] (the [N, F] form a dense GEMM reads)."""
    return torch.zeros(values.shape[0], channels, dtype=values.dtype, device=values.device).scatter_(1, idx, values)


def select_channels(g, k):
    """Per row, the indices of the k largest gate pre-activations (mocc's moc_select; order not kept)."""
    return torch.topk(g, k, dim=1, sorted=False).indices


class MocFFNFunction(torch.autograd.Function):
    """y = MoC-FFN(x) for x [N, d], W_gate / W_up [F, d], W_down [d, F] (nn.Linear layouts)."""

    @staticmethod
    def forward(ctx, x, w_gate, w_up, w_down, k, recompute):
        channels = w_gate.shape[0]
        g = x @ w_gate.t()
        idx = select_channels(g, k)
        gk = g.gather(1, idx)
        del g
        uk = (x @ w_up.t()).gather(1, idx)
        s = F.silu(gk)
        z = s * uk
        y = scatter_channels(z, idx, channels) @ w_down.t()
        saved_idx = narrow_index(idx, channels)
        if recompute:
            ctx.save_for_backward(x, w_gate, w_up, w_down, gk, uk, saved_idx)
        else:
            ctx.save_for_backward(x, w_gate, w_up, w_down, gk, s, uk, z, saved_idx)
        ctx.recompute = recompute
        return y

    @staticmethod
    def backward(ctx, dy):
        if ctx.recompute:
            x, w_gate, w_up, w_down, gk, uk, saved_idx = ctx.saved_tensors
            s = F.silu(gk)  # the same kernels on the same values as forward: gradients equal 'moc''s bit for bit
            z = s * uk
        else:
            x, w_gate, w_up, w_down, gk, s, uk, z, saved_idx = ctx.saved_tensors
        channels = w_gate.shape[0]
        idx = widen_index(saved_idx)
        dy = dy.contiguous()
        # moc_down's rule: dZ = moc_up(dy, W_down, idx), dW_down in the kept channels only
        dw_down = dy.t() @ scatter_channels(z, idx, channels)
        dz = (dy @ w_down).gather(1, idx)
        del z
        # mul's and silu's rules on the kept values
        du = dz * s
        dgk = torch.ops.aten.silu_backward(dz * uk, gk)
        del dz
        # moc_up's rule (dx, dW_up in the kept rows), then moc_gather's (dG scattered into the kept channels)
        du_full = scatter_channels(du, idx, channels)
        dx = du_full @ w_up
        dw_up = du_full.t() @ x
        del du_full
        dg_full = scatter_channels(dgk, idx, channels)
        dx += dg_full @ w_gate
        dw_gate = dg_full.t() @ x
        return dx, dw_gate, dw_up, dw_down, None, None


class MocMLP(nn.Module):
    """Replaces a Hugging Face LlamaMLP, keeping its Linear modules (same parameters, same names)."""

    def __init__(self, mlp, k, recompute):
        super().__init__()
        for lin in (mlp.gate_proj, mlp.up_proj, mlp.down_proj):
            if lin.bias is not None:
                raise SystemExit("torch_moc: MLP biases are not supported")
        if not 1 <= k <= mlp.gate_proj.out_features:
            raise SystemExit(f"torch_moc: k = {k} is not in 1..{mlp.gate_proj.out_features}")
        self.gate_proj, self.up_proj, self.down_proj = mlp.gate_proj, mlp.up_proj, mlp.down_proj
        self.k, self.recompute = k, recompute

    def forward(self, x):
        shape = x.shape
        y = MocFFNFunction.apply(x.reshape(-1, shape[-1]), self.gate_proj.weight, self.up_proj.weight,
                                 self.down_proj.weight, self.k, self.recompute)
        return y.reshape(*shape[:-1], y.shape[-1])


def convert_to_moc(model, k, recompute):
    """Every decoder layer's mlp → MocMLP, in place; returns the number of layers converted."""
    layers = model.model.layers
    for layer in layers:
        layer.mlp = MocMLP(layer.mlp, k, recompute)
    return len(layers)


def masked_dense_ffn(x, w_gate, w_up, w_down, k):
    """The reference: the dense SwiGLU FFN with the non-kept channels' activations zeroed (plain autograd)."""
    g = x @ w_gate.t()
    mask = torch.zeros_like(g).scatter_(1, select_channels(g.detach(), k), 1.0)
    return (F.silu(g) * (x @ w_up.t()) * mask) @ w_down.t()
