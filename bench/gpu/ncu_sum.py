"""Sums ncu's per-kernel durations (--metrics gpu__time_duration.sum --csv --print-units base, on
stdin) by kernel family: the name up to its second '_' (gemm_xwt, flash_attention, ...).
  ncu ... | python3 bench/gpu/ncu_sum.py "one decode step" """
import collections, csv, sys

title = sys.argv[1] if len(sys.argv) > 1 else "kernels"
rows = [r for r in csv.reader(sys.stdin) if len(r) > 10]
hdr = rows[0]
ki, vi = hdr.index("Kernel Name"), hdr.index("Metric Value")
agg = collections.defaultdict(lambda: [0, 0.0])
for r in rows[1:]:
    kind = "_".join(r[ki].split("(")[0].split("_")[:2])
    agg[kind][0] += 1
    agg[kind][1] += float(r[vi].replace(",", "")) / 1000
total = sum(v[1] for v in agg.values())
print(f"{title}: {sum(v[0] for v in agg.values())} kernels, {total:.1f} us of kernel time")
for kind, (cnt, us) in sorted(agg.items(), key=lambda x: -x[1][1]):
    print(f"  {kind:24s} x{cnt:4d}  {us:9.1f} us  ({us / cnt:7.2f} us each)")
