#!/usr/bin/env bash
# The GPU fast-path set, under 8 minutes on an H100: build, CUDA tests (native ops and fast path), then
# python -m rgpt_rt.bench at RegionGPT-7B shapes (fp16 with --compare-hf, int8), the tiny soak, a table last.
#   bash tests/gpu/fast_path.sh        (results also land in $OUT when set)
set -uo pipefail
REPO=$(cd "$(dirname "$0")/../.." && pwd)
OUT=${OUT:-/tmp/rgpt_gpu_out}
mkdir -p "$OUT"
PY=${PYTHON:-python3}
export PYTHONUNBUFFERED=1
status=()
echo "== build"
( cd "$REPO" && RGPT_CUDA_ARCHS=${RGPT_CUDA_ARCHS:-90} "$PY" -m pip install -q --no-build-isolation --no-deps . ) \
  > "$OUT/build.log" 2>&1 && status+=("build: ok") || { status+=("build: FAILED"); tail -30 "$OUT/build.log"; }
cd /tmp
echo "== CUDA tests"
timeout 240 "$PY" -m pytest -q -rs -p no:cacheprovider "$REPO/tests/test_cuda_ops.py" "$REPO/tests/test_int8_linear.py" \
  "$REPO/tests/test_fast_path_cuda.py" 2>&1 | tee "$OUT/tests.log" | tail -12
status+=("tests: $(tail -1 "$OUT/tests.log")")
echo "== bench: random 7B fp16 (+ transformers)"
timeout 240 "$PY" -m rgpt_rt.bench --random-7b --precision fp16 --regions 1,8 --new-tokens 64 --repeats 3 \
  --compare-hf --json "$OUT/bench_7b_fp16.json" 2>&1 | tail -40
echo "== bench: random 7B int8"
timeout 150 "$PY" -m rgpt_rt.bench --random-7b --precision int8 --regions 1,8 --new-tokens 64 --repeats 3 \
  --json "$OUT/bench_7b_int8.json" 2>&1 | tail -30
echo "== soak: tiny checkpoint, 10000 describe calls on the GPU"
timeout 200 "$PY" -m rgpt_rt.bench --soak 10000 --repeats 1 --regions 8 --new-tokens 16 --json "$OUT/soak.json" 2>&1 | tail -6
echo "== summary"
printf '%s\n' "${status[@]}"
"$PY" - "$OUT" <<'PY'
import json, os, sys
keys = ["precision", "ttft_ms", "vision_ms", "decode_ms_per_token", "floor_ms_per_token", "decode_vs_floor",
        "describe_ms_64tok", "describe_many_8_ms", "regions_per_s_8", "peak_gpu_mem_gb", "startup_cold_ms",
        "startup_warm_ms", "hf_eager_ms_per_token", "hf_eager_ttft_ms", "hf_static_ms_per_token",
        "soak_rss_growth_mb", "soak_gpu_growth_mb"]
for name in ("bench_7b_fp16.json", "bench_7b_int8.json", "soak.json"):
    p = os.path.join(sys.argv[1], name)
    if os.path.exists(p):
        d = json.load(open(p))
        print(name, " ".join(f"{k}={d[k]:.2f}" if isinstance(d[k], float) else f"{k}={d[k]}" for k in keys if k in d))
PY
