#!/usr/bin/env bash
# On the GPU machine (no Node there: carry .carry, dist and the addon; see bench/gpu/README.md):
#   source .carry/setup.sh && bash bench/gpu/run.sh [check|gemm|prefill|prefill-f32|sanitize|sanitize-train|ffn|e2e|context|wgsl|wgsl-check|train|train-quick|train-s17|train-s17b|decode-fusions|train-torch|train-torch-largest|recovery|all]
# Writes logs and JSON under $OUT (the device tool's output folder) or bench/results/gpu.
set -u
what=${1:-all}
out=${OUT:-bench/results/gpu}
mkdir -p "$out"
node --version
nvidia-smi --query-gpu=name,driver_version,clocks.sm,clocks.mem --format=csv,noheader || true
status=0
step() { echo; echo "=== $1"; }
# the 1B preset's checkpoint (make_llama_1b.py; extra args such as --dtype float32), made once per machine
model_1b() { [[ -f $1/config.json ]] || python3 bench/gpu/make_llama_1b.py --out "$1" --seed 0 "${@:2}" 2>&1 | tail -3; }
# cuBLAS FFN timings and the copy bandwidth (torch_ffn.py), measured once per run
torch_ffn() { [[ -f $out/torch_ffn.json ]] || python3 bench/gpu/torch_ffn.py --shapes 2048x5464,4096x14336 --out "$out/torch_ffn.json" 2>&1 | tail -8; }
# session 17's 1B training runs (bench/gpu/train.ts), shared by train-s17 and train-s17b; $1 names the output files
train_1b() { MOCC_CUDA_TRAIN_MOC=dense node dist/bench/gpu/train.js --model /tmp/llama-1b --batch 64 --seq 256 --steps 2 --warmup 1 --matmul bf16 "$@"; }
memory_goal() {
  echo "--- the memory goal: attention recomputed, the fused head, bf16 weight matrices and moments"
  train_1b --configs moc:moc-gcp-attn,dense:gcp-attn --optimizer-state bf16-params --fuse-lm-head --out "$out/train-memory-goal.json" 2>&1 | tail -3 || status=1
}
moc_one_off() {
  echo "--- MoC+GCP with one change off each: producers' casts kept; adds kept; a cast per GEMM (no shared casts, so no bf16 producers either)"
  MOCC_CUDA_TRAIN_BF16_PRODUCERS=0 train_1b --configs moc:moc-gcp --out "$out/$1-producers-off.json" 2>&1 | tail -2 || status=1
  train_1b --configs moc:moc-gcp --matmul-acc 0 --out "$out/$1-adds-kept.json" 2>&1 | tail -2 || status=1
  train_1b --configs moc:moc-gcp --cast-once 0 --out "$out/$1-cast-per-gemm.json" 2>&1 | tail -2 || status=1
}
torch_compile() {
  echo "--- PyTorch dense under torch.compile, same machine"
  python3 bench/gpu/torch_train.py --model /tmp/llama-1b --batch 64 --seq 256 --steps 3 --warmup 1 --k 1024 --configs compile --out "$out/torch_train.json" 2>&1 | tail -4 || status=1
}
if [[ $what == all || $what == check ]]; then
  step "cuda-check: the CUDA kernel and model tests (kernels vs ref, stories260K logits and greedy text) and the rest of the CUDA tests"
  node node_modules/ava/entrypoints/cli.mjs test/targets/cuda-kernels.test.ts test/targets/cuda-flash-attention.test.ts test/targets/cuda-flash-attention-backward.test.ts test/targets/cuda-train-elementwise.test.ts test/targets/cuda-train-norm.test.ts test/targets/cuda-train-scatter.test.ts test/targets/cuda-train-loss.test.ts test/targets/cuda-train-adamw.test.ts test/targets/cuda-train-executor.test.ts test/targets/cuda-train-attention.test.ts test/targets/cuda-train-moc.test.ts test/targets/cuda-train-optimizer.test.ts test/targets/cuda-train-kl.test.ts test/targets/cuda-train-bf16.test.ts test/targets/cuda-train-bf16-attention.test.ts test/targets/cuda-train-moc-dense.test.ts test/targets/cuda-train-wgmma.test.ts test/train/gradient-backend.test.ts test/cli/train-target.test.ts test/targets/cuda-gemm.test.ts test/targets/cuda-gemm-f32.test.ts test/targets/cuda-gemm-layouts.test.ts test/targets/cuda-gemm-sm90.test.ts test/targets/cuda-prefill.test.ts test/targets/cuda-prefill-f32.test.ts test/targets/cuda-wgmma-lowering.test.ts test/targets/cuda-model.test.ts test/targets/cuda-driver.test.ts test/targets/cuda-ptx.test.ts test/targets/cuda-moc-tail.test.ts test/targets/cuda-train-lm-head.test.ts test/targets/cuda-train-lm-head-bf16.test.ts test/targets/cuda-train-adamw-bf16-state.test.ts test/targets/cuda-train-optimizer-bf16-state.test.ts test/targets/cuda-moc-topk.test.ts test/targets/cuda-cast.test.ts test/passes/bf16-gemm-operands.test.ts test/passes/matmul-accumulate.test.ts test/passes/bf16-producers.test.ts test/targets/cuda-train-bf16-out.test.ts test/targets/cuda-train-bf16-producers.test.ts > "$out/cuda-check.log" 2>&1 || status=1
  grep -E "✘|skip|tests? (passed|failed|skipped)" "$out/cuda-check.log" | tail -40
