#!/usr/bin/env bash
# Kernel durations (ncu), summed by kernel family, of one decode step, or of one prefill of T tokens
# (the prefill program); run after make_llama_1b.py.
# Usage: bash bench/gpu/profile.sh MODEL_DIR [K]             one decode step (dense, or MoC with K)
#        bash bench/gpu/profile.sh --context N MODEL_DIR [K]  one decode step after N tokens
#        bash bench/gpu/profile.sh --prefill T MODEL_DIR [K]  one prefill of T tokens
set -eu
if [[ ${1:-} == --prefill ]]; then
  t=$2; dir=$3; k=${4:-}
  script="dist/bench/gpu/profile-prefill.js $dir $t $k"; title="one prefill of $t tokens${k:+, MoC K=$k}"
  n=$(node $script 2>/dev/null | sed -n 's/launches per prefill: //p')
else
  ctx=16; if [[ ${1:-} == --context ]]; then ctx=$2; shift 2; fi
  dir=$1; k=${2:-}
  script="dist/bench/gpu/profile-step.js $dir ${k:-dense} $ctx"; title="one decode step after $ctx tokens${k:+, MoC K=$k}"
  n=$(node $script 2>/dev/null | sed -n 's/launches per step: //p')
fi
ncu --launch-skip "$n" --launch-count "$n" --metrics gpu__time_duration.sum --csv --print-units base \
  node $script 2>/dev/null | python3 bench/gpu/ncu_sum.py "$title"
