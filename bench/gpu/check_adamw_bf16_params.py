"""AdamW's 'bf16-params' mode (src/train/adamw.ts) against PyTorch.

Two references, each step recomputed from OUR state before it (so a rare disagreement does not carry):

1. The rule, in torch f32 ops: the bf16 parameter widened to f32, helper-42's 'bf16' moment update
   (check_adamw_bf16_state.py: m, v rounded through torch.bfloat16 after their update, the parameter's
   update reading the rounded values), the new parameter rounded to bf16 (.to(torch.bfloat16), RNE).
   Bound: torch computes in f32, ours in f64 rounded to f32, then bf16. m, v equal but for rare flips
   (at most 2 + n/1024 a tensor a step, one bf16 ulp); the new parameter equal but where its two f32
   values straddle a bf16 rounding midpoint or m, v flipped: then at most one bf16 ulp apart (same count
   bound). f32 tensors (1-D) as in check_adamw_bf16_state.py.
2. torch.optim.AdamW(fused=True) on bf16 tensors (CPU), what bench/gpu/torch_train.py trains with: its
   gradient is the bf16 rounding of ours (a bf16 parameter's .grad is bf16), its update reads the
   unrounded f32 moments. Stated difference: the new parameter within one bf16 ulp of ours plus 2^-6
   of our update |p1 − p0| (the two updates differ by the gradient's bf16 rounding, 2^-9 relative, and
   m's and √v's, 2^-9 each: ≈ 2^-8 at most; 2^-6 leaves a factor 4); the count of differing elements
   is printed. Skipped (with a line saying so) where this
   torch has no fused CPU AdamW.

Input: a JSON file (argv[1]) from test/bench/torch-adamw-bf16-params.test.ts. Prints
"check_adamw_bf16_params: all checks passed" or exits 1.
"""
import json
import sys

import torch

from check_adamw_bf16_state import f32, rule_step  # the same f32 update with bf16 moments


def bf16(x):
    return x.to(torch.bfloat16).to(torch.float32)


def ulp_bf16(x):
    # one bf16 ulp at |x| (2^(e-7)), at least the smallest normal's
    e = torch.floor(torch.log2(x.abs().clamp(min=2.0 ** -126)))
    return torch.pow(2.0, e - 7)


def main() -> int:
    with open(sys.argv[1]) as f:
        d = json.load(f)
    b1, b2, eps, wd = d["beta1"], d["beta2"], d["eps"], d["weightDecay"]
    bad = []
    flips = fused_diff = 0
    fused_ok = True
    for s in d["steps"]:
        t, lr = s["t"], s["lr"]
        for name, x in s["tensors"].items():
            want_p, want_m, want_v = f32(x["p1"]), f32(x["m1"]), f32(x["v1"])
            p0 = f32(x["p0"])
            p, m, v = rule_step(x, t, lr, b1, b2, eps, wd)  # the bf16-moment rule; a bf16 param is rounded below
            n = m.numel()
            flip = (m != want_m) | (v != want_v)
            if x["bf16"]:
                if bool((p0 != bf16(p0)).any()):
                    bad.append(f"step {t} {name}: our parameter before the step is not bf16")
                p = bf16(p)
                pflip = p != want_p
                if bool(((p - want_p).abs() > ulp_bf16(want_p)).any()):
                    i = int(((p - want_p).abs() > ulp_bf16(want_p)).nonzero()[0])
                    bad.append(f"step {t} {name}: p[{i}] torch {float(p[i])} vs ours {float(want_p[i])}: more than one bf16 ulp")
                flip = flip | pflip
            else:
                update = (want_p - p0).abs()
                tol = want_p.abs() * 2 ** -20 + update * 2 ** -18 + flip.float() * update * 2 ** -7
                if bool(((p - want_p).abs() > tol).any()):
                    i = int(((p - want_p).abs() > tol).nonzero()[0])
                    bad.append(f"step {t} {name}: p[{i}] torch {float(p[i])} vs ours {float(want_p[i])}")
            k = int(flip.sum())
            flips += k
            if k > 2 + n / 1024:
                bad.append(f"step {t} {name}: {k} of {n} elements differ (rounding flips)")
            for what, got, want in (("m", m, want_m), ("v", v, want_v)):
                off = (got - want).abs() > want.abs() * 2 ** -7
                if bool(off.any()):
                    i = int(off.nonzero()[0])
                    bad.append(f"step {t} {name}: {what}[{i}] torch {float(got[i])} vs ours {float(want[i])}")
            if x["bf16"] and fused_ok:
                fp = torch.nn.Parameter(f32(x["p0"]).to(torch.bfloat16))
                fp.grad = f32(x["g"]).to(torch.bfloat16)
                try:
                    opt = torch.optim.AdamW([fp], lr=lr, betas=(b1, b2), eps=eps, weight_decay=wd if x["decays"] else 0.0, fused=True)
                    opt.state[fp] = {"step": torch.tensor(float(t - 1)), "exp_avg": f32(x["m0"]).to(torch.bfloat16), "exp_avg_sq": f32(x["v0"]).to(torch.bfloat16)}
                    opt.step()
                except (RuntimeError, TypeError) as e:
                    print(f"check_adamw_bf16_params: no fused CPU AdamW for bf16 in torch {torch.__version__} ({e}); reference 2 skipped")
                    fused_ok = False
                    continue
                got = fp.detach().to(torch.float32)
                diff = (got - want_p).abs()
                fused_diff += int((diff > 0).sum())
                tol = ulp_bf16(want_p) + (want_p - f32(x["p0"])).abs() * 2 ** -6
                if bool((diff > tol).any()):
                    i = int((diff > tol).nonzero()[0])
                    bad.append(f"step {t} {name}: fused torch p[{i}] {float(got[i])} vs ours {float(want_p[i])}: beyond one bf16 ulp + 2^-6 of the update ({float(tol[i]):.2e})")
    if bad:
        print("\n".join(bad[:10]))
        return 1
    print(f"check_adamw_bf16_params: {flips} rounding flips against the rule in torch f32 ops")
    if fused_ok:
        print(f"check_adamw_bf16_params: {fused_diff} bf16 parameter elements differ from fused torch AdamW (within the stated bound)")
    print("check_adamw_bf16_params: all checks passed")
    return 0


if __name__ == "__main__":
    sys.exit(main())