fi
if [[ $what == all || $what == gemm ]]; then
  step "gemm: the tensor-core GEMMs (sm_80, and sm_90a on Hopper) vs cuBLAS on issue 16's shapes"
  python3 bench/gpu/torch_gemm.py --out "$out/torch_gemm.json" 2>&1 | tail -8 || status=1
  node dist/bench/gpu/gemm.js --torch "$out/torch_gemm.json" --out "$out/gemm.json" 2>&1 | tail -40 || status=1
fi
if [[ $what == all || $what == sanitize ]]; then
  step "compute-sanitizer: a prefill of the 1B preset (GEMMs, flash attention) and a decode step after it (memcheck)"
  model=/tmp/llama-1b
  model_1b $model
  compute-sanitizer --tool memcheck --error-exitcode 9 node dist/bench/gpu/prefill-step.js --model $model --tokens 70 > "$out/sanitizer-prefill-memcheck.log" 2>&1 || status=1
  echo "prefill memcheck: $(grep -E 'ERROR SUMMARY|1B ' "$out/sanitizer-prefill-memcheck.log" | tr '\n' ' ')"

  step "compute-sanitizer: one prefill + decode step (memcheck, racecheck)"
  for tool in memcheck racecheck; do
    compute-sanitizer --tool $tool --error-exitcode 9 node dist/bench/gpu/one-step.js > "$out/sanitizer-$tool.log" 2>&1 || status=1
    echo "$tool: $(grep -E 'ERROR SUMMARY|RACECHECK SUMMARY|one decode step|1B-size' "$out/sanitizer-$tool.log" | tr '\n' ' ')"
  done
fi
if [[ $what == all || $what == wgsl-check ]]; then
  step "wgsl-check: the WGSL kernel and model tests on this GPU through Dawn (gpu kernel variant)"
  node node_modules/ava/entrypoints/cli.mjs test/targets/wgsl-dense.test.ts test/targets/wgsl-moc.test.ts test/targets/wgsl-moc-fused.test.ts test/targets/wgsl-model.test.ts test/targets/wgsl-bundle.test.ts > "$out/wgsl-check.log" 2>&1 || status=1
  grep -E "✘|tests? (passed|failed)|known failure" "$out/wgsl-check.log" | tail -20
