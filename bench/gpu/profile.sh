#!/usr/bin/env bash
# Kernel durations of one decode step (ncu), summed by kernel kind; run after make_llama_1b.py.
# Usage: bash bench/gpu/profile.sh MODEL_DIR [K]
set -eu
dir=$1; k=${2:-}
n=$(node dist/bench/gpu/profile-step.js "$dir" $k 2>/dev/null | sed -n 's/launches per step: //p')
ncu --launch-skip "$n" --launch-count "$n" --metrics gpu__time_duration.sum --csv --print-units base \
  node dist/bench/gpu/profile-step.js "$dir" $k 2>/dev/null | python3 -c '
import csv, sys, collections
rows = [r for r in csv.reader(sys.stdin) if len(r) > 10]
hdr = rows[0]; ki = hdr.index("Kernel Name"); vi = hdr.index("Metric Value")
agg = collections.defaultdict(lambda: [0, 0.0])
for r in rows[1:]:
    name = r[ki].split("(")[0]
    kind = "_".join(name.split("_")[:2])
    agg[kind][0] += 1; agg[kind][1] += float(r[vi].replace(",", "")) / 1000
total = sum(v[1] for v in agg.values())
print(f"one decode step: {sum(v[0] for v in agg.values())} kernels, {total:.1f} us of kernel time")
for kind, (cnt, us) in sorted(agg.items(), key=lambda x: -x[1][1]):
    print(f"  {kind:24s} x{cnt:4d}  {us:8.1f} us  ({us/cnt:6.2f} us each)")
'
