"""AdamW with bf16 moments (src/train/adamw.ts stateDType 'bf16') against PyTorch arithmetic.

torch.optim.AdamW has no mode of f32 parameters with bf16 moments (with bf16 parameters it keeps the
state in the parameter's dtype, bf16 weights too), so the reference is its _single_tensor_adamw update
written out in torch f32 ops, with m and v rounded to bf16 (.to(torch.bfloat16), round to nearest
even) after their update and the parameter's update reading the rounded values:
    p.mul_(1 - lr*wd) (decaying tensors);  m.lerp_(g, 1 - b1);  v.mul_(b2).addcmul_(g, g, value=1 - b2)
    m, v = bf16(m), bf16(v)
    p.addcdiv_(m, (v.sqrt() / sqrt(1 - b2**t)).add_(eps), value=-lr / (1 - b1**t))

Input: a JSON file (argv[1]) written by test/bench/torch-adamw-bf16.test.ts: hyper-parameters, and for
each step the state before it (weights, m, v from OUR host AdamW), the gradient, lr, t, and our state
after it. Each step is checked from our state before it, so a rare disagreement does not carry.

Bound: torch computes in f32, ours in f64 rounded to f32 then bf16. Stored m, v are equal except where
their f32 values (about an f32 ulp apart) straddle a bf16 rounding midpoint ("flips": at most one bf16
ulp, 2^-7 of the value; at most 2 + n/1024 a step). Weights: within 2^-20|p| + 2^-18|update| (a few f32
roundings), plus 2^-7|update| at a flip. Prints "check_adamw_bf16_state: all checks passed" or exits 1.
"""
import json
import math
import sys

import torch


def f32(a):
    return torch.tensor(a, dtype=torch.float32)


def rule_step(x, t, lr, b1, b2, eps, wd):
    """One AdamW step of recorded tensor x (p0, m0, v0, g, decays) in torch f32 ops, m and v rounded
    through torch.bfloat16 before the update reads them: (p, m, v) after it. check_adamw_bf16_params.py
    uses it too (its bf16 params then round p)."""
    p, m, v, g = f32(x["p0"]), f32(x["m0"]), f32(x["v0"]), f32(x["g"])
    if x["decays"]:
        p.mul_(1 - lr * wd)
    m.lerp_(g, 1 - b1)
    v.mul_(b2).addcmul_(g, g, value=1 - b2)
    m = m.to(torch.bfloat16).to(torch.float32)
    v = v.to(torch.bfloat16).to(torch.float32)
    denom = (v.sqrt() / math.sqrt(1 - b2 ** t)).add_(eps)
    p.addcdiv_(m, denom, value=-lr / (1 - b1 ** t))
    return p, m, v


def main() -> int:
    with open(sys.argv[1]) as f:
        d = json.load(f)
    b1, b2, eps, wd = d["beta1"], d["beta2"], d["eps"], d["weightDecay"]
    bad = []
    total_flips = 0
    for s in d["steps"]:
        t, lr = s["t"], s["lr"]
        for name, x in s["tensors"].items():
            want_p, want_m, want_v = f32(x["p1"]), f32(x["m1"]), f32(x["v1"])
            p0 = f32(x["p0"])
            p, m, v = rule_step(x, t, lr, b1, b2, eps, wd)
            flip = (m != want_m) | (v != want_v)
            n_flip = int(flip.sum())
            total_flips += n_flip
            if n_flip > 2 + m.numel() / 1024:
                bad.append(f"step {t} {name}: {n_flip} of {m.numel()} moments differ in bf16")
            for what, got, want in (("m", m, want_m), ("v", v, want_v)):
                off = (got - want).abs() > want.abs() * 2 ** -7
                if bool(off.any()):
                    i = int(off.nonzero()[0])
                    bad.append(f"step {t} {name}: {what}[{i}] torch {float(got[i])} vs ours {float(want[i])}")
            update = (want_p - p0).abs()
            tol = want_p.abs() * 2 ** -20 + update * 2 ** -18 + flip.float() * update * 2 ** -7
            off = (p - want_p).abs() > tol
            if bool(off.any()):
                i = int(off.nonzero()[0])
                bad.append(f"step {t} {name}: p[{i}] torch {float(p[i])} vs ours {float(want_p[i])} (tol {float(tol[i]):.2e})")
    if bad:
        print("\n".join(bad[:10]))
        return 1
    print(f"check_adamw_bf16_state: {total_flips} bf16 rounding flips in all")
    print("check_adamw_bf16_state: all checks passed")
    return 0


if __name__ == "__main__":
    sys.exit(main())