fi
if [[ $what == all || $what == prefill ]]; then
  step "prefill: time to first token, 1B preset, mocc (GEMM and GEMV prefill) vs transformers (sdpa)"
  model=/tmp/llama-1b
  model_1b $model
  torch_ffn
  python3 bench/gpu/hf_prefill.py --model $model --out "$out/hf_prefill.json" 2>&1 | tail -4 || status=1
  node dist/bench/gpu/prefill.js --model $model --hf "$out/hf_prefill.json" --torch "$out/torch_ffn.json" --out "$out/prefill.json" 2>&1 | tail -8 || status=1
  echo "--- the same on gemm.ts's mma.sync GEMMs (MOCC_CUDA_WGMMA=0; only differs on Hopper)"
  MOCC_CUDA_WGMMA=0 node dist/bench/gpu/prefill.js --model $model --hf "$out/hf_prefill.json" --torch "$out/torch_ffn.json" --out "$out/prefill-mma.json" 2>&1 | tail -8 || status=1
fi
if [[ $what == prefill-f32 ]]; then
  step "prefill-f32: the f32 prefill program (SIMT GEMMs) vs the decode steps with T rows, 1B preset in f32"
  model=/tmp/llama-1b-f32
  model_1b $model --dtype float32
  torch_ffn
  node dist/bench/gpu/prefill.js --model $model --torch "$out/torch_ffn.json" --peak-tflops 67 --tokens 16,128,512 --out "$out/prefill-f32.json" 2>&1 | tail -8 || status=1
fi
if [[ $what == sanitize-train ]]; then
  step "compute-sanitizer: one training step of stories260K (dense none, MoC K=32 moc-gcp; f32 and bf16 matmuls), memcheck and racecheck"
  for tool in memcheck racecheck; do
    for mm in f32 bf16; do
      compute-sanitizer --tool $tool --error-exitcode 9 node dist/bench/gpu/train.js --model fixtures/stories260K/hf --batch 4 --seq 64 --steps 1 --warmup 0 --k 32 --configs dense:none,moc:moc-gcp --matmul $mm --out "$out/sanitize-train-$mm.json" > "$out/sanitizer-train-$tool-$mm.log" 2>&1 || status=1
      echo "$tool $mm: $(grep -E 'ERROR SUMMARY|RACECHECK SUMMARY' "$out/sanitizer-train-$tool-$mm.log" | tr '\n' ' ')"
    done
  done
