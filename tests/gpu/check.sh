#!/usr/bin/env bash
# One GPU check for a lent machine (H100/H200), under 5 minutes:
#   build with nvcc -> CUDA tests -> the same tests once under compute-sanitizer memcheck -> benches -> table.
# Usage (device tool):  bash tests/gpu/check.sh      (results also land in $OUT when it is set)
set -uo pipefail
REPO=$(cd "$(dirname "$0")/../.." && pwd)
OUT=${OUT:-/tmp/rgpt_gpu_out}
mkdir -p "$OUT"
PY=${PYTHON:-python3}
export PYTHONUNBUFFERED=1
log() { echo "== $*"; }
status=()

log "machine"; nvidia-smi -L || true
log "build (pip install --no-build-isolation --no-deps .)"
( cd "$REPO" && RGPT_CUDA_ARCHS=${RGPT_CUDA_ARCHS:-90} "$PY" -m pip install -q --no-build-isolation --no-deps . ) \
  > "$OUT/build.log" 2>&1 && status+=("build: ok") || { status+=("build: FAILED"); tail -30 "$OUT/build.log"; }
cd /tmp  # import the installed package, not the checkout
"$PY" -c "import rgpt_rt, json; print(json.dumps(rgpt_rt.build_info()))"

log "CUDA tests"
"$PY" -m pytest -q -rs -p no:cacheprovider "$REPO/tests/test_cuda_ops.py" "$REPO/tests/test_decode_ops.py" "$REPO/tests/test_package.py" 2>&1 | tee "$OUT/cuda_tests.log" | tail -15
status+=("cuda tests: $(tail -1 "$OUT/cuda_tests.log")")

log "compute-sanitizer memcheck (CUDA tests, graph capture excluded)"
if command -v compute-sanitizer >/dev/null; then
  timeout 200 compute-sanitizer --tool memcheck --error-exitcode 9 --print-limit 20 \
    "$PY" -m pytest -q -x -p no:cacheprovider "$REPO/tests/test_cuda_ops.py" "$REPO/tests/test_decode_ops.py" -k "not graph" > "$OUT/memcheck.log" 2>&1
  rc=$?
  tail -8 "$OUT/memcheck.log"
  status+=("memcheck: exit $rc ($(grep -c 'Invalid' "$OUT/memcheck.log") invalid accesses reported)")
else
  status+=("memcheck: compute-sanitizer not found")
fi

log "benches"
"$PY" "$REPO/tests/bench/bench_region_pool.py" --device cuda --json "$OUT/bench_region_pool_cuda.json" | tee "$OUT/bench.log"
"$PY" "$REPO/tests/bench/bench_region_pool.py" --device cpu --json "$OUT/bench_region_pool_cpu.json" | tee -a "$OUT/bench.log"
"$PY" "$REPO/tests/bench/bench_preprocess_frame.py" --json "$OUT/bench_preprocess.json" | tee -a "$OUT/bench.log"

log "summary"
printf '%s\n' "${status[@]}"
"$PY" - "$OUT" <<'PY'
import json, os, sys
out = sys.argv[1]
for name in ("bench_region_pool_cuda.json", "bench_region_pool_cpu.json", "bench_preprocess.json"):
    p = os.path.join(out, name)
    if not os.path.exists(p):
        continue
    for r in json.load(open(p))["rows"]:
        keys = [k for k in ("device", "op", "masks", "N", "size", "native_ms", "torch_ref_ms", "pil_ms", "cuda_ms",
                            "speedup", "native_GBps", "copy_GBps", "frac_of_copy") if k in r]
        print(name.split(".")[0], " ".join(f"{k}={r[k]:.3f}" if isinstance(r[k], float) else f"{k}={r[k]}" for k in keys))
PY
