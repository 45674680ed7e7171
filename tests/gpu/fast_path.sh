#!/usr/bin/env bash
# The GPU fast-path set, under 8 minutes on an H100, most important first:
#   build; CUDA tests (native ops incl. the decode ops, fast path); the decode ops against the reference's
#   attention / rotary / norm at one 7B layer's shapes and int8_linear against fp16 matmuls; bench at
#   RegionGPT-7B shapes fp16 with the fused and reference decode steps; int8; the tiny 10,000-call soak;
#   transformers' generate at the same shapes; then (only with RGPT_GPU_COMPILE=1) the torch.compile decode
#   step, whose autotuning is slow.
# A short table comes last. Results also land in $OUT when set.
#   bash tests/gpu/fast_path.sh
set -uo pipefail
REPO=$(cd "$(dirname "$0")/../.." && pwd)
OUT=${OUT:-/tmp/rgpt_gpu_out}
mkdir -p "$OUT"
PY=${PYTHON:-python3}
export PYTHONUNBUFFERED=1
status=()
step() {  # step NAME TIMEOUT CMD...: run, log to $OUT/NAME.log, remember the outcome
  local name=$1 limit=$2
  shift 2
  echo "== $name"
  local t0=$SECONDS
  timeout "$limit" "$@" >"$OUT/$name.log" 2>&1
  local rc=$?
  tail -n "${TAIL:-25}" "$OUT/$name.log"
  status+=("$name: rc=$rc in $((SECONDS - t0)) s")
}
BENCH=("$PY" -m rgpt_rt.bench --random-7b --new-tokens 64 --repeats 3)
step build 150 bash -c "cd '$REPO' && RGPT_CUDA_ARCHS=\${RGPT_CUDA_ARCHS:-90} '$PY' -m pip install -q --no-build-isolation --no-deps ."
cd /tmp
step tests 150 "$PY" -m pytest -q -rs -p no:cacheprovider -k "not compiled" "$REPO/tests/test_cuda_ops.py" \
  "$REPO/tests/test_int8_linear.py" "$REPO/tests/test_decode_ops.py" "$REPO/tests/test_fast_path_cuda.py"
step decode_ops 60 "$PY" "$REPO/tests/bench/bench_decode_ops.py" --batch 1,8 --context 650 --slots 2048 \
  --json "$OUT/bench_decode_ops.json"
step int8_op 60 "$PY" "$REPO/tests/bench/bench_int8_linear.py" --rows 1,8 --json "$OUT/bench_int8_linear.json"
step fp16 120 "${BENCH[@]}" --precision fp16 --regions 1,8 --decode fused,reference --json "$OUT/bench_7b_fp16.json"
step int8 90 "${BENCH[@]}" --precision int8 --regions 8 --decode fused,reference --json "$OUT/bench_7b_int8.json"
step soak 120 "$PY" -m rgpt_rt.bench --device cuda --soak 10000 --soak-only --new-tokens 4 --json "$OUT/soak.json"
step hf 150 "${BENCH[@]}" --precision fp16 --regions 1 --compare-hf --json "$OUT/bench_7b_hf.json"
if [ "${RGPT_GPU_COMPILE:-0}" = 1 ]; then
  step compile 300 "${BENCH[@]}" --precision fp16 --regions 1 --decode fused,compile --json "$OUT/bench_7b_compile.json"
  step compile_test 200 "$PY" -m pytest -q -p no:cacheprovider -k compiled "$REPO/tests/test_fast_path_cuda.py"
fi
echo "== summary"
printf '%s\n' "${status[@]}"
"$PY" - "$OUT" <<'PY'
import json, os, sys
keys = ["gpu", "precision", "decode", "ttft_ms", "vision_ms", "prefill_ms", "prompt_tokens", "decode_ms_per_token",
        "floor_ms_per_token", "decode_vs_floor", "step_ms_fused", "step_vs_floor_fused", "step_ms_reference",
        "step_vs_floor_reference", "step_ms_compile", "step_vs_floor_compile", "describe_ms_64tok",
        "describe_many_8_ms", "regions_per_s_8", "peak_gpu_mem_gb", "startup_cold_ms", "startup_warm_ms",
        "first_describe_s_compile", "hf_eager_ms_per_token", "hf_eager_ttft_ms", "hf_static_ms_per_token",
        "hf_static_ttft_ms", "hf_eager_error", "hf_static_error", "soak_rss_growth_mb", "soak_gpu_growth_mb"]
for name in ("bench_7b_fp16.json", "bench_7b_int8.json", "soak.json", "bench_7b_hf.json", "bench_7b_compile.json"):
    p = os.path.join(sys.argv[1], name)
    if os.path.exists(p):
        d = json.load(open(p))
        print(name, " ".join(f"{k}={d[k]:.2f}" if isinstance(d[k], float) else f"{k}={d[k]}" for k in keys if k in d))
    else:
        print(name, "missing")
PY