fi
if [[ $what == train ]]; then
  step "train: mocc's training step of the 1B preset, batch 64 x 256: planned vs measured memory, tok/s (bf16 and f32 matmuls)"
  model=/tmp/llama-1b
  model_1b $model
  node dist/bench/gpu/train.js --model $model --batch 64 --seq 256 --steps 3 --warmup 1 --configs moc:moc-gcp,moc:moc,dense:gcp,dense:none,moc:moc-gcp-attn,dense:gcp-attn --matmul bf16 --out "$out/train-bf16.json" 2>&1 | tail -8 || status=1
  echo "--- MoC's projections as dense tensor-core GEMMs around scatter/gather (MOCC_CUDA_TRAIN_MOC=dense)"
  MOCC_CUDA_TRAIN_MOC=dense node dist/bench/gpu/train.js --model $model --batch 64 --seq 256 --steps 3 --warmup 1 --configs moc:moc-gcp,moc:moc --matmul bf16 --out "$out/train-bf16-moc-dense.json" 2>&1 | tail -4 || status=1
  echo "--- the bf16 GEMMs on gemm.ts's mma.sync (MOCC_CUDA_WGMMA=0) instead of gemm-sm90.ts's wgmma (the default on Hopper, the two runs above): dense GCP, MoC+GCP with dense MoC GEMMs"
  MOCC_CUDA_WGMMA=0 node dist/bench/gpu/train.js --model $model --batch 64 --seq 256 --steps 3 --warmup 1 --configs dense:gcp --matmul bf16 --out "$out/train-bf16-mma.json" 2>&1 | tail -3 || status=1
  MOCC_CUDA_WGMMA=0 MOCC_CUDA_TRAIN_MOC=dense node dist/bench/gpu/train.js --model $model --batch 64 --seq 256 --steps 3 --warmup 1 --configs moc:moc-gcp --matmul bf16 --out "$out/train-bf16-moc-dense-mma.json" 2>&1 | tail -3 || status=1
  node dist/bench/gpu/train.js --model $model --batch 64 --seq 256 --steps 1 --warmup 1 --configs moc:moc-gcp --matmul f32 --out "$out/train-f32.json" 2>&1 | tail -3 || status=1
  echo "--- the LM head fused with the loss (--fuse-lm-head: lm_head_loss in blocks of 2048 rows, no [T, V] logits), bf16 AdamW state, dense MoC GEMMs"
  MOCC_CUDA_TRAIN_MOC=dense node dist/bench/gpu/train.js --model $model --batch 64 --seq 256 --steps 3 --warmup 1 --configs moc:moc-gcp-attn,dense:gcp-attn --matmul bf16 --optimizer-state bf16 --fuse-lm-head --out "$out/train-bf16-fused-head.json" 2>&1 | tail -4 || status=1
  echo "--- the same with bf16 weight matrices (--optimizer-state bf16-params: bf16StoredParams' params stored bf16, read by the GEMMs uncast; every moment bf16)"
  MOCC_CUDA_TRAIN_MOC=dense node dist/bench/gpu/train.js --model $model --batch 64 --seq 256 --steps 3 --warmup 1 --configs moc:moc-gcp-attn,dense:gcp-attn --matmul bf16 --optimizer-state bf16-params --fuse-lm-head --out "$out/train-bf16-params-fused-head.json" 2>&1 | tail -4 || status=1
fi
if [[ $what == train-quick ]]; then
  step "train-quick (about 7 min): session 15's unrun training GPU tests, then the 1B step on wgmma (profiled by kernel family) vs mma.sync, and the memory-goal configuration (-attn, fused head, bf16 params)"
  model=/tmp/llama-1b
  ( model_1b $model > "$out/make1b.log" 2>&1 ) &
  timeout 240 node node_modules/ava/entrypoints/cli.mjs --timeout=200s test/targets/cuda-train-wgmma.test.ts test/targets/cuda-train-lm-head-bf16.test.ts test/targets/cuda-train-bf16-params.test.ts test/cli/train-bf16-params.test.ts test/targets/cuda-train-lm-head.test.ts test/targets/cuda-train-adamw-bf16-params.test.ts test/targets/cuda-train-adamw-bf16-state.test.ts test/targets/cuda-train-optimizer-bf16-state.test.ts > "$out/train-quick-check.log" 2>&1 || status=1
  grep -E "✘|tests? (passed|failed|skipped)" "$out/train-quick-check.log" | tail -20
  wait
  t="node dist/bench/gpu/train.js --model $model --batch 64 --seq 256 --steps 2 --warmup 1 --matmul bf16"
  MOCC_CUDA_TRAIN_MOC=dense $t --configs dense:gcp,moc:moc-gcp --profile --out "$out/train-wgmma.json" 2>&1 | tail -44 || status=1
  echo "--- the same GEMMs on mma.sync (MOCC_CUDA_WGMMA=0), dense GCP"
  MOCC_CUDA_WGMMA=0 $t --configs dense:gcp --out "$out/train-mma.json" 2>&1 | tail -2 || status=1
  echo "--- the memory goal: attention recomputed, the fused head, bf16 weight matrices and moments"
  MOCC_CUDA_TRAIN_MOC=dense $t --configs moc:moc-gcp-attn,dense:gcp-attn --optimizer-state bf16-params --fuse-lm-head --out "$out/train-memory-goal.json" 2>&1 | tail -3 || status=1
