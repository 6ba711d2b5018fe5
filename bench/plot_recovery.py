"""Draws bench/results/recovery/recovery.png from recovery.json (written by bench/recovery.ts).

    python3 bench/plot_recovery.py [bench/results/recovery]

Eval NLL of the K=32 student against recovery steps, with the dense model and every direct
conversion (K=16..128, no training) as horizontal reference lines.
"""
import json, os, sys

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt

folder = sys.argv[1] if len(sys.argv) > 1 else os.path.join(os.path.dirname(__file__), "results", "recovery")
res = json.load(open(os.path.join(folder, "recovery.json")))
rows = res["rows"]
dense = next(r for r in rows if r["model"] == "dense")
direct = [r for r in rows if r["model"].startswith("direct")]
rec = sorted([r for r in rows if r["model"].startswith("recovered")], key=lambda r: r["steps"])
k32 = next(r for r in direct if r["k"] == 32)

fig, ax = plt.subplots(figsize=(7, 4.5), dpi=120)
steps = [0] + [r["steps"] for r in rec]
nll = [k32["nll"]] + [r["nll"] for r in rec]
ax.plot(steps, nll, "o-", color="tab:red", label="MoC K=32, recovered (KL to dense)")
ax.axhline(dense["nll"], color="black", lw=1.5, label=f"dense ({dense['nll']:.3f})")
ax.axhline(dense["nll"] * 1.03, color="black", lw=1, ls=":", label="dense + 3% (goal)")
for r, c in zip(direct, ["tab:purple", "tab:red", "tab:orange", "tab:green"]):
    ax.axhline(r["nll"], color=c, lw=1, ls="--", alpha=0.6, label=f"direct K={r['k']} ({r['nll']:.3f})")
ax.set_xscale("symlog", linthresh=max(1, min(s for s in steps if s > 0)))
ax.set_xticks(steps)
ax.set_xticklabels([str(s) for s in steps])
ax.set_xlabel("recovery steps (batch %d × %d tokens)" % (res["recovery"]["batch"], res["recovery"]["seq"]))
ax.set_ylabel("eval NLL (nats), held-out TinyStories")
ax.set_title("stories260K: MoC conversion and data-free recovery (ref target)")
ax.legend(fontsize=7, loc="upper right")
ax.grid(alpha=0.3)
fig.tight_layout()
out = os.path.join(folder, "recovery.png")
fig.savefig(out)
print("wrote", out)