fi
if [[ $what == train-s17 ]]; then
  step "train-s17 (about 10 min; most important first): the GPU tests of every training change since the last GPU run (shared casts, castRows, bf16 scatter, map kernels, AdamW bounds, radix Top-K, matmul_acc, rmsnorm_grad_acc, bf16 producers), the 1B step with all of them (profiled), the memory-goal configuration, then MoC+GCP with each switched off, torch.compile beside it"
  model=/tmp/llama-1b
  ( model_1b $model > "$out/make1b.log" 2>&1 ) &
  timeout 160 node node_modules/ava/entrypoints/cli.mjs --timeout=150s test/passes/bf16-gemm-operands.test.ts test/targets/cuda-cast.test.ts test/targets/cuda-train-elementwise.test.ts test/targets/cuda-train-adamw-bf16-state.test.ts test/targets/cuda-train-adamw-bf16-params.test.ts test/targets/cuda-train-moc-dense.test.ts test/targets/cuda-train-moc.test.ts test/passes/matmul-accumulate.test.ts test/targets/cuda-train-wgmma.test.ts test/targets/cuda-train-norm.test.ts test/targets/cuda-train-bf16-out.test.ts test/targets/cuda-train-bf16-producers.test.ts > "$out/train-s17-check.log" 2>&1 || status=1
  grep -E "✘|tests? (passed|failed|skipped)" "$out/train-s17-check.log" | tail -20
  wait
  train_1b --configs dense:gcp,moc:moc-gcp --profile --out "$out/train-s17.json" 2>&1 | tail -90 || status=1
  memory_goal
  moc_one_off train-s17
  torch_compile
fi
if [[ $what == train-s17b ]]; then
  step "train-s17b (about 8 min): what train-s17 did not reach: decoding's Top-K GPU tests after the key change (NaN = -Inf, -0 = +0), the memory-goal configuration, MoC+GCP with each session-17 change off, torch.compile beside it"
  model=/tmp/llama-1b
  ( model_1b $model > "$out/make1b.log" 2>&1 ) &
  timeout 120 node node_modules/ava/entrypoints/cli.mjs --timeout=110s --match='*topk*' test/targets/cuda-kernels.test.ts > "$out/train-s17b-check.log" 2>&1 || status=1
  timeout 120 node node_modules/ava/entrypoints/cli.mjs --timeout=110s test/targets/cuda-moc-topk.test.ts >> "$out/train-s17b-check.log" 2>&1 || status=1
  grep -E "✘|tests? (passed|failed|skipped)" "$out/train-s17b-check.log" | tail -20
  wait
  memory_goal
  echo "--- MoC+GCP, all on"
  train_1b --configs moc:moc-gcp --out "$out/train-s17b-all-on.json" 2>&1 | tail -2 || status=1
  moc_one_off train-s17b
  torch_compile
fi
if [[ $what == decode-fusions ]]; then
  step "decode-fusions (about 6 min): the MoC reduce in up·down's tail and Top-K in the gate GEMV, their GPU tests, then decode-context configs 1 / 10 / 8 / 11 twice in one process"
  model=/tmp/llama-1b
  ( model_1b $model > "$out/make1b.log" 2>&1 ) &
  timeout 150 node node_modules/ava/entrypoints/cli.mjs --timeout=140s test/targets/cuda-moc-tail.test.ts test/targets/cuda-moc-topk.test.ts > "$out/decode-fusions-check.log" 2>&1 || status=1
  timeout 90 node node_modules/ava/entrypoints/cli.mjs --timeout=80s --match='*tail*' test/targets/cuda-kernels.test.ts test/targets/cuda-model.test.ts >> "$out/decode-fusions-check.log" 2>&1 || status=1
  grep -E "✘|tests? (passed|failed|skipped)" "$out/decode-fusions-check.log" | tail -20
  wait
  torch_ffn
  node dist/bench/gpu/decode-context.js --model $model --torch "$out/torch_ffn.json" --configs 1,10,8,11,1,10,8,11 --contexts 16,1024,2048 --runs 3 --new 64 --out "$out/decode-context-fusions.json" 2>&1 | tail -26 || status=1
fi
if [[ $what == recovery ]]; then
  step "recovery: stories260K K=32, data-free recovery on the GPU (text, training, teacher logits, evals: --target cuda)"
  node dist/bench/recovery.js --target cuda --at 1500,5000,15000 --minutes 8 --out "$out/recovery-gpu" 2>&1 | tail -14 || status=1
fi
if [[ $what == train-torch ]]; then
  step "train-torch: PyTorch training of the 1B preset, batch 64 x 256, bf16 params + AdamW state: dense eager / torch.compile, MoC / MoC+GCP (K 1024)"
  model=/tmp/llama-1b
  model_1b $model
  python3 bench/gpu/torch_train.py --model $model --batch 64 --seq 256 --steps 5 --warmup 1 --k 1024 --configs dense,compile,moc,moc-gcp --out "$out/torch_train.json" 2>&1 | tail -12 || status=1
fi
if [[ $what == train-torch-largest ]]; then
  step "train-torch-largest: the largest batch x 256 that fits, PyTorch dense eager / torch.compile / MoC+GCP (bisection to a multiple of 8)"
  model=/tmp/llama-1b
  model_1b $model
  python3 bench/gpu/torch_train.py --model $model --batch 64 --seq 256 --steps 1 --warmup 1 --k 1024 --configs dense,compile,moc-gcp --largest-batch --batch-step 8 --out "$out/torch_train_largest.json" 2>&1 | tail -10 || status=1
fi
if [[ $what == all || $what == ffn || $what == e2e || $what == context || $what == wgsl ]]; then
  step "torch_ffn: cuBLAS dense FFN under a CUDA graph, copy bandwidth"
  torch_ffn || status=1
fi
if [[ $what == all || $what == ffn ]]; then
  step "ffn-decode: mocc MoC vs mocc dense"
  node dist/bench/gpu/ffn-decode.js --torch "$out/torch_ffn.json" --out "$out/ffn-decode.json" 2>&1 | tail -8 || status=1
fi
if [[ $what == all || $what == e2e ]]; then
  step "decode-e2e: 1B preset, mocc dense / MoC vs HF transformers"
  model=/tmp/llama-1b
  model_1b $model
  python3 bench/gpu/hf_decode.py --model $model --prompt-tokens 16 --new-tokens 128 --warmup 1 --out "$out/hf_decode.json" 2>&1 | tail -3 || status=1
  node dist/bench/gpu/decode-e2e.js --model $model --hf "$out/hf_decode.json" --torch "$out/torch_ffn.json" --out "$out/decode-e2e.json" 2>&1 | tail -8 || status=1
fi
if [[ $what == all || $what == context ]]; then
  step "decode-context: 1B preset decode after 16..2048 tokens of context, dense / MoC, vs the weight + KV-cache byte floor"
  model=/tmp/llama-1b
  model_1b $model
  node dist/bench/gpu/decode-context.js --model $model --torch "$out/torch_ffn.json" --out "$out/decode-context.json" 2>&1 | tail -29 || status=1
fi
if [[ $what == all || $what == wgsl ]]; then
  step "wgsl: WGSL MoC vs WGSL dense through Dawn (FFN, 1B decode); mocc's CUDA path alongside"
  model=/tmp/llama-1b
  model_1b $model
  node dist/bench/wgsl/wgsl-bench.js --torch "$out/torch_ffn.json" --model $model --out "$out/wgsl-bench.json" 2>&1 | tail -8 || status=1
  node dist/bench/gpu/ffn-decode.js --torch "$out/torch_ffn.json" --out "$out/ffn-decode.wgsl-run.json" 2>&1 | tail -8 || status=1
  node dist/bench/gpu/decode-e2e.js --model $model --torch "$out/torch_ffn.json" --out "$out/decode-e2e.wgsl-run.json" 2>&1 | tail -8 || status=1
fi
exit $status
